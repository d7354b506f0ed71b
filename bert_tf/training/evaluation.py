"""Evaluation of a training run, and its best checkpoint.

The Evaluator runs the objective's statistics over eval batches in one compiled host call, under
the strategy the model was built in (as the Trainer trains). The training loop evaluates each
checkpoint it saves; a sidecar (run_pretraining --mode=continuous_eval) does the same from another
machine, following the run's checkpoints as they appear, so the training hosts lose no step to it.

BestCheckpoint keeps `<output_dir>/best/`: the model weights of the evaluated checkpoint that scored
best by a metric (ckpt-STEP, named by a `checkpoint` file, so `--init_checkpoint=RUN/best` and
`export --checkpoint=best` take it) and `info.json` (step, metric, value, every metric of that
evaluation). It lies outside the training checkpoints' directory listing: max_to_keep never
deletes it.
"""

import json
import math
import os

import tensorflow as tf

from bert_tf import io
from bert_tf.run_dir import RunDir

BEST_INFO = os.path.basename(RunDir("").best_info)  # in best/


def global_sums(strategy, objective, labels, sums=None):
    """The global batch's `batch_sums`: one scalar all-reduce across replicas (of this
    replica's `sums`, when it has them already)."""
    sums = objective.batch_sums(labels) if sums is None else sums
    if strategy.num_replicas_in_sync == 1:
        return sums
    context = tf.distribute.get_replica_context()
    return tuple(context.all_reduce(tf.distribute.ReduceOp.SUM, list(sums)))


def replica_totals(strategy, totals, features, rows=None):
    """What a replica adds to the sums over replicas: its statistics (its means are already its
    share of the global ones), the examples and real tokens it learnt from (its first `rows`
    rows, if given)."""
    totals = dict(totals)
    if "gradient_norm" in totals:  # the same on every replica
        totals["gradient_norm"] /= strategy.num_replicas_in_sync
    real = tf.cast(features["input_mask"] > 0, tf.float32)  # [B, T]
    if rows is None:
        totals["examples"] = tf.cast(tf.shape(real)[0], tf.float32)
    else:
        totals["examples"] = tf.cast(rows, tf.float32)
        real *= tf.cast(tf.range(tf.shape(real)[0]) < rows, tf.float32)[:, None]
    totals["tokens"] = tf.reduce_sum(real)
    return totals


class Evaluator:
    """The objective's metrics of `model` over `steps` batches of a distributed dataset."""

    def __init__(self, strategy, model, objective):
        self.strategy, self.model, self.objective = strategy, model, objective
        self._names = tuple(objective.MEANS) + tuple(objective.COUNTS) + ("examples", "tokens")
        self._loop = tf.function(self._eval)

    def _eval(self, iterator, steps):
        sums = {name: tf.constant(0.0) for name in self._names}

        def replica_eval(features, labels):
            stats = self.objective.statistics(
                labels, self.model(features, training=False),
                global_sums(self.strategy, self.objective, labels))
            return replica_totals(self.strategy, stats, features)

        for _ in tf.range(steps):
            values = self.strategy.run(replica_eval, args=next(iterator))
            sums = {name: sums[name] + self.strategy.reduce(
                tf.distribute.ReduceOp.SUM, values[name], axis=None) for name in self._names}
        return sums

    def evaluate(self, dataset, steps):
        """Metrics over the first `steps` batches of `dataset` (a fresh iterator each call, so
        every evaluation sees the same batches)."""
        sums = self._loop(iter(dataset), tf.constant(steps, tf.int32))
        return self.objective.metrics({name: float(v) for name, v in sums.items()}, steps)


def lower_is_better(metric) -> bool:
    return "loss" in metric


def read_best(output_dir):
    """`<output_dir>/best/info.json`, or None when the run has no best checkpoint yet; a file
    that is not what BestCheckpoint writes is an error naming it (read when the run starts,
    not at its first evaluation)."""
    path = RunDir(output_dir).best_info
    if not tf.io.gfile.exists(path):
        return None
    try:
        info = io.read_json(path)
    except json.JSONDecodeError as e:
        info, problem = None, f"not valid JSON ({e.msg}, line {e.lineno})"
    else:
        problem = None
    if problem is None and not (isinstance(info, dict) and isinstance(info.get("metric"), str)
                                and isinstance(info.get("value"), (int, float))
                                and not isinstance(info.get("value"), bool)
                                and math.isfinite(info["value"])):
        problem = 'expected {"metric": NAME, "value": NUMBER, ...}'
    if problem:
        raise ValueError(f"{path}: {problem}; it records the best checkpoint so far. Move "
                         f"{os.path.dirname(path)} away to start the best anew")
    return info


def write_best(checkpoint, directory, step, metric, value, metrics, keep=True, **more) -> dict:
    """`directory` (a run's best/): `checkpoint` (a tf.train.Checkpoint of the model) as
    ckpt-`step`, the one checkpoint there, and info.json: {"step", "metric", "value",
    "checkpoint", "metrics", **more}; returns that. The weights first: info.json never names a
    checkpoint not yet written. keep=False: a worker's copy, removed once written."""
    path = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save(
        checkpoint_number=step)
    info = {"step": int(step), "metric": metric, "value": value,
            "checkpoint": os.path.basename(path),
            "metrics": {name: float(v) for name, v in metrics.items()}, **more}
    if keep:
        io.write_json(os.path.join(directory, BEST_INFO), info)
    else:
        tf.io.gfile.rmtree(directory)
    return info


class BestCheckpoint:
    """`<output_dir>/best/`: the model's weights whenever an evaluation beats the best so far by
    `metric` (lower is better for losses, higher for accuracies).

    Under a multi-worker strategy every worker calls `update` (saving may need all of them);
    only the chief's copy stays, the others write to `scratch` and remove it."""

    def __init__(self, output_dir, metric, model, chief=True, scratch=None):
        self.metric = metric
        self.output_dir = output_dir
        self.chief = chief
        self.directory = RunDir(output_dir).best if chief else scratch
        self.info = read_best(output_dir)
        if self.info is not None and self.info.get("metric") != metric:
            raise ValueError(f"--best_checkpoint_metric={metric}, but {self.directory} keeps the "
                             f"best by {self.info.get('metric')}: use that metric, or move "
                             f"{self.directory} away to start anew")
        self.checkpoint = tf.train.Checkpoint(model=model)

    def better(self, value) -> bool:
        if self.info is None:
            return True
        best = self.info["value"]
        return value < best if lower_is_better(self.metric) else value > best

    def update(self, step, metrics, log=None) -> bool:
        """Keeps the model as the best if `metrics` beat the best so far (and says so through
        `log`); returns whether."""
        if self.metric not in metrics:
            raise ValueError(f"--best_checkpoint_metric={self.metric} is not one of the "
                             f"evaluation's metrics: {', '.join(metrics)}")
        value = float(metrics[self.metric])
        if not self.better(value):
            return False
        self.info = write_best(self.checkpoint, self.directory, step, self.metric, value,
                               metrics, keep=self.chief)
        if log is not None:
            log(f"best {self.metric} so far ({value:.4g}): kept in {self.directory}")
        return True
