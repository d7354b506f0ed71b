"""The training loop: compiled steps under a strategy, host calls, checkpoints, preemption.

One host call runs `steps` training steps: an outer `tf.function` loops `tf.range(steps)` over a
distributed iterator and calls `strategy.run(replica_step)`. TPUs need many steps per host call;
Keras `fit()` under MirroredStrategy could not give them here (it failed with `jit_compile=True`
or `steps_per_execution>1` on Keras 3.15), so the loop is written out, as the Model Garden does.

The replica step: the global batch's loss denominators (a scalar all-reduce, so that every
replica's loss is its exact share of the global mean), forward and backward (in
`gradient_accumulation_steps` parts), one all-reduce of the gradients, their global norm and clipping, the optimizer update, and the sums the logs
need. On a TPU all of it is one XLA program (TPUStrategy compiles what `strategy.run` runs).
With `jit_compile` on one device, the whole replica step is XLA-compiled the same way, which is
how the TPU program is checked on CPU; under mirrored or multi-worker strategies only forward
and backward are (an XLA program cannot span the replicas' devices).

What is optimised and reported comes from an objective (default: BERT pretraining's,
`bert_tf.modeling.objective`): `batch_sums(labels)` gives what a batch's mean losses divide by,
`statistics(labels, outputs, sums)` a part's "loss" and other figures as its share of the batch
whose sums are `sums`, every one of them additive over parts, replicas and steps, named in its
MEANS (means) and COUNTS; `metrics(sums, steps)` turns sums into logged figures.
"""

import contextlib
import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from bert_tf import io, run_dir
from bert_tf.modeling import objective as pretraining_objective
from bert_tf.preemption import STOP_SIGNALS, HostCallSizer, SignalFlag
from bert_tf.settings import Settings, setting
from bert_tf.training.strategy import is_chief, worker_dir, workers
from bert_tf.training.evaluation import Evaluator, global_sums, replica_totals
from bert_tf.training.summaries import TrainingLog, format_metrics


@dataclasses.dataclass(frozen=True)
class TrainOptions(Settings):
    """The loop's settings; a job's settings extend them (training.pretraining)."""
    output_dir: str = setting(None, "Checkpoints, TensorBoard logs and the resolved config go "
                                    "here.", required=True)
    num_train_steps: int = setting(None, "Optimizer steps.", required=True, minimum=1)
    steps_per_loop: int = setting(100, "Training steps per host call at most (fewer where "
                                       "--preemption_grace_secs needs shorter calls).",
                                  minimum=1)
    preemption_grace_secs: float = setting(25.0, "From SIGTERM on any worker, every worker "
                                                 "saves a checkpoint and exits within this "
                                                 "many seconds: host calls are cut to fit (by "
                                                 "the measured step and save times). 0: host "
                                                 "calls of --steps_per_loop steps, whatever "
                                                 "they last.", minimum=0)
    save_checkpoints_steps: int = setting(1000, "Checkpoint every this many steps.", minimum=1)
    keep_checkpoint_max: int = setting(5, "Checkpoints kept.", minimum=1)
    log_steps: int = setting(100, "Log and write summaries every this many steps.", minimum=1)
    gradient_accumulation_steps: int = setting(1, "Split each batch into this many sequential "
                                                  "parts: a large global batch in small memory.",
                                               minimum=1)
    batch_size_ramp: float = setting(0.0, "Over this fraction of training (of --train_budget's "
                                          "time, else of the steps) the batch grows linearly "
                                          "from one of the --gradient_accumulation_steps parts "
                                          "to all of them (Cramming's ramp); each step still "
                                          "reads a whole batch and skips the parts not yet "
                                          "included. 0: off.", minimum=0, maximum=1)
    clip_norm: float = setting(1.0, "Clip gradients to this global norm; 0 disables.",
                               minimum=0)
    jit_compile: bool = setting(False, "XLA-compile the step: the whole replica step on one "
                                       "device (as on a TPU, which compiles it anyway), forward "
                                       "and backward under mirrored strategies.")
    profile_steps: str = setting("", "START,END: a TensorFlow profiler trace of training steps "
                                     "START..END (1-based, inclusive) in OUTPUT_DIR/train, for "
                                     "TensorBoard's profile tab; empty: none.")

    def check(self):
        problems = profile_steps_problems(self.profile_steps)
        if self.batch_size_ramp and self.gradient_accumulation_steps < 2:
            problems.append(f"--batch_size_ramp={self.batch_size_ramp} grows the batch by its "
                            f"parts: set --gradient_accumulation_steps to 2 or more (the parts "
                            f"of the final batch)")
        if not problems and self.profile_range and self.profile_range[1] > self.num_train_steps:
            problems.append(f"--profile_steps={self.profile_steps} ends past the last step "
                            f"(--num_train_steps={self.num_train_steps})")
        return problems

    @property
    def profile_range(self):
        """(first, last) step of --profile_steps, or None."""
        return parse_profile_steps(self.profile_steps)


