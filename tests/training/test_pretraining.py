"""The pretraining job (run_pretraining) end to end on tiny data: training, checkpoints, resume, summaries, faults."""

import glob
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_tf import io, locks
from bert_tf.config import BertConfig
from bert_tf.data.input_pipeline import DataMismatchError
from bert_tf.training.pretraining import run
from conftest import MODERNBERT, REPO_ROOT
from pretraining_fixtures import (flag_values, launch_workers, make_tiny_data,
                                  other_vocab_data, tiny_config_file)

TAGS = {"loss", "masked_lm_loss", "masked_lm_accuracy", "next_sentence_loss",
        "next_sentence_accuracy", "learning_rate", "examples_per_second", "gradient_norm",
        "sequences_per_second", "tokens_per_second"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return {"glob": make_tiny_data(str(directory)), "config": tiny_config_file(str(directory)),
            "dir": directory}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One 40-step run, shared: its log lines, metrics and output_dir."""
    output_dir = tmp_path_factory.mktemp("run")
    lines = []
    metrics = run(flag_values(data["glob"], data["config"], output_dir, profile_steps="12,13"),
                  log=lines.append)
    return {"dir": output_dir, "lines": lines, "metrics": metrics}


def scalars(event_dir):
    accumulator = EventAccumulator(str(event_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                  for e in accumulator.Tensors(tag)] for tag in accumulator.Tags()["tensors"]}


def test_trains_and_loss_falls(trained):
    logs = [line for line in trained["lines"] if line.startswith("step ")]
    assert [line.split()[1] for line in logs] == ["10/40", "20/40", "30/40", "40/40"]
    losses = [float(line.split("loss=")[1].split()[0]) for line in logs]
    assert losses[-1] < losses[0] - 0.5
    assert trained["metrics"]["step"] == 40
    assert "ETA" in logs[0] and "examples_per_second=" in logs[0]
    assert 0 <= trained["metrics"]["eval_masked_lm_accuracy"] <= 1


def test_unset_hyper_parameters_take_the_recipe_of_the_run():
    """Only the embedded default trains with the demo's settings; a run on other data or of
    another config takes the BERT paper's, one from a checkpoint google's further-pretraining
    defaults; what a user gives is kept."""
    from bert_tf.training.pretraining import PretrainingConfig

    def schedule(config):
        return (config.learning_rate, config.num_warmup_steps, config.num_train_steps,
                config.save_checkpoints_steps, config.train_batch_size)

    assert PretrainingConfig().recipe == "embedded default"
    assert schedule(PretrainingConfig()) == (2e-3, 60, 600, 200, 16)
    base = PretrainingConfig(bert_config_file=os.path.join(REPO_ROOT, "configs", "bert_base.json"))
    own_data = PretrainingConfig(input_file="data/wiki-*")
    for config in (base, own_data):
        assert config.recipe == "BERT paper (from scratch)"
        assert schedule(config) == (1e-4, 10_000, 1_000_000, 1_000, 256)
    further = PretrainingConfig(input_file="data/wiki-*", init_checkpoint="runs/google_base")
    assert schedule(further) == (5e-5, 10_000, 100_000, 1_000, 32)
    given = PretrainingConfig(input_file="data/wiki-*", learning_rate=3e-4, num_train_steps=5000)
    assert schedule(given) == (3e-4, 50, 5000, 1000, 256)  # warmup: the recipe's 1%
    assert given.recipe_record() == {"name": "BERT paper (from scratch)", "filled": {
        "num_warmup_steps": 50, "save_checkpoints_steps": 1000, "train_batch_size": 256}}
    assert schedule(PretrainingConfig(input_file="x", num_train_steps=300))[1:4] == (3, 300, 300)
    with pytest.raises(ValueError, match=r"^--learning_rate is needed with --optimizer=lamb"):
        PretrainingConfig(input_file="data/wiki-*", optimizer="lamb")


@pytest.mark.slow
def test_a_run_on_its_own_data_records_the_recipe_and_the_strategy(data, tmp_path):
    """run_pretraining as a user starts it on their data with a step count and nothing else:
    the paper's learning rate, not the demo's, in the log and in run_config.json."""
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.run_pretraining", f"--input_file={data['glob']}",
         f"--bert_config_file={data['config']}", f"--output_dir={tmp_path}",
         "--max_seq_length=32", "--max_predictions_per_seq=5", "--num_train_steps=2",
         "--steps_per_loop=1", "--do_eval=false"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: one_device, 1 replica (no GPU or TPU: the CPU)" in result.stdout
    assert ("hyper-parameters not given, from the BERT paper (from scratch) recipe: "
            "--learning_rate=0.0001 --num_warmup_steps=0 --save_checkpoints_steps=2 "
            "--train_batch_size=256") in result.stdout
    record = io.read_json(os.path.join(tmp_path, "run_config.json"))
    assert record["flags"]["learning_rate"] == 1e-4 and record["flags"]["train_batch_size"] == 256
    assert record["recipe"] == {"name": "BERT paper (from scratch)", "filled": {
        "learning_rate": 1e-4, "num_warmup_steps": 0, "save_checkpoints_steps": 2,
        "train_batch_size": 256}}
    assert record["strategy"] == {"name": "one_device", "why": "no GPU or TPU: the CPU",
                                  "replicas": 1, "workers": 1}


def test_run_directory_is_self_contained(trained, data):
    out = trained["dir"]
    assert tf.train.latest_checkpoint(str(out)).endswith("ckpt-40")
    assert json.loads((out / "bert_config.json").read_text())["hidden_size"] == 32
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["flags"]["num_train_steps"] == 40
    assert run_config["do_lower_case"] is True
    assert run_config["precision"] == {"policy": "float32", "reason": "set by --mixed_precision"}
    assert "precision: float32 (set by --mixed_precision)" in trained["lines"]
    vocab = (out / "vocab.txt").read_text()
    assert vocab == (data["dir"] / "vocab.txt").read_text()
    assert not [p for p in os.listdir(out) if ".tmp" in p]


def test_profile_steps_write_a_profiler_trace_for_tensorboard(trained, data, tmp_path):
    traces = glob.glob(str(trained["dir"] / "train" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 1000
    assert any(line.startswith("profile of steps 12-13: ") for line in trained["lines"])
    for bad in ("5", "3,1", "0,2", "a,b"):
        with pytest.raises(ValueError, match="--profile_steps"):
            run(flag_values(data["glob"], data["config"], tmp_path, profile_steps=bad))


def test_event_files_hold_the_scalars(trained):
    train = scalars(trained["dir"] / "train")
    assert TAGS <= set(train)
    steps = [step for step, _ in train["loss"]]
    assert steps == [10, 20, 30, 40]
    lr = dict(train["learning_rate"])
    assert lr[40] == pytest.approx(0.0) and lr[10] > lr[30] > 0
    evaluation = scalars(trained["dir"] / "eval")
    assert {"loss", "masked_lm_accuracy", "next_sentence_accuracy"} <= set(evaluation)


def test_the_run_s_flags_are_an_hparams_session(trained):
    """TensorBoard's HParams tab: one session per run directory, holding its flags; its metrics
    are the eval/ and train/ scalars beside it."""
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    accumulator = EventAccumulator(str(trained["dir"]), size_guidance={"tensors": 0})
    accumulator.Reload()
    sessions = []
    for tag in accumulator.Tags()["tensors"]:
        plugin = accumulator.SummaryMetadata(tag).plugin_data
        if plugin.plugin_name == metadata.PLUGIN_NAME:
            data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
            if data.HasField("session_start_info"):
                sessions.append(data.session_start_info)
    (session,) = sessions
    assert session.group_name == trained["dir"].name
    flags = json.loads((trained["dir"] / "run_config.json").read_text())["flags"]
    assert session.hparams["learning_rate"].number_value == pytest.approx(flags["learning_rate"])
    assert session.hparams["optimizer"].string_value == flags["optimizer"] == "adamw"
    assert session.hparams["do_eval"].bool_value is True
    assert "eval_input_file" not in session.hparams  # None: not a value


def test_resume_continues_to_the_new_end(trained, data):
    lines = []
    metrics = run(flag_values(data["glob"], data["config"], trained["dir"],
                              num_train_steps=50, do_eval=False), log=lines.append)
    assert any("resumed from" in line and "at step 40" in line for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["50/50"]
    assert metrics["step"] == 50
    again = []
    assert run(flag_values(data["glob"], data["config"], trained["dir"], num_train_steps=50,
                           do_eval=False), log=again.append)["step"] == 50
    assert not [line for line in again if line.startswith("step ")], "nothing left to do"


def test_a_damaged_latest_checkpoint_is_skipped_on_resume(trained, data, tmp_path):
    """Its .data file lost: the resume goes back to the checkpoint before it, and says so; a
    killed save's leftover temp directory is removed."""
    output_dir = tmp_path / "run"
    shutil.copytree(trained["dir"], output_dir)
    latest = tf.train.latest_checkpoint(str(output_dir))
    for data_file in glob.glob(latest + ".data-*"):
        os.remove(data_file)
    (output_dir / "ckpt-40_temp").mkdir()  # a save killed after merging, before cleaning up
    lines = []
    metrics = run(flag_values(data["glob"], data["config"], output_dir, num_train_steps=45,
                              do_eval=False), log=lines.append)
    resumed = [line for line in lines if line.startswith("resumed from")]
    assert resumed and "skipped unreadable" in resumed[0] and os.path.basename(latest) in \
        resumed[0], lines
    assert metrics["step"] == 45
    assert not (output_dir / "ckpt-40_temp").exists()


def test_init_checkpoint_loads_weights_with_a_fresh_optimizer(trained, data, tmp_path):
    """--init_checkpoint given the first run's directory: its latest checkpoint."""
    lines = []
    run(flag_values(data["glob"], data["config"], tmp_path, num_train_steps=10,
                    init_checkpoint=str(trained["dir"]),
                    do_eval=False), log=lines.append)
    assert any(line.startswith("initialized from") for line in lines)
    first_loss = float(next(l for l in lines if l.startswith("step ")).split("loss=")[1]
                       .split()[0])
    trained_loss = float([l for l in trained["lines"] if l.startswith("step ")][-1]
                         .split("loss=")[1].split()[0])
    assert first_loss < trained_loss + 1.0, "starts near where the first run ended"


def test_init_checkpoint_that_does_not_fit_names_variables(trained, data, tmp_path):
    config = tmp_path / "bert_config.json"
    values = json.loads(open(data["config"]).read())
    values["intermediate_size"] = 48
    config.write_text(json.dumps(values))
    with pytest.raises(ValueError) as error:
        run(flag_values(data["glob"], str(config), tmp_path / "out",
                        init_checkpoint=tf.train.latest_checkpoint(str(trained["dir"]))))
    assert "--init_checkpoint" in str(error.value)
    assert "intermediate" in str(error.value)


def test_gradient_accumulation_and_mixed_precision_train(data, tmp_path):
    for policy in ("mixed_bfloat16", "mixed_float16"):
        metrics = run(flag_values(data["glob"], data["config"], tmp_path / policy,
                                  num_train_steps=10, gradient_accumulation_steps=2,
                                  mixed_precision=policy, do_eval=False), log=lambda _: None)
        assert metrics["step"] == 10 and np.isfinite(metrics["loss"])


def test_jit_compiled_step_trains(data, tmp_path):
    """The compiled (XLA) step, the proxy for TPU, on CPU."""
    metrics = run(flag_values(data["glob"], data["config"], tmp_path, num_train_steps=10,
                              jit_compile=True, do_eval=False), log=lambda _: None)
    assert metrics["step"] == 10 and np.isfinite(metrics["loss"])


def test_packed_sequences_train_compiled_and_go_on_unpacked(data, tmp_path):
    """--pack_sequences: the XLA step on packed rows, more sequences than rows, then the
    checkpoint goes on unpacked in another run (packing adds no weights)."""
    lines = []
    metrics = run(flag_values(data["glob"], data["config"], tmp_path / "packed",
                              num_train_steps=10, jit_compile=True, pack_sequences=True,
                              max_sequences_per_row=3), log=lines.append)
    assert metrics["step"] == 10 and np.isfinite(metrics["loss"])
    assert 0 <= metrics["eval_masked_lm_accuracy"] <= 1
    assert metrics["sequences_per_second"] >= metrics["examples_per_second"]
    more = run(flag_values(data["glob"], data["config"], tmp_path / "unpacked",
                           num_train_steps=10, do_eval=False,
                           init_checkpoint=str(tmp_path / "packed")), log=lines.append)
    assert more["step"] == 10 and np.isfinite(more["loss"])


def test_packed_rows_must_hold_one_sequence_s_predictions(data):
    with pytest.raises(ValueError, match="--max_predictions_per_row=3 is smaller than "
                                         "--max_predictions_per_seq=5"):
        flag_values(data["glob"], data["config"], "x", pack_sequences=True,
                    max_predictions_per_row=3)


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_refused_resume_leaves_the_run_as_it_was(trained, data, tmp_path):
    """Another config, vocab, max_seq_length or packing setting: refused before anything is
    written, each naming the flag; the run directory stays byte for byte."""
    output_dir = tmp_path / "run"
    shutil.copytree(trained["dir"], output_dir)
    before = snapshot(output_dir)
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**json.loads(open(data["config"]).read()), "hidden_size": 64}))
    other_vocab = other_vocab_data(data, tmp_path / "other_vocab")
    for overrides, message in (
            ({"bert_config_file": str(wider)}, r"--bert_config_file .* hidden_size 32 -> 64"),
            ({"input_file": other_vocab}, "--input_file: the data's vocab is not the one"),
            ({"max_seq_length": 64}, "max_seq_length=64"),
            ({"pack_sequences": True}, "--pack_sequences=True, but the run was trained with "
                                       "--pack_sequences=False")):
        values = {"bert_config_file": data["config"], "input_file": data["glob"], **overrides}
        with pytest.raises(ValueError, match=message):
            run(flag_values(values.pop("input_file"), values.pop("bert_config_file"),
                            output_dir, num_train_steps=60, **values), log=lambda _: None)
        assert snapshot(output_dir) == before, overrides


