"""One finetuning job for every task: `run(task, config)` owns the order, a task supplies what is
its own.

    encoder source -> seed and precision -> the task's data -> model -> fit -> save the run
    -> evaluate -> predict -> export

A task (classification.py, question_answering.py, tagging.py) is an object with the `Task`
shape: its name (a name of `bert_tf.tasks.SPECS`), the validation metric whose best epoch is kept,
and four methods: `read` its files into batches (`TaskData`), `compile_args` (losses, metrics),
`evaluate` and `predict` a trained model. A task with a `score(metrics)` method is evaluated by
its own `evaluate` after every epoch (`EpochEvaluation`), and its best epoch is chosen by that
score (a GLUE task's metric, not Keras's). The model is `modeling.build_task_model(task.name,
...)`; the export is `export.tasks.export_task(ExportRequest(task.name, ...), ...)`. Every
job's `--output_dir` is a run directory (bert_tf.run_dir): checkpoint, bert_config.json,
vocab.txt, run_config.json, TensorBoard events and best/ (the kept epoch), so it can be
exported again, converted, or used as `--init_checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import weakref
from typing import Any, Protocol

import keras

from bert_tf import io, locks, run_dir
from bert_tf.config import BertConfig
from bert_tf.finetuning.progress import Progress
from bert_tf.finetuning.resume import Backup
from bert_tf.settings import Settings, flat_dict, setting
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies
from bert_tf.training.summaries import format_metrics


@dataclasses.dataclass(frozen=True)
class EncoderSettings(Settings):
    """Where a job's encoder comes from, with its tokenizer (`encoder_source` resolves them):
    the flags of every job that starts from a trained encoder."""
    init_checkpoint: str | None = setting(None, "A bert_tf checkpoint or run directory "
                                                "(pretrained, or a finetuned run).")
    bert_config_file: str | None = setting(None, "Default: beside --init_checkpoint.")
    encoder_saved_model: str | None = setting(None, "An encoder export (bert_tf.export).")
    vocab_file: str | None = setting(None, "Default: from the checkpoint's run or the export.")
    do_lower_case: bool | None = setting(None, "Default: from the checkpoint's run or the "
                                               "export.")
    allow_case_mismatch: bool = setting(False, "Go on with a --do_lower_case that contradicts "
                                               "the vocab or the source's record.")


@dataclasses.dataclass(frozen=True)
class FinetuningConfig(EncoderSettings):
    """Settings every finetuning task has (the command line's flags)."""
    output_dir: str = setting(None, "Where everything goes.", required=True)
    max_seq_length: int = setting(128, "Tokens per example.", above=0)
    train_batch_size: int = setting(32, "Batch size for training.", above=0)
    learning_rate: float = setting(2e-5, "Peak learning rate (AdamW).", above=0)
    num_train_epochs: float = setting(3.0, "Epochs.", above=0)
    warmup_proportion: float = setting(0.1, "Fraction of steps for linear warmup.", minimum=0,
                                       maximum=1)
    dynamic_padding: bool = setting(True, "Cut each batch to the smallest of 16, 32, 64, ... "
                                          "max_seq_length that holds its longest row, and "
                                          "group training rows of like length, instead of "
                                          "padding all to max_seq_length.")
    log_steps: int = setting(100, "Print a progress line (loss, metric, examples/s, ETA) every "
                                  "this many training steps.", above=0)
    distribution_strategy: str = setting("auto", strategies.HELP, choices=strategies.STRATEGIES)
    tpu: str = setting("", strategies.TPU_HELP)
    worker_wait_secs: int = setting(300, "multi_worker_mirrored: how long each worker waits "
                                         "for the others to start before it exits, naming "
                                         "those missing.", minimum=1)
    mixed_precision: str = setting("auto", "Keras dtype policy; auto: mixed_bfloat16 where the "
                                           "hardware multiplies bfloat16 natively (GPUs of "
                                           "compute capability 8.0+, CPUs with AMX or "
                                           "AVX512_BF16), else float32.",
                                   choices=("auto", "float32", "mixed_float16",
                                            "mixed_bfloat16"))
    serving_precision: str = setting("float32", precision_lib.SERVING_HELP,
                                     choices=tuple(precision_lib.SERVING_POLICIES))
    early_stopping_patience: int = setting(0, "Stop after this many epochs without a better "
                                              "eval score; 0: off.", minimum=0)
    keep_best: bool = setting(True, "Evaluate after every epoch and keep (save, evaluate, "
                                    "export) the weights of the best epoch by the task's "
                                    "score; false: the last epoch's.")
    profile_steps: str = setting("", "START,END: a TensorFlow profiler trace of training steps "
                                     "START..END (1-based) in OUTPUT_DIR/train, for "
                                     "TensorBoard's profile tab; empty: none.")
    model_name: str = setting("model", "Name of the exported model.")
    remat: str = setting("none", "Rematerialization (gradient checkpointing) in training: "
                                 "layers: recompute each block's activations in the backward "
                                 "pass; full: also its attention and feed-forward parts one at "
                                 "a time. Less memory, more compute.",
                         choices=("none", "layers", "full"))
    random_seed: int = setting(12345, "Seed.")

    def check(self):
        from bert_tf.training.trainer import profile_steps_problems

        return profile_steps_problems(self.profile_steps)


# === The task shape ===

@dataclasses.dataclass
class TaskData:
    """What a task's `read` gives the harness."""
    labels: list  # classes or tags in id order; [] for question answering
    train: Any = None  # tf.data.Dataset of (inputs, targets[, weights]) batches, repeated; None:
    # no training (a finetuned model only predicts)
    steps_per_epoch: int = 0
    validation: Any = None  # batches fit() validates on each epoch (best epoch, early stopping)
    record: dict = dataclasses.field(default_factory=dict)  # more for run_config.json


class Task(Protocol):
    name: str  # a name of bert_tf.tasks.SPECS; run_config.json's "task"
    monitor: str  # the Keras validation metric whose best epoch is kept

    def read(self, source: EncoderSource, vocab, log) -> TaskData:
        """Reads and checks the task's files (errors name them) into batches."""

    def compile_args(self) -> dict:
        """`model.compile` arguments besides the optimizer: loss, metrics."""

    def evaluate(self, model, log) -> dict:
        """Metrics of the trained model on the evaluation file ({} if there is none)."""

    def predict(self, model, log) -> str | None:
        """Writes predictions for the predict file, if any; returns the file written."""

    # Optional: `score(metrics) -> float`, what the best epoch is chosen by. A task that has it
    # is evaluated by `evaluate` after every epoch (`EpochEvaluation`) instead of by Keras.


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
        io.write_json(os.path.join(config.output_dir, "labels.json"), data.labels)
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
        if hasattr(task, "score"):
            epochs = EpochEvaluation(lambda: task.evaluate(model, log), task.score,
                                     best_weights_file(config.output_dir), config.keep_best)
        backup.keep(epochs)
        fit(model, data.train, config, data.steps_per_epoch, data.validation, task.monitor,
            log=log, evaluation=epochs, backup=backup)
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
        metrics = timed(log, "evaluation", lambda: task.evaluate(model, log)) or {}
        if metrics and hasattr(task, "score"):
            metrics = {**metrics, "score": task.score(metrics)}
    if metrics:
        io.write_json(os.path.join(config.output_dir, "eval_results.json"), metrics)
        log("eval: " + format_metrics(metrics))
    exported = None
    if chief:  # the chief predicts and exports; the other workers wait for it
        timed(log, "prediction", lambda: task.predict(model, log))
        served = serving_model(model, task.name, data.labels, precision.policy,
                               config.serving_precision, log)
        exported = export_task(
            ExportRequest(task.name, served, vocab, source.do_lower_case,
                          config.max_seq_length, record),
            os.path.join(config.output_dir, "export", config.model_name))
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


# === The encoder a task starts from ===

@dataclasses.dataclass(frozen=True)
class EncoderSource:
    """Where the pretrained encoder comes from, and its tokenizer."""
    vocab_file: str
    do_lower_case: bool
    checkpoint: run_dir.RunFiles | None = None  # a bert_tf checkpoint and its run files
    saved_model: str | None = None  # or an encoder export
    recorded_lower_case: bool | None = None  # what the source records, when it does
    recorded_by: str = ""  # which source that is, for messages
    bert_config: Any = None  # the encoder's BertConfig

    def check_sequence_length(self, seq_length, flag="--max_seq_length"):
        """Refuses a length the encoder's position embeddings cannot hold, before any work."""
        self.bert_config.check_sequence_length(seq_length, flag)


def encoder_source(config: EncoderSettings) -> EncoderSource:
    """Resolves --init_checkpoint or --encoder_saved_model (exactly one) with the vocab and
    lower-casing; errors name the flags."""
    import tensorflow as tf

    checkpoint, saved_model = config.init_checkpoint, config.encoder_saved_model
    if bool(checkpoint) == bool(saved_model):
        raise ValueError("give exactly one of --init_checkpoint and --encoder_saved_model "
                         f"(got {'both' if checkpoint else 'neither'})")
    if checkpoint:
        files = run_dir.resolve(checkpoint, bert_config_file=config.bert_config_file,
                                vocab_file=config.vocab_file, do_lower_case=config.do_lower_case,
                                flag="--init_checkpoint")
        vocab_file, lower = files.vocab_file, files.do_lower_case
        recorded = files.record.get("do_lower_case")
        recorded_by = f"the run of --init_checkpoint {checkpoint}"
        bert_config = BertConfig.from_json_file(files.bert_config_file)
    else:
        files = None
        if not tf.io.gfile.exists(os.path.join(saved_model, "saved_model.pb")):
            raise ValueError(f"--encoder_saved_model {saved_model}: no SavedModel there")
        vocab_file = config.vocab_file or os.path.join(saved_model, "assets", "vocab.txt")
        from bert_tf.export.encoder import export_config

        loaded = tf.saved_model.load(saved_model)
        bert_config = export_config(loaded, f"--encoder_saved_model {saved_model}")
        recorded = bool(loaded.do_lower_case.numpy())
        recorded_by = f"--encoder_saved_model {saved_model}"
        lower = recorded if config.do_lower_case is None else config.do_lower_case
    if lower is None:
        raise ValueError("--do_lower_case is needed: the encoder source does not record it")
    return EncoderSource(vocab_file, bool(lower), files, saved_model, recorded, recorded_by,
                         bert_config)


def source_vocab(source: EncoderSource, allow_case_mismatch=False):
    """The source's `Vocab`; a lower-casing that contradicts it or the source's record is
    refused (`text.tokenization.check_casing`) unless `allow_case_mismatch`."""
    from bert_tf.text.tokenization import check_casing, load_vocab

    vocab = load_vocab(source.vocab_file)
    if not allow_case_mismatch:
        check_casing(vocab, source.do_lower_case, source.vocab_file, source.recorded_lower_case,
                     source.recorded_by)
    return vocab


def continues(source: EncoderSource, task, labels) -> bool:
    """Whether the source is a finetuned model of `task` with the same labels: training then
    continues from the whole model (its head included); else only its encoder is taken."""
    if source.checkpoint is None:
        return False
    record = source.checkpoint.record
    return record.get("task") == task and list(record.get("labels", [])) == list(labels)


def load_encoder(source: EncoderSource):
    """A Keras `BertEncoder` with the source's weights: a pretrained checkpoint's, a finetuned
    run's (whatever its task), or an export's, rebuilt as Keras layers (Keras optimizers cannot
    train a TFSMLayer's variables). Call it under the strategy's scope."""
    from bert_tf.modeling import task_encoder

    if source.checkpoint is not None:
        model, _ = run_dir.load_model(source.checkpoint, flag="--init_checkpoint")
        return task_encoder(model)
    from bert_tf.export import load_encoder_export

    encoder, _ = load_encoder_export(source.saved_model)
    return encoder


# === Training ===

_STRATEGIES = {}  # one per process: MultiWorkerMirroredStrategy and a TPU start only once


def distribute(config: FinetuningConfig, log=print):
    """(strategy, its record) for --distribution_strategy, made once per process (run_glue's
    jobs share it) and logged. one_device is TensorFlow's default strategy, on the first GPU
    when there is one: Keras fit() under an explicit OneDeviceStrategy ran 20x slower per epoch
    here (Keras 3.15, TF 2.20)."""
    import tensorflow as tf

    name, why = strategies.choose(config.distribution_strategy, config.tpu)
    key = (name, config.tpu)
    if key not in _STRATEGIES:
        strategy = (tf.distribute.get_strategy() if name == "one_device"
                    else strategies.make_strategy(name, config.tpu, config.worker_wait_secs))
        _STRATEGIES[key] = strategy, strategies.record(strategy, name, why)
    strategy, chosen = _STRATEGIES[key]
    log(strategies.describe(chosen))
    return strategy, chosen


def set_precision(config: FinetuningConfig, strategy=None, log=print):
    """Resolves --mixed_precision (auto: for the devices fit() trains on: a TPU of `strategy`,
    else the GPUs or the CPU), sets it as Keras's global dtype policy, logs it; returns the
    `Precision` (policy and reason) for the records."""
    precision = precision_lib.resolve(config.mixed_precision, strategy,
                                      devices=precision_lib.training_devices())
    keras.mixed_precision.set_global_policy(precision.policy)
    log(f"precision: {precision.policy} ({precision.reason})")
    return precision


def compile_model(model, config: FinetuningConfig, total_steps, **compile_args):
    """AdamW with warmup and linear decay over `total_steps`, gradients clipped to norm 1 (loss
    scaling under the mixed_float16 policy set by `set_precision`); `compile_args` (loss,
    metrics, ...) go to `model.compile`."""
    from bert_tf.training.optimization import create_optimizer

    model.compile(optimizer=create_optimizer(
        "adamw", learning_rate=config.learning_rate, num_train_steps=total_steps,
        num_warmup_steps=int(config.warmup_proportion * total_steps), clip_norm=1.0,
        mixed_precision=keras.mixed_precision.global_policy().name), **compile_args)


BEST_WEIGHTS = "best.weights.h5"  # in best/ while the job trains: the best epoch so far


def best_weights_file(output_dir):
    import tensorflow as tf

    directory = os.path.join(output_dir, run_dir.BEST_DIR)
    tf.io.gfile.makedirs(directory)
    return os.path.join(directory, BEST_WEIGHTS)


def keep_best(model, output_dir, epochs, steps_per_epoch):
    """OUTPUT_DIR/best/ as pretraining's (`training.evaluation.write_best`): the kept epoch's
    model as ckpt-EPOCH and info.json with its score and metrics (metric and value null when
    nothing evaluated it: the last epoch is kept), so `export --checkpoint=best` and
    `--init_checkpoint=RUN/best` take it. The epoch's weights file of the training is
    removed."""
    import tensorflow as tf

    from bert_tf.training.evaluation import write_best
    if epochs is not None and epochs.chosen is not None:
        results = epochs.results()
        step, metric, value, metrics = (results["epoch"], "score", results["score"],
                                        flat_numbers(epochs.chosen[2]))
        kept = results["kept"]
    else:
        step = math.ceil(int(model.optimizer.iterations) / max(steps_per_epoch, 1))
        metric = value = None
        metrics, kept = {}, "last"
    directory = os.path.join(output_dir, run_dir.BEST_DIR)
    write_best(tf.train.Checkpoint(model=model), directory, step, metric, value, metrics,
               kept=kept)
    scratch = os.path.join(directory, BEST_WEIGHTS)
    if tf.io.gfile.exists(scratch):
        tf.io.gfile.remove(scratch)


class EpochEvaluation(keras.callbacks.Callback):
    """A Keras callback: evaluates the task after every epoch by its own metrics, puts them in
    the epoch's logs as val_<metric> (and val_score) for TensorBoard, the progress line and
    early stopping, and, with `keep_best`, saves the best epoch's weights to `best_file` and
    restores them when training ends."""

    def __init__(self, evaluate, score, best_file, keep_best=True):
        super().__init__()
        self.evaluate, self.score, self.best_file, self.keep_best = (evaluate, score, best_file,
                                                                     keep_best)
        self.scores = []  # per epoch
        self.chosen = None  # (score, epoch, metrics) of the epoch kept

    def on_epoch_end(self, epoch, logs=None):
        metrics = self.evaluate()
        if not metrics:  # no dev data (--do_eval=false): nothing to choose by
            return
        score = float(self.score(metrics))
        self.scores.append(score)
        if logs is not None:
            logs.update({f"val_{name}": value for name, value in flat_numbers(metrics).items()})
            logs["val_score"] = score
        better = self.chosen is None or score > self.chosen[0] or math.isnan(self.chosen[0])
        if better or not self.keep_best:
            self.chosen = (score, epoch + 1, metrics)
            if self.keep_best:
                self.model.save_weights(self.best_file)

    def on_train_end(self, logs=None):
        if self.keep_best and self.chosen is not None and self.chosen[1] != len(self.scores):
            self.model.load_weights(self.best_file)

    def state(self) -> dict:
        """What a resumed job needs (finetuning.resume): the scores and the kept epoch."""
        return {"scores": self.scores, "chosen": self.chosen}

    def restore(self, state):
        self.scores = list(state["scores"])
        self.chosen = tuple(state["chosen"]) if state["chosen"] else None

    def results(self) -> dict:
        """The kept epoch's metrics with its "score" and "epoch", and every epoch's scores."""
        score, epoch, metrics = self.chosen
        return {**metrics, "score": score, "epoch": epoch, "epoch_scores": self.scores,
                "kept": "best" if self.keep_best else "last"}


def flat_numbers(metrics, prefix="") -> dict:
    """{name: number} of nested metrics ({"matched": {"accuracy": ...}} -> matched_accuracy)."""
    flat = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update(flat_numbers(value, f"{prefix}{name}_"))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and name != "num_examples"):
            flat[f"{prefix}{name}"] = value
    return flat


