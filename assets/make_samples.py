"""Writes the sample images the app offers before anyone uploads a file.

Run from the repository root: python assets/make_samples.py
Shapes come from a seed the default model was not trained on (seed 2026);
digits are test-split images of scikit-learn's digits at seed 0.
"""

from pathlib import Path

from PIL import Image

import cnnviz
from cnnviz.shapes import SHAPE_CLASSES, generate_shapes

SAMPLES = Path(__file__).resolve().parent / "samples"


def main():
    SAMPLES.mkdir(exist_ok=True)
    images, labels, _ = generate_shapes(64, seed=2026)
    for class_index, name in enumerate(SHAPE_CLASSES):
        first = int((labels == class_index).argmax())
        Image.fromarray(images[first]).save(SAMPLES / f"shape_{name}.png")
    digits = cnnviz.load_dataset("digits")
    for digit in (3, 7):
        first = int((digits.test.labels == digit).argmax())
        Image.fromarray(digits.test.images[first][..., 0]).save(SAMPLES / f"digit_{digit}.png")


if __name__ == "__main__":
    main()
