"""Batch normalization during `fit`: TensorFlow's fused kernel, and running averages that fit short runs.

`train` wraps Keras' `fit` in `for_training(model, ...)`. For the run:

- plain Keras `BatchNormalization` layers (see `fuse` for the few left
  alone) normalize a training batch of 4-D images with TensorFlow's fused
  kernel (`FusedBatchNormV3`, oneDNN on the CPU, cuDNN on a GPU), as `tf.keras`
  did, where Keras 3 composes a dozen separate operations, forward and
  backward. Same outputs, gradients and running averages to float32
  round-off; on 2 CPU cores the `fast` design at batch 32 trained on a fifth
  less CPU time per sample, at 28x28x1 and 64x64x3 (docs/BENCHMARKS.md,
  "Fused batch norm");
- for designs cnnviz builds, the running averages span at most half an epoch
  (`shorten_averages`).

Afterwards every layer is as it was: the model `train` hands back is plain
Keras. (Checkpoints written during the run carry the shortened momentum.)
"""

from __future__ import annotations

import contextlib

import keras

#: The smallest epsilon given to the fused kernel (cuDNN's minimum, 1e-5, with tf.keras' margin); layers with a
#: smaller one keep Keras' code.
_FUSED_MIN_EPSILON = 1.001e-5


@contextlib.contextmanager
def for_training(model, steps_per_epoch: int, *, shorten: bool):
    """Fuses `model`'s batch norm for the block and, with `shorten`, shortens its running averages.

    Args:
        model: the `keras.Model` about to be fit.
        steps_per_epoch: batches per epoch of the run.
        shorten: whether to apply `shorten_averages` (designs cnnviz builds).
    """
    momentum, fused = {}, []
    try:
        momentum = shorten_averages(model, steps_per_epoch) if shorten else {}
        fused = fuse(model)
        yield
    finally:
        for layer in fused:
            vars(layer).pop("call", None)  # the class's own call again
        for layer, value in momentum.items():
            layer.momentum = value
        if fused or momentum:  # a later fit traces its step again, with Keras' own layers
            model.train_function = None


def shorten_averages(model, steps_per_epoch: int) -> dict:
    """Makes batch norm's running statistics average over about half an epoch for this run.

    The running mean and variance, which the model uses after training, are
    averages with `momentum` (0.9: about the last 10 batches). With few batches
    per epoch they still hold much of their starting values (0 and 1) when
    validation runs: a folder of 60 images (2 batches an epoch) scored 50 % on
    validation after 4 epochs with Muon (seed 0) while its training accuracy
    was 100 %. So each trainable batch norm layer's momentum is lowered to
    `1 - 2 / steps_per_epoch`, at least 0.5 (an average over about 2 batches);
    from 20 batches an epoch up, the design's 0.9 stays.

    Returns:
        `{layer: its momentum before}` for the layers changed, to put back after `fit`.
    """
    momentum = max(0.5, 1 - 2 / steps_per_epoch)
    changed = {}
    for layer in _batch_norms(model):
        if layer.trainable and layer.momentum > momentum:
            changed[layer] = layer.momentum
            layer.momentum = momentum
    return changed


def fuse(model) -> list:
    """Gives each plain Keras batch norm layer of `model` a training step on the fused kernel.

    Layers of a subclass, with renormalization, synchronized statistics, an
    epsilon under 1.001e-5, or variables or computations in another dtype
    than float32 (mixed precision computes batch norm in float32 too) are left
    alone, and so is any call the fused kernel does not cover (a mask, inputs
    that are not `(batch, height, width, channels)`, inference): those run
    Keras' own code. Only with the TensorFlow backend.

    Returns:
        The layers changed; removing the instance's `call` puts each back.
    """
    if keras.backend.backend() != "tensorflow":
        return []
    changed = []
    for layer in _batch_norms(model):
        if (
            type(layer) is keras.layers.BatchNormalization
            and not layer.renorm
            and not layer.synchronized
            and layer.epsilon >= _FUSED_MIN_EPSILON
            and layer.variable_dtype == "float32"
            and layer.compute_dtype in ("float32", "bfloat16", "float16")
        ):
            layer.call = _fused_call(layer)
            changed.append(layer)
    return changed


def _batch_norms(model):
    from cnnviz.models import walk_layers

    layers = (layer for layer in walk_layers(model) if isinstance(layer, keras.layers.BatchNormalization))
    return list(dict.fromkeys(layers))  # a layer used twice, once


def _fused_call(layer):
    """`layer.call` with the fused kernel for training on 4-D channels-last inputs; Keras' call otherwise."""
    import tensorflow as tf

    keras_call = type(layer).call

    def call(inputs, training=None, mask=None):
        covered = (
            training and layer.trainable and mask is None and len(inputs.shape) == 4 and layer.axis in (-1, 3)
        )
        if not covered:
            return keras_call(layer, inputs, training=training, mask=mask)
        x = tf.cast(inputs, "float32")  # as Keras: statistics in float32 whatever the policy
        channels = x.shape[-1]
        scale = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels])
        offset = tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels])
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=scale,
            offset=offset,
            mean=tf.constant([], "float32"),
            variance=tf.constant([], "float32"),
            epsilon=layer.epsilon,
            exponential_avg_factor=1.0,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the sample variance (divided by n - 1); Keras' running average takes the
        # population variance (divided by n), so the two give the same averages. n = 1: 0, as Keras.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
        variance = tf.math.multiply_no_nan(variance, (count - 1.0) / count)
        momentum = layer.momentum
        layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
        layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
        # A NaN or infinite input makes the batch's statistics NaN; Keras' own code carries that into the
        # loss. Through the fused kernel it did not get there: one NaN pixel gave the `fast` design a finite
        # loss (ln 2) where Keras' layer gives NaN, so the NaN guard (`control.NanGuard`) missed the broken
        # run. NaN outputs of the kernel were lost too; an op between the kernel and the ReLU after it kept
        # them, so grappler's fusion of the two, which turns NaN into 0, is the likely cause. So a loss of 0,
        # or NaN when the statistics are not finite, is added instead: that op (a select on the outputs)
        # cost about half of the CPU time the fused kernel saves.
        layer.add_loss(tf.where(tf.reduce_all(tf.math.is_finite(mean + variance)), 0.0, float("nan")))
        return tf.cast(outputs, layer.compute_dtype)

    return call