# The HParams tab's metric columns of a finetuning job: what Keras's TensorBoard callback writes
# ((subdirectory, tag)); val_score is the task's own score (EpochEvaluation).
HPARAMS_METRICS = (("validation", "epoch_score"), ("validation", "epoch_loss"),
                   ("train", "epoch_loss"))


def fit(model, train_data, config: FinetuningConfig, steps_per_epoch, eval_data=None,
        monitor="val_accuracy", log=print, evaluation=None, backup=None):
    """fit() for ceil(num_train_epochs) epochs (a fractional last epoch runs whole; the learning
    rate has reached its end by then), with a progress line every --log_steps and TensorBoard
    logs in output_dir. With `evaluation` (an `EpochEvaluation`): the task's own evaluation after
    every epoch, which keeps the best epoch, and early stopping by its score. Else with
    `eval_data`: Keras's validation, early stopping, and (with --keep_best) the weights of the
    best epoch by `monitor` (kept in output_dir/best/best.weights.h5) restored at the end.

    `eval_data` is cached in memory after its first pass: Keras makes new iterators over it
    every epoch, and making an iterator over a dataset that tokenizes in-graph took about 2 s
    (tensorflow-text 2.20), twice per epoch, where a step of a small model takes 25 ms.

    `backup` (a `finetuning.resume.Backup`; default: the job's) keeps the state of every
    finished epoch and resumes from it; SIGTERM or SIGINT raise `preemption.Preempted` at the
    end of the batch in progress."""
    from bert_tf.training.summaries import TrainingLog
    from bert_tf.training.trainer import parse_profile_steps

    if backup is None:
        backup = Backup(config, log)
        backup.keep(evaluation)
    # the job's flags as a row of TensorBoard's HParams tab, beside its epoch metrics
    TrainingLog(config.output_dir, 0).hyperparameters(flat_dict(config), HPARAMS_METRICS)
    epochs = max(math.ceil(config.num_train_epochs), 1)
    profile = parse_profile_steps(config.profile_steps)
    # the evaluation first: the callbacks after it see its metrics in the epoch's logs
    callbacks = [evaluation] if evaluation is not None else []
    callbacks += [keras.callbacks.TensorBoard(config.output_dir, profile_batch=profile or 0),
                  Progress(config.log_steps, steps_per_epoch, epochs, config.train_batch_size,
                           log)]
    best = best_weights_file(config.output_dir)
    if evaluation is not None:
        eval_data, monitor = None, "val_score"
    if eval_data is not None and config.keep_best:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            best, monitor=monitor, mode="max", save_best_only=True, save_weights_only=True,
            initial_value_threshold=backup.best(monitor)))
    if (eval_data is not None or evaluation is not None) and config.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=config.early_stopping_patience))
    callbacks += backup.callbacks()  # last: they record what the others did with the epoch
    if eval_data is not None:
        eval_data = eval_data.cache()
    if strategies.is_multi_worker(model.distribute_strategy):
        fit_across_workers(model, train_data)
    # shuffle=False: the tf.data pipelines shuffle; Keras's default of True only warns that it
    # cannot shuffle a Dataset. verbose=0: `Progress` prints the lines.
    model.fit(train_data, validation_data=eval_data, epochs=epochs,
              steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0, shuffle=False)
    if eval_data is not None and config.keep_best:
        model.load_weights(best)