class Trainer:
    """Trains a model built under `strategy.scope()` with a Keras optimizer."""

    def __init__(self, strategy, model, optimizer, options: TrainOptions,
                 objective=pretraining_objective, clock=None):
        """`clock` (budget.Clock, made under the strategy's scope): train until its budget of
        training time is spent (or `num_train_steps`), keeping it in the checkpoints."""
        self.strategy = strategy
        self.clock = clock
        self.model = model
        self.optimizer = optimizer
        self.options = options
        self.objective = objective
        self.chief = is_chief(strategy)
        # Summed over steps: the objective's figures, the gradient norm, the examples seen.
        self._sums = tuple(objective.MEANS) + tuple(objective.COUNTS) + (
            "gradient_norm", "examples", "tokens")
        self.variables = model.trainable_variables
        with strategy.scope():
            optimizer.build(self.variables)  # so a restore fills its slots
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                              **({"clock": clock} if clock else {}))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, worker_dir(options.output_dir, strategy),
            max_to_keep=options.keep_checkpoint_max,
            step_counter=optimizer.iterations)
        apply_reduced_gradients(optimizer)
        # What XLA compiles (see the module's docstring): `replica_step` is what strategy.run
        # runs, `_gradients` its forward and backward.
        tpu = isinstance(strategy, tf.distribute.TPUStrategy)
        whole_step = options.jit_compile and strategy.num_replicas_in_sync == 1 and not tpu
        self._gradients = (tf.function(self.gradients, jit_compile=True)
                           if options.jit_compile and not whole_step and not tpu
                           else self.gradients)
        self.replica_step = (tf.function(self._replica_step, jit_compile=True) if whole_step
                             else self._replica_step)
        self._train_loop = tf.function(self._loop)
        self.evaluator = Evaluator(strategy, model, objective)
        self.last_evaluation = None  # (step, metrics) of the latest evaluation of this process
        self.signal = None  # "SIGTERM" or "SIGINT" once one stopped training (all agreed)
        self._flag = SignalFlag()  # the signal this process received
        self._workers = workers(strategy)

    @property
    def preempted(self) -> bool:
        """Whether a signal stopped training (see `signal`)."""
        return self.signal is not None

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    # === Compiled steps ===

    def gradients(self, features, labels, sums=None, included=None):
        """Forward and backward on one replica's batch, in `gradient_accumulation_steps` parts;
        returns (gradients, the objective's statistics summed over the parts). `sums`: the
        global batch's `batch_sums` (default: this batch's). `included` (an int32 tensor): only
        the first this many parts count; the others are skipped (the batch-size ramp)."""
        if sums is None:
            sums = self.objective.batch_sums(labels)
        parts = self.options.gradient_accumulation_steps
        variables = self.variables
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        names = tuple(self.objective.MEANS) + tuple(self.objective.COUNTS)
        gradients, totals = None, None

        def part_step(part_features, part_labels):
            with tf.GradientTape() as tape:
                outputs = self.model(part_features, training=True)
                # This part's share of the global batch's mean: the parts and replicas add up.
                stats = self.objective.statistics(part_labels, outputs, sums)
                loss = stats["loss"]
                if scaled:
                    loss = self.optimizer.scale_loss(loss)
            return ([tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)],
                    {name: stats[name] for name in names})

        def skipped():
            return ([tf.zeros_like(v) for v in variables],
                    {name: tf.constant(0.0) for name in names})

        for part, (part_features, part_labels) in enumerate(self._parts(features, labels)):
            if included is None:
                part_gradients, stats = part_step(part_features, part_labels)
            else:  # unrolled too: a skipped part costs nothing (XLA runs one branch)
                part_gradients, stats = tf.cond(
                    part < included, lambda f=part_features, l=part_labels: part_step(f, l),
                    skipped)
            if gradients is None:
                gradients, totals = part_gradients, stats
            else:
                gradients = [g + d for g, d in zip(gradients, part_gradients)]
                totals = {name: totals[name] + stats[name] for name in totals}
        return gradients, totals

    def _parts(self, features, labels):
        """The `gradient_accumulation_steps` parts of a replica's batch, as (features, labels)
        pairs; unrolled: the count is small, and XLA wants static shapes."""
        parts = self.options.gradient_accumulation_steps
        size = tf.shape(features["input_word_ids"])[0] // parts
        return [[tf.nest.map_structure(lambda x: x[part * size:(part + 1) * size], d)
                 for d in (features, labels)] for part in range(parts)]

    def included_parts(self):
        """How many of the batch's parts this step trains on: all of them, or, in the batch-size
        ramp, ceil(parts * progress / ramp) of them (at least one), progress being the share of
        the budget (its time, else the steps) spent at this step."""
        parts, ramp = self.options.gradient_accumulation_steps, self.options.batch_size_ramp
        if not ramp:
            return None
        step = self.optimizer.iterations
        progress = (self.clock.position(step) / self.clock.budget_seconds if self.clock
                    else tf.cast(step, tf.float32) / self.options.num_train_steps)
        return ramp_parts(progress, parts, ramp)

    def _replica_step(self, features, labels):
        included = self.included_parts()
        if included is None:
            own, rows = None, None
        else:  # the ramp: the included parts' sums, the rows learnt from
            counted = [[value * tf.cast(part < included, tf.float32)
                        for value in self.objective.batch_sums(part_labels)]
                       for part, (_, part_labels) in enumerate(self._parts(features, labels))]
            own = tuple(tf.add_n(list(values)) for values in zip(*counted))
            rows = included * (tf.shape(features["input_word_ids"])[0]
                               // self.options.gradient_accumulation_steps)
        gradients, totals = self._gradients(
            features, labels, global_sums(self.strategy, self.objective, labels, own), included)
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
        if scale is not None:  # the LossScaleOptimizer unscales and skips non-finite steps
            gradients = [g * scale for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        totals["gradient_norm"] = norm
        return replica_totals(self.strategy, totals, features, rows)

    def _loop(self, iterator, steps):
        sums = {name: tf.constant(0.0) for name in self._sums}
        for _ in tf.range(steps):
            features, labels = next(iterator)
            values = self.strategy.run(self.replica_step, args=(features, labels))
            sums = {name: sums[name] + self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, values[name], axis=None) for name in sums}
        return sums

    # === The host loop ===

    def restore(self, init_checkpoint=None):
        """Resumes from output_dir's latest readable checkpoint (one whose files were damaged
        is skipped, and said so), else loads `init_checkpoint`'s model weights (fresh optimizer).
        Returns what was restored, for the log."""
        if self.chief:  # a save killed after its files were merged leaves its temp directory
            io.remove_all(tf.io.gfile.glob(os.path.join(self.manager.directory, "ckpt-*_temp")))
        state = tf.train.get_checkpoint_state(self.options.output_dir)  # the chief's, for all
        saved = list(reversed(state.all_model_checkpoint_paths)) if state else []
        unreadable = []
        for path in saved:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except tf.errors.OpError as e:  # a file missing or damaged
                if isinstance(e, tf.errors.InvalidArgumentError):  # does not fit the model
                    raise
                unreadable.append(f"{path} ({io.one_line(e.message)})")
                continue
            skipped = f"; skipped unreadable {', '.join(unreadable)}" if unreadable else ""
            return f"resumed from {path} at step {self.step}{skipped}"
        if unreadable:
            raise OSError(f"--output_dir: no checkpoint can be read: {', '.join(unreadable)}")
        if init_checkpoint:
            run_dir.load_model_weights(self.model, init_checkpoint)
            return f"initialized from {init_checkpoint}"
        return "fresh start"

    def train(self, dataset, summary_dir=None, log=print, hyperparameters=None, evaluation=None,
              best=None):
        """Trains to `num_train_steps`; returns the last logged metrics (empty if none ran).
        `hyperparameters` ({flag: value}) go to TensorBoard's HParams tab. `evaluation`: a
        (dataset, steps) pair evaluated after each checkpoint saved on schedule (summaries in
        `summary_dir`/eval); `best` (evaluation.BestCheckpoint) then keeps the best of them."""
        options = self.options
        # Kept on the trainer: deleting an iterator waits for its input threads (seconds with a
        # large shuffle buffer), which a stop within the grace period cannot afford.
        self._iterator = iterator = iter(dataset)
        clock = self.clock
        report = TrainingLog(summary_dir, None if clock else options.num_train_steps, log,
                             write_summaries=self.chief)
        if hyperparameters:
            report.hyperparameters(hyperparameters)
        metrics, start_step, start = {}, self.step, time.time()
        window = dict.fromkeys(self._sums, 0.0)
        window_steps, window_start = 0, time.time()
        profile = (Profile(*options.profile_range, os.path.join(summary_dir, "train"))
                   if options.profile_range and self.chief and summary_dir else None)
        sizer = HostCallSizer(options.preemption_grace_secs, checkpoint_bytes(self.checkpoint))
        timings = [None, None]  # this process's (seconds per step, seconds per save), to agree
        saved_at = None
        first_call = True
        self._unclocked = 0.0  # this process's training seconds not yet on the clock
        self._flag.install()
        try:
            while self.step < options.num_train_steps and not (clock and clock.is_spent()):
                step = self.step
                steps = min(options.steps_per_loop, options.num_train_steps - step,
                            _to_next(step, options.log_steps),
                            _to_next(step, options.save_checkpoints_steps))
                if clock is not None:  # the same on every worker: the clock is agreed
                    steps = clock.steps_left(steps)
                steps = sizer.steps(steps, log)
                if profile is not None:  # host calls start and end at the profiled range
                    steps = profile.steps(step, steps)
                    profile.before(step)
                began = time.monotonic()
                sums = self._train_loop(iterator, tf.constant(steps, tf.int32))
                sums = {name: float(value) for name, value in sums.items()}
                self._unclocked += time.monotonic() - began
                if not first_call:  # the first call also traced and compiled the step
                    timings[0] = (time.monotonic() - began) / steps
                first_call = False
                if profile is not None:
                    profile.after(self.step, log)
                if not math.isfinite(sums["loss"]):
                    raise FloatingPointError(
                        f"loss is {sums['loss']} in steps {step + 1}-{step + steps}; training "
                        f"stopped. The last good checkpoint is "
                        f"{tf.train.latest_checkpoint(options.output_dir)}")
                stop = self._agree(sizer, timings, steps)
                window = {name: window[name] + sums[name] for name in window}
                window_steps += steps
                done = self.step
                finished = done == options.num_train_steps or bool(clock and clock.is_spent())
                if done % options.log_steps == 0 or finished:
                    elapsed = time.time() - window_start
                    metrics = {**self.objective.metrics(window, window_steps),
                               "gradient_norm": window["gradient_norm"] / window_steps,
                               "examples_per_second": window["examples"] / elapsed,
                               # packed rows hold several sequences: what was learnt from
                               "sequences_per_second": window["sequence_count"] / elapsed,
                               "tokens_per_second": window["tokens"] / elapsed,
                               "learning_rate": float(self.optimizer.learning_rate)}
                    if options.batch_size_ramp:  # the mean global batch learnt from
                        metrics["batch_size"] = window["examples"] / window_steps
                    if clock is None:
                        eta = (time.time() - start) / max(done - start_step, 1) * (
                            options.num_train_steps - done)
                    else:
                        eta = clock.left
                        metrics["training_seconds"] = clock.spent
                    report.train(done, metrics, eta)
                    window = dict.fromkeys(self._sums, 0.0)
                    window_steps, window_start = 0, time.time()
                if done % options.save_checkpoints_steps == 0 or finished:
                    timings[1] = self._timed_save()
                    saved_at = done
                    # An evaluation is not bounded by the grace period: none once a stop is due.
                    if evaluation is not None and not (stop or self._agree(sizer, timings)):
                        began = time.time()
                        self.evaluate(*evaluation, summary_dir=summary_dir, log=log, best=best)
                        window_start += time.time() - began  # not in the next throughput
                if stop:
                    break
            if self.preempted:
                if saved_at != self.step:
                    self._timed_save()
                log(f"{self.signal}{'' if self._flag.number else ' on another worker'}: saved a "
                    f"checkpoint at step {self.step}; exiting.")
        finally:
            self._flag.restore()
            report.close()
            if profile is not None:
                profile.stop(log)
        return metrics

    def train_steps(self, iterator, steps):
        """Runs `steps` steps in one host call (no logging, checkpoints or checks); returns the
        summed loss. For benchmarks and custom loops."""
        return self._train_loop(iterator, tf.constant(steps, tf.int32))["loss"]

    def train_sums(self, iterator, steps):
        """Runs `steps` steps in one host call; returns the objective's sums over them as floats
        (loss, accuracies' counts, sequence_count: the sequences learnt from, ...)."""
        sums = self._train_loop(iterator, tf.constant(steps, tf.int32))
        return {name: float(value) for name, value in sums.items()}

    def evaluate(self, dataset, steps, summary_dir=None, log=None, best=None):
        """Metrics of the model now over `steps` batches; the chief writes them to
        `summary_dir`/eval at the current step, and `best` keeps the model if they beat its
        best."""
        metrics = self.evaluator.evaluate(dataset, steps)
        TrainingLog(summary_dir, steps, write_summaries=self.chief).evaluate(self.step, metrics)
        self.last_evaluation = (self.step, metrics)
        if log is not None:
            log(f"eval at step {self.step}: {format_metrics(metrics)}")
        if best is not None:
            best.update(self.step, metrics, log)
        return metrics

    def save(self):
        """Saves checkpoint ckpt-STEP; a failed save (a full disk) leaves no part of it behind
        and is an OSError naming the directory and the last complete checkpoint."""
        try:
            path = self.manager.save(checkpoint_number=self.optimizer.iterations)
        except tf.errors.OpError as e:
            prefix = os.path.join(self.manager.directory, f"ckpt-{self.step}")
            with contextlib.suppress(tf.errors.OpError):
                io.remove_all(tf.io.gfile.glob(f"{prefix}_temp*")
                              + tf.io.gfile.glob(f"{prefix}.*"))
            raise OSError(f"--output_dir: saving checkpoint {prefix} failed: "
                          f"{io.one_line(e.message)}. The last complete checkpoint is "
                          f"{tf.train.latest_checkpoint(self.manager.directory)}") from None
        if not self.chief:  # every worker takes part in saving; only the chief's copy stays
            tf.io.gfile.rmtree(self.manager.directory)
        return path

    def _timed_save(self):
        began = time.monotonic()
        self.save()
        return time.monotonic() - began

    def _agree(self, sizer, timings, steps=0) -> bool:
        """Whether to stop now: a worker received SIGTERM or SIGINT. Agreed by all workers
        between host calls (preemption reaches one VM of a slice at a time), so that every
        worker stops at the same step and takes part in one save, or none does; in the same
        all-reduce, the step and save times every worker sizes its next host call by, and the
        training time that moves the clock (the workers' mean), after `steps` steps."""
        unclocked, self._unclocked = getattr(self, "_unclocked", 0.0), 0.0
        values = [int(self._flag.number == number) for number in STOP_SIGNALS] + [
            round(1000 * t) if t else 0 for t in (*timings, unclocked)]  # whole milliseconds
        shares = 1
        if self._workers > 1:  # every replica of a worker gives that worker's values
            distributed = self.strategy.experimental_distribute_values_from_function(
                lambda context: tf.constant(values, tf.int32))
            values = self.strategy.reduce(tf.distribute.ReduceOp.SUM, distributed,
                                          axis=None).numpy().tolist()
            shares = self.strategy.num_replicas_in_sync
        sizer.agree(*(total / 1000 / shares for total in values[2:4]))  # the same everywhere
        if self.clock is not None and values[4]:
            self.clock.advance(values[4] / 1000 / shares, self.step, steps)
        if any(values[:2]):  # SIGTERM wins: a preemption notice beats a Ctrl-C
            self.signal = next(number.name for number, count in zip(STOP_SIGNALS, values)
                               if count)
        return self.preempted


def checkpoint_bytes(checkpoint) -> int:
    """The bytes a save of `checkpoint` writes (its model's and optimizer's variables)."""
    variables = checkpoint.model.variables + checkpoint.optimizer.variables
    return sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)


