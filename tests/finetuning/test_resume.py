"""A finetuning job stopped by SIGTERM in its second epoch exits 143 and, started again with the
same command, goes on with that epoch (a changed command is refused)."""

import json
import signal
import subprocess
import sys

import pytest

from bert_tf.finetuning import resume
from bert_tf.finetuning.classification import run
from classification_fixtures import make_workspace, values
from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("resume"))


def command(workspace, output_dir):
    return [sys.executable, "-m", "bert_tf.run_classifier",
            f"--train_file={workspace / 'single_train.tsv'}",
            f"--eval_file={workspace / 'single_dev.tsv'}", "--text_a_column=text",
            "--label_column=label", f"--init_checkpoint={workspace / 'pretrain' / 'ckpt-1'}",
            f"--output_dir={output_dir}", "--max_seq_length=32", "--train_batch_size=16",
            "--learning_rate=2e-3", "--num_train_epochs=3", "--log_steps=5",
            "--mixed_precision=float32", "--random_seed=1"]


@pytest.mark.slow
def test_a_job_stopped_in_its_second_epoch_resumes_there(workspace, tmp_path):
    output_dir = tmp_path / "run"
    process = subprocess.Popen(command(workspace, output_dir), cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "(epoch 2/3)" in line:  # in the second epoch, after the first one's backup
            process.send_signal(signal.SIGTERM)
            break
    out = "".join(seen) + process.communicate(timeout=120)[0]
    assert process.returncode == 143, out
    assert "SIGTERM: stopped in epoch 2 at batch" in out and "Traceback" not in out
    backup = output_dir / resume.BACKUP_DIR
    assert json.loads((backup / resume.KERAS_METADATA).read_text())["epoch"] == 1
    assert [e["epoch"] for e in json.loads((backup / resume.EPOCHS_FILE).read_text())] == [1]
    assert not (output_dir / "eval_results.json").exists() and not (output_dir / "export").exists()
    held = {path.name: path.read_bytes() for path in backup.iterdir()}

    # another learning rate is another job: refused, nothing touched
    with pytest.raises(ValueError, match=r"unfinished job made with other settings "
                                         r"\(.*--learning_rate=0.002 -> 0.001"):
        run(values(workspace, "single", output_dir, learning_rate=1e-3, num_train_epochs=3,
                   train_batch_size=16), log=lambda _: None)
    assert {path.name: path.read_bytes() for path in backup.iterdir()} == held

    finished = subprocess.run(command(workspace, output_dir), cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = finished.stdout
    assert finished.returncode == 0, out
    assert f"resuming from {backup}: 1 epoch(s) done; going on with epoch 2" in out
    assert "(epoch 1/3)" not in out and "epoch 2/3 done" in out and "epoch 3/3 done" in out
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert len(results["epoch_scores"]) == 3  # the first epoch's score kept from before
    assert results["accuracy"] >= 0.9, results  # the task is learnt as in one go
    assert (output_dir / "export").is_dir() and not backup.exists()
