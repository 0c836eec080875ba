"""Benchmark for the map of what the network learnt (issue "Watch it learn", part 3); prints a markdown table.

Run: python bench/maps.py

On the default shapes model, 2,000 images (its 1,200 test images, then training images): the penultimate
features (`cnnviz.features`), then `cnnviz.embedding.project` with PCA and with t-SNE (scikit-learn,
Barnes-Hut, 1,000 iterations, progress reported every 50). Median of 3 runs each; the time of the
projection alone, and with the features. Targets on 2 cores: PCA at most 2 s, t-SNE at most 30 s.

Figures go to bench/maps-last.json.
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
OUT = Path(__file__).with_name("maps-last.json")
COUNT = 2000


def main() -> None:
    import numpy as np

    import cnnviz
    from cnnviz.embedding import project
    from cnnviz.runs import split_seed_of

    model = cnnviz.load_model(ROOT / "assets" / "models" / "shapes.keras")
    data = cnnviz.load_dataset("shapes", seed=split_seed_of(model))
    images = np.concatenate([data.test.images, data.train.images])[:COUNT]
    cnnviz.features(model, images[:8])  # trace the feature model once
    results = {"images": len(images), "cpu_count": os.cpu_count()}
    timings = {"features": [], "pca": [], "tsne": []}
    reports = []
    for _ in range(3):
        start = time.perf_counter()
        vectors = cnnviz.features(model, images)
        timings["features"].append(time.perf_counter() - start)
        for method in ("pca", "tsne"):
            seen = []
            start = time.perf_counter()
            project(vectors, method, progress=lambda done, total, seen=seen: seen.append(done))
            timings[method].append(time.perf_counter() - start)
            if method == "tsne":
                reports.append(len(seen))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    results.update({"seconds": timings, "median_seconds": medians, "tsne_progress_reports": reports})
    print(
        f"| {len(images)} images, {os.cpu_count()} cores | median s (3 runs) | with the features | target |"
    )
    print("|---|---|---|---|")
    print(f"| features | {medians['features']:.2f} | | |")
    print(f"| PCA | {medians['pca']:.2f} | {medians['pca'] + medians['features']:.2f} | <= 2 s |")
    print(f"| t-SNE | {medians['tsne']:.1f} | {medians['tsne'] + medians['features']:.1f} | <= 30 s |")
    print(f"t-SNE progress reports per run: {reports}")
    OUT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
