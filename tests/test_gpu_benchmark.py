"""tools/gpu_benchmark.py (the JAX-backend train-step benchmark for a lent GPU): its help, and a
tiny dry run on this CPU with both implementations, and ours with a second attention path."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, "tools", "gpu_benchmark.py")
ENV = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
       "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_help():
    result = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                            env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--configs" in result.stdout and "--attention" in result.stdout


@pytest.mark.slow
def test_tiny_dry_run_on_cpu(tmp_path):
    output = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--configs=tiny", "--steps=2", "--rounds=1",
         "--seq_lengths=32", "--batch_sizes=32:4", "--predictions=32:5", f"--output={output}",
         "--attention=einsum,xla,auto", "--attention_dropout=0"],
        capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(output.read_text())
    assert figures["device"].startswith("cpu") and figures["bf16_matmul_peak_flops"] > 0
    rows = {(r["precision"], r["implementation"]): r for r in figures["rows"]}
    # "auto" comes to einsum on a CPU: not timed twice
    assert set(rows) == {(p, i) for p in ("bf16", "fp32")
                         for i in ("bert_tf", "bert_tf/xla", "keras_hub")}
    assert {r["attention"] for r in figures["rows"]} == {"einsum", "xla", None}
    assert "bert_tf/auto comes to einsum here; not timed twice" in result.stdout
    for row in rows.values():
        assert row["sequences_per_second"] > 0 and 0 < row["mfu"]
    assert "tiny   seq   32 batch   4 bf16 bert_tf" in result.stdout
