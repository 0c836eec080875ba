"""The `cnnviz` command line: train, evaluate, predict and explain.

Bad input never shows a traceback: the command prints one line on stderr that
says what is wrong and exits with status 2 (1 for a failure mid-way). With
`--json`, the last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
# Light augmentation safe for every kind of data (no flips: digits and text
# must not be mirrored). Off by default: it pays only on long runs.
DEFAULT_AUGMENTATION = {"translate": 0.06}
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line, like every other cnnviz error."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _UsageError(Exception):
    pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    from cnnviz.distribute import STRATEGIES
    from cnnviz.models import DEFAULT_PRESET, PRESETS
    from cnnviz.training import OPTIMIZERS, PRECISIONS

    parser = _Parser(prog="cnnviz", description="Create, train, look inside and improve CNN classifiers.")
    parser.add_argument("--version", action="version", version="cnnviz 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train a model on a dataset and save it")
    train.add_argument(
        "--data", required=True, help="shapes, digits, mnist, fashion_mnist, cifar10, a folder or a .zip"
    )
    train.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="model design")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        type=_override,
        metavar="FIELD=VALUE",
        help="change one ModelConfig field of the preset, e.g. --set pooled_blocks=1 --set filters=32",
    )
    train.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="most epochs (default 10, or 1000 with a time budget)",
    )
    train.add_argument(
        "--time-budget",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds, keeping the best weights",
    )
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--learning-rate", type=_positive_float, default=None)
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="light augmentation (small random shifts); off by default: within a short time budget it "
        "costs accuracy (measured: shapes 93.5%% with it vs 98%% without in 30 s)",
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
        type=_positive_int,
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
        type=_positive_int,
        default=None,
        help="with --distribute mirrored and no GPU: split the CPU into N devices (to try it out)",
    )
    train.add_argument("--precision", choices=PRECISIONS, default="auto")
    train.add_argument("--image-size", type=_positive_int, default=None, help="resize images to N x N")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, metavar="MODEL.keras", help="where to save the model")
    train.add_argument("--json", action="store_true", help="print a JSON summary as the last line")

    evaluate = commands.add_parser("evaluate", help="score a saved model on labelled images")
    evaluate.add_argument("model", metavar="MODEL.keras")
    evaluate.add_argument(
        "--data", required=True, help="a built-in name (its test split), a folder or a .zip (all of it)"
    )
    evaluate.add_argument(
        "--seed",
        type=int,
        default=None,
        help="split seed of a built-in source (default: the seed the model was trained with)",
    )
    evaluate.add_argument("--json", action="store_true")

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("model", metavar="MODEL.keras", help=_MODEL_HELP)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=_positive_int, default=3)
    predict.add_argument("--json", action="store_true")

    from cnnviz.explanations import METHODS

    explain = commands.add_parser("explain", help="write heatmap overlays showing where the model looks")
    explain.add_argument("model", metavar="MODEL.keras", help=_MODEL_HELP)
    explain.add_argument("images", nargs="+", metavar="IMAGE")
    explain.add_argument("--method", choices=METHODS, default="gradcam")
    explain.add_argument("--layer", default=None, help="layer for the CAM methods (default: last conv map)")
    explain.add_argument(
        "--class", dest="class_name", default=None, help="explain this class (default: the predicted one)"
    )
    explain.add_argument(
        "--opacity", type=_fraction, default=0.45, help="heatmap opacity, 0-1 (default 0.45)"
    )
    explain.add_argument("--colormap", default="Jet", help="plotly colorscale name (default Jet)")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder for the overlay PNGs")
    explain.add_argument("--json", action="store_true")

    from cnnviz.comparison import DEFAULT_VARIANTS, VARIANTS

    compare = commands.add_parser(
        "compare",
        help="train variants (augmentation, optimizers, deeper, batch norm, transfer...) within one time "
        "budget each and rank them",
    )
    compare.add_argument("--data", required=True, help="a built-in name, a folder or a .zip")
    compare.add_argument(
        "--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="the baseline design"
    )
    compare.add_argument(
        "--variants",
        type=_variant_list,
        default=list(DEFAULT_VARIANTS),
        help=f"comma-separated, from: {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    compare.add_argument(
        "--time-budget",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="per variant (default 30)",
    )
    compare.add_argument("--batch-size", type=_positive_int, default=32)
    compare.add_argument("--image-size", type=_positive_int, default=None, help="resize images to N x N")
    compare.add_argument("--num-samples", type=_positive_int, default=None)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--log-dir", default=None, help="TensorBoard logs, one run per variant")
    compare.add_argument(
        "--figure", default=None, metavar="PNG", help="save the accuracy-vs-time figure here"
    )
    compare.add_argument("--json", action="store_true")
    return parser


def _variant_list(text: str) -> list[str]:
    from cnnviz.comparison import VARIANTS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}"
        )
    return names


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _override(text: str) -> tuple[str, Any]:
    """`FIELD=VALUE` with VALUE read as JSON when it can be (numbers, true, null)."""
    import dataclasses

    from cnnviz.models import ModelConfig

    field, separator, raw = text.partition("=")
    fields = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("input_shape", "num_classes")]
    if not separator or field not in fields:
        raise argparse.ArgumentTypeError(f"{text!r}: use FIELD=VALUE with FIELD one of {', '.join(fields)}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return field, value


def _progress_bar(total: int | None, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)


def _print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _load_data(source: str, **kwargs):
    from cnnviz.data import load_dataset

    bar = None

    def progress(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "loading images")
        bar.update(done - bar.n)

    try:
        return load_dataset(source, progress=progress, **kwargs)
    finally:
        if bar is not None:
            bar.close()


def _command_train(args) -> int:
    # Ctrl-C stops training after the current batch and saves what was learnt.
    stop = threading.Event()

    def on_interrupt(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "\ncnnviz: stopping after this batch; the model so far will be saved (Ctrl-C again to abort).",
            file=sys.stderr,
        )

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGINT, on_interrupt) if in_main_thread else None
    try:
        return _train_and_save(args, stop)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous_handler)


def _train_and_save(args, stop: threading.Event) -> int:
    import cnnviz
    from cnnviz.models import count_flops
    from cnnviz.saving import set_metadata
    from cnnviz.training import TrainConfig

    out = Path(args.out)
    if out.suffix != ".keras":
        raise _UsageError(f"--out {args.out}: the model file must end in .keras")
    if out.exists() and out.is_dir():
        raise _UsageError(f"--out {args.out}: is a folder; give a file name ending in .keras")
    from cnnviz.distribute import is_chief, make_strategy

    # Before any other TensorFlow work: a strategy fixes devices and the cluster.
    strategy = make_strategy(args.distribute, args.cpu_replicas)
    if args.stream:
        from cnnviz.streaming import stream_image_folder

        if not Path(args.data).is_dir():
            raise _UsageError(f"--stream reads a folder of class subfolders; {args.data} is not a folder")
        data = stream_image_folder(
            args.data, image_size=args.image_size, seed=args.seed, cache_dir=args.cache_dir
        )
    else:
        data = _load_data(args.data, image_size=args.image_size, seed=args.seed, num_samples=args.num_samples)
    if data.report is not None and data.report.skipped:
        print(f"cnnviz: {data.report.summary()}", file=sys.stderr)
    augment = DEFAULT_AUGMENTATION if args.augment else {}
    epochs = args.epochs or (1000 if args.time_budget else 10)
    config = TrainConfig(
        optimizer=args.optimizer,
        batch_size=args.batch_size,
        epochs=epochs,
        time_budget=args.time_budget,
        precision=args.precision,
        seed=args.seed,
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),
        **augment,
    )
    bar = _progress_bar(None if args.time_budget else epochs, "training")

    def on_event(event: dict[str, Any]):
        if event["event"] == "epoch_end":
            metrics = event["metrics"]
            shown = {
                key: f"{value:.3f}" for key, value in metrics.items() if "accuracy" in key or key == "loss"
            }
            bar.set_postfix(shown)
            bar.update(1)

    try:
        from cnnviz.models import preset_config

        model_config = preset_config(
            args.preset, data.image_shape, len(data.class_names), **dict(args.overrides)
        )
        result = cnnviz.train(
            model_config,
            data,
            config,
            on_event=on_event,
            stop_event=stop,
            log_dir=args.log_dir,
            strategy=strategy,
            # Every finished epoch replaces --out atomically: a killed run leaves the last one loadable.
            checkpoint_path=out,
        )
    finally:
        bar.close()
    set_metadata(
        result.model,
        training={
            "data": args.data,
            "seed": args.seed,
            "preset": args.preset,
            "changes": dict(args.overrides),
        },
    )
    chief = is_chief(strategy)
    if chief:
        cnnviz.save_model(result.model, out, data.class_names)
    else:  # the same weights as the chief's; saved in step with it (collective reads), then dropped
        import tempfile

        with tempfile.TemporaryDirectory(prefix="cnnviz-worker-") as scratch:
            cnnviz.save_model(result.model, Path(scratch) / out.name, data.class_names)
    summary = {
        "train_seconds": round(result.train_seconds, 3),
        "epochs": result.epochs,
        "samples_per_second": round(result.samples_per_second, 1),
        "val_accuracy": result.val_accuracy,
        "classes": list(data.class_names),
        "precision": result.precision,
        "parameters": int(result.model.count_params()),
        "flops_per_image": count_flops(result.model),
        "stop_reason": result.stop_reason,
        "model": str(out) if chief else None,
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
    }
    print(f"cnnviz: {result.message}" + (f" Saved {out}." if chief else ""), file=sys.stderr)
    if args.json:
        _print_json(summary)
    else:
        accuracy = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
        print(
            f"trained {result.epochs} epochs in {result.train_seconds:.1f} s "
            f"({result.samples_per_second:.0f} samples/s), validation accuracy {accuracy} -> {out}\n"
            f"model: {summary['parameters']:,} parameters, {summary['flops_per_image'] / 1e6:.1f} MFLOPs per image"
        )
    return EXIT_FAILED if result.stop_reason == "nan" else 0


def _command_evaluate(args) -> int:
    import numpy as np

    import cnnviz
    from cnnviz.data import BUILTIN_SOURCES
    from cnnviz.errors import DatasetError
    from cnnviz.saving import get_metadata

    model = cnnviz.load_model(args.model)
    model_classes = cnnviz.class_names_of(model)
    height, width = (int(side) for side in model.input_shape[1:3])
    builtin = args.data.strip().lower().replace("-", "_") in BUILTIN_SOURCES
    if builtin:
        # The test split is only unseen if it is drawn with the training seed.
        trained_on = get_metadata(model).get("training", {})
        seed = args.seed if args.seed is not None else int(trained_on.get("seed", 0))
        data = _load_data(args.data, image_size=(height, width), seed=seed)
        part = data.test
    else:
        data = _load_data(args.data, image_size=(height, width), validation_split=0.0, test_split=0.0)
        part = data.train
    unknown = [name for name in data.class_names if name not in model_classes]
    if unknown:
        raise DatasetError(
            f"{args.data}: class {unknown[0]!r} is not one the model knows "
            f"({', '.join(model_classes)}); rename or remove that folder."
        )
    labels = np.asarray([model_classes.index(data.class_names[label]) for label in part.labels])
    result = cnnviz.evaluate(model, (part.images, labels), class_names=model_classes)
    payload = result.to_dict()
    if args.json:
        _print_json(
            {key: payload[key] for key in ("accuracy", "confusion_matrix", "classes", "n")}
            | {"per_class": payload["per_class"]}
        )
    else:
        print(f"accuracy {result.accuracy:.4f} on {result.n} images")
        for row in result.per_class:
            print(
                f"  {row['class']:>16}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
                f"f1 {row['f1']:.3f}  ({row['support']} images)"
            )
    return 0


def _load_images(file_names: list[str]):
    """Loads each file; a bad one becomes an error entry (and one stderr line), the rest go on."""
    import cnnviz
    from cnnviz.errors import ImageError

    images, names, errors = [], [], []
    for file_name in file_names:
        try:
            images.append(cnnviz.load_image(file_name))
            names.append(file_name)
        except ImageError as error:
            errors.append({"file": file_name, "error": str(error)})
            print(f"cnnviz: {error}", file=sys.stderr)
    return images, names, errors


_MODEL_HELP = "a .keras file, or 'imagenet' for MobileNetV2 trained on ImageNet (downloads ~14 MB once)"


def _load_model(name: str):
    import cnnviz

    if name == "imagenet" and not Path(name).exists():
        return cnnviz.imagenet_classifier()
    return cnnviz.load_model(name)


def _command_predict(args) -> int:
    import cnnviz

    model = _load_model(args.model)
    predictions = []
    images, names, errors = _load_images(args.images)
    if images:
        for file_name, result in zip(names, cnnviz.predict(model, images, top_k=args.top_k)):
            predictions.append({"file": file_name, **result})
    if args.json:
        _print_json({"predictions": predictions, "errors": errors})
    else:
        for item in predictions:
            ranked = ", ".join(f"{entry['class']} {entry['probability']:.3f}" for entry in item["top_k"])
            print(f"{item['file']}: {item['class']} ({item['probability']:.3f})  [{ranked}]")
    return EXIT_BAD_INPUT if errors else 0


def _command_explain(args) -> int:
    import numpy as np

    import cnnviz
    from cnnviz.errors import ConfigError
    from cnnviz.explanations import overlay
    from cnnviz.plotting import save_png

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _UsageError(f"--out {args.out}: is a file; give a folder for the overlay PNGs")
    model = _load_model(args.model)
    class_names = cnnviz.class_names_of(model)
    class_index = None
    if args.class_name is not None:
        if args.class_name not in class_names:
            raise ConfigError(
                f"--class {args.class_name!r}: the model's classes are {', '.join(class_names)}."
            )
        class_index = class_names.index(args.class_name)
    results = []
    images, names, errors = _load_images(args.images)
    if images:
        out.mkdir(parents=True, exist_ok=True)
        probabilities = cnnviz.predict_probabilities(model, images)
        heatmaps = cnnviz.explain(
            model, images, method=args.method, class_index=class_index, layer=args.layer
        )
        used = set()
        for file_name, image, heatmap, row in zip(names, images, heatmaps, probabilities):
            index = class_index if class_index is not None else int(np.argmax(row))
            stem = Path(file_name).stem or "image"
            target = out / f"{stem}.{args.method}.png"
            counter = 1
            while target in used:  # two inputs with the same name in different folders
                counter += 1
                target = out / f"{stem}-{counter}.{args.method}.png"
            used.add(target)
            save_png(overlay(image, heatmap, colormap=args.colormap, opacity=args.opacity), target)
            results.append(
                {
                    "file": file_name,
                    "class": class_names[index],
                    "probability": float(row[index]),
                    "heatmap_png": str(target),
                }
            )
    if args.json:
        _print_json({"results": results, "errors": errors})
    else:
        for item in results:
            print(f"{item['file']}: {item['class']} ({item['probability']:.3f}) -> {item['heatmap_png']}")
    return EXIT_BAD_INPUT if errors else 0


def _command_compare(args) -> int:
    import cnnviz
    from cnnviz.models import preset_config
    from cnnviz.training import TrainConfig

    if args.figure is not None and not args.figure.endswith(".png"):
        raise _UsageError(f"--figure {args.figure}: give a file name ending in .png")
    data = _load_data(args.data, image_size=args.image_size, seed=args.seed, num_samples=args.num_samples)
    model_config = preset_config(args.preset, data.image_shape, data.num_classes)
    train_config = TrainConfig(batch_size=args.batch_size, epochs=1000, seed=args.seed)

    def on_event(event: dict[str, Any]):
        if event["event"] == "variant_begin":
            print(
                f"cnnviz: [{event['index'] + 1}/{event['total']}] {event['variant']} "
                f"({args.time_budget:g} s)...",
                file=sys.stderr,
                flush=True,
            )

    results = cnnviz.compare(
        data,
        args.variants,
        model_config,
        train_config,
        time_budget=args.time_budget,
        log_dir=args.log_dir,
        on_event=on_event,
    )
    if args.figure is not None:
        from cnnviz.plotting import comparison_figure, save_png

        save_png(comparison_figure(results), args.figure)
    failed = [result for result in results if result.error is not None]
    for result in failed:
        print(f"cnnviz: {result.name}: {result.error}", file=sys.stderr)
    if args.json:
        _print_json({"data": data.summary(), "results": [result.to_row() for result in results]})
    else:
        ranked = sorted(results, key=lambda result: -(result.accuracy or -1))
        measured_on = ranked[0].measured_on if ranked else "test"
        print(
            f"{'variant':<14}{measured_on + ' acc':>10}{'seconds':>9}{'epochs':>8}{'parameters':>12}  what changed"
        )
        for result in ranked:
            accuracy = "failed" if result.accuracy is None else f"{result.accuracy:.4f}"
            print(
                f"{result.name:<14}{accuracy:>10}{result.train_seconds:>9.1f}{result.epochs:>8}"
                f"{result.parameters:>12,}  {result.description}"
            )
        if args.log_dir:
            print(f"TensorBoard: tensorboard --logdir {args.log_dir}")
    return EXIT_BAD_INPUT if len(failed) == len(results) else 0


@contextlib.contextmanager
def _native_stderr_held_back():
    """Keeps what native code writes to file descriptor 2 off the terminal, unless the block fails.

    TensorFlow's C++ side logs INFO lines while it loads ("oneDNN custom operations are
    on", on CPUs with AVX-512) before TF_CPP_MIN_LOG_LEVEL applies. The CLI's stderr
    is for its own one-line messages, so such lines go to a temporary file, shown only
    if the block raises.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield
        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cnnviz.errors import CnnvizError

    try:
        args = build_parser().parse_args(argv)
        with _native_stderr_held_back():
            import tensorflow  # noqa: F401 (every command needs it; --help and usage errors do not)
        handler = {
            "train": _command_train,
            "evaluate": _command_evaluate,
            "predict": _command_predict,
            "explain": _command_explain,
            "compare": _command_compare,
        }
        return handler[args.command](args)
    except _UsageError as error:
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    except CnnvizError as error:
        print(f"cnnviz: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cnnviz: interrupted.", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "cnnviz: out of memory; use smaller images, a smaller batch size or fewer images.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except OSError as error:
        print(f"cnnviz: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
