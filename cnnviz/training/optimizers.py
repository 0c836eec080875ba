"""The optimizers `cnnviz.train` builds by name (`TrainConfig.optimizer`).

The default, `"muon"`, is Keras' Muon applied to convolution kernels
(`ConvMuon`). On the shapes it took the `fast` design from 49 % to 98 % test
accuracy in 3 epochs, against Adam's (docs/BENCHMARKS.md, "Faster to a good
model", "Muon").
"""

import math
import re

import keras
from keras import ops

from cnnviz.training.config import OPTIMIZERS

#: Muon's momentum: 0.9 was more sample-efficient than Keras' 0.95 on the shapes.
MUON_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="cnnviz")
class ConvMuon(keras.optimizers.Muon):
    """Keras' Muon for the kernels of 2-D convolutions; Adam for every other weight.

    Muon replaces a weight matrix's update by the nearest semi-orthogonal
    matrix (a few Newton-Schulz iterations), so every direction of the matrix
    learns at the same pace. Keras' `Muon` does that for 2-D weights (dense
    kernels) and gives everything else AdamW steps. In a convnet almost every
    weight is a 4-D convolution kernel, so this class treats each kernel as
    the matrix it is, (kernel height x width x input channels) rows by output
    channels, as Muon's authors do for convnets. Every other weight takes Adam
    steps at the same learning rate:

    - dense kernels, the classifier's included: a flatten head's kernel can be
      50,000 x 256, where Newton-Schulz would cost more than the whole batch;
    - depthwise kernels with a depth multiplier of 1 (one output channel
      each), biases and batch norm, which are not matrices;
    - the layers matched by `exclude_layers`.

    `cnnviz.save_model` leaves its compile settings out of the file, so the
    model loads in Keras without cnnviz (uncompiled). A file written by
    Keras' own `model.save` names this class: load it after importing
    `cnnviz.training.optimizers`, or with `compile=False`.

    Args:
        learning_rate: float or schedule. Defaults to `0.02`.
        momentum: the Muon update's momentum. Defaults to `MUON_MOMENTUM`.
        exclude_layers: regular expressions on a weight's path (`"conv3/kernel"`)
            whose convolutions take Adam steps too. Defaults to none.
        weight_decay: decoupled weight decay of Muon's steps, or `None`.
            Defaults to `None`.
        adam_weight_decay: the same for the Adam steps. Defaults to `None`.
        **kwargs: the other arguments of `keras.optimizers.Muon`.
    """

    def __init__(
        self,
        learning_rate=0.02,
        *,
        momentum=MUON_MOMENTUM,
        exclude_layers=(),
        weight_decay=None,
        adam_weight_decay=None,
        **kwargs,
    ):
        if isinstance(exclude_layers, str):
            exclude_layers = [exclude_layers]
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            exclude_layers=list(exclude_layers or ()),
            weight_decay=weight_decay,
            adam_weight_decay=adam_weight_decay,
            **kwargs,
        )

    def _should_use_adamw(self, variable):
        shape = tuple(variable.shape)
        is_matrix = len(shape) == 4 and shape[-1] > 1 and math.prod(shape[:-1]) > 1
        return not is_matrix or any(re.search(keyword, variable.path) for keyword in self.exclude_layers)

    # Keras' Muon step, with a 4-D kernel seen as its (kh * kw * cin, cout) matrix.
    def zeropower_via_newtonschulz5(self, x, steps: int):
        return _as_matrix(x, lambda matrix: super(ConvMuon, self).zeropower_via_newtonschulz5(matrix, steps))

    def lr_adjust(self, x):
        return _as_matrix(x, super().lr_adjust)


def _as_matrix(x, function):
    """`function` of `x` flattened to a matrix (rows = all axes but the last), reshaped back."""
    if len(x.shape) != 4:
        return function(x)
    return ops.reshape(function(ops.reshape(x, (-1, x.shape[-1]))), x.shape)


def make_optimizer(name: str, learning_rate: float):
    """The optimizer `name` (one of `OPTIMIZERS`) at `learning_rate`."""
    if name == "muon":
        return ConvMuon(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=1e-4)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}.")
