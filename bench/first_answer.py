"""How soon a fresh process answers "class + heatmap": onnxruntime on the exported model against TensorFlow.

Run: python bench/first_answer.py [--repeats 5]

Each measurement is a fresh `python -c` process (nothing imported, nothing cached in memory), timed
inside the process with `time.perf_counter()` from its first statement:

- tensorflow import: `import tensorflow` alone (the floor every Keras answer pays);
- keras first answer: import cnnviz, load shapes.keras, `cnnviz.predict` + `cnnviz.explain` on one image;
- onnx first answer: import `cnnviz.exported`, load shapes.onnx, `OnnxClassifier.predict` (class, top-5
  and Grad-CAM) on the same image; the process also checks that TensorFlow was never imported.

Medians of `--repeats` runs, interleaved. Target (issue 14): onnxruntime import, load and first answer at
most 0.15 x TensorFlow's import. Results: bench/first-answer-last.json and docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "assets" / "samples" / "shape_circle.png"

CASES = {
    "tensorflow import": "import tensorflow",
    "keras first answer": f"""
import cnnviz
model = cnnviz.load_model({str(ROOT / "assets/models/shapes.keras")!r})
image = cnnviz.load_image({str(IMAGE)!r})
answer, heatmap = cnnviz.predict(model, image, top_k=5)[0], cnnviz.explain(model, image)
assert answer["class"] == "circle"
""",
    "onnx first answer": f"""
import sys
from cnnviz.exported import OnnxClassifier
from cnnviz.images import load_image
answer = OnnxClassifier({str(ROOT / "assets/models/shapes.onnx")!r}).predict(load_image({str(IMAGE)!r}))
assert answer["class"] == "circle" and "tensorflow" not in sys.modules
""",
}


def timed(code: str) -> float:
    wrapped = f"import time\n_start = time.perf_counter()\n{code}\nprint(time.perf_counter() - _start)"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, env=env, cwd=ROOT)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-1000:])
    return float(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            times[name].append(timed(code))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["onnx first answer"] / medians["tensorflow import"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "repeats": args.repeats,
        "seconds": {name: [round(value, 3) for value in values] for name, values in times.items()},
        "median_seconds": {name: round(value, 3) for name, value in medians.items()},
        "onnx_over_tensorflow_import": round(ratio, 3),
    }
    (ROOT / "bench" / "first-answer-last.json").write_text(json.dumps(report, indent=1) + "\n")
    for name, value in medians.items():
        print(f"{name}: {value:.3f} s (median of {args.repeats})")
    print(f"onnx first answer / tensorflow import: {ratio:.3f} (target at most 0.15)")


if __name__ == "__main__":
    main()
