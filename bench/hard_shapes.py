"""Does the default shapes model generalise? A harder independent set, drawn by other code than the generator.

Run: python bench/hard_shapes.py [MODEL ...] [--sets 2026 7 8]   (default: assets/models/shapes.keras)

The set (`hard_shapes`, 400 images, seed 2026; never used for training): circles, squares, triangles and
stars drawn with plain PIL at 4x and downsampled, rotated at random, 24 to 64 % of the side wide, in random
colours, on backgrounds that `cnnviz.shapes` does not make: smoothed random noise at two scales, a random
colour wash, stripes or a checkerboard at a random angle, then pixel noise over everything. The tests' own
independent set (tests/test_explanations.py) has flat backgrounds.

For each model: accuracy on the set, and how often Grad-CAM's hottest pixel lies inside the shape's box
(pointing game) on the images it gets right. Target (issue 15): >= 97 % and >= 90 %.

`--sets` gives the seeds of the sets drawn (default 2026 7 8 9 10). The shipped model's recipe was chosen on
some of them: its texture strength on set 2026, its 40 epochs (over 30) on sets 2026, 7 and 8. Sets 9 and 10
were drawn after those choices, and nothing was chosen on them.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLASSES = ("circle", "square", "triangle", "star")
SIDE, SCALE = 64, 4


def _background(rng: np.random.Generator) -> Image.Image:
    big = SIDE * SCALE
    base = rng.uniform(0, 255, 3)
    coarse = base + rng.uniform(-70, 70, (rng.integers(3, 9), rng.integers(3, 9), 3))
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    picture = Image.fromarray(coarse).resize((big, big), Image.Resampling.BICUBIC)
    fine = rng.uniform(-25, 25, (big // 8, big // 8, 3))
    array = np.asarray(picture, np.float32) + np.kron(fine, np.ones((8, 8, 1)))
    yy, xx = np.mgrid[0:big, 0:big]
    angle, period = rng.uniform(0, np.pi), rng.uniform(12, 48)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    if rng.random() < 0.5:
        pattern = np.sign(np.sin(2 * np.pi * phase))  # stripes
    else:
        other = (-np.sin(angle) * xx + np.cos(angle) * yy) / period
        pattern = np.sign(np.sin(np.pi * phase) * np.sin(np.pi * other))  # checkerboard
    array += pattern[..., None] * rng.uniform(8, 30) * rng.uniform(0.3, 1, 3)
    picture = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3)))


def _points(label: int, cx: float, cy: float, radius: float, angle: float) -> list:
    corners, radii = {1: (4, [radius] * 4), 2: (3, [radius] * 3), 3: (10, [radius, radius * 0.42] * 5)}[label]
    return [
        (
            cx + radii[j] * np.cos(angle + 2 * np.pi * j / corners),
            cy + radii[j] * np.sin(angle + 2 * np.pi * j / corners),
        )
        for j in range(corners)
    ]


def hard_shapes(count: int = 400, seed: int = 2026):
    """`count` images (uint8, 64x64x3), their labels and their boxes `(x0, y0, x1, y1)` in pixels."""
    rng = np.random.default_rng(seed)
    images, labels, boxes = [], [], []
    big = SIDE * SCALE
    for index in range(count):
        label = index % 4
        canvas = _background(rng)
        draw = ImageDraw.Draw(canvas)
        radius = rng.uniform(0.12, 0.32) * big
        cx, cy = rng.uniform(radius, big - radius, 2)
        mean = (
            np.asarray(canvas.crop((cx - radius, cy - radius, cx + radius, cy + radius)))
            .reshape(-1, 3)
            .mean(0)
        )
        ink = mean
        while np.abs(ink - mean).sum() < 160:  # visible against what lies under it
            ink = rng.integers(0, 256, 3)
        ink = tuple(int(v) for v in ink)
        if label == 0:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=ink)
            xs, ys = [cx - radius, cx + radius], [cy - radius, cy + radius]
        else:
            points = _points(label, cx, cy, radius, rng.uniform(0, 2 * np.pi))
            draw.polygon(points, fill=ink)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
        small = np.asarray(canvas.resize((SIDE, SIDE), Image.Resampling.LANCZOS), np.float32)
        small += rng.normal(0, rng.uniform(2, 12), small.shape)
        images.append(np.clip(small, 0, 255).astype(np.uint8))
        labels.append(label)
        boxes.append([min(xs) / SCALE, min(ys) / SCALE, max(xs) / SCALE, max(ys) / SCALE])
    return np.stack(images), np.asarray(labels), np.asarray(boxes)


def pointing(heatmaps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each heatmap's hottest pixel lies inside its box."""
    rows, columns = np.unravel_index(heatmaps.reshape(len(heatmaps), -1).argmax(1), heatmaps.shape[1:])
    return (columns >= boxes[:, 0]) & (columns < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])


def score(model, images, labels, boxes) -> dict:
    import cnnviz

    correct = cnnviz.predict_probabilities(model, images).argmax(1) == labels
    heatmaps = cnnviz.explain(model, images[correct], method="gradcam")
    return {"accuracy": float(correct.mean()), "pointing": float(pointing(heatmaps, boxes[correct]).mean())}


def main(argv=None):
    import cnnviz

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[str(ROOT / "assets" / "models" / "shapes.keras")])
    parser.add_argument(
        "--sets", type=int, nargs="+", default=[2026, 7, 8, 9, 10], help="seeds of the sets to draw"
    )
    args = parser.parse_args(argv)
    sets = {seed: hard_shapes(seed=seed) for seed in args.sets}
    results = {}
    for path in args.models:
        model = cnnviz.load_model(path)
        results[path] = {seed: score(model, *drawn) for seed, drawn in sets.items()}
        print(f"{path}: {results[path]}", flush=True)
    print(
        "\n| model | set seed | hard independent shapes: accuracy (target >= 97 %) | Grad-CAM pointing (>= 90 %) |"
    )
    print("|---|---|---|---|")
    for path, by_set in results.items():
        for seed, result in by_set.items():
            print(f"| {Path(path).name} | {seed} | {result['accuracy']:.1%} | {result['pointing']:.1%} |")
    Path(__file__).with_name("hard-shapes-last.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
