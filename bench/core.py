"""Benchmarks for the core issue; prints a markdown table of figures and targets.

Run: python bench/core.py [throughput] [accuracy] [shapes] [import] [batch_norm]   (default: all but batch_norm)

Each speed figure is compared with a baseline measured in the same run, as
ratios, because this machine is noisy.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from results import record, report


def bench_throughput(samples=12800, epochs=2):
    """keras_mnist preset, 28x28x1, batch 128, no augmentation: cnnviz.train (precision auto) vs plain float32
    fit, both in steady state (after the first epoch)."""
    import keras

    import cnnviz
    from cnnviz.models import build_model, preset_config
    from cnnviz.training.optimizers import make_optimizer

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (samples, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, samples)
    config = preset_config("keras_mnist", (28, 28, 1), 10)
    defaults = cnnviz.TrainConfig()

    def plain():
        keras.utils.set_random_seed(0)
        model = build_model(config)
        # The optimizer cnnviz.train uses by default (Muon since issue 15), so the ratio is cnnviz's overhead alone.
        optimizer = make_optimizer(defaults.optimizer, defaults.peak_learning_rate)
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
        x = images.astype("float32")
        model.fit(x[:1280], labels[:1280], batch_size=128, epochs=1, verbose=0)  # warm-up
        start = time.perf_counter()
        model.fit(x, labels, batch_size=128, epochs=epochs, verbose=0)
        return samples * epochs / (time.perf_counter() - start)

    def ours(optimizer=defaults.optimizer, learning_rate=defaults.learning_rate):
        # Steady state, as for plain fit (timed after its warm-up fit): the epochs after the first, whose
        # time includes tracing the train step (a new model per run, so a warm-up run would not save it).
        from cnnviz.events import EpochEnd

        ends = []
        train_config = cnnviz.TrainConfig(
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=128,
            epochs=epochs + 1,
            validation_split=0.0,
        )
        result = cnnviz.train(
            config,
            (images, labels),
            train_config,
            on_event=lambda e: isinstance(e, EpochEnd) and ends.append(e),
        )
        return samples * epochs / (ends[-1].elapsed - ends[0].elapsed), result.precision

    plain_rates, our_rates, adam_rates = [], [], []
    for _ in range(2):  # interleaved, so drift hits all alike
        plain_rates.append(plain())
        rate, precision = ours()
        our_rates.append(rate)
        adam_rates.append(ours("adam", 0.01)[0])
    plain_rate, our_rate, adam_rate = max(plain_rates), max(our_rates), max(adam_rates)
    record(f"keras_mnist plain float32 fit samples/s ({defaults.optimizer})", round(plain_rate), "baseline")
    record(
        f"keras_mnist cnnviz.train samples/s ({defaults.optimizer}, precision {precision})",
        round(our_rate),
        "",
    )
    record("training throughput ratio cnnviz / plain fit", round(our_rate / plain_rate, 2), ">= 0.95")
    record("keras_mnist cnnviz.train samples/s (adam)", round(adam_rate), "")
    record(
        f"cost of the default optimizer: {defaults.optimizer} / adam samples/s",
        round(our_rate / adam_rate, 2),
        "",
    )


def bench_batch_norm(rounds=8):
    """The `fast` design at batch 32, plain fit with Keras' own batch norm against the same fit with the fused
    kernel `cnnviz.train` uses (`cnnviz.training.batch_norm.fuse`), and without batch norm as a floor.
    Interleaved, 2 epochs of 1,280 random images per round; medians of wall-clock and of CPU-time rates."""
    import statistics

    from cnnviz.models import build_model, preset_config
    from cnnviz.training import batch_norm
    from cnnviz.training.optimizers import make_optimizer

    rng = np.random.default_rng(0)
    for shape in ((28, 28, 1), (64, 64, 3)):
        images = rng.uniform(0, 255, (1280, *shape)).astype("float32")
        labels = rng.integers(0, 10, len(images))
        models = {}
        for name, overrides, fused in (
            ("keras", {}, False),
            ("fused", {}, True),
            ("none", {"batch_norm": False}, False),
        ):
            model = build_model(preset_config("fast", shape, 10, **overrides))
            if fused:
                batch_norm.fuse(model)
            model.compile(make_optimizer("muon", 0.02), "sparse_categorical_crossentropy")
            model.fit(images, labels, batch_size=32, epochs=1, verbose=0)  # traced and warm
            models[name] = model
        wall = {name: [] for name in models}
        cpu = {name: [] for name in models}
        for _ in range(rounds):
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                model.fit(images, labels, batch_size=32, epochs=2, verbose=0)
                wall[name].append(2 * len(images) / (time.perf_counter() - start))
                cpu[name].append(2 * len(images) / (time.process_time() - start_cpu))
        side = "x".join(map(str, shape))
        median = {name: statistics.median(rates) for name, rates in wall.items()}
        median_cpu = {name: statistics.median(rates) for name, rates in cpu.items()}
        for name in models:
            record(
                f"fast {side}, batch 32, batch norm {name}: samples/s (per CPU second)",
                f"{median[name]:.0f} ({median_cpu[name]:.0f})",
                "baseline" if name == "keras" else "",
            )
        record(
            f"fast {side}: fused / Keras batch norm samples/s",
            round(median["fused"] / median["keras"], 2),
            "> 1",
        )
        record(
            f"fast {side}: fused / Keras, per CPU second",
            round(median_cpu["fused"] / median_cpu["keras"], 2),
            "> 1",
        )


def _cli_train_evaluate(source, budget):
    with tempfile.TemporaryDirectory() as folder:
        model = os.path.join(folder, "m.keras")
        train = subprocess.run(
            [
                sys.executable,
                "-m",
                "cnnviz",
                "train",
                "--data",
                source,
                "--time-budget",
                str(budget),
                "--out",
                model,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        summary = json.loads(train.stdout.strip().splitlines()[-1])
        evaluate = subprocess.run(
            [sys.executable, "-m", "cnnviz", "evaluate", model, "--data", source, "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        return summary, json.loads(evaluate.stdout.strip().splitlines()[-1])


def bench_accuracy():
    for source, budget, target in (("shapes", 30, ">= 0.97"), ("digits", 15, ">= 0.98")):
        summary, report = _cli_train_evaluate(source, budget)
        record(
            f"{source} test accuracy, cnnviz train --time-budget {budget} (defaults; {summary['epochs']} epochs, "
            f"{summary['samples_per_second']:.0f} samples/s)",
            round(report["accuracy"], 4),
            target,
        )


def bench_shapes():
    from cnnviz.shapes import generate_shapes

    generate_shapes(256)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        generate_shapes(6000)
        times.append(time.perf_counter() - start)
    record("shapes: 6,000 images, best of 3", round(min(times), 2), "<= 3", "s")


def bench_import():
    def timed(statement):
        best = []
        for _ in range(3):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import time; s=time.perf_counter(); {statement}; print(time.perf_counter()-s)",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            best.append(float(out.stdout.strip().splitlines()[-1]))
        return min(best)

    tensorflow = timed("import tensorflow")
    ours = timed("import cnnviz")
    record("import tensorflow", round(tensorflow, 3), "baseline", "s")
    record("import cnnviz", round(ours, 3), "<= import tensorflow", "s")


def main():
    chosen = sys.argv[1:] or ["shapes", "import", "throughput", "accuracy"]
    functions = {
        "throughput": bench_throughput,
        "accuracy": bench_accuracy,
        "shapes": bench_shapes,
        "import": bench_import,
        "batch_norm": bench_batch_norm,
    }
    for name in chosen:
        functions[name]()
    report("core-last.json")


if __name__ == "__main__":
    main()
