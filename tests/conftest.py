"""Shared fixtures: tiny data made in the test, quiet TensorFlow, no network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to download (keras.utils.get_file) fails like an offline machine."""
    import urllib.error

    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache for this test (Keras reads KERAS_HOME at import)."""
    from keras.src.backend import config

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    return tmp_path


def trust_planted_files(monkeypatch):
    """Planted files are small stand-ins, so their hashes differ from the real
    downloads; accept them as keras would accept the real files."""
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)


@pytest.fixture(autouse=True)
def _clear_keras():
    yield
    import keras

    # Without its full gc.collect: that took 0.4 s after every test (42 of 108 s in test_training,
    # test_models and test_data). The garbage is collected once per module below.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage():
    yield
    import gc

    gc.collect()  # what a module's tests left in reference cycles (models, tf.data iterators) goes here


@pytest.fixture
def tiny_arrays():
    """32 random 16x16 RGB images in 2 learnable classes (bright vs dark)."""
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    images = rng.integers(0, 100, (32, 16, 16, 3)).astype(np.uint8)
    images[labels == 1] += 120
    return images, labels


def write_image(path, array, **save_kwargs):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def run_in_a_fresh_python(code: str, timeout: int = 300) -> None:
    """Runs `code` in a new interpreter (nothing imported yet) and fails the test with its stderr if it fails."""
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-2000:]
