"""Benchmarks for the core issue; prints a markdown table of figures and targets.

Run: python bench/core.py [throughput] [accuracy] [shapes] [import]   (default: all)

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
    }
    for name in chosen:
        functions[name]()
    report("core-last.json")


if __name__ == "__main__":
    main()
