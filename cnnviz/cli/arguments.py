"""The CLI's parser: one small function per command.

The flags for `TrainConfig` fields are made from the dataclass itself (names,
types, choices, help), so a new training knob needs no edit here. Building the
parser loads no TensorFlow (`--help` and usage errors stay fast).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from typing import Any

MODEL_HELP = "a .keras file, or 'imagenet' for MobileNetV2 trained on ImageNet (downloads ~14 MB once)"


class UsageError(Exception):
    """A command line that cannot run, said in one line."""


class Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line, like every other cnnviz error."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def bounded_number(kind: type = int, low: float | None = None, high: float | None = None):
    """An argparse type: a whole number (`kind=int`) or a number, within `[low, high]` when given."""
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}")
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}")
        if low is not None and high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} must be between {low:g} and {high:g}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'positive' if low == 1 else f'at least {low:g}'}"
            )
        return value

    return parse


def _plain_type(hint: Any) -> type:
    """`int` for `int` and `int | None`, and so on."""
    options = [option for option in typing.get_args(hint) if option is not type(None)] or [hint]
    return options[0]


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, help_overrides=None) -> None:
    """One `--field-name` flag per field of a config dataclass, from its type, `choices` and `help`.

    A flag not given leaves the field to its default (the namespace lacks it; see `given_fields`).
    """
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        kind = _plain_type(hints[field.name])
        help_text = (help_overrides or {}).get(field.name) or field.metadata.get("help", "")
        said = "(default" in help_text  # the help already says it, in its own words
        default = "" if field.default is None or said else f" (default {field.default})"
        options: dict[str, Any] = {
            "dest": field.name,
            "default": argparse.SUPPRESS,
            "help": help_text + default,
        }
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        elif kind in (int, float):
            options["type"] = bounded_number(kind)
        if "metavar" in field.metadata:
            options["metavar"] = field.metadata["metavar"]
        parser.add_argument("--" + field.name.replace("_", "-"), **options)


def given_fields(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The config fields given on the command line."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config_class)
        if hasattr(args, field.name)
    }


def _override(text: str) -> tuple[str, Any]:
    """`FIELD=VALUE` with VALUE read as JSON when it can be (numbers, true, null)."""
    from cnnviz.models import FAMILIES, field_names

    field, separator, raw = text.partition("=")
    fields = sorted(
        {name for family in FAMILIES.values() for name in field_names(family)}
        - {"input_shape", "num_classes", "name"}
    )
    if not separator or field not in fields:
        raise argparse.ArgumentTypeError(f"{text!r}: use FIELD=VALUE with FIELD one of {', '.join(fields)}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return field, value


def _variant_list(text: str) -> list[str]:
    from cnnviz.comparison import VARIANTS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}"
        )
    return names


def _add_design(parser: argparse.ArgumentParser, what: str) -> None:
    from cnnviz.models import DEFAULT_PRESET, PRESETS

    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help=what)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_override,
        metavar="FIELD=VALUE",
        help="change one field of the preset's design, e.g. --set pooled_blocks=1 --set filters=32",
    )


def _add_train(commands) -> None:
    from cnnviz.distribute import STRATEGIES
    from cnnviz.training.config import AUTO_AUGMENT_TEXT, TrainConfig

    train = commands.add_parser("train", help="train a model on a dataset and save it")
    train.add_argument(
        "--data", required=True, help="shapes, digits, mnist, fashion_mnist, cifar10, a folder or a .zip"
    )
    _add_design(train, "model design")
    add_config_flags(train, TrainConfig)
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="light augmentation (small random shifts) unless the augmentation flags say otherwise. Default, "
        f"when no augmentation flag is given: {AUTO_AUGMENT_TEXT} (on 8,000 real digits it added 0.2 points "
        "in 30 s; on larger images a short run lost accuracy with it)",
    )
    train.add_argument(
        "--stream",
        action="store_true",
        help="read a folder from disk batch by batch (tf.data) instead of loading it into memory: "
        "for datasets larger than memory",
    )
    train.add_argument(
        "--cache-dir",
        default=None,
        help="with --stream: cache decoded images here (faster epochs after the first)",
    )
    train.add_argument(
        "--num-samples",
        type=bounded_number(int, 1),
        default=None,
        help="use only this many images of a built-in source",
    )
    train.add_argument(
        "--log-dir", default=None, help="write TensorBoard logs here (tensorboard --logdir DIR)"
    )
    train.add_argument(
        "--distribute",
        choices=STRATEGIES,
        default="none",
        help="mirrored: every GPU of this machine; multiworker: several machines, from TF_CONFIG",
    )
    train.add_argument(
        "--cpu-replicas",
        type=bounded_number(int, 1),
        default=None,
        help="with --distribute mirrored and no GPU: split the CPU into N devices (to try it out)",
    )
    train.add_argument(
        "--timeline-out",
        default=None,
        metavar="DIR",
        help="with --timeline K: write a PNG strip per probe image (its heatmap at every epoch) and "
        "timeline.gif here",
    )
    _add_image_size(train)
    train.add_argument("--out", required=True, metavar="MODEL.keras", help="where to save the model")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _add_image_size(parser) -> None:
    parser.add_argument(
        "--image-size",
        type=bounded_number(int, 1),
        default=None,
        metavar="N",
        help="resize images to N x N (default: the source's own size; folders and zips: the size their "
        "images share, else their median, at most 128 px a side)",
    )


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="score a saved model on labelled images it never saw")
    evaluate.add_argument("model", metavar="MODEL.keras")
    evaluate.add_argument(
        "--data",
        required=True,
        help="a built-in name or the model's own training folder / .zip (their test split), "
        "or another folder or .zip (all of it)",
    )
    evaluate.add_argument(
        "--seed",
        type=bounded_number(int),
        default=None,
        help="split seed (default: the one the model was trained with)",
    )
    evaluate.add_argument("--json", action="store_true")


def _add_predict(commands) -> None:
    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("model", metavar="MODEL.keras", help=MODEL_HELP)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=bounded_number(int, 1), default=3)
    predict.add_argument("--json", action="store_true")


def _add_explain(commands) -> None:
    from cnnviz.explanations import METHODS

    explain = commands.add_parser("explain", help="write heatmap overlays showing where the model looks")
    explain.add_argument("model", metavar="MODEL.keras", help=MODEL_HELP)
    explain.add_argument("images", nargs="+", metavar="IMAGE")
    explain.add_argument(
        "--method",
        choices=list(METHODS),
        default="gradcam",
        help="; ".join(f"{name}: {method.label}" for name, method in METHODS.items()),
    )
    explain.add_argument(
        "--layer", default=None, help="layer for the methods that read one (default: last conv map)"
    )
    explain.add_argument(
        "--class", dest="class_name", default=None, help="explain this class (default: the predicted one)"
    )
    explain.add_argument(
        "--contrast",
        default=None,
        metavar="CLASS",
        help="draw why the explained class and not CLASS: where raising the pixels raises its logit over "
        "CLASS's (the gradient of their difference; --method and --layer do not apply)",
    )
    explain.add_argument(
        "--opacity",
        type=bounded_number(float, 0.0, 1.0),
        default=0.45,
        help="heatmap opacity, 0-1 (default 0.45)",
    )
    explain.add_argument("--colormap", default="Jet", help="plotly colorscale name (default Jet)")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder for the overlay PNGs")
    explain.add_argument("--json", action="store_true")


def _add_score(commands) -> None:
    from cnnviz.explanations import METHODS
    from cnnviz.scoring import DELETION_FILLS, STEPS

    score = commands.add_parser(
        "score",
        help="rank explanation methods and layers on the model's own test images: deletion, insertion, "
        "pointing, sanity and speed, with a recommendation",
    )
    score.add_argument("model", metavar="MODEL.keras", help=MODEL_HELP)
    score.add_argument("--data", required=True, help="a built-in name or a folder / .zip, as for evaluate")
    score.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=None,
        metavar="METHOD",
        help=f"from: {', '.join(METHODS)} (default: all)",
    )
    score.add_argument(
        "--layers",
        nargs="+",
        default=None,
        metavar="LAYER",
        help="layers for the methods that read one (default: the last three convolution maps)",
    )
    score.add_argument(
        "--images",
        type=bounded_number(int, 1, 10000),
        default=100,
        help="correctly classified test images to score on (default 100)",
    )
    score.add_argument(
        "--steps", type=bounded_number(int, 1, 256), default=STEPS, help=f"curve steps (default {STEPS})"
    )
    score.add_argument(
        "--deletion-fill",
        choices=DELETION_FILLS,
        default="blur",
        help="what deleted pixels become (default blur; black is RISE's paper)",
    )
    score.add_argument("--json", action="store_true")


def _add_audit(commands) -> None:
    audit = commands.add_parser(
        "audit",
        help="find training images whose label is probably wrong, near-duplicates, outliers and confused "
        "classes; or, with --apply, write a fixed copy of a folder",
    )
    audit.add_argument(
        "source", metavar="SRC", help="a folder of class folders, a .zip of one, or a built-in name"
    )
    audit.add_argument(
        "--folds",
        type=bounded_number(int, 2, 10),
        default=3,
        help="models trained, each on all folds but one (default 3)",
    )
    audit.add_argument(
        "--budget",
        type=bounded_number(float, 1, 86400),
        default=None,
        help="seconds of training for all folds together (default 120; with --epochs: no limit)",
    )
    audit.add_argument(
        "--epochs",
        type=bounded_number(int, 1, 10000),
        default=None,
        help="epochs each fold trains: the same training on any machine (with --budget too, whichever ends first)",
    )
    _add_design(audit, "what each fold trains (default: the fast preset)")
    audit.add_argument("--seed", type=bounded_number(int, 0, 2**31 - 1), default=0)
    audit.add_argument(
        "--apply",
        metavar="FIXES.csv",
        help="instead of auditing: apply a fixes file (file,given,action,new_label) to SRC, written to --out",
    )
    audit.add_argument(
        "--out", metavar="DIR", help="with --apply: a new folder for the fixed copy (SRC is never changed)"
    )
    audit.add_argument("--json", action="store_true")


def _add_compare(commands) -> None:
    from cnnviz.comparison import DEFAULT_VARIANTS, VARIANTS
    from cnnviz.training.config import TrainConfig

    compare = commands.add_parser(
        "compare",
        help="train variants (augmentation, optimizers, deeper, batch norm, transfer...) within one time "
        "budget each and rank them",
    )
    compare.add_argument("--data", required=True, help="a built-in name, a folder or a .zip")
    _add_design(compare, "the baseline design")
    compare.add_argument(
        "--variants",
        type=_variant_list,
        default=list(DEFAULT_VARIANTS),
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    add_config_flags(compare, TrainConfig, {"time_budget": "seconds per variant (default 30)"})
    _add_image_size(compare)
    compare.add_argument("--num-samples", type=bounded_number(int, 1), default=None)
    compare.add_argument("--log-dir", default=None, help="TensorBoard logs, one run per variant")
    compare.add_argument(
        "--figure", default=None, metavar="PNG", help="save the accuracy-vs-time figure here"
    )
    compare.add_argument("--json", action="store_true")


def _add_export(commands) -> None:
    from cnnviz.export import FORMATS

    export = commands.add_parser(
        "export", help="write the model with its Grad-CAM heatmap for onnxruntime, LiteRT or TensorFlow"
    )
    export.add_argument("model", metavar="MODEL.keras")
    export.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx: probabilities and heatmap; tflite: probabilities; savedmodel: both (default: onnx)",
    )
    export.add_argument("--out", required=True, help="the .onnx or .tflite file, or the SavedModel folder")
    export.add_argument(
        "--data",
        default=None,
        help="labelled images to validate the export on (default: the model's own training data, its test split)",
    )
    export.add_argument("--json", action="store_true")


def _add_report(commands) -> None:
    report = commands.add_parser("report", help="write a model card: one HTML file that opens offline")
    report.add_argument("model", metavar="MODEL.keras")
    report.add_argument(
        "--data",
        default=None,
        help="labelled images to score it on (default: its own training data's test split)",
    )
    report.add_argument("--out", required=True, metavar="CARD.html")


def build_parser() -> argparse.ArgumentParser:
    from cnnviz import __version__

    parser = Parser(prog="cnnviz", description="Create, train, look inside and improve CNN classifiers.")
    parser.add_argument("--version", action="version", version=f"cnnviz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for add in (
        _add_train,
        _add_evaluate,
        _add_predict,
        _add_explain,
        _add_score,
        _add_audit,
        _add_compare,
        _add_export,
        _add_report,
    ):
        add(commands)
    return parser
