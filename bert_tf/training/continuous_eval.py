"""The sidecar evaluator: `run_pretraining --mode=continuous_eval`.

    python -m bert_tf.run_pretraining --mode=continuous_eval --output_dir=gs://b/runs/base \
        --eval_input_file='gs://b/tfrecords/eval-*'

Runs on another machine (or the CPU of the training host) while the run trains with
`--do_eval=false`: it waits for each checkpoint the run saves, evaluates it on the same batches the
training loop's in-loop evaluation would use, writes the scalars to the run's `eval/` (the same
curves as in-loop evaluation) and keeps `best/`, and exits once the run's last step is evaluated.

It reads the run's model, data settings and `num_train_steps` from the run directory
(bert_config.json, run_config.json), so it needs only --output_dir; it never writes the run's
checkpoints. Its progress is `continuous_eval.json` in the run directory: killed and started
again, it goes on after the last checkpoint it evaluated. A checkpoint that max_to_keep deletes
before it is read is skipped, and said so.
"""

import dataclasses
import os
import time

import keras
import tensorflow as tf

from bert_tf import io, locks, run_dir
from bert_tf.config import BertConfig
from bert_tf.data.pretraining_data import PretrainingData, open_eval_data
from bert_tf.modeling import build_pretrainer
from bert_tf.modeling import objective
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies
from bert_tf.training.evaluation import Evaluator
from bert_tf.training.pretraining import (PretrainingConfig, best_checkpoint,
                                          make_distributed_dataset)
from bert_tf.training.summaries import TrainingLog, format_metrics

# What the sidecar takes from the run it follows: the model's inputs and the data stream's
# settings (the eval batches depend on them) and where the run ends.
# (num_warmup_steps only so that the run's own schedule passes the settings' checks.)
FROM_THE_RUN = ("max_seq_length", "max_predictions_per_seq", "pack_sequences",
                "max_sequences_per_row", "max_predictions_per_row", "random_seed",
                "eval_batch_size", "max_eval_steps", "mixed_precision", "num_train_steps",
                "num_warmup_steps", "next_sentence", "masked_lm_prob", "train_budget",
                "warmup_fraction")


def _ended(output_dir, last_done):
    """"ended" once the run notes that it ended at or before `last_done`, else None."""
    last = run_dir.read_record(output_dir).get("last_step")
    return "ended" if last is not None and last <= last_done else None


def checkpoint_steps(output_dir) -> dict:
    """{step: checkpoint prefix} of the run's checkpoints, as its `checkpoint` file lists them."""
    state = tf.train.get_checkpoint_state(output_dir)
    paths = list(state.all_model_checkpoint_paths) if state else []  # joined to output_dir
    steps = {}
    for path in paths:
        try:
            steps[int(path.rsplit("-", 1)[1])] = path
        except (IndexError, ValueError):
            continue  # not ckpt-STEP: not one of a run's
    return steps


