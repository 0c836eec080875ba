"""Training: the run's settings and result (`config`), its data (`sources`), its parts
(`control`: schedule, stop conditions, NaN guard, best weights, checkpoints, events)
and `train` itself (`loop`).

`cnnviz.training.config` loads no TensorFlow; `train` loads it on first use.
"""

from cnnviz.training.augmentation import augment_preview, make_augmentation
from cnnviz.training.config import (
    DEFAULT_AUGMENTATION,
    FLIPS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    TrainResult,
)
from cnnviz.training.precision import cpu_has_native_bfloat16, resolve_precision

__all__ = [
    "DEFAULT_AUGMENTATION",
    "FLIPS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "augment_preview",
    "cpu_has_native_bfloat16",
    "make_augmentation",
    "resolve_precision",
    "train",
]


def __getattr__(name: str):
    if name == "train":  # loads Keras: only when asked for
        from cnnviz.training.loop import train

        return train
    raise AttributeError(f"module 'cnnviz.training' has no attribute {name!r}")