def apply_reduced_gradients(optimizer):
    """Makes `optimizer` apply gradients as they are given, already summed over replicas.

    Keras's TensorFlow optimizers sum the gradients over replicas once more inside
    `apply_gradients`; the Trainer has summed them already (it needs the sum to clip by the global
    norm), so that second all-reduce would double the communication of every step. Keras 3.15 has
    no public switch for it: this replaces its `_all_reduce_sum_gradients` hook, and
    tests/training/test_trainer.py counts the all-reduces of a step, so a Keras that renames the
    hook fails there rather than silently reducing twice.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's
    if not hasattr(inner, "_all_reduce_sum_gradients"):
        raise NotImplementedError(f"{type(inner).__name__} has no _all_reduce_sum_gradients: "
                                  f"this Keras reduces gradients differently")
    inner._all_reduce_sum_gradients = list


def profile_steps_problems(text) -> list:
    """What is wrong with --profile_steps (a settings class's `check()` part), or []."""
    try:
        parse_profile_steps(text)
    except ValueError as e:
        return [str(e)]
    return []


def parse_profile_steps(text, flag="--profile_steps"):
    """"START,END" -> (START, END), 1-based and inclusive; "" -> None."""
    if not text:
        return None
    try:
        first, last = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} must be START,END (two step numbers), got {text!r}") from None
    if not 1 <= first <= last:
        raise ValueError(f"{flag}={text}: need 1 <= START <= END")
    return first, last


