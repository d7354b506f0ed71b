"""A finetuning job that survives being stopped: started again with the same command, it goes on
from the last epoch it finished.

    OUTPUT_DIR/backup/   latest.weights.h5, training_metadata.json  (Keras's BackupAndRestore:
                         the model and optimizer after the last finished epoch)
                         settings.json  (the job's flags, to refuse a changed command)
                         epochs.json    (each finished epoch's logs: what the kept epoch, the
                                         best-weights checkpoint and the scores are chosen by)

Keras's `BackupAndRestore` saves after every epoch and restores at the start of `fit()`; a
SIGTERM or SIGINT ends `fit()` at the end of the batch in progress (`StopOnSignal`), without
counting the unfinished epoch, and the command exits 143 (130); see bert_tf.preemption. The
restarted job runs the unfinished epoch again from its start, with the weights, optimizer state
and learning rate of the last finished one. The backup is removed when the job has finished
(evaluated, predicted and exported).
"""

import json
import os

import keras
import tensorflow as tf

from bert_tf import io
from bert_tf.preemption import Preempted, SignalFlag
from bert_tf.run_dir import RunDir
from bert_tf.settings import flat_dict

BACKUP_DIR = os.path.basename(RunDir("").backup)
SETTINGS_FILE = "settings.json"
EPOCHS_FILE = "epochs.json"
KERAS_METADATA = "training_metadata.json"  # BackupAndRestore's: {"epoch": epochs done, ...}
# Flags a restart may change: they change what is printed, not what is trained, or (the
# output folder) where the job is: a run directory copied or moved is still the same job.
MAY_CHANGE = ("log_steps", "profile_steps", "output_dir")


def job_settings(config) -> dict:
    """The flags that make a job what it is, as a JSON file holds them."""
    return json.loads(json.dumps(
        {k: v for k, v in flat_dict(config).items() if k not in MAY_CHANGE}))


def changed_settings(held: dict, settings: dict) -> list:
    """["--flag=old -> new", ...]: where `settings` (job_settings) differ from `held`."""
    held = {k: v for k, v in held.items() if k not in MAY_CHANGE}
    return [f"--{name}={held.get(name)!r} -> {settings.get(name)!r}"
            for name in sorted(set(held) | set(settings)) if held.get(name) != settings.get(name)]


class Backup:
    """The backup of one job's `fit()` in `output_dir`/backup: refuses a restart with other
    settings, says what it resumes, and gives the callbacks that keep it."""

    def __init__(self, config, log=print):
        self.directory = RunDir(config.output_dir).backup
        self.evaluation = None  # an EpochEvaluation, whose state is kept too (`keep`)
        self.settings = job_settings(config)
        self.epochs = []  # [{"epoch": n, "logs": {...}}] of the finished epochs
        self.done = done = self.epochs_done()  # None: no backup
        if done is None:
            return
        self.check_settings(config.output_dir)
        epochs_file = os.path.join(self.directory, EPOCHS_FILE)
        if tf.io.gfile.exists(epochs_file):  # (a save killed between the two: the last is redone)
            self.epochs = [e for e in io.read_json(epochs_file) if e["epoch"] <= done]
        log(f"resuming from {self.directory}: {done} epoch(s) done; going on with epoch "
            f"{done + 1} (weights, optimizer state and learning rate of epoch {done})")

    def keep(self, evaluation):
        """Keeps `evaluation`'s state (an EpochEvaluation's) with each epoch; restores it."""
        self.evaluation = evaluation
        if evaluation is not None and self.epochs and "evaluation" in self.epochs[-1]:
            evaluation.restore(self.epochs[-1]["evaluation"])

    def epochs_done(self):
        """Epochs the backup holds, or None if there is no backup."""
        metadata = os.path.join(self.directory, KERAS_METADATA)
        if not tf.io.gfile.exists(metadata):
            return None
        return int(io.read_json(metadata)["epoch"])

    def check_settings(self, output_dir):
        path = os.path.join(self.directory, SETTINGS_FILE)
        changed = changed_settings(io.read_json(path) if tf.io.gfile.exists(path) else {},
                                   self.settings)
        if changed:
            raise ValueError(
                f"--output_dir {output_dir} holds an unfinished job made with other settings "
                f"({', '.join(changed)}). Nothing was changed; to go on, run the same command "
                f"again; to start over, remove {self.directory} or use another --output_dir")

    def best(self, monitor):
        """The best `monitor` value of the finished epochs (for ModelCheckpoint's
        initial_value_threshold), or None."""
        values = [e["logs"][monitor] for e in self.epochs if monitor in e["logs"]]
        return max(values) if values else None

    def callbacks(self):
        """Keras callbacks, to run after every other one: the epoch's record and Keras's backup,
        then the stop on a signal."""
        return [EpochRecord(self), keras.callbacks.BackupAndRestore(
            self.directory, save_freq="epoch", delete_checkpoint=False), StopOnSignal()]

    def start(self):
        tf.io.gfile.makedirs(self.directory)
        if self.done is None:
            io.write_json(os.path.join(self.directory, SETTINGS_FILE), self.settings)

    def remove(self):
        """The job has finished: its backup goes."""
        if tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)


class EpochRecord(keras.callbacks.Callback):
    """Writes each finished epoch's logs to the backup's epochs.json, before Keras's backup of
    the same epoch."""

    def __init__(self, backup: Backup):
        super().__init__()
        self.backup = backup

    def on_train_begin(self, logs=None):
        self.backup.start()

    def on_epoch_end(self, epoch, logs=None):
        numbers = {k: float(v) for k, v in (logs or {}).items()
                   if isinstance(v, (int, float)) or getattr(v, "shape", None) == ()}
        self.backup.epochs = [e for e in self.backup.epochs if e["epoch"] <= epoch]
        record = {"epoch": epoch + 1, "logs": numbers}
        if self.backup.evaluation is not None:
            record["evaluation"] = self.backup.evaluation.state()
        self.backup.epochs.append(record)
        io.write_json(os.path.join(self.backup.directory, EPOCHS_FILE), self.backup.epochs)


class StopOnSignal(keras.callbacks.Callback):
    """Ends `fit()` at the end of the batch in progress once SIGTERM or SIGINT comes, by raising
    `Preempted`: Keras would otherwise finish the epoch's bookkeeping (validation, the epoch's
    callbacks, a backup that counts the unfinished epoch as done)."""

    def __init__(self):
        super().__init__()
        self.flag = SignalFlag()

    def on_train_begin(self, logs=None):
        self.flag.install()

    def on_train_batch_end(self, batch, logs=None):
        if self.flag.number:
            name = self.flag.name
            self.flag.restore()
            raise Preempted(name, f"{name}: stopped in epoch {self._epoch + 1} at batch "
                                  f"{batch + 1}; the backup holds the epochs before it. Run the "
                                  f"same command again to go on")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_end(self, logs=None):
        self.flag.restore()
