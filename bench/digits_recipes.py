"""Recipes on the digits, in one process: `cnnviz.train` with a time budget, then test accuracy.

The in-process figures of docs/BENCHMARKS.md ("Faster to a good model"): which design, augmentation, batch
size or learning rate gets furthest on the digits within a budget. `bench/digits.py` measures the default as a
new user types it (subprocesses, against the keras.io convnet); this one tries variants of it.

Run: python bench/digits_recipes.py FOLDER '[VARIANT, ...]' [--seeds 0 1 2] [--budget 30]

- FOLDER: the digits that `python bench/digits.py --mnist DIR --data OUT` writes (`OUT/mnist-8000-2000`), or
  any folder with `train/` and `test/` class folders.
- VARIANT: `{"model": {...}, "train": {...}}`: `fast` preset overrides (`conv_blocks`, `convs_per_block`,
  `filters`, ...) and `TrainConfig` fields (`translate`, `batch_size`, `learning_rate`, ...); `{}` is the
  library's default for the data (`cnnviz.train("fast", data)`): for the 8,000 digits, many small images, two
  convolutions per block of at most 64 channels and batch 64, but no shifts, which the CLI and the studio add
  (`{"train": {"translate": 0.06}}`).

Each run prints one JSON line (test accuracy in %, samples/s, epochs), then a markdown table of the means.
To measure an older version, copy this script into its checkout (`git worktree add /tmp/before COMMIT`,
`cp bench/digits_recipes.py /tmp/before/bench/`) and run it there: it imports the cnnviz beside it.
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The cnnviz of the tree this script is in, not an installed one (so a copy in an older checkout measures it).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run(data, variant: dict, seed: int, budget: float) -> dict:
    import cnnviz

    # Versions before the defaults for many small images have no `num_images`.
    sized = (
        {"num_images": cnnviz.runs.training_images(data)} if hasattr(cnnviz.runs, "training_images") else {}
    )
    design = cnnviz.preset_config(
        "fast", data.image_shape, data.num_classes, **sized, **variant.get("model", {})
    )
    config = cnnviz.TrainConfig(time_budget=budget, epochs=None, seed=seed, **variant.get("train", {}))
    result = cnnviz.train(design, data, config)
    return {
        "variant": variant,
        "seed": seed,
        "budget": budget,
        "accuracy": round(100 * cnnviz.evaluate(result.model, data).accuracy, 2),
        "samples_per_second": round(result.samples_per_second),
        "epochs": result.epochs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("variants", type=json.loads, help="a JSON list of variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, default=30.0)
    args = parser.parse_args()

    import cnnviz

    data = cnnviz.load_dataset(args.folder)
    rows = []
    for variant in args.variants:
        runs = [run(data, variant, seed, args.budget) for seed in args.seeds]
        for result in runs:
            print(json.dumps(result), flush=True)
        each = ", ".join(f"{result['accuracy']:.2f}" for result in runs)
        mean = statistics.mean(result["accuracy"] for result in runs)
        rows.append(f"| `{json.dumps(variant)}` | {mean:.2f} % ({each}) |")
    print(f"\n| variant, {args.budget:g} s, seeds {args.seeds} | test accuracy |\n|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
