"""`--mixed_precision=auto`: the Keras dtype policy that suits the hardware a run trains on.

bfloat16 where the hardware multiplies it natively, float32 elsewhere:

    TPU                                  mixed_bfloat16   (its matrix units are bfloat16)
    GPU of compute capability >= 8.0     mixed_bfloat16   (Ampere and later; no loss scaling)
    other GPUs                           float32
    CPU with AMX-BF16 or AVX512_BF16     mixed_bfloat16   (oneDNN's bfloat16 matmuls)
    other CPUs                           float32

`resolve` returns the policy and the reason, which the run logs and records in run_config.json.
An explicit policy (float32, mixed_float16, mixed_bfloat16) is kept as it is.
"""

import contextlib
from typing import NamedTuple

import tensorflow as tf

POLICIES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# --serving_precision: what an export computes in, whatever policy the run trained with.
# float32 serves everywhere at full speed; bfloat16 only pays where the serving hardware
# multiplies it natively (docs/export-and-serving.md#serving-precision); elsewhere it is
# emulated.
SERVING_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
SERVING_HELP = ("What the exported model computes in: float32 (any hardware), or bfloat16 "
                "(only for serving hosts that multiply bfloat16 natively: CPUs with AMX or "
                "AVX512_BF16, GPUs of compute capability 8.0+, TPUs), whatever "
                "--mixed_precision the run trained with.")
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512_BF16"}


class Precision(NamedTuple):
    policy: str  # a Keras dtype policy name
    reason: str

    def as_record(self):
        return {"policy": self.policy, "reason": self.reason}


def resolve(policy, strategy=None, devices=None, cpu_flags=None) -> Precision:
    """The Keras policy for `policy` ("auto" or a policy name). The devices trained on are
    `devices` (device names) or `strategy`'s; `cpu_flags` overrides /proc/cpuinfo's (tests)."""
    if policy not in POLICIES:
        raise ValueError(f"--mixed_precision must be one of {', '.join(POLICIES)}; got {policy!r}")
    if policy != "auto":
        return Precision(policy, "set by --mixed_precision")
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return Precision("mixed_bfloat16", "auto: TPU (bfloat16 matrix units)")
    if devices is None:
        devices = strategy.extended.worker_devices if strategy is not None else ["CPU:0"]
    gpus = [d for d in devices if "GPU" in d.upper()]
    if gpus:
        return _gpu_precision()
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    native = [name for flag, name in CPU_BF16_FLAGS.items() if flag in flags]
    if native:
        return Precision("mixed_bfloat16", f"auto: this CPU multiplies bfloat16 natively "
                                           f"({', '.join(native)})")
    if flags:
        return Precision("float32", "auto: this CPU has neither AMX-BF16 nor AVX512_BF16")
    return Precision("float32", "auto: this CPU's features are unknown (no /proc/cpuinfo)")


def training_devices():
    """Devices a Keras fit() under the default or mirrored strategy trains on: every GPU there
    is, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    return [d.name for d in gpus] if gpus else ["CPU:0"]


def _gpu_precision():
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    if capabilities and min(capabilities) >= (8, 0):
        return Precision("mixed_bfloat16", f"auto: GPU compute capability "
                                           f"{'.'.join(map(str, min(capabilities)))} (>= 8.0: "
                                           f"bfloat16 tensor cores)")
    shown = ".".join(map(str, min(capabilities))) if capabilities else "unknown"
    return Precision("float32", f"auto: GPU compute capability {shown} (below 8.0: no "
                                f"bfloat16 tensor cores)")


def _cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (the kernel's file; empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@contextlib.contextmanager
def global_policy(name):
    """Keras's global dtype policy set to `name` inside the block (models built there compute
    in it), restored after."""
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)
