"""What every benchmark script shares: recording figures against their targets, and reporting them."""

import json
import os
import platform
from pathlib import Path

RESULTS: list[dict] = []


def record(name, value, target, unit=""):
    """Keeps one figure and prints it at once."""
    RESULTS.append({"figure": name, "measured": value, "target": target, "unit": unit})
    print(f"{name}: {value} {unit} (target {target})", flush=True)


def report(last_json: str | None = None) -> None:
    """Prints the machine and a markdown table of every figure; saves them as JSON beside the scripts."""
    print()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; "
        f"Python {platform.python_version()}"
    )
    print("| figure | measured | target |\n|---|---|---|")
    for row in RESULTS:
        print(f"| {row['figure']} | {row['measured']} {row['unit']} | {row['target']} |")
    if last_json:
        Path(__file__).with_name(last_json).write_text(json.dumps(RESULTS, indent=1))
