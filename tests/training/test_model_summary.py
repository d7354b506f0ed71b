import math
import os
import subprocess
import sys

import pytest

from bert_tf.training.model_summary import summarize
from conftest import REPO_ROOT, tiny_config


def test_summarize_tiny():
    config = tiny_config()
    figures = summarize(config, batch_size=2, seq_length=16, predictions=3)
    assert figures["pretrainer_params"] > figures["encoder_params"] > 0
    assert figures["gradients_finite"]
    # An untrained model predicts about uniformly.
    assert figures["masked_lm_loss"] == pytest.approx(math.log(config.vocab_size), rel=0.2)


def test_summarize_rejects_bad_lengths():
    with pytest.raises(ValueError, match="--max_seq_length=80 exceeds max_position_embeddings=64"):
        summarize(tiny_config(), batch_size=1, seq_length=80, predictions=3)
    with pytest.raises(ValueError, match="--max_predictions_per_seq=0"):
        summarize(tiny_config(), batch_size=1, seq_length=16, predictions=0)


@pytest.mark.slow
def test_cli(tmp_path):
    path = tmp_path / "bert_config.json"
    tiny_config().to_json_file(path)
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.model_summary", f"--bert_config_file={path}",
         "--max_seq_length=16", "--batch_size=2", "--max_predictions_per_seq=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    assert "encoder parameters (with pooler)" in result.stdout
    assert "gradients finite: True" in result.stdout


def test_cli_bad_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text('{"hidden_size": 7}')
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.model_summary", f"--bert_config_file={path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"{path}: missing key(s)" in result.stderr
