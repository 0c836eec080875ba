"""What each CLI command does: adapt its arguments, call the library, print the answer."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cnnviz.cli.arguments import UsageError, given_fields

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _progress_bar(total: int | None, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)


def _print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _load_data(source: str, **kwargs):
    """`cnnviz.runs.load_data` with a progress bar while files are read."""
    from cnnviz import runs

    bar = None

    def progress(done: int, total: int):
        nonlocal bar
        if bar is None:
            bar = _progress_bar(total, "loading images")
        bar.update(done - bar.n)

    try:
        return runs.load_data(source, progress=progress, **kwargs)
    finally:
        if bar is not None:
            bar.close()


def _train_config(args, augment: bool):
    from cnnviz import runs
    from cnnviz.training.config import DEFAULT_AUGMENTATION, TrainConfig

    given = given_fields(args, TrainConfig)
    return runs.train_config(**({**DEFAULT_AUGMENTATION, **given} if augment else given))


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


def _model_path(text: str) -> Path:
    out = Path(text)
    if out.suffix != ".keras":
        raise UsageError(f"--out {text}: the model file must end in .keras")
    if out.is_dir():
        raise UsageError(f"--out {text}: is a folder; give a file name ending in .keras")
    return out


def _epoch_bar(config):
    """A progress bar over epochs, and the event callback that moves it."""
    from cnnviz.events import EpochEnd

    bar = _progress_bar(config.epochs if not config.time_budget else None, "training")

    def on_event(event):
        if isinstance(event, EpochEnd):
            shown = {
                key: f"{value:.3f}"
                for key, value in event.metrics.items()
                if "accuracy" in key or key == "loss"
            }
            bar.set_postfix(shown)
            bar.update(1)

    return bar, on_event


def _train_and_save(args, stop: threading.Event) -> int:
    from cnnviz import runs
    from cnnviz.distribute import is_chief, make_strategy

    out = _model_path(args.out)
    config = _train_config(args, bool(args.augment))  # bad flags fail here, before TensorFlow loads
    if args.timeline_out is not None:
        if not config.timeline:
            raise UsageError("--timeline-out: add --timeline K (how many probe images to follow, e.g. 8)")
        if Path(args.timeline_out).exists() and not Path(args.timeline_out).is_dir():
            raise UsageError(f"--timeline-out {args.timeline_out}: is a file; give a folder")
    # Before any other TensorFlow work: a strategy fixes devices and the cluster.
    strategy = make_strategy(args.distribute, args.cpu_replicas)
    data = _load_data(
        args.data,
        image_size=args.image_size,
        seed=config.seed,
        num_samples=args.num_samples,
        stream=args.stream,
        cache_dir=args.cache_dir,
    )
    if data.report is not None and data.report.skipped:
        print(f"cnnviz: {data.report.summary()}", file=sys.stderr)
    if args.augment is None and not config.augments and runs.augments_by_default(data):
        config = _train_config(args, True)  # no augmentation chosen: the default for many small images
    if (note := runs.defaults_note(data)) is not None:
        print(f"cnnviz: {note}", file=sys.stderr)
    request = runs.TrainRequest(
        data,
        args.data,
        args.preset,
        dict(args.overrides),
        config,
        data_options={"num_samples": args.num_samples},
    )
    bar, on_event = _epoch_bar(config)
    try:
        # Every finished epoch replaces --out atomically: a killed run leaves the last one loadable.
        result = runs.run(
            request,
            on_event=on_event,
            stop_event=stop,
            log_dir=args.log_dir,
            strategy=strategy,
            checkpoint_path=out,
        )
    finally:
        bar.close()
    chief = is_chief(strategy)
    print(f"cnnviz: {result.message}" + (f" Saved {out}." if chief else ""), file=sys.stderr)
    _report_training(args, result, data, str(out) if chief else None, strategy)
    return EXIT_FAILED if result.stop_reason == "nan" else 0


def _report_training(args, result, data, saved: str | None, strategy) -> None:
    from cnnviz.models import count_flops

    summary = {
        "train_seconds": round(result.train_seconds, 3),
        "epochs": result.epochs,
        "kept_epoch": result.kept_epoch,
        "samples_per_second": round(result.samples_per_second, 1),
        "val_accuracy": result.val_accuracy,
        "classes": list(data.class_names),
        "precision": result.precision,
        "parameters": int(result.model.count_params()),
        "flops_per_image": count_flops(result.model),
        "stop_reason": result.stop_reason,
        "model": saved,
        "replicas": 1 if strategy is None else int(strategy.num_replicas_in_sync),
    }
    if result.timeline:
        summary["timeline_epochs"] = [snapshot.epoch for snapshot in result.timeline]
        from cnnviz.distribute import is_chief

        if args.timeline_out and is_chief(strategy):  # one writer, as for the model file
            from cnnviz.timeline import write_timeline

            summary["timeline"] = write_timeline(result.timeline, tuple(data.class_names), args.timeline_out)
    if args.json:
        _print_json(summary)
        return
    accuracy = "n/a" if result.val_accuracy is None else f"{result.val_accuracy:.4f}"
    print(
        f"trained {result.epochs} epochs in {result.train_seconds:.1f} s "
        f"({result.samples_per_second:.0f} samples/s), validation accuracy {accuracy} -> {args.out}\n"
        f"model: {summary['parameters']:,} parameters, {summary['flops_per_image'] / 1e6:.1f} MFLOPs per image"
    )


def _command_evaluate(args) -> int:
    import cnnviz
    from cnnviz import runs

    model = cnnviz.load_model(args.model)
    result = runs.evaluate_saved(model, args.data, seed=args.seed, load=_load_data)
    if args.json:
        payload = result.to_dict()
        _print_json(
            {key: payload[key] for key in ("accuracy", "confusion_matrix", "classes", "n", "per_class")}
        )
        return 0
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
    any_size = _say_if_any_size(model)
    if args.json:
        _print_json({"predictions": predictions, "errors": errors})
    else:
        for item in predictions:
            ranked = ", ".join(f"{entry['class']} {entry['probability']:.3f}" for entry in item["top_k"])
            read_at = f"  (read at {_size(item['input_size'])})" if any_size else ""
            print(f"{item['file']}: {item['class']} ({item['probability']:.3f})  [{ranked}]{read_at}")
    return EXIT_BAD_INPUT if errors else 0


def _say_if_any_size(model) -> bool:
    """Tells stderr how images are sized for a model that takes any size; whether it does."""
    from cnnviz.images import any_size_note, takes_any_size
    from cnnviz.introspect import input_shape_of

    if not takes_any_size(input_shape_of(model)):
        return False
    print(f"cnnviz: {any_size_note()}", file=sys.stderr)
    return True


def _size(size) -> str:
    return f"{size[0]}x{size[1]}"


def _class_index(model, class_name: str | None) -> int | None:
    import cnnviz
    from cnnviz.errors import ConfigError

    if class_name is None:
        return None
    class_names = cnnviz.class_names_of(model)
    if class_name not in class_names:
        raise ConfigError(f"--class {class_name!r}: the model's classes are {', '.join(class_names)}.")
    return class_names.index(class_name)


def _overlay_paths(out: Path, names: list[str], method: str) -> list[Path]:
    """One PNG path per input, unique when two inputs share a name in different folders."""
    paths: list[Path] = []
    for file_name in names:
        stem = Path(file_name).stem or "image"
        target, counter = out / f"{stem}.{method}.png", 1
        while target in paths:
            counter += 1
            target = out / f"{stem}-{counter}.{method}.png"
        paths.append(target)
    return paths


def _command_explain(args) -> int:
    import numpy as np

    import cnnviz
    from cnnviz.images import reading_size
    from cnnviz.introspect import input_shape_of
    from cnnviz.plotting import save_png
    from cnnviz.render import overlay

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out}: is a file; give a folder for the overlay PNGs")
    model = _load_model(args.model)
    class_names = cnnviz.class_names_of(model)
    class_index = _class_index(model, args.class_name)
    foil = None if args.contrast is None else _class_index(model, args.contrast)
    if foil is not None and class_index == foil:
        raise UsageError(f"--contrast {args.contrast}: that is the class --class explains; pick another")
    results = []
    images, names, errors = _load_images(args.images)
    probabilities = cnnviz.predict_probabilities(model, images) if images else []
    explained = [class_index if class_index is not None else int(np.argmax(row)) for row in probabilities]
    if foil is not None:  # an image the model already calls the contrast class has nothing to contrast
        kept = [position for position, index in enumerate(explained) if index != foil]
        for position in sorted(set(range(len(images))) - set(kept)):
            message = (
                f"{names[position]}: the model predicts {args.contrast} itself; name the class to explain "
                "with --class"
            )
            errors.append({"file": names[position], "error": message})
            print(f"cnnviz: {message}", file=sys.stderr)
        images, names = [images[i] for i in kept], [names[i] for i in kept]
        probabilities, explained = [probabilities[i] for i in kept], [explained[i] for i in kept]
    if images:
        if foil is None:
            heatmaps = cnnviz.explain_each(
                model, images, method=args.method, class_index=class_index, layer=args.layer
            )
        else:
            heatmaps = [
                cnnviz.contrastive_map(model, image, index, foil)[0]
                for image, index in zip(images, explained)
            ]
        out.mkdir(parents=True, exist_ok=True)
        kind = args.method if foil is None else f"not-{class_names[foil]}"
        paths = _overlay_paths(out, names, kind)
        input_shape = input_shape_of(model)
        for file_name, image, heatmap, row, index, target in zip(
            names, images, heatmaps, probabilities, explained, paths
        ):
            save_png(overlay(image, heatmap, colormap=args.colormap, opacity=args.opacity), target)
            results.append(
                {
                    "file": file_name,
                    "class": class_names[index],
                    "probability": float(row[index]),
                    "map": args.method if foil is None else "contrast",
                    **(
                        {}
                        if foil is None
                        else {"contrast": class_names[foil], "contrast_probability": float(row[foil])}
                    ),
                    "heatmap_png": str(target),
                    "input_size": list(reading_size(input_shape, image.shape[:2])),
                }
            )
    any_size = _say_if_any_size(model)
    if args.json:
        _print_json({"results": results, "errors": errors})
    else:
        for item in results:
            read_at = f" (read at {_size(item['input_size'])})" if any_size else ""
            print(
                f"{item['file']}: {item['class']} ({item['probability']:.3f}){read_at} -> {item['heatmap_png']}"
            )
    return EXIT_BAD_INPUT if errors else 0


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _command_score(args) -> int:
    import cnnviz
    from cnnviz import runs

    model = _load_model(args.model)
    data = runs.evaluation_data(model, args.data, load=_load_data)
    bar = _progress_bar(None, "scoring")

    def progress(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.set_postfix_str(label)
        bar.update(done - bar.n)

    try:
        board = cnnviz.score_explanations(
            model,
            data,
            methods=args.methods,
            layers=args.layers,
            images=args.images,
            steps=args.steps,
            deletion_fill=args.deletion_fill,
            progress=progress,
        )
    finally:
        bar.close()
    if args.json:
        _print_json(board.to_dict())
        return 0
    print(
        f"{'method':<34} {'deletion':>8} {'insertion':>9} {'pointing':>8} {'energy':>6} {'sanity':>6} {'ms/image':>9}"
    )
    for row in sorted(board.rows, key=lambda row: -row.faithfulness):
        print(
            f"{row.label:<34} {row.deletion_auc:>8.3f} {row.insertion_auc:>9.3f} {_optional(row.pointing):>8} "
            f"{_optional(row.energy):>6} {row.sanity_correlation:>6.2f} {row.ms_per_image:>9.1f}"
        )
    print(f"on {board.n} correctly classified test images. Use: {board.recommended['reason']}")
    return 0


def _command_audit(args) -> int:
    from cnnviz import cleaning as auditing

    if args.apply:
        if not args.out:
            raise UsageError(
                "--apply needs --out DIR: a new folder for the fixed copy (SRC is never changed)"
            )
        source = Path(args.source)
        if not source.is_dir():
            raise UsageError(f"--apply works on a folder of class folders; {args.source} is not a folder")
        try:
            text = Path(args.apply).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--apply {args.apply}: cannot read it as a CSV text file ({error})") from None
        # The same split as the audit's (its --seed): the test images stay as they are.
        data = _load_data(args.source, seed=args.seed)
        fixes = auditing.read_fixes(text, data.class_names)
        counts = auditing.apply_fixes(source, fixes, args.out, data=data, seed=args.seed)
        if args.json:
            _print_json({"out": str(Path(args.out)), **counts})
        else:
            print(
                f"{args.out}: {counts['kept']} training images kept, {counts['relabelled']} relabelled, "
                f"{counts['dropped']} dropped, {counts['test']} test images as they were; {args.source} is unchanged"
            )
        return 0
    if args.out:
        raise UsageError("--out is for --apply; the audit itself writes nothing (use --json > audit.json)")
    data = _load_data(args.source, seed=args.seed)
    bar = _progress_bar(100, "auditing")
    stop = threading.Event()

    def progress(message: str, share: float) -> None:
        bar.set_postfix_str(message)
        bar.update(int(share * 100) - bar.n)

    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        found = auditing.audit(
            data,
            design=args.preset,
            changes=dict(args.overrides),
            folds=args.folds,
            budget=args.budget,
            seed=args.seed,
            epochs=args.epochs,
            progress=progress,
            stop_event=stop,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if args.json:
        _print_json(found.to_json())
        return 0
    print(found.verdict)
    for row in found.suspects[:20]:
        print(f"  {row['score']:.3f}  {row['file']}: labelled {row['given']}, looks like {row['suggested']}")
    if len(found.suspects) > 20:
        print(f"  ... {len(found.suspects) - 20} more (--json lists them all)")
    for row in found.duplicates[:10]:
        kind = "the same image twice in" if row["same_label"] else "the same image under two labels:"
        print(
            f"  duplicate: {' and '.join(row['files'] or [])} ({kind} {' / '.join(sorted(set(row['labels'])))})"
        )
    for row in found.outliers[:10]:
        print(f"  outlier: {row['file']} ({row['label']}, {row['score']:.1f}x the usual distance)")
    for row in found.confused_pairs[:5]:
        print(f"  confused: {row['classes'][0]} / {row['classes'][1]} ({row['examples']} images)")
    for row in found.unreadable:
        print(f"  unreadable: {row['file']} ({row['reason']})")
    print(f"{len(found.labels)} images, {args.folds} folds, {found.seconds:.0f} s")
    return 0


def _command_compare(args) -> int:
    import cnnviz
    from cnnviz import runs
    from cnnviz.events import VariantBegin
    from cnnviz.models import fit_design
    from cnnviz.training.config import TrainConfig

    if args.figure is not None and not args.figure.endswith(".png"):
        raise UsageError(f"--figure {args.figure}: give a file name ending in .png")
    settings = given_fields(args, TrainConfig)
    # Seconds per variant: 30 unless given; epochs given without a budget run those epochs.
    time_budget = settings.pop("time_budget", None if "epochs" in settings else 30.0)
    train_config = TrainConfig(**settings)
    data = _load_data(
        args.data, image_size=args.image_size, seed=train_config.seed, num_samples=args.num_samples
    )
    model_config = fit_design(
        args.preset,
        data.image_shape,
        data.num_classes,
        num_images=runs.training_images(data),
        **dict(args.overrides),
    )

    length = f"{time_budget:g} s" if time_budget else f"{train_config.epochs} epochs"

    def on_event(event):
        if isinstance(event, VariantBegin):
            print(
                f"cnnviz: [{event.index + 1}/{event.total}] {event.variant} ({length})...",
                file=sys.stderr,
                flush=True,
            )

    results = cnnviz.compare(
        data,
        args.variants,
        model_config,
        train_config,
        time_budget=time_budget,
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
        _print_ranking(results, args.log_dir)
    return EXIT_BAD_INPUT if len(failed) == len(results) else 0


def _print_ranking(results, log_dir) -> None:
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
    if log_dir:
        print(f"TensorBoard: tensorboard --logdir {log_dir}")


def _command_export(args) -> int:
    import cnnviz
    from cnnviz import runs

    model = cnnviz.load_model(args.model)
    print(
        f"cnnviz: exporting {args.model} as {args.format} and checking it against Keras...", file=sys.stderr
    )
    report = runs.export_model(model, args.out, args.format, args.data, load=_load_data)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


def _command_report(args) -> int:
    import cnnviz
    from cnnviz import runs

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {args.out}: give a file name ending in .html")
    model = cnnviz.load_model(args.model)
    page = runs.model_card(model, args.data, load=_load_data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"{out} ({len(page.encode()) / 1024**2:.1f} MB): open it in any browser, no network needed")
    return 0


COMMANDS = {
    "train": _command_train,
    "evaluate": _command_evaluate,
    "predict": _command_predict,
    "explain": _command_explain,
    "score": _command_score,
    "audit": _command_audit,
    "compare": _command_compare,
    "export": _command_export,
    "report": _command_report,
}