def fit_across_workers(model, dataset):
    """Makes the compiled `model` fit() under MultiWorkerMirroredStrategy, around two faults of
    Keras 3.15 there. (1) fit() builds the metrics, loss and optimizer from a first batch that
    it averages over the workers (`_maybe_symbolic_build`), which fails for inputs that are a
    dict (keras-team/keras#20329, open), as every BERT model's are: they are built here from
    `dataset`'s element spec, and that step is skipped. (2) A step's logs are averaged over the
    replicas with `strategy.reduce("MEAN", value, axis=0)` (`reduce_per_replica`), which fails
    for the scalars every loss and metric is: the steps return them with a leading axis of 1,
    which that average takes away."""
    from keras import ops

    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {
            key: ops.expand_dims(value, 0) for key, value in step(data).items()})


def predict(model, batches, pad_to=None):
    """The model's outputs over `batches` (of inputs, or of (inputs, ...) tuples) as numpy
    arrays. With `pad_to`, outputs are per token ([B, T, ...]) and batches may differ in T: each
    is padded on T to `pad_to` (Keras predict() cannot join batches of different lengths).
    Under a strategy of several replicas each batch is run whole by the first replica's device
    (Keras's predict_on_batch would return it once per replica, and, between workers, gather
    theirs); every worker computes all of it."""
    import numpy as np
    import tensorflow as tf

    def padded(array):
        if pad_to is None:
            return array
        return np.pad(array, [(0, 0), (0, pad_to - array.shape[1])] + [(0, 0)] * (array.ndim - 2))

    outputs = []
    for batch in batches:
        inputs = batch[0] if isinstance(batch, tuple) else batch
        step = _prediction_step(model, inputs)
        outputs.append(tf.nest.map_structure(lambda x: padded(np.asarray(x)), step(inputs)))
    if not outputs:
        raise ValueError("nothing to predict: no examples")
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *outputs)


_PREDICTION_STEPS = weakref.WeakKeyDictionary()  # model -> its tf.function, traced once


def _prediction_step(model, inputs):
    """The model's prediction tf.function, traced once for batches of any size and length
    (length buckets would otherwise retrace it, and TensorFlow warns of each)."""
    import tensorflow as tf

    if model not in _PREDICTION_STEPS:
        strategy = model.distribute_strategy
        signature = tf.nest.map_structure(
            lambda x: tf.TensorSpec([None] * len(x.shape), x.dtype), inputs)

        @tf.function(input_signature=[signature])
        def step(batch):
            outputs = strategy.run(lambda x: model(x, training=False), args=(batch,))
            return tf.nest.map_structure(lambda x: strategy.experimental_local_results(x)[0],
                                         outputs)
        _PREDICTION_STEPS[model] = step
    return _PREDICTION_STEPS[model]


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