class Profile:
    """The TensorFlow profiler on for training steps `first`..`last`, its trace in `logdir`
    (plugins/profile/RUN/, which TensorBoard's profile tab reads)."""

    def __init__(self, first, last, logdir):
        self.first, self.last, self.logdir = first, last, logdir
        self.running = False

    def steps(self, step, steps):
        """`steps` cut so that a host call starts at step `first` and ends at `last`."""
        for boundary in (self.first - 1, self.last):
            if step < boundary < step + steps:
                steps = boundary - step
        return steps

    def before(self, step):
        if step == self.first - 1 and not self.running:
            tf.profiler.experimental.start(self.logdir)
            self.running = True

    def after(self, step, log):
        if self.running and step >= self.last:
            self.stop(log)

    def stop(self, log):
        if self.running:
            self.running = False
            tf.profiler.experimental.stop()
            log(f"profile of steps {self.first}-{self.last}: {self.logdir}/plugins/profile "
                f"(tensorboard --logdir {os.path.dirname(self.logdir)}, profile tab)")


def ramp_parts(progress, parts, ramp):
    """The parts a step of the batch-size ramp trains on: ceil(parts * progress / ramp), from
    1 at the start to all `parts` once `progress` (0..1, a float tensor) reaches `ramp`."""
    grown = tf.math.ceil(parts * tf.cast(progress, tf.float32) / ramp)
    return tf.cast(tf.clip_by_value(grown, 1.0, float(parts)), tf.int32)


def _to_next(step, every):
    return every - step % every
