"""A crowd on one studio server: latency, errors, memory, CPU and isolation, and where it stops keeping up.

Run: python bench/load.py                  # the knee sweep (10 to 50 visitors), then the busy limit
     python bench/load.py --visitors 50    # one level only

Each visitor is a client of Streamlit's own websocket protocol (tests/crowd.py says why not 50 Chromium
pages on 2 cores). The mix is the issue's: of 50 visitors, 40 upload images on Predict, 8 browse Results
and Activations, 2 train; other sizes keep the proportions (at least one trainer). All connect at once,
then for `--seconds` each does what its role does, with a think time of 2-6 s between actions:

- Predict: upload a new 640x480 photo-sized PNG; answer = the upload click until the class and the
  heatmap are on the page (the Predict fragment's run finished, with its metric and two images).
- Browse: open Results, then Activations, in turn; answer = the click until the page's run finished.
- Train: open Train, press Train (the page's default settings: fast design, at most 60 s), then stay on
  the page while its progress fragment reruns (every 2 s), as the browser makes it.

Recorded per level: p50 and p95 of the answers (all roles, and Predict alone), errors (an exception or an
error box shown to anyone, a dropped connection, a timeout), the server's peak resident memory and its mean
and peak CPU (cores), and isolation: at the end every visitor reloads and reads the sidebar's model choice;
a trainer whose run finished must be offered "Trained in this session", and nobody else may be.

The knee is the most visitors at which the p95 stays under 2 s. The last phase starts the server with
CNNVIZ_MAX_SESSIONS at the knee and sends `--visitors` at once: those past the limit must see the busy
message, within 2 s each. Results: bench/load-last.json; figures: docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.crowd import Server, Visitor, image_png  # noqa: E402

SESSION_OPTION = "Trained in this session"
BUSY = "Busy:"


def roles(visitors: int) -> list[str]:
    trainers = max(1, round(visitors * 2 / 50))
    browsers = round(visitors * 8 / 50)
    return ["train"] * trainers + ["browse"] * browsers + ["predict"] * (visitors - trainers - browsers)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]  # the nearest-rank percentile


class Outcome:
    def __init__(self, name: str, role: str):
        self.name, self.role = name, role
        self.answers: list[float] = []
        self.errors: list[str] = []
        self.trained = False
        self.offered_own_model: bool | None = None
        self.busy_seconds: float | None = None


def visit(url: str, role: str, name: str, seconds: float, start: threading.Barrier, seed: int) -> Outcome:
    outcome = Outcome(name, role)
    rng = random.Random(seed)
    visitor = None
    try:
        start.wait()
        opened = time.perf_counter()
        visitor = Visitor(url, name)
        first = visitor.open()
        if any(BUSY in text for _, text in first.alerts):
            outcome.busy_seconds = time.perf_counter() - opened
            return outcome
        end = time.perf_counter() + seconds
        if role == "train":
            visitor.open("train")
            run = visitor.submit("train.form")
            outcome.answers.append(run.seconds)
            # Stay on the page while it trains: its fragment reruns until the run ends.
            while visitor.auto_reruns and time.perf_counter() < end + 60:
                visitor.poll(1.0)
            outcome.trained = not visitor.auto_reruns
        page = 0
        while time.perf_counter() < end:
            time.sleep(rng.uniform(2, 6))
            if role == "predict":
                run = visitor.upload(
                    "predict.upload", f"{name}-{len(outcome.answers)}.png", image_png(rng.randrange(10**6))
                )
                if not (run.metrics and run.images >= 2):
                    outcome.errors.append(f"{name}: an upload showed no class and heatmap")
            elif role == "browse":
                run = visitor.open(("results", "activations")[page % 2])
                page += 1
            else:
                run = visitor.open("")
            outcome.answers.append(run.seconds)
        visitor.open("")
        outcome.offered_own_model = SESSION_OPTION in visitor.options("model.choice")
    except Exception as error:  # a dropped socket, a timeout, a missing widget: all count as errors
        outcome.errors.append(f"{name}: {type(error).__name__}: {str(error)[:200]}")
    finally:
        if visitor is not None:
            outcome.errors += visitor.errors
            visitor.close()
    return outcome


def crowd(visitors: int, seconds: float, env: dict[str, str]) -> dict:
    server = Server(env)
    try:
        warm = Visitor(server.url, "warm-up")  # the first visit loads TensorFlow and the default model
        warm.open()
        warm.open("results")
        warm.close()
        started = time.time()
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        barrier = threading.Barrier(visitors)
        outcomes: list[Outcome] = []
        threads = []
        for index, role in enumerate(roles(visitors)):
            name = f"{role}-{index}"

            def target(role=role, name=name, index=index):
                outcomes.append(visit(server.url, role, name, seconds, barrier, index))

            threads.append(threading.Thread(target=target, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 240)
        mean_cpu, peak_cpu = server.cpu(started)
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        client_seconds = sum(
            getattr(client_after, field) - getattr(client_before, field) for field in ("ru_utime", "ru_stime")
        )
        served = [outcome for outcome in outcomes if outcome.busy_seconds is None]
        answers = [value for outcome in served for value in outcome.answers]
        predict = [value for outcome in served if outcome.role == "predict" for value in outcome.answers]
        errors = [error for outcome in outcomes for error in outcome.errors]
        errors += [f"server: {line}" for line in server.output().splitlines() if "Traceback" in line]
        isolation = [
            outcome.offered_own_model == (outcome.role == "train" and outcome.trained)
            for outcome in served
            if outcome.offered_own_model is not None
        ]
        busy = [outcome.busy_seconds for outcome in outcomes if outcome.busy_seconds is not None]
        return {
            "visitors": visitors,
            "served": len(served),
            "busy": len(busy),
            "busy_p100_s": round(max(busy), 2) if busy else None,
            "answers": len(answers),
            "p50_s": round(percentile(answers, 50), 3),
            "p95_s": round(percentile(answers, 95), 3),
            "predict_p50_s": round(percentile(predict, 50), 3),
            "predict_p95_s": round(percentile(predict, 95), 3),
            "max_s": round(max(answers, default=float("nan")), 2),
            "errors": len(errors),
            "error_examples": errors[:5],
            "trainers_finished": sum(outcome.trained for outcome in served if outcome.role == "train"),
            "isolation_ok": f"{sum(isolation)} of {len(isolation)}",
            "peak_rss_mb": round(server.peak_rss_mb()),
            "cpu_mean_cores": round(mean_cpu, 2),
            "cpu_peak_cores": round(peak_cpu, 2),
            # The protocol clients run on the same cores: their share, to read the server's figures against.
            "client_cpu_mean_cores": round(client_seconds / (time.time() - started), 2),
        }
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, nargs="*", default=[10, 15, 20, 25, 30, 40, 50])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each visitor keeps acting")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-limit phase")
    parser.add_argument("--out", default=str(ROOT / "bench" / "load-last.json"), help="where the results go")
    args = parser.parse_args()
    unlimited = {"CNNVIZ_MAX_SESSIONS": "1000"}
    levels = []
    for visitors in args.visitors:
        levels.append(crowd(visitors, args.seconds, unlimited))
        print(json.dumps(levels[-1]), flush=True)
    under = [level["visitors"] for level in levels if level["p95_s"] < 2.0 and level["errors"] == 0]
    knee = max(under, default=None)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "seconds_per_level": args.seconds,
        "levels": levels,
        "knee_visitors_p95_under_2s": knee,
    }
    if not args.no_busy and knee:
        busy = crowd(max(args.visitors), args.seconds / 2, {"CNNVIZ_MAX_SESSIONS": str(knee)})
        report["busy_phase"] = {"limit": knee, **busy}
        print(json.dumps(report["busy_phase"]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"knee (most visitors with p95 < 2 s and no errors): {knee}")


if __name__ == "__main__":
    main()
