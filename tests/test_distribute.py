"""Training under tf.distribute: mirrored replicas and two workers on loopback."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import cnnviz
from cnnviz.distribute import make_strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["-m", "cnnviz", "train", "--data", "digits", "--epochs", "5", "--json"]
TIMEOUT = 240  # seconds: a hung collective fails the test instead of the suite


def _environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _summary(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("localhost", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


@pytest.fixture(scope="module")
def single_device_accuracy(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "model.keras"
    run = subprocess.run(
        [sys.executable, *TRAIN, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_environment(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = _summary(run.stdout)
    assert summary["replicas"] == 1 and summary["val_accuracy"] >= 0.9
    return summary["val_accuracy"]


def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path, single_device_accuracy):
    out = tmp_path / "model.keras"
    run = subprocess.run(
        [sys.executable, *TRAIN, "--distribute", "mirrored", "--cpu-replicas", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_environment(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = _summary(run.stdout)
    assert summary["replicas"] == 2
    assert abs(summary["val_accuracy"] - single_device_accuracy) <= 0.05
    assert cnnviz.load_model(out).output_shape == (None, 10)


def test_two_workers_on_loopback_match_one_device_and_only_the_chief_saves(tmp_path, single_device_accuracy):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"worker{index}.keras"
        workers.append(
            subprocess.Popen(
                [sys.executable, *TRAIN, "--distribute", "multiworker", "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_environment(TF_CONFIG=config),
            )
        )
    try:
        outputs = [worker.communicate(timeout=TIMEOUT) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-2000:]
    chief, other = (_summary(stdout) for stdout, _ in outputs)
    assert chief["replicas"] == other["replicas"] == 2
    # Gradients are averaged across workers every step, so both hold the same model.
    assert chief["val_accuracy"] == other["val_accuracy"]
    assert abs(chief["val_accuracy"] - single_device_accuracy) <= 0.05
    assert (tmp_path / "worker0.keras").is_file() and not (tmp_path / "worker1.keras").exists()
    assert other["model"] is None


def test_a_model_built_outside_the_strategy_is_trained_as_a_copy_made_inside(tiny_arrays):
    import tensorflow as tf

    images, labels = tiny_arrays
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    model = cnnviz.build_model(cnnviz.preset_config("fast", (16, 16, 3), 2))
    cnnviz.saving.set_metadata(model, class_names=["dark", "bright"])
    before = [weight.copy() for weight in model.get_weights()]
    result = cnnviz.train(
        model, (images, labels), cnnviz.TrainConfig(epochs=3, batch_size=8), strategy=strategy
    )
    assert result.model is not model and result.model.distribute_strategy is strategy
    assert cnnviz.class_names_of(result.model) == ("dark", "bright")
    for weight, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, original)  # the caller's model is untouched
    assert result.epochs == 3 and result.val_accuracy is not None


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(cnnviz.ConfigError, match="TF_CONFIG"):
        make_strategy("multiworker")
    with pytest.raises(cnnviz.ConfigError, match="distribute must be one of"):
        make_strategy("everywhere")
    assert make_strategy("none") is None
