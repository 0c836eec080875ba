"""Benchmarks for the training timeline (issue "Watch it learn"); prints markdown tables.

Run: python bench/timeline.py [cost] [scrub]   (default: both)

cost:   `cnnviz.train` on shapes, 5 epochs, with `timeline=8` against without, in interleaved pairs (this
        machine's speed drifts: read the ratio of each pair). Samples/s counts the whole fit, recording
        included. Target: recording costs at most 15 % of throughput (ratio >= 0.85).
scrub:  the Train page in AppTest with a finished run of 50 epochs x 16 probe images planted in the
        session; the server time of one Epoch-slider step (median of 20). Target: at most 0.3 s.

Figures go to bench/timeline-last.json.
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
OUT = Path(__file__).with_name("timeline-last.json")


def bench_cost(results: dict, pairs: int = 3) -> None:
    import cnnviz

    data = cnnviz.load_dataset("shapes", seed=0)
    rows = []
    for pair in range(pairs):
        row = {}
        for name, timeline in (("off", 0), ("on", 8)) if pair % 2 == 0 else (("on", 8), ("off", 0)):
            result = cnnviz.train("fast", data, cnnviz.TrainConfig(epochs=5, seed=pair, timeline=timeline))
            row[name] = result.samples_per_second
            if timeline:
                row["recording_seconds"] = sum(snapshot.seconds for snapshot in result.timeline)
                row["train_seconds"] = result.train_seconds
        row["ratio"] = row["on"] / row["off"]
        rows.append(row)
        print(
            f"pair {pair + 1}: off {row['off']:.0f}, on {row['on']:.0f} samples/s, ratio {row['ratio']:.2f}; "
            f"recording {row['recording_seconds']:.2f} s of {row['train_seconds']:.1f} s",
            flush=True,
        )
    median = statistics.median(row["ratio"] for row in rows)
    results["cost"] = {"pairs": rows, "median_ratio": median}
    print(f"\nmedian ratio with / without the timeline: {median:.2f} (target >= 0.85)")


def _snapshots(epochs: int, probes: int):
    import numpy as np

    from cnnviz.timeline import Snapshot

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (probes, 64, 64, 3), np.uint8)
    labels = np.arange(probes) % 4
    kernels = rng.integers(0, 256, (16, 3, 3, 3), np.uint8)
    return [
        Snapshot(
            epoch,
            images,
            labels,
            rng.dirichlet(np.ones(4), probes).astype(np.float32),
            rng.random((probes, 64, 64), dtype=np.float32),
            kernels,
            None if epoch == 0 else 0.5 + epoch / 200,
            rng.standard_normal((500, 128)).astype(np.float16),
            np.arange(500) % 4,
        )
        for epoch in range(epochs + 1)
    ]


def bench_scrub(results: dict, steps: int = 20) -> None:
    from streamlit.testing.v1 import AppTest

    import cnnviz
    from cnnviz.events import EpochEnd, TimelineSnapshot
    from ui import warmup
    from ui.session import StudioSession
    from ui.training import TrainingJob

    warmup.model(warmup.FILES[0])
    data = cnnviz.load_dataset("shapes", num_samples=200)
    request = cnnviz.runs.TrainRequest(data, "shapes", "fast", config=cnnviz.TrainConfig(epochs=1))
    job = TrainingJob(data=data, request=request, run_id=1)
    snapshots = _snapshots(50, 16)
    job.events.extend(
        EpochEnd(s.epoch, {"loss": 1.0, "accuracy": 0.5}, float(s.epoch)) for s in snapshots[1:]
    )
    for snapshot in snapshots:
        job.on_event(TimelineSnapshot(snapshot))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.run()
    session = StudioSession()
    session.training_job = job
    app.session_state["studio"] = session
    app.switch_page("pages/train.py").run()
    assert not app.exception, app.exception
    times = []
    for step in range(steps):
        start = time.perf_counter()
        app.select_slider(key="train.timeline_epoch").set_value((step * 7) % 51).run()
        times.append(time.perf_counter() - start)
        assert not app.exception, app.exception
    median = statistics.median(times)
    results["scrub"] = {"seconds": times, "median": median, "epochs": 50, "probes": 16}
    print(
        f"\none Epoch-slider step, 50 epochs x 16 images: median {median:.3f} s, max {max(times):.3f} s (target <= 0.3 s)"
    )


def main(modes: list[str]) -> int:
    modes = modes or ["cost", "scrub"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "cost" in modes:
        bench_cost(results)
    if "scrub" in modes:
        bench_scrub(results)
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