def test_eval_data_of_another_vocab_is_refused_before_training(data, tmp_path):
    other_vocab = other_vocab_data(data, tmp_path / "other_vocab")
    with pytest.raises(ValueError, match="--eval_input_file was made with another vocab"):
        run(flag_values(data["glob"], data["config"], tmp_path / "run",
                        eval_input_file=other_vocab))
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_dynamic_shards_need_their_manifest(tmp_path):
    glob_ = make_tiny_data(str(tmp_path), dynamic_masking=True)
    config = tiny_config_file(str(tmp_path))
    bare = tmp_path / "bare"
    bare.mkdir()
    for shard in glob.glob(glob_):
        shutil.copy(shard, bare)
    with pytest.raises(DataMismatchError, match="holds no masked positions .* no manifest"):
        run(flag_values(str(bare / "*.tfrecord"), config, tmp_path / "a"))
    manifest_file = tmp_path / "tiny_dynamic.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps({**manifest, "masking": "static"}))
    with pytest.raises(DataMismatchError, match="holds no masked positions .* says its masks "
                                                "are static"):
        run(flag_values(glob_, config, tmp_path / "b"))


def test_gzipped_and_plain_data_sets_train_together(data, tmp_path):
    """One --input_file of a gzipped data set and a plain one (compression read per file);
    a gzipped shard without .gz in its name is read too."""
    source = os.path.dirname(data["glob"])
    manifest = json.loads(open(os.path.join(source, "tiny.manifest.json")).read())
    (tmp_path / "gz").mkdir()
    for shard in manifest["shards"]:
        name = shard["file"].replace("tiny-", "tinygz-") + ".gz"
        with tf.io.TFRecordWriter(str(tmp_path / "gz" / name), "GZIP") as writer:
            for record in tf.data.TFRecordDataset(os.path.join(source, shard["file"])):
                writer.write(record.numpy())
        shard["file"] = name
    manifest.update(compression="GZIP", vocab={**manifest["vocab"], "file": "tinygz.vocab.txt"})
    (tmp_path / "gz" / "tinygz.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(os.path.join(source, "tiny.vocab.txt"), tmp_path / "gz" / "tinygz.vocab.txt")
    from bert_tf.data.schema import compression_type
    renamed = tmp_path / "renamed.tfrecord"
    shutil.copy(tmp_path / "gz" / manifest["shards"][0]["file"], renamed)
    assert compression_type(str(renamed)) == "GZIP"
    assert compression_type(glob.glob(data["glob"])[0]) == ""
    metrics = run(flag_values(f"{data['glob']},{tmp_path / 'gz' / 'tinygz-*'}", data["config"],
                              tmp_path / "run", num_train_steps=4, steps_per_loop=2,
                              do_eval=False), log=lambda _: None)
    assert metrics["step"] == 4 and np.isfinite(metrics["loss"])


def test_pretraining_refuses_a_single_segment_config(data, tmp_path):
    single = tmp_path / "single.json"
    single.write_text(json.dumps({**json.loads(open(data["config"]).read()),
                                  "type_vocab_size": 1}))
    with pytest.raises(ValueError, match="type_vocab_size=1, but --input_file pairs two"):
        run(flag_values(data["glob"], str(single), tmp_path / "run"))


def test_profile_steps_past_the_last_step_are_refused(data):
    with pytest.raises(ValueError, match="--profile_steps=45,50 ends past the last step"):
        flag_values(data["glob"], data["config"], "x", profile_steps="45,50")


def test_bad_flags_and_data(data, tmp_path):
    with pytest.raises(ValueError, match="--train_batch_size=15 does not divide into 1 "
                                         "replica.s. x --gradient_accumulation_steps=2"):
        flag_values("", "", "", train_batch_size=15, gradient_accumulation_steps=2).validate(1)
    with pytest.raises(ValueError, match="--num_warmup_steps=50 must be in"):
        flag_values("", "", "", num_warmup_steps=50).validate(1)
    with pytest.raises(DataMismatchError, match="the data holds max_seq_length=32"):
        run(flag_values(data["glob"], data["config"], tmp_path, max_seq_length=64))
    with pytest.raises(FileNotFoundError, match="--input_file: no files match"):
        run(flag_values(str(tmp_path / "none*"), data["config"], tmp_path))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="is not writable"):
        run(flag_values(data["glob"], data["config"], blocker / "run"))


