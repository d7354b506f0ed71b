"""One finetuning job for every task: `run(task, config)` owns the order, a task supplies what is
its own; the settings (job_settings.py), the encoder source (encoder_source.py) and the fitting
(fitting.py) are modules of their own.

    encoder source -> seed and precision -> the task's data -> model -> fit -> save the run
    -> evaluate -> predict -> export

A task (classification.py, question_answering.py, tagging.py) is an object with the `Task`
shape: its name (a name of `bert_tf.tasks.SPECS`) and five methods: `read` its files into
batches (`TaskData`), `compile_args` (losses, metrics), `evaluate` a model (pure: metrics, no
files), `score` its metrics and `predict` (the files of the kept model). Every task is evaluated
by its own `evaluate` after every epoch (`EpochEvaluation`), and its best epoch is chosen by
its `score` (a GLUE task's metric, entity F1, SQuAD's F1; not Keras's). The model is `modeling.build_task_model(task.name,
...)`; the export is `export.tasks.export_task(ExportRequest(task.name, ...), ...)`. Every
job's `--output_dir` is a run directory (bert_tf.run_dir): checkpoint, bert_config.json,
vocab.txt, run_config.json, TensorBoard events and best/ (the kept epoch), so it can be
exported again, converted, or used as `--init_checkpoint`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Protocol

import keras

from bert_tf import io, locks, run_dir
from bert_tf.finetuning.encoder_source import (EncoderSource, continues, encoder_source,
                                               load_encoder, source_vocab)
from bert_tf.finetuning.fitting import (EpochEvaluation, best_weights_file, compile_model,
                                        distribute, fit, keep_best, set_precision)
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.finetuning.resume import Backup
from bert_tf.settings import flat_dict
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies
from bert_tf.training.summaries import format_metrics


# === The task shape ===

@dataclasses.dataclass
class TaskData:
    """What a task's `read` gives the harness."""
    labels: list  # classes or tags in id order; [] for question answering
    train: Any = None  # tf.data.Dataset of (inputs, targets[, weights]) batches, repeated; None:
    # no training (a finetuned model only predicts)
    steps_per_epoch: int = 0
    evaluation: Any = None  # what the task's `evaluate` scores (its dev sets, ...)
    prediction: Any = None  # what the task's `predict` answers (its test sets, ...)
    record: dict = dataclasses.field(default_factory=dict)  # more for run_config.json


class Task(Protocol):
    name: str  # a name of bert_tf.tasks.SPECS; run_config.json's "task"

    def read(self, source: EncoderSource, vocab, log) -> TaskData:
        """Reads and checks the task's files (errors name them) into batches."""

    def compile_args(self) -> dict:
        """`model.compile` arguments besides the optimizer: loss, metrics."""

    def evaluate(self, model, data: TaskData, log) -> dict | None:
        """Metrics of the model on `data.evaluation` (None: nothing to evaluate); writes
        nothing. Run after every epoch (`fitting.EpochEvaluation`)."""

    def score(self, metrics) -> float:
        """What the best epoch is chosen by (larger is better): `bert_tf.tasks`' `score`."""

    def predict(self, model, data: TaskData, log) -> str | None:
        """Writes the kept model's predictions for `data.prediction`, if any; returns the
        files written."""


def run(config: FinetuningConfig, task: Task, log=print):
    """The job: returns the evaluation metrics with "export" (the text-in SavedModel's path)
    and "labels". Under multi_worker_mirrored every worker trains and evaluates; the chief
    writes --output_dir, predicts and exports, the others keep their files in their own
    OUTPUT_DIR/.worker_N_tmp, removed when they finish."""
    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF op.
    strategy, chosen = distribute(config, log)
    with (strategies.own_output_dir(config.output_dir, strategy) as own,
          locks.run_lock(own)):
        return _run(dataclasses.replace(config, output_dir=own), task, strategy, chosen, log)


