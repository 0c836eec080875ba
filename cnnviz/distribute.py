"""Training beyond one device: tf.distribute strategies for `cnnviz.train`.

- `"mirrored"`: `tf.distribute.MirroredStrategy`, one model copy per GPU of
  this machine, gradients averaged after every batch.
- `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`, the same over
  several machines. Each machine runs the same command with its own
  `TF_CONFIG` environment variable, e.g. on the first of two:

      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                  "task": {"type": "worker", "index": 0}}' cnnviz train ... --distribute multiworker

Without GPUs, `cpu_replicas=N` splits this CPU into N logical devices so the
mirrored path can be tried (and tested) anywhere; it is no faster than one.

Keras 3 (up to 3.15 at least) has two bugs here. Before `fit` and `evaluate`
it averages the first input batch across replicas for a shape probe, which
fails when replicas get batches of different sizes (a last, uneven batch) and
always under MultiWorkerMirroredStrategy (keras-team/keras#20585); and under
MultiWorkerMirroredStrategy it reduces scalar logs along an axis they lack.
`distributed_fit` works around both for the length of one `fit` call; the
weights are still averaged across replicas every step (tested: two workers end
with identical weights).
"""

from __future__ import annotations

import contextlib
import json
import os
import types

from cnnviz.errors import ConfigError

STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(kind: str = "mirrored", cpu_replicas: int | None = None):
    """A `tf.distribute` strategy, or `None` for `kind="none"`.

    Call it before any other TensorFlow work in the process (TensorFlow fixes
    its devices and, for multi-worker runs, its cluster at first use).

    Args:
        kind: one of `STRATEGIES`.
        cpu_replicas: with `"mirrored"` and no GPU, split the CPU into this many
            logical devices and mirror over them.

    Raises:
        ConfigError: unknown kind, no TF_CONFIG for multiworker, or devices
            already fixed.
    """
    if kind not in STRATEGIES:
        raise ConfigError(f"distribute must be one of {', '.join(STRATEGIES)}, got {kind!r}.")
    if kind == "none":
        return None
    import tensorflow as tf

    if kind == "multiworker":
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", ""))
            workers = cluster["cluster"]["worker"]
            cluster["task"]["index"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                "multi-worker training needs TF_CONFIG, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}} '
                "(see the README, 'Training on several GPUs or machines')."
            ) from None
        if len(workers) < 1:
            raise ConfigError("TF_CONFIG lists no workers.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = None
    if cpu_replicas and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(cpu_replicas))]
            )
        except RuntimeError:
            raise ConfigError(
                "TensorFlow already fixed its devices in this process; create the strategy first."
            ) from None
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy) -> bool:
    """Whether this process writes files: always, except non-chief workers."""
    if strategy is None or not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


@contextlib.contextmanager
def distributed_fit(model):
    """Lets Keras 3 `model.fit` run under a tf.distribute strategy (see module doc)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def symbolic_build(self, iterator=None, data_batch=None):
        # The shape probe needs this worker's batch, not a cross-worker mean of it.
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda value: (
                        self.distribute_strategy.experimental_local_results(value)[0]
                        if isinstance(value, tf.distribute.DistributedValues)
                        else value
                    ),
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_check = tf_trainer._collective_all_reduce_multi_worker
    object.__setattr__(model, "_maybe_symbolic_build", types.MethodType(symbolic_build, model))
    if is_multi_worker(model.distribute_strategy):
        # Logs are synchronized metric values already; reduce them like a one-worker run.
        tf_trainer._collective_all_reduce_multi_worker = lambda strategy: False
    try:
        with model.distribute_strategy.scope():
            yield
    finally:
        tf_trainer._collective_all_reduce_multi_worker = original_check
        object.__delattr__(model, "_maybe_symbolic_build")


def save_as_chief(model, path, strategy=None, class_names=None):
    """Saves `model` to `path` on the chief; other workers save in step to a scratch file they drop.

    Under MultiWorkerMirroredStrategy saving reads variables through collective
    ops, so every worker must save at the same moment; only the chief's file is kept.

    Returns:
        The path written, or `None` on a worker that is not the chief.
    """
    import tempfile
    from pathlib import Path

    from cnnviz.saving import save_model

    if is_chief(strategy):
        return save_model(model, path, class_names)
    with tempfile.TemporaryDirectory(prefix="cnnviz-worker-") as scratch:
        save_model(model, Path(scratch) / Path(path).name, class_names)
    return None
