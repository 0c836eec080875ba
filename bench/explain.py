"""Benchmarks for the explanation engine; prints a markdown table of figures and targets.

Run: python bench/explain.py [speed] [pointing]   (default: both)

speed:    warm timings on the default shapes model (assets/models/shapes.keras),
          with tf-keras-vis Gradcam on the same model and image as the baseline
          measured in the same run (this machine is noisy: read the ratio).
pointing: the pointing game of every method on the shapes test split (seed 0,
          the split the default model never trained on): the share of correctly
          classified images whose heatmap maximum lies inside the shape's box.
"""

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from results import record, report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MODEL = ROOT / "assets" / "models" / "shapes.keras"


def median_ms(function, repeats=30, warmup=3):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_speed():
    import keras
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    import cnnviz
    from cnnviz import explanations
    from cnnviz.shapes import generate_shapes

    model = cnnviz.load_model(MODEL)
    images, _, _ = generate_shapes(64, seed=2026)
    one = images[:1]
    layer = explanations.default_cam_layer(model)

    ours_one = median_ms(lambda: cnnviz.explain(model, one, method="gradcam"), repeats=100)
    logits_model = keras.Model(model.input, model.get_layer("logits").output)
    theirs = Gradcam(logits_model, clone=True)
    score = CategoricalScore([int(cnnviz.predict_probabilities(model, one).argmax())])
    x = one.astype(np.float32)
    theirs_one = median_ms(
        lambda: theirs(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False), repeats=30
    )
    record(
        "Grad-CAM, one 64x64 image, warm (cnnviz.explain, upsampled + normalized)",
        round(ours_one, 2),
        "<= 5",
        "ms",
    )
    record("tf-keras-vis Gradcam, same model, layer and image, warm", round(theirs_one, 2), "baseline", "ms")
    record("speed-up over tf-keras-vis", round(theirs_one / ours_one, 1), ">= 10", "x")
    batch_ms = median_ms(lambda: cnnviz.explain(model, images, method="gradcam"), repeats=20)
    record("Grad-CAM, batch of 64 images, warm", round(batch_ms, 1), "<= 100", "ms")
    score_ms = median_ms(lambda: cnnviz.explain(model, one, method="scorecam", max_channels=32), repeats=10)
    record("Score-CAM (fast: 32 channels), one image", round(score_ms, 1), "<= 1000", "ms")
    occlusion_ms = median_ms(
        lambda: cnnviz.explain(model, one, method="occlusion", patch_size=8, stride=4), repeats=10
    )
    record("occlusion map, 64x64, 8x8 patches, stride 4", round(occlusion_ms, 1), "<= 1000", "ms")
    maps_ms = median_ms(lambda: cnnviz.feature_maps(model, one[0]), repeats=50)
    record(
        f"feature maps of all {len(cnnviz.feature_maps(model, one[0]))} map layers, one image",
        round(maps_ms, 2),
        "<= 50",
        "ms",
    )
    for method in ("gradcam++", "layercam", "saliency", "smoothgrad", "integrated_gradients"):
        elapsed = median_ms(lambda method=method: cnnviz.explain(model, one, method=method), repeats=10)
        record(f"{method}, one image (for reference)", round(elapsed, 1), "-", "ms")


def bench_pointing():
    import cnnviz

    model = cnnviz.load_model(MODEL)
    data = cnnviz.load_dataset("shapes", seed=0)
    test = data.test
    correct = cnnviz.predict_probabilities(model, test.images).argmax(axis=1) == test.labels
    images, boxes = test.images[correct], test.boxes[correct]
    record("default shapes model, test accuracy", f"{correct.mean():.2%} of {len(correct)}", "-")
    for method in cnnviz.METHODS:
        heatmaps = cnnviz.explain(model, images, method=method)
        count = len(heatmaps)
        rows, columns = np.unravel_index(heatmaps.reshape(count, -1).argmax(axis=1), heatmaps.shape[1:])
        hits = (
            (columns >= boxes[:, 0]) & (columns < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])
        )
        target = ">= 90 %" if method == "gradcam" else "reported"
        record(
            f"pointing game, {method} ({count} correctly classified test images)",
            f"{hits.mean():.2%}",
            target,
        )


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["speed", "pointing"]
    for name in chosen:
        {"speed": bench_speed, "pointing": bench_pointing}[name]()
    report("explain-last.json")
