"""The pretraining loop: strategy, compiled steps, checkpoints, summaries, preemption.

One host call runs `steps` training steps: an outer `tf.function` loops `tf.range(steps)` over a
distributed iterator and calls `strategy.run(replica_step)`. TPUs need many steps per host call;
Keras `fit()` under MirroredStrategy could not give them here (see DEVELOPERS.md), so the loop is
written out, as the Model Garden does. In `replica_step`, forward and backward run in one
function that is XLA-compiled with `jit_compile`; then gradients are summed over replicas,
clipped by their global norm, and applied.
"""

import dataclasses
import math
import os
import signal
import time

import keras
import tensorflow as tf

from bert_tf.pretraining_model import pretraining_losses

SUMS = ("loss", "masked_lm_loss", "next_sentence_loss", "masked_lm_correct", "masked_lm_count",
        "next_sentence_correct", "next_sentence_count", "gradient_norm")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The loop's settings (run_pretraining's flags)."""
    output_dir: str
    num_train_steps: int
    steps_per_loop: int = 100
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 5
    log_steps: int = 100
    gradient_accumulation_steps: int = 1
    clip_norm: float = 1.0
    jit_compile: bool = False
    max_eval_steps: int = 100


def make_strategy(name, tpu="", num_gpus=0):
    """`one_device`, `mirrored`, `multi_worker_mirrored` (TF_CONFIG) or `tpu`."""
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus > 0 else "/cpu:0")
    if name == "mirrored":
        devices = [f"/gpu:{i}" for i in range(num_gpus)] if num_gpus > 0 else None
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":  # not runnable here: no TPU
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--distribution_strategy must be one_device, mirrored, "
                     f"multi_worker_mirrored or tpu; got {name!r}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().jobs)


def batch_statistics(labels, outputs, masked_lm_denominator=None):
    """The losses, and the sums behind the accuracies in the logs."""
    losses = pretraining_losses(labels, outputs, masked_lm_denominator)
    weights = tf.cast(labels["masked_lm_weights"], tf.float32)
    mlm_hit = tf.cast(tf.equal(tf.argmax(outputs["masked_lm_logits"], -1, tf.int32),
                               tf.cast(labels["masked_lm_ids"], tf.int32)), tf.float32)
    nsp_labels = tf.reshape(tf.cast(labels["next_sentence_labels"], tf.int32), [-1])
    nsp_hit = tf.cast(tf.equal(tf.argmax(outputs["next_sentence_logits"], -1, tf.int32),
                               nsp_labels), tf.float32)
    return losses, {"masked_lm_correct": tf.reduce_sum(weights * mlm_hit),
                    "masked_lm_count": tf.reduce_sum(weights),
                    "next_sentence_correct": tf.reduce_sum(nsp_hit),
                    "next_sentence_count": tf.cast(tf.size(nsp_hit), tf.float32)}


class Trainer:
    """Trains a `BertPretrainer` built under `strategy.scope()` with a Keras optimizer."""

    def __init__(self, strategy, pretrainer, optimizer, options: TrainOptions):
        self.strategy = strategy
        self.model = pretrainer
        self.optimizer = optimizer
        self.options = options
        self.chief = is_chief(strategy)
        with strategy.scope():
            optimizer.build(pretrainer.trainable_variables)  # so a restore fills its slots
        self.checkpoint = tf.train.Checkpoint(model=pretrainer, optimizer=optimizer)
        directory = options.output_dir if self.chief else os.path.join(
            options.output_dir, f".worker_{strategy.cluster_resolver.task_id}_tmp")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=options.keep_checkpoint_max,
            step_counter=optimizer.iterations)
        self._gradients = tf.function(self._compute_gradients,
                                      jit_compile=options.jit_compile or None)
        self._train_loop = tf.function(self._loop)
        self._eval_loop = tf.function(self._eval)
        self.preempted = False

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    # === Compiled steps ===

    def _compute_gradients(self, features, labels):
        """Forward and backward on one replica's batch, in `gradient_accumulation_steps` parts."""
        parts = self.options.gradient_accumulation_steps
        variables = self.model.trainable_variables
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        gradients = None
        totals = {name: tf.constant(0.0) for name in SUMS[:-1]}
        size = tf.shape(features["input_word_ids"])[0] // parts
        # Each part's masked-LM loss is divided by the whole batch's weight, so the parts add
        # up to the big batch's loss (and gradient) exactly.
        denominator = tf.reduce_sum(tf.cast(labels["masked_lm_weights"], tf.float32)) + 1e-5
        for part in range(parts):  # unrolled: parts is small, and XLA wants static shapes
            sliced = [tf.nest.map_structure(lambda x: x[part * size:(part + 1) * size], d)
                      for d in (features, labels)]
            with tf.GradientTape() as tape:
                outputs = self.model(sliced[0], training=True)
                losses, counts = batch_statistics(sliced[1], outputs, denominator)
                losses["next_sentence_loss"] /= parts
                losses["loss"] = losses["masked_lm_loss"] + losses["next_sentence_loss"]
                # Summed over replicas below: each replica contributes its share of the mean.
                loss = losses["loss"] / self.strategy.num_replicas_in_sync
                if scaled:
                    loss = self.optimizer.scale_loss(loss)
            part_gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]
            gradients = part_gradients if gradients is None else [
                g + d for g, d in zip(gradients, part_gradients)]
            for name, value in list(losses.items()) + list(counts.items()):
                totals[name] += value
        return gradients, totals

    def _replica_step(self, features, labels):
        gradients, totals = self._gradients(features, labels)
        context = tf.distribute.get_replica_context()
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        scale = (self.optimizer.scale_loss(tf.constant(1.0))
                 if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) else None)
        if scale is not None:
            gradients = [g / scale for g in gradients]
        norm = tf.linalg.global_norm(gradients)
        if self.options.clip_norm and self.options.clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, self.options.clip_norm,
                                                  use_norm=norm)
        # Keras sums gradients over replicas once more: hand it each replica's share.
        share = 1.0 / self.strategy.num_replicas_in_sync
        if scale is not None:
            share *= scale  # the LossScaleOptimizer unscales and skips non-finite steps
        if scale is not None or share != 1.0:  # a pass over every gradient: only when needed
            gradients = [g * share for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        totals["gradient_norm"] = norm
        # Loss means are per replica; divide so that the replica sum is the global mean.
        for name in ("loss", "masked_lm_loss", "next_sentence_loss", "gradient_norm"):
            totals[name] = totals[name] / self.strategy.num_replicas_in_sync
        return totals

    def _loop(self, iterator, steps):
        sums = {name: tf.constant(0.0) for name in SUMS}
        for _ in tf.range(steps):
            features, labels = next(iterator)
            values = self.strategy.run(self._replica_step, args=(features, labels))
            sums = {name: sums[name] + self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, values[name], axis=None) for name in SUMS}
        return sums

    def _eval(self, iterator, steps):
        sums = {name: tf.constant(0.0) for name in SUMS[:-1]}

        def replica_eval(features, labels):
            losses, counts = batch_statistics(labels, self.model(features, training=False))
            values = {**losses, **counts}
            for name in losses:
                values[name] = values[name] / self.strategy.num_replicas_in_sync
            return values

        for _ in tf.range(steps):
            values = self.strategy.run(replica_eval, args=next(iterator))
            sums = {name: sums[name] + self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, values[name], axis=None) for name in sums}
        return sums

    # === The host loop ===

    def restore(self, init_checkpoint=None):
        """Resumes from output_dir's latest checkpoint, else loads `init_checkpoint`'s model
        weights (fresh optimizer). Returns what was restored, for the log."""
        latest = tf.train.latest_checkpoint(self.options.output_dir)  # the chief's, for all
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            return f"resumed from {latest} at step {self.step}"
        if init_checkpoint:
            load_model_weights(self.model, init_checkpoint)
            return f"initialized from {init_checkpoint}"
        return "fresh start"

    def train(self, dataset, summary_dir=None, log=print):
        """Trains to `num_train_steps`; returns the last logged metrics (empty if none ran)."""
        options = self.options
        iterator = iter(dataset)
        writer = (tf.summary.create_file_writer(os.path.join(summary_dir, "train"))
                  if summary_dir and self.chief else tf.summary.create_noop_writer())
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        metrics, start_step, start = {}, self.step, time.time()
        window = {name: 0.0 for name in SUMS}
        window_steps, window_start = 0, time.time()
        try:
            while self.step < options.num_train_steps and not self.preempted:
                step = self.step
                steps = min(options.steps_per_loop, options.num_train_steps - step,
                            _to_next(step, options.log_steps),
                            _to_next(step, options.save_checkpoints_steps))
                sums = self._train_loop(iterator, tf.constant(steps, tf.int32))
                sums = {name: float(value) for name, value in sums.items()}
                if not math.isfinite(sums["loss"]):
                    raise FloatingPointError(
                        f"loss is {sums['loss']} in steps {step + 1}-{step + steps}; training "
                        f"stopped. The last good checkpoint is "
                        f"{tf.train.latest_checkpoint(options.output_dir)}")
                window = {name: window[name] + sums[name] for name in SUMS}
                window_steps += steps
                done = self.step
                if done % options.log_steps == 0 or done == options.num_train_steps:
                    elapsed = time.time() - window_start
                    metrics = summarize(window, window_steps, elapsed)
                    metrics["learning_rate"] = float(self._learning_rate(done))
                    eta = (time.time() - start) / max(done - start_step, 1) * (
                        options.num_train_steps - done)
                    log(f"step {done}/{options.num_train_steps}  " + "  ".join(
                        f"{k}={v:.4g}" for k, v in metrics.items()) + f"  ETA {_hms(eta)}")
                    with writer.as_default(step=done):
                        for name, value in metrics.items():
                            tf.summary.scalar(name, value)
                    writer.flush()
                    window = {name: 0.0 for name in SUMS}
                    window_steps, window_start = 0, time.time()
                if done % options.save_checkpoints_steps == 0 or done == options.num_train_steps:
                    self.save()
            if self.preempted:
                self.save()
                log(f"SIGTERM: saved a checkpoint at step {self.step}; exiting.")
        finally:
            signal.signal(signal.SIGTERM, previous)
            writer.close()
        return metrics

    def train_steps(self, iterator, steps):
        """Runs `steps` steps in one host call (no logging, checkpoints or checks); returns the
        summed loss. For benchmarks and custom loops."""
        return self._train_loop(iterator, tf.constant(steps, tf.int32))["loss"]

    def evaluate(self, dataset, steps, summary_dir=None):
        sums = self._eval_loop(iter(dataset), tf.constant(steps, tf.int32))
        sums = {name: float(value) for name, value in sums.items()}
        metrics = summarize({**sums, "gradient_norm": 0.0}, steps)
        metrics.pop("gradient_norm")
        if summary_dir and self.chief:
            writer = tf.summary.create_file_writer(os.path.join(summary_dir, "eval"))
            with writer.as_default(step=self.step):
                for name, value in metrics.items():
                    tf.summary.scalar(name, value)
            writer.close()
        return metrics

    def save(self):
        path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        if not self.chief:  # every worker takes part in saving; only the chief's copy stays
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    def _on_sigterm(self, signum, frame):
        self.preempted = True

    def _learning_rate(self, step):
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        schedule = optimizer._learning_rate
        return schedule(step) if callable(schedule) else schedule


