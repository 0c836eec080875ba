"""Batch-wise training from disk vs from memory (issue "Improving your model", part 3).

Run: python bench/streaming.py [speed] [memory]   (default: both)

- speed: samples/s of `cnnviz.train` on the keras_mnist preset (28x28x1, batch
  128, 4 epochs) over the same 10k-image folder, loaded into memory vs streamed
  from disk (tf.data, no cache) vs streamed with the on-disk cache. The
  figure is the steady rate after the first epoch (which traces the graph and
  fills the cache), median over runs that alternate, each in a fresh process;
  the ratios pair runs made side by side.
- memory: peak RSS (ru_maxrss) of a fresh process streaming 1 epoch from a
  10k and a 50k-image folder; the in-memory loader is measured alongside for
  contrast.

The folders are generated once under $TMPDIR/cnnviz-bench-stream: scikit-learn
digits framed at 28x28, with noise, as PNG files in class folders.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from results import record, report

from cnnviz.events import EpochEnd

ROOT = Path(tempfile.gettempdir()) / "cnnviz-bench-stream"


def make_folder(count: int) -> Path:
    """`count` noisy 28x28 digit PNGs in ten class folders (made once, reused)."""
    from PIL import Image

    from cnnviz.data import load_dataset

    folder = ROOT / f"digits-{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    data = load_dataset("digits", validation_split=0.0, test_split=0.0)
    images, labels = data.train.images[..., 0], data.train.labels
    rng = np.random.default_rng(count)
    for index in range(count):
        source = index % len(labels)
        noisy = np.clip(images[source].astype(np.int16) + rng.integers(-40, 40, (28, 28)), 0, 255)
        path = folder / str(labels[source]) / f"{index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy.astype(np.uint8)).save(path)
    done.touch()
    return folder


def child(mode: str, folder: str, epochs: int) -> None:
    """One training run in this process; prints JSON with samples/s and peak RSS."""
    import cnnviz

    config = cnnviz.TrainConfig(batch_size=128, epochs=epochs, learning_rate=0.003)
    start = time.perf_counter()
    if mode == "memory":
        data = cnnviz.load_dataset(folder, image_size=28, validation_split=0.1, test_split=0.0)
    else:
        cache = tempfile.mkdtemp(prefix="cnnviz-cache-") if mode == "cache" else None
        data = cnnviz.stream_image_folder(folder, validation_split=0.1, cache_dir=cache)
    load_seconds = time.perf_counter() - start
    ends = []
    result = cnnviz.train(
        "keras_mnist",
        data,
        config,
        on_event=lambda event: ends.append(event.elapsed) if isinstance(event, EpochEnd) else None,
    )
    # Steady state: epochs after the first (which also traces the graph and, with a cache, fills it).
    steady = None
    if len(ends) >= 2:
        steady = len(data.train) * (len(ends) - 1) / (ends[-1] - ends[0])
    print(
        json.dumps(
            {
                "samples_per_second": result.samples_per_second,
                "steady_samples_per_second": steady,
                "val_accuracy": result.val_accuracy,
                "load_seconds": load_seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(mode: str, folder: Path, epochs: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder), str(epochs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_speed(repeats: int = 4, epochs: int = 4) -> None:
    folder = make_folder(10_000)
    runs = {"memory": [], "stream": [], "cache": []}
    for _ in range(repeats):  # interleaved, so drift hits all alike
        for mode in runs:
            runs[mode].append(run_child(mode, folder, epochs=epochs))
    for mode, values in runs.items():
        overall = [run["samples_per_second"] for run in values]
        record(
            f"samples/s incl. first epoch, {mode}",
            f"{statistics.median(overall):.0f} (runs: {', '.join(f'{v:.0f}' for v in overall)})",
            "-",
        )
    rates = {mode: [run["steady_samples_per_second"] for run in values] for mode, values in runs.items()}
    for mode, values in rates.items():
        accuracy = statistics.median(run["val_accuracy"] for run in runs[mode])
        record(
            f"samples/s after the first epoch, keras_mnist, 10k images, {mode}",
            f"{statistics.median(values):.0f} (runs: {', '.join(f'{v:.0f}' for v in values)}; "
            f"val acc {accuracy:.3f})",
            "baseline" if mode == "memory" else "-",
        )
    for mode in ("stream", "cache"):
        ratios = [ours / base for ours, base in zip(rates[mode], rates["memory"])]
        record(
            f"{mode} / memory samples/s",
            f"{statistics.median(ratios):.2f} (runs: {', '.join(f'{r:.2f}' for r in ratios)})",
            ">= 0.80",
        )


def bench_memory() -> None:
    peaks = {}
    for count in (10_000, 50_000):
        folder = make_folder(count)
        for mode in ("stream", "memory"):
            peaks[mode, count] = run_child(mode, folder, epochs=1)["peak_rss_mb"]
            record(
                f"peak RSS, {mode}, {count // 1000}k images, 1 epoch", f"{peaks[mode, count]:.0f}", "-", "MB"
            )
    record("peak RSS stream 50k / 10k", f"{peaks['stream', 50_000] / peaks['stream', 10_000]:.2f}", "<= 1.2")
    record(
        "peak RSS memory 50k / 10k (contrast)",
        f"{peaks['memory', 50_000] / peaks['memory', 10_000]:.2f}",
        "-",
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return
    chosen = set(argv) or {"speed", "memory"}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
    if "speed" in chosen:
        bench_speed()
    if "memory" in chosen:
        bench_memory()
    report("streaming-last.json")


if __name__ == "__main__":
    main(sys.argv[1:])