def wait_for(predicate, what, timeout, poll_secs, log):
    """Polls `predicate` until it returns a value; a TimeoutError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"--mode=continuous_eval: waited {timeout} s "
                               f"(--eval_timeout_secs) for {what}; exiting")
        if not said:
            log(f"waiting for {what}")
            said = True
        time.sleep(poll_secs)


def continuous_eval(config: PretrainingConfig, log=print, poll_secs=10.0):
    """Evaluates the checkpoints of the run in `config.output_dir` as they appear, until its
    last step; returns {step: metrics} of the checkpoints this call evaluated."""
    output_dir = config.output_dir
    record = wait_for(lambda: run_dir.read_record(output_dir).get("flags"),
                      f"the run's {run_dir.RunDir(output_dir).record}",
                      config.eval_timeout_secs, poll_secs, log)
    run = dataclasses.replace(config, **{name: record[name] for name in FROM_THE_RUN
                                         if name in record})
    eval_input = run.eval_input_file or record.get("eval_input_file") or record.get("input_file")
    if not eval_input:
        raise ValueError("--mode=continuous_eval: give --eval_input_file (the run records no "
                         "input files)")
    bert_config = BertConfig.from_json_file(run_dir.RunDir(output_dir).config)
    strategy, _ = strategies.start(config.distribution_strategy, config.tpu,
                                   config.worker_wait_secs, log)
    run.validate(strategy.num_replicas_in_sync)
    eval_files, _, eval_masking = open_eval_data(
        eval_input, run.max_seq_length, run.max_predictions_per_seq, bert_config.vocab_size,
        run_dir.RunDir(output_dir).config,
        run_dir.read_record(output_dir).get("data_manifest"),
        f"the run's training data ({run_dir.RunDir(output_dir).record})")
    if run.masked_lm_prob is not None and eval_masking is not None:  # the run's rate
        eval_masking = eval_masking._replace(masked_lm_prob=run.masked_lm_prob)
    data = PretrainingData([], None, None, eval_files, eval_masking)  # evaluation only
    precision = precision_lib.resolve(run.mixed_precision, strategy)
    log(f"precision: {precision.policy} ({precision.reason})")
    keras.utils.set_random_seed(run.random_seed)  # the eval batches' order, as in training
    keras.mixed_precision.set_global_policy(precision.policy)
    with strategy.scope():
        model = build_pretrainer(bert_config, packed=run.pack_sequences,
                                 next_sentence=run.next_sentence)
    reader = tf.train.Checkpoint(model=model)
    evaluator = Evaluator(strategy, model, objective)
    dataset = make_distributed_dataset(strategy, run, data, data.eval_files,
                                       run.eval_batch_size, log=log)
    best = best_checkpoint(run, model, strategy)
    report = TrainingLog(output_dir, run.max_eval_steps, log,
                         write_summaries=strategies.is_chief(strategy))
    state_file = run_dir.RunDir(output_dir).continuous_eval_state
    with locks.output_lock(os.path.join(output_dir, ".continuous_eval.lock"),
                           f"--mode=continuous_eval --output_dir {output_dir}"):
        state = (io.read_json(state_file) if tf.io.gfile.exists(state_file)
                 else {"evaluated": [], "skipped": []})
        present = checkpoint_steps(output_dir)
        again = sorted(s for s in state["skipped"]
                       if s in present and s > max(state["evaluated"], default=0))
        if again:  # skipped, but there after all (a sidecar that looked in the wrong place)
            state["skipped"] = [s for s in state["skipped"] if s not in again]
            log(f"checkpoint(s) of step(s) {', '.join(map(str, again))} were skipped before "
                f"but are there: evaluating them")
        last_done = max(state["evaluated"] + state["skipped"], default=0)
        if last_done:
            log(f"going on after step {last_done} ({state_file})")
        results = {}
        while True:
            held = run_dir.read_record(output_dir)  # a resumed run may have moved its end;
            end = held.get("last_step") or held.get("flags", {}).get(  # a budget of time ends
                "num_train_steps", run.num_train_steps)  # at a step it notes when there
            if last_done >= end:
                log(f"the run's last step ({end}) is evaluated; exiting")
                return results
            pending = wait_for(
                lambda: {s: p for s, p in checkpoint_steps(output_dir).items() if s > last_done}
                or _ended(output_dir, last_done),
                f"a checkpoint after step {last_done} in {output_dir}", config.eval_timeout_secs,
                poll_secs, log)
            if pending == "ended":  # a budget of time ran out at the step evaluated last
                continue
            for step, path in sorted(pending.items()):
                try:
                    if not tf.io.gfile.exists(path + ".index"):  # (a failed read would log
                        raise tf.errors.NotFoundError(None, None,  # every unread variable)
                                                      f"{path}.index: no such file")
                    reader.read(path).expect_partial()
                except (tf.errors.NotFoundError, tf.errors.DataLossError) as e:
                    log(f"{path} was deleted before it could be evaluated (the run's "
                        f"--keep_checkpoint_max?): skipped ({io.one_line(e.message)})")
                    state["skipped"].append(step)
                else:
                    metrics = evaluator.evaluate(dataset, run.max_eval_steps)
                    report.evaluate(step, metrics)
                    said = []
                    if best is not None:
                        best.update(step, metrics, said.append)
                    state["evaluated"].append(step)
                    results[step] = metrics
                last_done = step
                io.write_json(state_file, state)  # right after the summaries: a kill in between
                if step in results:  # repeats at most this one point of the curve
                    for line in [f"eval at step {step}: {format_metrics(metrics)}", *said]:
                        log(line)
