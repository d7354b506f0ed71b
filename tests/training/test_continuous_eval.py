"""In-loop evaluation of each checkpoint, the sidecar evaluator (--mode=continuous_eval) and the
best checkpoint (best/), on tiny runs."""

import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bert_tf import run_dir
from bert_tf.training import evaluation
from bert_tf.training.continuous_eval import continuous_eval
from bert_tf.training.pretraining import run
from pretraining_fixtures import flag_values, make_tiny_data, other_vocab_data, tiny_config_file

STEPS = [10, 20, 30, 40]


class Killed(BaseException):
    """Stands for a kill: nothing in the job catches it."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 40-step run twice: evaluated in the loop at each checkpoint (every 10 steps),
    and with --do_eval=false, for the sidecar."""
    directory = tmp_path_factory.mktemp("data")
    data = {"glob": make_tiny_data(str(directory)), "config": tiny_config_file(str(directory))}

    def values(output_dir, **overrides):
        return flag_values(data["glob"], data["config"], output_dir, save_checkpoints_steps=10,
                           keep_checkpoint_max=5, **overrides)

    in_loop, alone = tmp_path_factory.mktemp("in_loop"), tmp_path_factory.mktemp("alone")
    lines = []
    run(values(in_loop), log=lines.append)
    run(values(alone, do_eval=False))
    return {"in_loop": in_loop, "alone": alone, "lines": lines, "values": values, "data": data}


def scalars(event_dir):
    accumulator = EventAccumulator(str(event_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                  for e in accumulator.Tensors(tag)] for tag in accumulator.Tags()["tensors"]}


def model_weights(out, checkpoint):
    pretrainer, _ = run_dir.load_pretrainer(run_dir.resolve(checkpoint, str(out)))
    return pretrainer.get_weights()


def test_the_loop_evaluates_each_checkpoint_and_keeps_the_best(runs):
    out = runs["in_loop"]
    curve = dict(scalars(out / "eval")["masked_lm_accuracy"])
    assert sorted(curve) == STEPS
    assert [line.split(":")[0] for line in runs["lines"] if line.startswith("eval at")] == [
        f"eval at step {step}" for step in STEPS]
    info = json.loads((out / "best" / "info.json").read_text())
    best_step = max(STEPS, key=lambda step: (curve[step], -step))  # the first of equal ones
    assert info["step"] == best_step and info["metric"] == "masked_lm_accuracy"
    assert info["value"] == pytest.approx(curve[best_step], abs=1e-6)
    # best/ holds that step's model weights, whatever max_to_keep does to the run's own
    best = tf.train.latest_checkpoint(str(out / "best"))
    assert best.endswith(f"ckpt-{best_step}")
    kept, trained = (model_weights(out, p) for p in (best, str(out / f"ckpt-{best_step}")))
    last = model_weights(out, str(out / "ckpt-40"))
    assert len(kept) == len(trained) > 10
    for value, expected in zip(kept, trained):
        np.testing.assert_array_equal(value, expected)
    assert best_step == 40 or any(not np.array_equal(a, b) for a, b in zip(kept, last))


def test_the_sidecar_writes_the_in_loop_curves_through_a_deletion_and_a_kill(runs):
    out = runs["alone"]
    assert not (out / "eval").exists() and not (out / "best").exists()
    # max_to_keep deleted ckpt-20 after the sidecar listed it
    for path in out.glob("ckpt-20.*"):
        path.unlink()
    before = sorted(p.name for p in out.glob("ckpt-*"))
    sidecar = runs["values"](out, mode="continuous_eval", eval_timeout_secs=5)

    def killed_after_step_30(line):
        lines.append(line)
        if line.startswith("eval at step 30"):
            raise Killed()

    lines = []
    with pytest.raises(Killed):
        continuous_eval(sidecar, log=killed_after_step_30, poll_secs=0.1)
    assert any("ckpt-20 was deleted before it could be evaluated" in line for line in lines)
    assert json.loads((out / "continuous_eval.json").read_text()) == {
        "evaluated": [10, 30], "skipped": [20]}

    lines = []
    results = continuous_eval(sidecar, log=lines.append, poll_secs=0.1)
    assert sorted(results) == [40]  # after the restart, only what was left
    assert "going on after step 30" in " ".join(lines)
    assert "the run's last step (40) is evaluated; exiting" in lines[-1]

    sidecar_curves, in_loop_curves = scalars(out / "eval"), scalars(runs["in_loop"] / "eval")
    for tag in ("loss", "masked_lm_accuracy", "next_sentence_accuracy", "masked_lm_loss"):
        points = dict(sidecar_curves[tag])
        assert [step for step, _ in sidecar_curves[tag]] == [10, 30, 40]  # each once
        for step, value in in_loop_curves[tag]:
            if step in points:
                assert points[step] == pytest.approx(value, abs=1e-5), (tag, step)
    info = json.loads((out / "best" / "info.json").read_text())
    curve = dict(sidecar_curves["masked_lm_accuracy"])
    assert info["step"] == max(curve, key=lambda step: (curve[step], -step))
    # the sidecar wrote none of the run's checkpoints
    assert sorted(p.name for p in out.glob("ckpt-*")) == before
    assert tf.train.latest_checkpoint(str(out)).endswith("ckpt-40")