def summarize(sums, steps, seconds=None):
    """Window sums -> the logged metrics."""
    metrics = {"loss": sums["loss"] / steps,
               "masked_lm_loss": sums["masked_lm_loss"] / steps,
               "masked_lm_accuracy": sums["masked_lm_correct"] / max(sums["masked_lm_count"], 1),
               "next_sentence_loss": sums["next_sentence_loss"] / steps,
               "next_sentence_accuracy": sums["next_sentence_correct"]
               / max(sums["next_sentence_count"], 1),
               "gradient_norm": sums["gradient_norm"] / steps}
    if seconds:
        metrics["examples_per_second"] = sums["next_sentence_count"] / seconds
    return metrics


def load_model_weights(model, path, flag="--init_checkpoint"):
    """Model weights from a bert_tf checkpoint (its optimizer is ignored); names the variables
    that do not fit, and says how to convert a google-research/bert checkpoint."""
    try:
        status = tf.train.Checkpoint(model=model).read(path)
        status.assert_existing_objects_matched()
    except tf.errors.NotFoundError:
        raise ValueError(f"{flag} {path}: no such checkpoint") from None
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
        names = {name for name, _ in tf.train.list_variables(path)}
        if "bert/embeddings/word_embeddings" in names:
            raise ValueError(
                f"{flag} {path} is a google-research/bert (TF1) checkpoint; convert it first: "
                f"python -m bert_tf.convert_checkpoint --input_format=google_tf1 --input={path} "
                f"--output_format=bert_tf --output=DIR") from None
        raise ValueError(f"{flag} {path} does not match the model "
                         f"(--bert_config_file?): {e}") from None
    status.expect_partial()


def run_directory_files(run_dir):
    """(bert_config.json path, vocab.txt path, do_lower_case or None) that run_pretraining
    leaves in its output_dir."""
    import json

    do_lower_case = None
    run_config = os.path.join(run_dir, "run_config.json")
    if tf.io.gfile.exists(run_config):
        with tf.io.gfile.GFile(run_config) as f:
            do_lower_case = json.load(f).get("do_lower_case")
    return (os.path.join(run_dir, "bert_config.json"), os.path.join(run_dir, "vocab.txt"),
            do_lower_case)


def _to_next(step, every):
    return every - step % every


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
