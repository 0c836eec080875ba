"""cnnviz: create, train, look inside and improve your own CNN image classifier.

Example:

>>> import cnnviz
>>> data = cnnviz.load_dataset("shapes")
>>> result = cnnviz.train("fast", data, cnnviz.TrainConfig(epochs=None, time_budget=30))
>>> cnnviz.evaluate(result.model, data).accuracy
0.98...

The package imports lazily: `import cnnviz` loads neither TensorFlow nor
Keras; they load on first use of a function that needs them.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import TYPE_CHECKING

try:
    __version__ = metadata.version("cnnviz")  # one source: pyproject.toml, through the installed metadata
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> module that defines it.
_EXPORTS = {
    "load_dataset": "cnnviz.data",
    "Dataset": "cnnviz.data",
    "Split": "cnnviz.data",
    "LoadReport": "cnnviz.data",
    "load_image": "cnnviz.images",
    "stream_image_folder": "cnnviz.streaming",
    "ImageStream": "cnnviz.streaming",
    "make_strategy": "cnnviz.distribute",
    "ModelConfig": "cnnviz.models",
    "ConvNetConfig": "cnnviz.models",
    "TransferConfig": "cnnviz.models",
    "HeadConfig": "cnnviz.models",
    "PRESETS": "cnnviz.models",
    "preset_config": "cnnviz.models",
    "build_model": "cnnviz.models",
    "count_flops": "cnnviz.models",
    "describe_model": "cnnviz.models",
    "TrainConfig": "cnnviz.training.config",
    "TrainResult": "cnnviz.training.config",
    "train": "cnnviz.training.loop",
    "augment_preview": "cnnviz.training.augmentation",
    "resolve_precision": "cnnviz.training.precision",
    "TrainRequest": "cnnviz.runs",
    "evaluate_saved": "cnnviz.runs",
    "evaluate": "cnnviz.evaluation",
    "EvaluationResult": "cnnviz.evaluation",
    "predict": "cnnviz.evaluation",
    "predict_probabilities": "cnnviz.evaluation",
    "save_model": "cnnviz.saving",
    "load_model": "cnnviz.saving",
    "class_names_of": "cnnviz.saving",
    "imagenet_classifier": "cnnviz.pretrained",
    "BACKBONES": "cnnviz.pretrained",
    "explain": "cnnviz.explanations",
    "explain_each": "cnnviz.explanations",
    "METHODS": "cnnviz.explanations",
    "contrastive_map": "cnnviz.explanations",
    "score_explanations": "cnnviz.scoring",
    "Scoreboard": "cnnviz.scoring",
    "features": "cnnviz.embedding",
    "why_not": "cnnviz.contrast",
    "timeline_of": "cnnviz.timeline",
    "Contrast": "cnnviz.contrast",
    "list_layers": "cnnviz.introspect",
    "default_cam_layer": "cnnviz.introspect",
    "overlay": "cnnviz.render",
    "feature_maps": "cnnviz.activations",
    "filter_images": "cnnviz.activations",
    "class_images": "cnnviz.activations",
    "top_patches": "cnnviz.activations",
    "audit": "cnnviz.cleaning",
    "receptive_field": "cnnviz.activations",
    "kernel_images": "cnnviz.weights",
    "weight_histograms": "cnnviz.weights",
    "weight_changes": "cnnviz.weights",
    "confusion_matrix_figure": "cnnviz.plotting",
    "heatmap_figure": "cnnviz.plotting",
    "feature_map_figure": "cnnviz.plotting",
    "kernel_figure": "cnnviz.plotting",
    "prediction_grid_figure": "cnnviz.plotting",
    "save_png": "cnnviz.plotting",
    "comparison_figure": "cnnviz.plotting",
    "compare": "cnnviz.comparison",
    "VARIANTS": "cnnviz.comparison",
    "CnnvizError": "cnnviz.errors",
    "ImageError": "cnnviz.errors",
    "DatasetError": "cnnviz.errors",
    "ModelFileError": "cnnviz.errors",
    "ConfigError": "cnnviz.errors",
}

__all__ = sorted(_EXPORTS)


# Submodules reachable as attributes (`cnnviz.runs.run(...)`), loaded on first use.
_SUBMODULES = (
    "runs",
    "events",
    "plotting",
    "explanations",
    "introspect",
    "render",
    "models",
    "data",
    "limits",
    "scoring",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"cnnviz.{name}")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cnnviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for editors and type checkers; a test keeps it equal to _EXPORTS
    from cnnviz.activations import class_images, feature_maps, filter_images, receptive_field, top_patches
    from cnnviz.cleaning import audit
    from cnnviz.comparison import VARIANTS, compare
    from cnnviz.contrast import Contrast, why_not
    from cnnviz.data import Dataset, LoadReport, Split, load_dataset
    from cnnviz.distribute import make_strategy
    from cnnviz.embedding import features
    from cnnviz.errors import CnnvizError, ConfigError, DatasetError, ImageError, ModelFileError
    from cnnviz.evaluation import EvaluationResult, evaluate, predict, predict_probabilities
    from cnnviz.explanations import METHODS, contrastive_map, explain, explain_each
    from cnnviz.images import load_image
    from cnnviz.introspect import default_cam_layer, list_layers
    from cnnviz.models import (
        PRESETS,
        ConvNetConfig,
        HeadConfig,
        ModelConfig,
        TransferConfig,
        build_model,
        count_flops,
        describe_model,
        preset_config,
    )
    from cnnviz.plotting import (
        comparison_figure,
        confusion_matrix_figure,
        feature_map_figure,
        heatmap_figure,
        kernel_figure,
        prediction_grid_figure,
        save_png,
    )
    from cnnviz.pretrained import BACKBONES, imagenet_classifier
    from cnnviz.render import overlay
    from cnnviz.runs import TrainRequest, evaluate_saved
    from cnnviz.saving import class_names_of, load_model, save_model
    from cnnviz.scoring import Scoreboard, score_explanations
    from cnnviz.streaming import ImageStream, stream_image_folder
    from cnnviz.timeline import timeline_of
    from cnnviz.training.augmentation import augment_preview
    from cnnviz.training.config import TrainConfig, TrainResult
    from cnnviz.training.loop import train
    from cnnviz.training.precision import resolve_precision
    from cnnviz.weights import kernel_images, weight_changes, weight_histograms