def test_late_failures_are_caught_before_training(data, tmp_path):
    """Settings and data that would fail after minutes or hours of training fail at once."""
    from bert_tf import settings
    from bert_tf.training.pretraining import PretrainingConfig
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(ValueError, match=f"--learning_rate must be a finite number, got "
                                             f"{value}"):
            settings.from_flat(PretrainingConfig, {"learning_rate": float(value)})
    # a missing eval file: before the first step (no checkpoint written)
    with pytest.raises(FileNotFoundError, match="--eval_input_file: no files match"):
        run(flag_values(data["glob"], data["config"], tmp_path / "a",
                        eval_input_file=str(tmp_path / "missing-*")))
    assert not list((tmp_path / "a").glob("ckpt-*"))
    # data without a manifest whose ids do not fit the config's vocab_size
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for shard in io.expand_file_patterns(data["glob"]):
        shutil.copy(shard, foreign)
    small = BertConfig.from_json_file(data["config"])
    small = BertConfig(**{**small.to_dict(), "vocab_size": 100})
    small.to_json_file(tmp_path / "small.json")
    with pytest.raises(ValueError, match=r"the data holds token id \d+, outside vocab_size=100"):
        run(flag_values(str(foreign / "*.tfrecord"), str(tmp_path / "small.json"),
                        tmp_path / "b"))
    assert not list((tmp_path / "b").glob("ckpt-*"))


