"""Which precision a run trains in, and the float32 copy a bfloat16 run hands back."""

from __future__ import annotations

from functools import lru_cache

from cnnviz.errors import ConfigError
from cnnviz.training.config import PRECISIONS


def cpu_has_native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX).

    Args:
        cpuinfo: text of /proc/cpuinfo; read from the system when `None`.
    """
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags(cpuinfo))


def cpu_bfloat16_pays(cpuinfo: str | None = None) -> bool:
    """Whether mixed bfloat16 trains faster than float32 on this CPU: only with AMX (`amx_bf16`).

    AVX512_BF16 alone does not pay: on a 2-core Xeon with AVX512_BF16 and no AMX, `cnnviz.train` ran the
    keras.io convnet at 0.89-0.92x its float32 speed in bfloat16 (docs/BENCHMARKS.md, issue 15).
    """
    return "amx_bf16" in _cpu_flags(cpuinfo)


def _cpu_flags(cpuinfo: str | None) -> set[str]:
    """The first `flags` line of /proc/cpuinfo (or of `cpuinfo`), as a set; empty when there is none."""
    if cpuinfo is None:
        cpuinfo = read_cpuinfo()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def resolve_precision(precision: str = "auto") -> str:
    """`"bfloat16"` or `"float32"`: what `precision="auto"` means on this machine.

    Mixed bfloat16 pays off only with hardware support: measured elsewhere
    ~1.85x faster, but 8x *slower* than float32 on an AVX2-only CPU and
    0.9x on one with AVX512_BF16 and no AMX. So auto picks bfloat16 on a GPU
    or a CPU with AMX (`cpu_bfloat16_pays`), float32 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "bfloat16"
    return "bfloat16" if cpu_bfloat16_pays() else "float32"


def model_precision(model) -> str:
    """The precision a built model computes in."""
    return "bfloat16" if "bfloat16" in str(model.dtype_policy.compute_dtype) else "float32"


def rebuild_float32(model):
    """A float32 copy of a mixed-precision model, with the same weights (no metadata)."""
    import keras

    def strip(node):
        if isinstance(node, dict):
            return {
                key: ("float32" if key == "dtype" and _is_mixed_policy(value) else strip(value))
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    rebuilt = keras.Model.from_config(strip(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _is_mixed_policy(value) -> bool:
    if isinstance(value, str):
        return value.startswith("mixed_")
    if isinstance(value, dict):
        name = value.get("config", {}).get("name", "")
        return isinstance(name, str) and name.startswith("mixed_")
    return False
