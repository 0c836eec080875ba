"""Peak memory of `cnnviz predict` on hostile and large model files, at full size, with the default limits.

Run: python bench/model_files.py

Each case is one fresh `python -m cnnviz predict MODEL IMAGE` process; its peak resident memory is the
kernel's (`VmHWM`, read by the process itself as it exits). The hostile files are made by tests/hostile.py (the suite runs the
same kinds scaled down, under a lowered `CNNVIZ_MAX_MODEL_BYTES`). For comparison, the weights bomb is
also opened with plain `keras.saving.load_model`, which is what cnnviz did before its own checks.

Target (issue 13): at most 1.5 GB for any model file of 50 MB or less whose input fits the image-size limit.
The results go to bench/model-files-last.json and docs/RELIABILITY.md.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import hostile  # noqa: E402

TARGET_MB = 1536


# Run in each child: its own peak resident memory (VmHWM) on stderr at exit. Not ru_maxrss: Linux carries
# the parent's high-water mark across fork and exec, and this bench's own process holds TensorFlow.
PEAK = """
import atexit, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"\\nPEAK_KB {line.split()[1]}\\n")
atexit.register(_peak)
"""


def run(code: str) -> dict:
    """Runs `code` in a fresh Python, returning its exit code, its first `cnnviz:` line and its peak memory."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for name in [name for name in env if name.startswith("CNNVIZ_MAX_")]:
        del env[name]  # the defaults
    started = time.perf_counter()
    process = subprocess.run([sys.executable, "-c", PEAK + code], capture_output=True, text=True, env=env)
    peaks = [int(line.split()[1]) for line in process.stderr.splitlines() if line.startswith("PEAK_KB ")]
    lines = [line for line in process.stderr.splitlines() if line.startswith("cnnviz:")]
    lines = lines or process.stdout.strip().splitlines()[-1:]
    return {
        "exit": process.returncode,
        "said": (lines[0] if lines else "")[:160],
        "peak_mb": round(peaks[-1] / 1024) if peaks else None,  # None: killed before it could say
        "seconds": round(time.perf_counter() - started, 1),
    }


def cli(*arguments: str) -> str:
    """The code that runs `cnnviz ARGUMENTS` as the console script does."""
    return f"import runpy; sys.argv = ['cnnviz', *{list(arguments)!r}]; runpy.run_module('cnnviz', run_name='__main__')"


def honest_model(path: Path) -> Path:
    """A real model file of about 47 MB (11.8 million parameters, most in one Dense layer)."""
    import keras

    import cnnviz

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(90, activation="relu")(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    return cnnviz.save_model(keras.Model(inputs, outputs), path, ("circle", "square", "triangle", "star"))


def any_size_model(path: Path) -> Path:
    import cnnviz
    from tests.test_reliability import _any_size_model

    return cnnviz.save_model(_any_size_model(), path, ("a", "b", "c", "d"))


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="cnnviz-model-files-"))
    photo = folder / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)).save(
        photo, quality=85
    )
    sample = ROOT / "assets" / "samples" / "shape_circle.png"
    cases = [
        ("shapes.keras (the default model)", ROOT / "assets" / "models" / "shapes.keras", sample),
        ("a real 47 MB model (11.8 M parameters)", honest_model(folder / "honest.keras"), sample),
        (
            "weights entry inflating to 2 GB",
            hostile.weights_bomb(folder / "weights_bomb.keras", 2 << 30),
            sample,
        ),
        (
            "weights entry declaring 1,000 bytes, inflating to 64 MB",
            hostile._patch_declared_size(
                hostile.weights_bomb(folder / "lying.keras", 64 << 20), "model.weights.h5", 1000
            ),
            sample,
        ),
        (
            "config.json declaring 4 GB",
            hostile._patch_declared_size(
                hostile._rezip(folder / "huge_config.keras", hostile._entries(hostile.SHAPES_MODEL)),
                "config.json",
                4_000_000_000,
            ),
            sample,
        ),
        ("config asking for 2 billion filters", hostile.many_parameters(folder / "filters.keras"), sample),
        ("weights array declaring 2 billion floats", hostile.sparse_weights(folder / "sparse.keras"), sample),
        ("legacy HDF5 (.h5)", hostile.legacy_h5(folder / "legacy.h5"), sample),
        (
            "a 30000x30000 input",
            hostile._with_config(
                folder / "huge_input.keras",
                lambda config: hostile._set_input(config, [None, 30000, 30000, 3]),
            ),
            sample,
        ),
        ("any-size model upsampling 100x", hostile.upsampling_model(folder / "upsampling.keras"), sample),
        ("weights file with no arrays", hostile.without_weights(folder / "no_weights.keras"), sample),
        ("zip declaring 65,535 entries", hostile.many_entries(folder / "many_entries.keras"), sample),
        ("any-size model, 4000x3000 photo", any_size_model(folder / "any.keras"), photo),
    ]
    rows = []
    for name, model, image in cases:
        size_mb = model.stat().st_size / 1024**2
        result = run(cli("predict", str(model), str(image)))
        rows.append({"case": name, "file_mb": round(size_mb, 2), **result})
        print(json.dumps(rows[-1]), flush=True)
    bomb = folder / "weights_bomb.keras"
    plain = run(f"import keras; keras.saving.load_model({str(bomb)!r}, compile=False)")
    rows.append(
        {"case": "weights entry inflating to 2 GB, plain keras.saving.load_model", "file_mb": 0, **plain}
    )
    print(json.dumps(rows[-1]), flush=True)
    floor = run("import tensorflow, keras")
    rows.append({"case": "python -c 'import tensorflow, keras' (floor)", "file_mb": 0, **floor})
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "target_mb": TARGET_MB,
        "rows": rows,
    }
    (ROOT / "bench" / "model-files-last.json").write_text(json.dumps(report, indent=1) + "\n")
    print("\n| case | file | exit | peak RSS | target | said |\n|---|---|---|---|---|---|")
    for row in rows:
        verdict = "killed" if row["peak_mb"] is None else "ok" if row["peak_mb"] <= TARGET_MB else "OVER"
        print(
            f"| {row['case']} | {row['file_mb']:g} MB | {row['exit']} | {row['peak_mb'] or 0:,} MB | "
            f"{verdict} | {row['said']} |"
        )


if __name__ == "__main__":
    main()