def test_second_writer_of_a_run_directory_is_refused(data, tmp_path):
    from bert_tf import locks
    output_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        output_dir.mkdir()
        (output_dir / ".bert_tf.lock").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": holder.pid, "started": "then",
             "command": "run_pretraining (the first)"}))
        with pytest.raises(locks.LockedError, match=rf"--output_dir {output_dir} is being written "
                                                    rf"by another process: pid {holder.pid}"):
            run(flag_values(data["glob"], data["config"], output_dir, num_train_steps=2,
                            num_warmup_steps=0))
        assert not list(output_dir.glob("ckpt-*")) and not (output_dir / "train").exists()
    finally:
        holder.kill()
        holder.wait()
    # its holder is gone (killed): the lock is stale and taken over
    metrics = run(flag_values(data["glob"], data["config"], output_dir, num_train_steps=2,
                              num_warmup_steps=0, do_eval=False, log_steps=1))
    assert metrics["step"] == 2 and not (output_dir / ".bert_tf.lock").exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    lines = []
    with pytest.raises(FloatingPointError) as error:
        run(flag_values(data["glob"], data["config"], tmp_path, num_train_steps=40,
                        learning_rate=1e12, clip_norm=0.0, num_warmup_steps=0,
                        save_checkpoints_steps=10, weight_decay_rate=0.0),
            log=lines.append)
    message = str(error.value)
    assert "loss is nan" in message.lower() or "loss is inf" in message.lower()
    assert "in steps" in message and "last good checkpoint" in message