def _run(config: FinetuningConfig, task: Task, strategy, chosen, log):
    import tensorflow as tf

    from bert_tf.export.serving import ExportRequest
    from bert_tf.export.tasks import export_task
    from bert_tf.modeling import build_task_model, task_encoder
    chief = strategies.is_chief(strategy)
    backup = Backup(config, log)  # a changed command is refused before anything is written
    source = encoder_source(config)
    vocab = source_vocab(source, config.allow_case_mismatch)
    source.check_sequence_length(config.max_seq_length)
    tf.io.gfile.makedirs(config.output_dir)
    keras.utils.set_random_seed(config.random_seed)
    precision = set_precision(config, strategy, log)
    data = task.read(source, vocab, log)
    if data.labels:
        io.write_json(run_dir.RunDir(config.output_dir).labels, data.labels)
    continued = continues(source, task.name, data.labels)
    if data.train is None and not continued:
        given = config.init_checkpoint or config.encoder_saved_model
        raise ValueError(f"predicting without training needs a finetuned {task.name} model "
                         f"(the --output_dir of its job, or a converted one); {given} is not")
    with strategy.scope():
        if continued:
            model, _ = run_dir.load_model(source.checkpoint, flag="--init_checkpoint")
        else:
            model = build_task_model(task.name, load_encoder(source), data.labels)
        task_encoder(model).set_remat(config.remat)
        if data.train is not None:
            total_steps = int(data.steps_per_epoch * config.num_train_epochs)
            compile_model(model, config, total_steps, **task.compile_args())
    epochs = None
    if data.train is not None:
        epochs = EpochEvaluation(lambda: task.evaluate(model, data, log), task.score,
                                 best_weights_file(config.output_dir), config.keep_best)
        backup.keep(epochs)
        fit(model, data.train, config, data.steps_per_epoch, log=log, evaluation=epochs,
            backup=backup)
    record = {"task": task.name, "labels": data.labels, **data.record,
              "flags": flat_dict(config), "precision": precision.as_record(),
              "strategy": chosen}
    save_run(model, task_encoder(model).config, source, config.output_dir, **record)
    if data.train is not None:
        keep_best(model, config.output_dir, epochs, data.steps_per_epoch)

    if epochs is not None and epochs.chosen is not None:  # the kept epoch's evaluation
        metrics = epochs.results()
        log(f"kept epoch {metrics['epoch']} of {len(epochs.scores)} (score "
            f"{metrics['score']:.4f}{', the best' if config.keep_best else ', the last'})")
    else:
        metrics = timed(log, "evaluation", lambda: task.evaluate(model, data, log)) or {}
        if metrics:
            metrics = {**metrics, "score": task.score(metrics)}
    if metrics:
        io.write_json(run_dir.RunDir(config.output_dir).eval_results, metrics)
        log("eval: " + format_metrics(metrics))
    exported = None
    if chief:  # the chief predicts and exports; the other workers wait for it
        timed(log, "prediction", lambda: task.predict(model, data, log))
        served = serving_model(model, task.name, data.labels, precision.policy,
                               config.serving_precision, log)
        exported = export_task(
            ExportRequest(task.name, served, vocab, source.do_lower_case,
                          config.max_seq_length, record),
            run_dir.RunDir(config.output_dir).export(config.model_name))
        log(f"exported: {exported}")
    strategies.wait_for_all(strategy)
    backup.remove()  # finished: the same command again starts over
    return {**metrics, "export": exported, "labels": data.labels}


def timed(log, what, step):
    """Runs `step()`, saying when `what` starts and how long it took; a step that returns None
    had nothing to do."""
    start = time.monotonic()
    log(f"{what}: started")
    result = step()
    log(f"{what}: nothing to do" if result is None
        else f"{what}: done in {time.monotonic() - start:.1f}s")
    return result


# === The run's files ===

def serving_model(model, task, labels, trained_policy, serving_precision, log=print):
    """The model to export: `model` when it trained in the policy of `serving_precision`,
    else the same weights in a model built in that policy (a run trained in mixed_bfloat16
    serves in float32 unless asked otherwise)."""
    from bert_tf.modeling import task_encoder

    policy = precision_lib.SERVING_POLICIES[serving_precision]
    if policy == trained_policy:
        return model
    with precision_lib.global_policy(policy):
        copy = run_dir.build_model(task_encoder(model).config, task, labels)
    copy.set_weights(model.get_weights())
    log(f"serving precision: {serving_precision} (trained in {trained_policy}; "
        f"--serving_precision)")
    return copy


def save_run(model, bert_config, source: EncoderSource, output_dir, **record):
    """The finetuned model as a run directory (ckpt-0 of the whole model, bert_config.json,
    vocab.txt, run_config.json with `record`, its "task" and "labels" among them):
    --init_checkpoint of a later job, `python -m bert_tf.export --output_dir` for its text-in
    export, or convert_checkpoint's input."""
    import tensorflow as tf

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), output_dir, 1)
    manager.save(checkpoint_number=0)
    run_dir.write(output_dir, bert_config, source.vocab_file,
                  do_lower_case=source.do_lower_case, **record)


def write_tsv(path, header, rows) -> None:
    """A tab-separated file with a header row, written through a temporary file."""
    io.write_file(path, "".join("\t".join(map(str, row)) + "\n" for row in [header, *rows]))
