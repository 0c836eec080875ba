"""Benchmarks for filter images a learner can read (issue "Watch it learn", part 4); prints markdown tables.

Run: python bench/filters.py [patterns] [patches]   (default: both)

patterns: on the default shapes model, filters 0-11 of the last convolution layer (conv4; and act4, the
          ReLU after it that the studio offers first), today's pixel gradient ascent (60 steps) against the
          Fourier parameterization with random transformations (128 steps), seeds 0-2. Measured on each
          generated image: its share of spectral energy above half the Nyquist frequency
          (`cnnviz.activations.high_frequency_share`, summed over the colour channels), and the filter's mean
          activation. Targets: the Fourier share at most half of today's, at an activation equal or higher.
patches:  `cnnviz.top_patches` for 12 filters of conv4 over the whole test split; wall time, first call
          (tracing the forward pass included) and the median of 5 after. Target: at most 5 s.

Figures go to bench/filters-last.json.
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("filters-last.json")
MODEL = ROOT / "assets" / "models" / "shapes.keras"
FILTERS = list(range(12))


def bench_patterns(results: dict) -> None:
    import keras
    import numpy as np

    import cnnviz
    from cnnviz.activations import high_frequency_share

    model = cnnviz.load_model(MODEL)
    rows = []
    for layer in ("conv4", "act4"):
        reader = keras.Model(model.input, model.get_layer(layer).output)
        for parameterization in ("pixel", "fourier"):
            shares, activations, seconds = [], [], []
            for seed in (0, 1, 2):
                start = time.perf_counter()
                images = cnnviz.filter_images(
                    model, layer, FILTERS, seed=seed, parameterization=parameterization
                )
                seconds.append(time.perf_counter() - start)
                maps = np.asarray(reader(images.astype(np.float32)))
                shares.append(float(high_frequency_share(images).mean()))
                activations.append(
                    float(np.mean([maps[row, ..., unit].mean() for row, unit in enumerate(FILTERS)]))
                )
            rows.append(
                {
                    "layer": layer,
                    "parameterization": parameterization,
                    "high_frequency_share": shares,
                    "activation": activations,
                    "seconds": seconds,
                }
            )
    results["patterns"] = rows
    print("| layer | method | share above half Nyquist (seeds 0,1,2) | mean activation | s for 12 filters |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['layer']} | {row['parameterization']} | "
            + ", ".join(f"{v:.3f}" for v in row["high_frequency_share"])
            + " | "
            + ", ".join(f"{v:.2f}" for v in row["activation"])
            + f" | {statistics.median(row['seconds']):.1f} |"
        )
    for layer in ("conv4", "act4"):
        pixel, fourier = (
            next(r for r in rows if r["layer"] == layer and r["parameterization"] == p)
            for p in ("pixel", "fourier")
        )
        ratio = statistics.mean(fourier["high_frequency_share"]) / statistics.mean(
            pixel["high_frequency_share"]
        )
        gain = statistics.mean(fourier["activation"]) / statistics.mean(pixel["activation"])
        print(
            f"{layer}: share ratio fourier/pixel {ratio:.2f} (target <= 0.5); activation ratio {gain:.2f} (target >= 1)"
        )


def bench_patches(results: dict) -> None:
    import cnnviz
    from cnnviz.runs import split_seed_of

    model = cnnviz.load_model(MODEL)
    data = cnnviz.load_dataset("shapes", seed=split_seed_of(model))
    images = data.test.images
    start = time.perf_counter()
    cnnviz.top_patches(model, "conv4", images, filters=FILTERS)
    first = time.perf_counter() - start
    after = []
    for _ in range(5):
        start = time.perf_counter()
        cnnviz.top_patches(model, "conv4", images, filters=FILTERS)
        after.append(time.perf_counter() - start)
    results["patches"] = {
        "images": len(images),
        "first_seconds": first,
        "median_seconds": statistics.median(after),
    }
    print(
        f"top 9 patches, 12 filters of conv4, {len(images)} test images: first call {first:.2f} s, "
        f"then {statistics.median(after):.2f} s (target <= 5 s)"
    )


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["patterns", "patches"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in chosen:
        {"patterns": bench_patterns, "patches": bench_patches}[name](results)
    results["cpu_count"] = os.cpu_count()
    OUT.write_text(json.dumps(results, indent=1) + "\n")