@pytest.mark.slow
def test_sigterm_saves_within_the_grace_period_and_resumes(data, tmp_path):
    """Host calls of up to 100,000 steps (minutes each here) are cut to fit the grace period:
    SIGTERM at any moment ends the run within it, with a checkpoint at the step it names and
    the status a scheduler retries; Ctrl-C the same with 130."""
    output_dir = tmp_path / "run"
    grace = 12
    command = [sys.executable, "-m", "bert_tf.run_pretraining", f"--input_file={data['glob']}",
               f"--bert_config_file={data['config']}", f"--output_dir={output_dir}",
               "--max_seq_length=32", "--max_predictions_per_seq=5", "--train_batch_size=16",
               "--num_train_steps=100000", "--steps_per_loop=100000",
               "--save_checkpoints_steps=100000", "--log_steps=100000", "--num_warmup_steps=2",
               "--do_eval=false", f"--preemption_grace_secs={grace}"]

    def interrupted(signal_number, after_secs):
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        seen = []
        for line in process.stdout:  # wait until training is under way
            seen.append(line)
            if line.startswith(("fresh start", "resumed from")):
                break
        time.sleep(after_secs)
        sent = time.monotonic()
        process.send_signal(signal_number)
        out, _ = process.communicate(timeout=300)
        return process.returncode, "".join(seen) + out, time.monotonic() - sent

    code, out, seconds = interrupted(signal.SIGTERM, 8)
    assert code == 143, out
    assert seconds < grace, (seconds, out)  # the guarantee, not a speed figure
    step = int(out.split("SIGTERM: saved a checkpoint at step ")[1].split(";")[0])
    assert tf.train.latest_checkpoint(str(output_dir)) == f"{output_dir}/ckpt-{step}"
    # Ctrl-C: the same save, one line, the status of an interrupted program
    code, out, seconds = interrupted(signal.SIGINT, 3)
    assert code == 130, out
    assert f"resumed from {output_dir}/ckpt-{step} at step {step}" in out
    assert "SIGINT: saved a checkpoint at step" in out and "Traceback" not in out
    assert seconds < grace, (seconds, out)
    assert int(tf.train.latest_checkpoint(str(output_dir)).rsplit("-", 1)[1]) > step


