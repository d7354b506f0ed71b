"""tools/smoke.py, the first run on new hardware, as CI runs it on CPU: it reports what auto
picks here and times pretraining and finetuning with it, MFU against a matmul measured here."""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_the_smoke_script_runs_both_parts_with_what_auto_picks(tmp_path):
    output = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, "tools/smoke.py", f"--work_dir={tmp_path / 'work'}",
         f"--output={output}", "--steps=4", "--finetune_steps=4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["failed"] is None
    devices = report["devices"]
    assert devices["devices"] == ["CPU"] and devices["gpus"] == [] and devices["tpu_chips"] == {}
    assert devices["strategy"] == {"name": "one_device", "why": "no GPU or TPU: the CPU"}
    pretraining, finetuning = report["pretraining"], report["finetuning"]
    assert pretraining["strategy"]["replicas"] == 1
    assert pretraining["steps_per_second"] > 0 and pretraining["sequences_per_second"] > 0
    assert 0 < pretraining["mfu"] < 1, pretraining  # of a matmul measured on this CPU
    assert pretraining["peak_source"].startswith("a float32 matmul measured here")
    assert finetuning["steps_per_second"] > 0 and 0 <= finetuning["accuracy"] <= 1
    assert "pretraining: " in result.stdout and " steps/s" in result.stdout
    assert (tmp_path / "work" / "finetune" / "export" / "classifier").is_dir()
