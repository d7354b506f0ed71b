"""A quiet console: TensorFlow's C++ INFO lines off by default, the user's settings respected."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from pretraining_fixtures import make_tiny_data, tiny_config_file

CPP_INFO = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I ", re.M)  # TF's C++ logging
ABSL_INFO = re.compile(r"^I\d{4} ", re.M)  # absl's Python logging


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return make_tiny_data(str(directory), num_shards=1), tiny_config_file(str(directory))


def pretrain(data, output_dir, *flags, **env):
    """run_pretraining for 2 steps as a user would start it: none of the tests' log settings."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env)
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.run_pretraining", f"--input_file={data[0]}",
         f"--bert_config_file={data[1]}", f"--output_dir={output_dir}", "--max_seq_length=32",
         "--max_predictions_per_seq=5", "--train_batch_size=8", "--num_train_steps=2",
         "--num_warmup_steps=1", "--steps_per_loop=1", "--save_checkpoints_steps=2",
         "--do_eval=false", *flags],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 2/2" in result.stdout
    return result.stdout + result.stderr


@pytest.mark.slow
def test_tensorflow_info_lines_are_off_unless_the_user_asks(data, tmp_path):
    quiet = pretrain(data, tmp_path / "quiet")
    assert not CPP_INFO.search(quiet), CPP_INFO.findall(quiet)
    assert not ABSL_INFO.search(quiet)
    loud = pretrain(data, tmp_path / "loud", TF_CPP_MIN_LOG_LEVEL="0")
    assert CPP_INFO.search(loud), "TF_CPP_MIN_LOG_LEVEL=0 from the user brings them back"


@pytest.mark.slow
def test_absl_verbosity_flag_still_works(data, tmp_path):
    out = pretrain(data, tmp_path / "verbose", "--verbosity=0")
    assert ABSL_INFO.search(out), "--verbosity=0 shows absl's INFO lines"