@pytest.mark.slow
def test_a_run_killed_on_one_host_resumes_on_another_without_touching_the_lock(data, tmp_path):
    """A preempted VM's run (kill -9, under another hostname) leaves its lock behind; the same
    command on a new machine waits out the lock's lease, takes it over and resumes."""
    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "bert_tf.run_pretraining", f"--input_file={data['glob']}",
               f"--bert_config_file={data['config']}", f"--output_dir={output_dir}",
               "--max_seq_length=32", "--max_predictions_per_seq=5", "--train_batch_size=16",
               "--steps_per_loop=5", "--save_checkpoints_steps=10", "--log_steps=10",
               "--num_warmup_steps=2", "--do_eval=false"]
    env = {**os.environ, locks.LEASE_ENV: "4"}
    first = subprocess.Popen(
        ["unshare", "--uts", "sh", "-c", 'hostname preempted-vm && exec "$@"', "sh", *command,
         "--num_train_steps=100000"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:
            if line.startswith("step 20/"):  # ckpt-20 saved
                break
        first.kill()  # the VM is gone: no save, no exit handler, the lock stays
        first.wait()
    finally:
        first.kill()
    assert json.loads((output_dir / ".bert_tf.lock").read_text())["host"] == "preempted-vm"
    latest = tf.train.latest_checkpoint(str(output_dir))
    step = int(latest.rsplit("-", 1)[1])
    start = time.monotonic()
    second = subprocess.Popen(command + [f"--num_train_steps={step + 10}"], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    seen = []
    for line in second.stdout:
        seen.append(line)
        if line.startswith(f"step {step + 10}/"):
            print(f"restart on another host: first resumed log line (step {step + 10}) "
                  f"{time.monotonic() - start:.1f} s after the start (lease 4 s)")
    out = "".join(seen)
    assert second.wait(timeout=120) == 0, out
    assert "taking over a lock left by pid" in out and "on preempted-vm" in out, out
    assert f"resumed from {latest} at step {step}" in out
    assert tf.train.latest_checkpoint(str(output_dir)).endswith(f"ckpt-{step + 10}")
    assert not (output_dir / ".bert_tf.lock").exists()


MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
sys.path.insert(0, "tests")
from bert_tf.training.pretraining import run
from pretraining_fixtures import flag_values
data, config, out = sys.argv[1:4]
losses = {}
for strategy in ("one_device", "mirrored"):
    lines = []
    run(flag_values(data, config, f"{out}/{strategy}", num_train_steps=12, log_steps=2,
                    steps_per_loop=2, do_eval=False, distribution_strategy=strategy),
        log=lines.append)
    losses[strategy] = [float(l.split("loss=")[1].split()[0]) for l in lines
                        if l.startswith("step ")]
print(json.dumps(losses))
"""


@pytest.mark.slow
def test_mirrored_on_two_cpus_matches_one_device(data, tmp_path):
    config = tiny_config_file(str(tmp_path), dropout=0.0)  # dropout differs per replica
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, data["glob"], config,
                             str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(losses["mirrored"]) == 6
    np.testing.assert_allclose(losses["mirrored"], losses["one_device"], rtol=2e-3)


@pytest.mark.slow
def test_tensorboard_server_serves_the_scalars(trained):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tensorboard"), "--logdir",
         str(trained["dir"]), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, tags = time.time() + 90, {}
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                    tags = json.loads(r.read())
                if "train" in tags and "eval" in tags:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert TAGS <= set(tags.get("train", {})), tags
        assert "masked_lm_accuracy" in tags.get("eval", {})
        # the HParams tab's experiment: the run's flags as columns, its scalars as metrics
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/data/plugin/hparams/experiment",
            data=json.dumps({"experimentName": ""}).encode(),
            headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
        with urllib.request.urlopen(request, timeout=30) as r:
            experiment = json.loads(r.read())
        assert {"learning_rate", "train_batch_size", "optimizer"} <= {
            info["name"] for info in experiment["hparamInfos"]}
        assert {"group": "eval", "tag": "masked_lm_accuracy"} in [
            info["name"] for info in experiment["metricInfos"]]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes_train_and_resume(data, tmp_path):
    output_dir = tmp_path / "run"

    def launch(steps):
        processes = launch_workers(data, output_dir, [
            f"--num_train_steps={steps}", "--save_checkpoints_steps=5", "--log_steps=5",
            "--max_eval_steps=2"]).values()
        outputs = [p.communicate(timeout=400)[0] for p in processes]
        for process, out in zip(processes, outputs):
            assert process.returncode == 0, out[-3000:]
        return outputs

    chief, worker = launch(10)
    assert "step 10/10" in chief and "step 10/10" in worker
    assert tf.train.latest_checkpoint(str(output_dir)).endswith("ckpt-10")
    assert not [p for p in os.listdir(output_dir) if p.startswith(".worker")]
    assert os.path.isdir(output_dir / "train") and os.path.isdir(output_dir / "eval")
    events = glob.glob(str(output_dir / "train" / "events.out.tfevents.*"))
    assert len(events) == 1, "only the chief writes summaries"

    chief, worker = launch(15)
    assert "resumed from" in chief and "at step 10" in chief and "at step 10" in worker
    assert "step 15/15" in chief
    assert tf.train.latest_checkpoint(str(output_dir)).endswith("ckpt-15")


def test_corrupt_shard_is_named(data, tmp_path):
    for path in glob.glob(data["glob"]):
        raw = open(path, "rb").read()
        (tmp_path / os.path.basename(path)).write_bytes(
            raw[:200] + bytes(b ^ 0xFF for b in raw[200:260]) + raw[260:])
    prefix = os.path.basename(data["glob"]).split("-")[0]
    for suffix in (".manifest.json", ".vocab.txt"):
        src = os.path.join(os.path.dirname(data["glob"]), prefix + suffix)
        (tmp_path / (prefix + suffix)).write_bytes(open(src, "rb").read())
    with pytest.raises(DataMismatchError, match=r"corrupt shard .*tiny-0000[01]-of-00002"):
        run(flag_values(str(tmp_path / os.path.basename(data["glob"])), data["config"],
                        tmp_path / "run", num_train_steps=10))


def test_a_model_beyond_bert_trains_resumes_finetunes_and_exports(data, tmp_path):
    """A pre-norm, RMSNorm, GEGLU, bias-free, rotary encoder (BertConfig's options beyond
    BERT) goes through the same run: train, stop, resume, take its encoder into a task model,
    export."""
    from bert_tf import run_dir
    from bert_tf.export.runs import export_run
    from bert_tf.modeling import build_classifier, task_encoder

    base = BertConfig.from_json_file(data["config"])
    config_file = tmp_path / "modern_config.json"
    BertConfig.from_dict({**base.to_dict(), "layer_norm": "pre", "norm_type": "rms_norm",
                          "use_bias": False, "hidden_act": "geglu",
                          "position_embedding_type": "rope", "local_attention_window": 8,
                          "global_attention_every_n_layers": 2}).to_json_file(config_file)
    out = tmp_path / "run"
    flags = dict(num_train_steps=4, save_checkpoints_steps=2, steps_per_loop=2, log_steps=2,
                 do_eval=False)
    run(flag_values(data["glob"], str(config_file), out, **flags))
    lines = []
    run(flag_values(data["glob"], str(config_file), out, **{**flags, "num_train_steps": 6}),
        log=lines.append)
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["6/6"]
    files = run_dir.resolve(directory=str(out))
    assert BertConfig.from_json_file(files.bert_config_file).layer_norm == "pre"
    pretrainer, _ = run_dir.load_pretrainer(files)
    classifier = build_classifier(task_encoder(pretrainer), num_classes=3)
    inputs = {"input_word_ids": np.ones((2, 8), "int32"), "input_mask": np.ones((2, 8), "int32"),
              "input_type_ids": np.zeros((2, 8), "int32")}
    assert tuple(classifier(inputs).shape) == (2, 3)
    paths = export_run(files, str(tmp_path / "exports"), max_seq_length=16)
    served = tf.saved_model.load(paths["bert_encoder"]).signatures["serving_default"](
        **{k: tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(served["pooled_output"],
                               pretrainer.encoder(inputs)["pooled_output"], atol=1e-5)


def test_masked_lm_only_on_a_time_budget_trains_resumes_and_evaluates(tmp_path):
    """A ModernBERT-shaped encoder (no segment table, rotary, local layers) trained with
    --next_sentence=false on single-segment data masked as read at 30%, for a budget of
    training time: no next-sentence head or figures, the schedule over the budget, the clock
    kept in the checkpoints (a resumed run goes on from its time), the sidecar evaluator stops
    at the step the budget ended at, and the exported files load without the head."""
    from bert_tf import run_dir
    from bert_tf.training.continuous_eval import continuous_eval

    (tmp_path / "data").mkdir()
    single = make_tiny_data(str(tmp_path / "data"), dynamic_masking=True, next_sentence=False)
    config = tiny_config_file(str(tmp_path / "data"), **MODERNBERT)  # ModernBERT's encoder
    out = tmp_path / "run"
    flags = dict(num_train_steps=None, num_warmup_steps=None, next_sentence=False,
                 masked_lm_prob=0.3, train_budget="5s", warmup_fraction=0.2,
                 save_checkpoints_steps=25, steps_per_loop=5, log_steps=5)
    with pytest.raises(ValueError, match="single segments .* pass --next_sentence=false"):
        run(flag_values(single, config, out, **{**flags, "next_sentence": True}))
    lines = []
    first = run(flag_values(single, config, out, **flags), log=lines.append)
    assert "masked_lm_prob=0.3" in "\n".join(lines)
    assert not any("next_sentence" in key for key in first), first
    assert 0 <= first["eval_masked_lm_accuracy"] <= 1
    record = run_dir.read_record(str(out))
    assert record["last_step"] == first["step"] > 0
    assert record["flags"]["train_budget"] == "5s"
    steps = [line for line in lines if line.startswith("step ")]
    # "step N", no "/total" (N is 1 where compiling the first call spent the budget)
    assert re.match(r"step \d+ ", steps[0]) and "training_seconds=" in steps[0], steps[0]

    lines = []
    # The budget grows on resume by more than the resumed run's compilation, which is training
    # time (as the first run's, whose time is mostly its compilation: seconds, more on a loaded
    # machine), so that steps are left to train.
    spent = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out))).get_tensor(
        "clock/seconds/.ATTRIBUTES/VARIABLE_VALUE")
    budget = math.ceil(2 * spent + 4)
    second = run(flag_values(single, config, out, **{**flags, "train_budget": f"{budget}s"}),
                 log=lines.append)
    assert f"resumed from {out}/ckpt-{first['step']}" in "\n".join(lines)
    assert second["step"] > first["step"]
    seconds = scalars(out / "train")["training_seconds"]
    rates = dict(scalars(out / "train")["learning_rate"])
    resumed = [value for step, value in seconds if step > first["step"]]
    assert resumed[0] > spent >= 5 and resumed[-1] >= budget  # the clock went on
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out)))
    assert reader.get_tensor("clock/seconds/.ATTRIBUTES/VARIABLE_VALUE") == resumed[-1]
    assert all(b > a for (_, a), (_, b) in zip(seconds, seconds[1:]))
    assert rates[second["step"]] == pytest.approx(0.0, abs=1e-9)  # decayed at the budget's end
    assert 0 < max(rates.values()) <= 3e-3
    assert run_dir.read_record(str(out))["last_step"] == second["step"]

    # a budget of steps cannot take over the clock of a budget of time
    with pytest.raises(ValueError, match="a run keeps a budget of time, or of steps"):
        run(flag_values(single, config, out, **{**flags, "train_budget": "100steps"}))

    # the sidecar evaluates the run's checkpoints and exits at the step the budget ended at
    evaluated = continuous_eval(flag_values(single, config, out, **{
        **flags, "mode": "continuous_eval", "eval_timeout_secs": 60}), log=lambda *_: None,
        poll_secs=0.2)
    assert max(evaluated) == second["step"]
    pretrainer, _ = run_dir.load_pretrainer(run_dir.resolve(directory=str(out)))
    assert pretrainer.next_sentence is None
    ones = np.ones((2, 8), "int32")
    outputs = pretrainer({"input_word_ids": ones, "input_mask": ones, "input_type_ids": 0 * ones,
                          "masked_lm_positions": ones[:, :3]})
    assert list(outputs) == ["masked_lm_logits"]
