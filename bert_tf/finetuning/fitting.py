"""Fitting a finetuning task's model: the strategy and precision of the job, the optimizer,
Keras's fit() with the per-epoch evaluation that keeps the best epoch (in OUTPUT_DIR/best/, as
pretraining keeps its best checkpoint), progress lines, TensorBoard and the epoch backup, and
prediction over batches of any length.
"""

from __future__ import annotations

import math
import os
import weakref

import keras

from bert_tf import run_dir
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.finetuning.progress import Progress
from bert_tf.finetuning.resume import Backup
from bert_tf.settings import flat_dict
from bert_tf.training import precision as precision_lib
from bert_tf.training import strategy as strategies


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

    directory = run_dir.RunDir(output_dir).best
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
    directory = run_dir.RunDir(output_dir).best
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
        log=print, evaluation=None, backup=None):
    """fit() for ceil(num_train_epochs) epochs (a fractional last epoch runs whole; the learning
    rate has reached its end by then), with a progress line every --log_steps and TensorBoard
    logs in output_dir. With `evaluation` (an `EpochEvaluation`): the task's own evaluation after
    every epoch, which keeps the best epoch, and early stopping by its score. Else with
    `eval_data`: Keras's validation, early stopping, and (with --keep_best) the weights of the
    best epoch by Keras's `val_accuracy` (kept in output_dir/best/best.weights.h5) restored at
    the end.

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
    monitor = "val_accuracy"
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
