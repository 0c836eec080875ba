"""Benchmarks for the explanation scoreboard (issue "Trust the heatmap"); prints markdown tables.

Run: python bench/scoreboard.py [board] [latency]   (default: both)

board:    `cnnviz.score_explanations` on the default shapes model (assets/models/shapes.keras) and
          its unseen test split: 100 images, every method at the default layer (target: at most 60 s
          on 2 cores), then the layer sweep (the last three conv maps) timed on its own; the board's
          rows, and Grad-CAM against random with RISE's black deletion for comparison.
latency:  ms per image of every method, after a warm-up, on the default shapes model (64x64, 16
          images per call) and on MobileNetV2 at 224x224 with random weights (1 image per call):
          a Keras 3 counterpart of torch-cam's published CPU table (ResNet-18 and MobileNetV3 on
          an i7-10750H laptop, forward pass excluded there, included here).

Figures go to bench/scoreboard-last.json.
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
MODEL = ROOT / "assets" / "models" / "shapes.keras"
OUT = Path(__file__).with_name("scoreboard-last.json")

# torch-cam README, "Latency benchmark": CPU ms, forward pass excluded, 224x224, i7-10750H.
TORCH_CAM_CPU_MS = {
    "resnet18": {
        "gradcam": 40.66,
        "gradcam++": 41.61,
        "layercam": 40.91,
        "scorecam": 6796.89,
        "smoothgradcampp": 239.27,
    },
    "mobilenet_v3_large": {
        "gradcam": 26.64,
        "layercam": 25.14,
        "scorecam": 679.16,
        "smoothgradcampp": 156.25,
    },
}


def _board_rows(board) -> list[dict]:
    return [{**row.to_dict(), "label": row.label} for row in board.rows]


def bench_board(results: dict) -> None:
    import cnnviz
    from cnnviz import runs

    model = cnnviz.load_model(MODEL)
    data = runs.evaluation_data(model, "shapes")
    cnnviz.explain(model, data.test.images[:1])  # TensorFlow's first graph, not the board's cost
    start = time.perf_counter()
    board = cnnviz.score_explanations(model, data, layers=[cnnviz.default_cam_layer(model)], images=100)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    sweep = cnnviz.score_explanations(model, data, images=100)
    sweep_seconds = time.perf_counter() - start
    start = time.perf_counter()
    black = cnnviz.score_explanations(
        model, data, methods=["gradcam"], layers=["act4"], images=100, deletion_fill="black"
    )
    black_seconds = time.perf_counter() - start
    results["board"] = {
        "seconds": seconds,
        "rows": _board_rows(board),
        "recommended": board.recommended,
        "sweep_seconds": sweep_seconds,
        "sweep_rows": _board_rows(sweep),
        "sweep_recommended": sweep.recommended,
        "black_rows": _board_rows(black),
        "black_seconds": black_seconds,
    }
    print(f"\n100 images, every method at the default layer: {seconds:.1f} s (target <= 60 s)")
    print(f"layer sweep (last three conv maps): {sweep_seconds:.1f} s; recommended {sweep.recommended}")
    print(
        "\n| method | deletion AUC | insertion AUC | pointing | energy | sanity | ms per image |\n|---|---|---|---|---|---|---|"
    )
    for row in board.rows:
        print(
            f"| {row.label} | {row.deletion_auc:.3f} | {row.insertion_auc:.3f} | {row.pointing:.2f} | "
            f"{row.energy:.2f} | {row.sanity_correlation:.2f} | {row.ms_per_image:.1f} |"
        )
    print(f"\nrecommended: {board.recommended}")
    print("\nwith RISE's black deletion:")
    for row in black.rows:
        print(f"  {row.label}: deletion {row.deletion_auc:.3f}, insertion {row.insertion_auc:.3f}")


def _median_ms(function, images: int, repeats: int) -> float:
    function()  # warm-up: graphs traced, probes built
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000 / images)
    return statistics.median(times)


def bench_latency(results: dict) -> None:
    import numpy as np

    import cnnviz

    shapes = cnnviz.load_model(MODEL)
    mobilenet = cnnviz.build_model(
        cnnviz.TransferConfig(input_shape=(224, 224, 3), num_classes=10, backbone_weights=None), seed=0
    )
    rng = np.random.default_rng(0)
    cases = {
        "shapes default model (64x64, 15 MFLOPs)": (
            shapes,
            cnnviz.load_dataset("shapes").test.images[:16],
            3,
        ),
        "MobileNetV2 224x224, random weights": (
            mobilenet,
            rng.integers(0, 256, (1, 224, 224, 3), np.uint8),
            1,
        ),
    }
    table = {}
    for name, (model, images, repeats) in cases.items():
        table[name] = {}
        for method in cnnviz.METHODS:
            table[name][method] = _median_ms(
                lambda model=model, images=images, method=method: cnnviz.explain(
                    model, images, method=method
                ),
                len(images),
                repeats,
            )
            print(f"{name}: {method} {table[name][method]:.1f} ms per image", flush=True)
    results["latency"] = table
    names = list(table)
    print(f"\n| method | {' | '.join(names)} | torch-cam ResNet-18 CPU | torch-cam MobileNetV3-L CPU |")
    print("|---" * (len(names) + 3) + "|")
    for method in cnnviz.METHODS:
        theirs = [TORCH_CAM_CPU_MS[arch].get(method) for arch in TORCH_CAM_CPU_MS]
        shown = ["-" if value is None else f"{value:,.1f}" for value in theirs]
        print(f"| {method} | {' | '.join(f'{table[n][method]:,.1f}' for n in names)} | {' | '.join(shown)} |")


def main(modes: list[str]) -> int:
    modes = modes or ["board", "latency"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "board" in modes:
        bench_board(results)
    if "latency" in modes:
        bench_latency(results)
    results["cpu_count"] = os.cpu_count()
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
