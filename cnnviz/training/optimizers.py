"""The optimizers `cnnviz.train` builds by name (`TrainConfig.optimizer`).

The default, `"muon"`, is Keras' Muon extended to convolution kernels
(`ConvMuon`). On the shapes it took the `fast` design from 60 % to 98.5 %
test accuracy in 3 epochs, where Adam needed about 8 (docs/BENCHMARKS.md,
"Faster to a good model").
"""

import re

import keras
from keras import ops

from cnnviz.training.config import OPTIMIZERS

#: Muon's momentum: 0.9 was more sample-efficient than Keras' 0.95 on the shapes.
MUON_MOMENTUM = 0.9

#: Layers whose weights take Adam steps under Muon: the classifier's last layer.
MUON_EXCLUDED_LAYERS = ("logits",)


@keras.saving.register_keras_serializable(package="cnnviz")
class ConvMuon(keras.optimizers.Muon):
    """Keras' Muon, extended to the kernels of 2-D convolutions.

    Muon replaces each weight matrix's update by the nearest semi-orthogonal
    matrix (a few Newton-Schulz iterations), so every direction of the matrix
    learns at the same pace. Keras' `Muon` does that for 2-D weights only
    (dense kernels) and gives every other weight AdamW steps. In a convnet
    almost every weight is a 4-D convolution kernel, so this class also treats
    each kernel as a matrix: (kernel height x width x input channels) rows by
    output channels, as Muon's authors do for convnets. Biases, batch
    normalization and the layers named in `exclude_layers` (by default the
    classifier's `logits`) keep Adam steps at the same learning rate.

    `cnnviz.save_model` saves models trained with it without their training
    state, so the files load in Keras without cnnviz.

    Args:
        learning_rate: float or schedule. Defaults to `0.02`.
        momentum: the update's momentum. Defaults to `MUON_MOMENTUM`.
        exclude_layers: layer names (regular expressions on the weight's
            path) that take Adam steps. Defaults to `MUON_EXCLUDED_LAYERS`.
        weight_decay: decoupled weight decay of both kinds of step. Defaults to `0.0`.
        **kwargs: the other arguments of `keras.optimizers.Muon`.
    """

    def __init__(
        self,
        learning_rate=0.02,
        momentum=MUON_MOMENTUM,
        exclude_layers=MUON_EXCLUDED_LAYERS,
        weight_decay=0.0,
        **kwargs,
    ):
        kwargs.setdefault("adam_weight_decay", weight_decay)
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            exclude_layers=list(exclude_layers or ()),
            weight_decay=weight_decay,
            **kwargs,
        )

    def _should_use_adamw(self, variable):
        # Keras' rule, with 4-D convolution kernels counted as matrices.
        if len(variable.shape) not in (2, 4):
            return True
        if self.exclude_embeddings and "embedding" in variable.path.lower():
            return True
        return any(re.search(keyword, variable.path) for keyword in self.exclude_layers)

    def _muon_update_step(self, gradient, variable, lr, m):
        shape = tuple(variable.shape)
        if len(shape) == 2:
            return super()._muon_update_step(gradient, variable, lr, m)
        self.assign_add(m, ops.add(gradient, m * (self.momentum - 1)))
        direction = ops.add(gradient, self.momentum * m) if self.nesterov else m
        update = self.zeropower_via_newtonschulz5(ops.reshape(direction, (-1, shape[-1])), self.ns_steps)
        self.assign_sub(variable, ops.reshape(self.lr_adjust(lr * update), shape))


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


def is_portable(optimizer) -> bool:
    """Whether Keras alone can rebuild `optimizer` from a saved model's config."""
    return not isinstance(optimizer, ConvMuon)
