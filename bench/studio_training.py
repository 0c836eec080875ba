"""Training speed in the studio against the command line, with the same data and settings, in one run.

Run: python bench/studio_training.py [--epochs 5] [--rounds 3] [--timeline 8]
(each round notes the CPU steal of both runs, the share of the machine's time the host took back, and the CPU
the browser used while the studio trained)

- cli: `cnnviz train --data shapes --epochs E --timeline K --json` -> its samples/s (measured inside
  `cnnviz.train`).
- studio: `streamlit run app.py`, its first page shown with TensorFlow loaded, then the Train page opened in headless Chromium (Playwright + Debian Chromium),
  which stays on the page and watches the live progress and curves, as a local user does; **Train** pressed ->
  the samples/s the same `cnnviz.train` measured in the server, read from the page's "N images a second".

The studio's Train page defaults are the CLI's (the `fast` design, Muon at learning rate 0.02, batch 32, no
augmentation, a timeline of 8 images); the epochs and the timeline are set in both, the studio's through
the settings link. `--timeline 0` compares the two without it. Rounds alternate the two; the
ratio is the median of each round's studio / CLI.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import CHROMIUM, FLAGS, ROOT, open_cold  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from /proc; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def browser_cpu(server_pid: int) -> float:
    """CPU seconds used so far by this script's other children: Chromium and Playwright's driver."""
    server = _descendants(server_pid)
    return sum(_process_cpu(pid) for pid in _descendants(os.getpid()) - server - {os.getpid()})


def _cpu_times() -> list[int]:
    return [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def stolen(run, *args) -> tuple[float, float]:
    """`run(*args)`, and the share of the machine's CPU time the host took back meanwhile (/proc/stat steal)."""
    before = _cpu_times()
    rate = run(*args)
    spent = [after - start for after, start in zip(_cpu_times(), before)]
    return rate, spent[7] / max(1, sum(spent[:8]))  # guest time is already in user time


def cli_rate(epochs: int, timeline: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-m", "cnnviz", "train", "--data", "shapes", "--epochs", str(epochs),
             "--timeline", str(timeline),
             "--out", str(Path(folder) / "m.keras"), "--json"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
    return float(json.loads(done.stdout)["samples_per_second"])


def studio_rate(browser, epochs: int, timeline: int) -> tuple[float, float]:
    """The studio's samples/s, and the browser's CPU seconds (Chromium and Playwright's driver) per second
    from the click on Train to the run's result on the page (a little wider than the training itself)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(300_000)
    server = open_cold(page, ROOT / "app.py", ROOT)
    try:
        # As a local user: the studio's first page, fully loaded (TensorFlow and the default models in), first.
        page.get_by_text("Grad-CAM++").wait_for()
        page.goto(page.url.rstrip("/") + f"/train?train.epochs={epochs}&train.timeline={timeline}")
        train = page.get_by_role("button", name="Train", exact=True)
        train.wait_for()
        cpu, began = browser_cpu(server.pid), time.monotonic()
        train.click()
        done = page.get_by_text(re.compile(r"[\d,]+ images a second"))
        done.wait_for()
        cores = (browser_cpu(server.pid) - cpu) / (time.monotonic() - began)
        rate = float(re.search(r"([\d,]+) images a second", done.inner_text()).group(1).replace(",", ""))
        return rate, cores
    finally:
        page.close()
        server.terminate()
        server.wait(timeout=30)


def main():
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--timeline",
        type=int,
        default=8,
        help="images the timeline follows, both sides (the studio's default 8)",
    )
    args = parser.parse_args()
    cli, studio, steal, browser_load = [], [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for round_index in range(args.rounds):
            # The order alternates, so that neither side always runs first.
            runs = [("cli", cli_rate, ()), ("studio", studio_rate, (browser,))]
            measured = {}
            for name, run, extra in runs if round_index % 2 == 0 else runs[::-1]:
                measured[name] = stolen(run, *extra, args.epochs, args.timeline)
            cli.append(measured["cli"][0])
            studio.append(measured["studio"][0][0])
            browser_load.append(measured["studio"][0][1])
            steal.append((measured["cli"][1], measured["studio"][1]))
            print(
                f"round {round_index + 1}: cli {cli[-1]:.0f} samples/s (steal {steal[-1][0]:.0%}), "
                f"studio {studio[-1]:.0f} (steal {steal[-1][1]:.0%}, browser {browser_load[-1]:.2f} cores)",
                flush=True,
            )
        browser.close()
    # Paired rounds: this machine's speed changes by up to 2x from one minute to the next (a host that takes
    # back a core), so each studio run is compared with the CLI run just before it.
    ratios = [ours / theirs for ours, theirs in zip(studio, cli)]
    ratio = statistics.median(ratios)
    # Rounds where the host took back under 5 % of the CPU during both runs: a fair pair.
    quiet = [r for r, pair in zip(ratios, steal) if max(pair) < 0.05]
    rows = [
        (f"`cnnviz train --data shapes --epochs {args.epochs} --timeline {args.timeline}` samples/s (median of {args.rounds})",
         f"{statistics.median(cli):.0f}", "baseline"),
        ("the studio's Train page, Chromium watching, same settings: samples/s (median)",
         f"{statistics.median(studio):.0f}", ""),
        ("studio / CLI, median of the paired rounds (" + ", ".join(f"{r:.2f}" for r in ratios) + ")",
         f"{ratio:.2f} x", ">= 0.9 x"),
        ("the browser's CPU during the studio's run, cores (median)", f"{statistics.median(browser_load):.2f}", ""),
        (f"studio / CLI, median of the {len(quiet)} rounds with under 5 % steal in both runs",
         f"{statistics.median(quiet):.2f} x" if quiet else "no quiet round", ">= 0.9 x"),
    ]  # fmt: skip
    print("\n| figure | measured | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    Path(__file__).with_name("studio-training-last.json").write_text(
        json.dumps(
            {
                "cli": cli,
                "studio": studio,
                "steal": steal,
                "browser_cores": browser_load,
                "ratios": ratios,
                "ratio": ratio,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