def test_the_sidecar_follows_a_short_run_by_a_relative_path_with_its_own_vocab_only(
        runs, tmp_path, monkeypatch):
    """A sidecar given no schedule flags (its recipe's warmup is longer than the run) and a
    relative --output_dir evaluates every checkpoint there (a state that skipped them as
    missing is mended); eval data made with another vocab of the same size is refused, as
    in-loop evaluation refuses it."""
    run_copy = tmp_path / "runs" / "short"
    shutil.copytree(runs["alone"], run_copy,
                    ignore=shutil.ignore_patterns("eval", "best", "continuous_eval.json"))
    present = sorted(int(p.name.split("-")[1].split(".")[0])
                     for p in run_copy.glob("ckpt-*.index"))
    # what a sidecar that joined the run's paths twice wrote: every checkpoint "skipped"
    (run_copy / "continuous_eval.json").write_text(json.dumps(
        {"evaluated": [], "skipped": STEPS}))
    monkeypatch.chdir(tmp_path)
    sidecar = runs["values"]("runs/short", mode="continuous_eval", eval_timeout_secs=5,
                             num_train_steps=None, num_warmup_steps=None)
    assert sidecar.num_warmup_steps > 40  # the recipe's own, longer than the run
    other = other_vocab_data(runs["data"], tmp_path / "other_vocab")
    with pytest.raises(ValueError, match=r"--eval_input_file was made with another vocab than "
                                         r"the run's training data"):
        continuous_eval(dataclasses.replace(sidecar, eval_input_file=other),
                        log=lambda _: None, poll_secs=0.1)
    lines = []
    results = continuous_eval(sidecar, log=lines.append, poll_secs=0.1)
    assert sorted(results) == present and present[-1] == 40, lines
    assert not any("deleted before" in line for line in lines if "ckpt-20" not in line)
    assert not any("WARNING" in line for line in lines)
    assert [step for step, _ in scalars(run_copy / "eval")["masked_lm_accuracy"]] == present


def test_the_sidecar_waits_and_gives_up_naming_what_it_waited_for(runs, tmp_path):
    sidecar = runs["values"](tmp_path, mode="continuous_eval", eval_timeout_secs=1)
    with pytest.raises(TimeoutError, match="run_config.json"):
        continuous_eval(sidecar, log=lambda line: None, poll_secs=0.1)
    for name in ("bert_config.json", "run_config.json", "vocab.txt"):
        shutil.copy(runs["alone"] / name, tmp_path / name)
    lines = []
    with pytest.raises(TimeoutError, match="a checkpoint after step 0"):
        continuous_eval(sidecar, log=lines.append, poll_secs=0.1)
    assert any(line.startswith("waiting for a checkpoint after step 0") for line in lines)
    with pytest.raises(ValueError, match="continuous_eval"):
        run(sidecar)  # the training job is not the sidecar


def test_best_checkpoint_keeps_the_best_by_its_metric(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    accuracy = evaluation.BestCheckpoint(str(tmp_path / "a"), "masked_lm_accuracy", model)
    kept = [accuracy.update(step, {"masked_lm_accuracy": value, "loss": 1.0})
            for step, value in ((1, 0.1), (2, 0.3), (3, 0.2), (4, 0.3))]
    assert kept == [True, True, False, False]
    assert evaluation.read_best(str(tmp_path / "a"))["step"] == 2
    assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path / "a" / "best"))) == "ckpt-2"
    assert len(list((tmp_path / "a" / "best").glob("ckpt-*.index"))) == 1
    loss = evaluation.BestCheckpoint(str(tmp_path / "b"), "loss", model)
    assert [loss.update(step, {"loss": value}) for step, value in ((1, 3.0), (2, 2.0), (3, 2.5))
            ] == [True, True, False]
    # a restart goes on from info.json; another metric is refused, naming both
    again = evaluation.BestCheckpoint(str(tmp_path / "b"), "loss", model)
    assert not again.update(4, {"loss": 2.1}) and again.update(5, {"loss": 1.9})
    with pytest.raises(ValueError, match="--best_checkpoint_metric=masked_lm_accuracy.*by loss"):
        evaluation.BestCheckpoint(str(tmp_path / "b"), "masked_lm_accuracy", model)
    with pytest.raises(ValueError, match="not one of the evaluation's metrics"):
        again.update(6, {"accuracy": 1.0})
    # a damaged info.json: refused when the run starts, naming the file
    info = tmp_path / "b" / "best" / "info.json"
    whole = info.read_text()
    for damaged in (whole[:len(whole) // 2], json.dumps({"metric": "loss"}),
                    json.dumps({"metric": "loss", "value": "low"}), "[]"):
        info.write_text(damaged)
        with pytest.raises(ValueError, match=r"best/info.json: (not valid JSON|expected)"):
            evaluation.BestCheckpoint(str(tmp_path / "b"), "loss", model)


def test_export_and_init_checkpoint_take_the_best(runs):
    out = str(runs["in_loop"])
    step = json.loads((runs["in_loop"] / "best" / "info.json").read_text())["step"]
    for files in (run_dir.resolve("best", out), run_dir.resolve(os.path.join(out, "best")),
                  run_dir.resolve(os.path.join(out, "best", f"ckpt-{step}"))):
        assert files.checkpoint.endswith(os.path.join("best", f"ckpt-{step}"))
        assert files.bert_config_file == os.path.join(out, "bert_config.json")
    pretrainer, _ = run_dir.load_pretrainer(run_dir.resolve("best", out))
    assert pretrainer.count_params() > 0
    with pytest.raises(ValueError, match="--checkpoint=best: .* has no best checkpoint"):
        run_dir.resolve("best", str(runs["alone"] / "nothing"))
