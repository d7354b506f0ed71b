"""--mixed_precision=auto: bfloat16 where the hardware multiplies it natively, float32 elsewhere."""

import pytest
import tensorflow as tf

from bert_tf.training import precision


@pytest.mark.parametrize("flags,policy,named", [
    ({"fpu", "avx512f", "amx_bf16", "amx_tile"}, "mixed_bfloat16", "AMX-BF16"),
    ({"fpu", "avx512f", "avx512_bf16"}, "mixed_bfloat16", "AVX512_BF16"),
    ({"fpu", "avx2", "avx512f"}, "float32", "neither"),
    (set(), "float32", "unknown"),
])
def test_auto_on_cpus_follows_their_bfloat16_features(flags, policy, named):
    chosen = precision.resolve("auto", devices=["/job:localhost/device:CPU:0"], cpu_flags=flags)
    assert chosen.policy == policy
    assert named in chosen.reason and chosen.reason.startswith("auto:")


def test_auto_on_this_machine_reads_proc_cpuinfo():
    chosen = precision.resolve("auto", tf.distribute.OneDeviceStrategy("/cpu:0"))
    with open("/proc/cpuinfo") as f:
        words = f.read().split()  # read once: a second read() is at the end of the file
    native = any(flag in words for flag in ("amx_bf16", "avx512_bf16"))
    assert chosen.policy == ("mixed_bfloat16" if native else "float32")


def test_a_gpu_without_known_capability_trains_in_float32():
    # no GPU here: its compute capability cannot be read, so bfloat16 is not assumed
    chosen = precision.resolve("auto", devices=["/job:localhost/device:GPU:0"],
                               cpu_flags={"amx_bf16"})
    assert chosen.policy == "float32" and "GPU" in chosen.reason


def test_an_explicit_policy_is_kept():
    for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert precision.resolve(policy, cpu_flags={"amx_bf16"}) == (
            policy, "set by --mixed_precision")
    with pytest.raises(ValueError, match="--mixed_precision must be one of"):
        precision.resolve("bfloat16")
