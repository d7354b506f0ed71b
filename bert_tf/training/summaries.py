"""What a training run reports: a console line per logging window and TensorBoard scalars.

    step 200/1000  loss=7.1  masked_lm_loss=6.4  ...  learning_rate=0.0008  ETA 3m20s

Scalars go to `<summary_dir>/train` and `<summary_dir>/eval`, under the same names as the console
line, and the run's settings to `<summary_dir>` itself through TensorBoard's HParams plugin (its
HParams tab then compares runs by their flags beside their final metrics); only the chief
writes them.
"""

import numbers
import os

import tensorflow as tf


# The HParams tab's metric columns: (subdirectory of the run, scalar tag).
HPARAMS_METRICS = (("eval", "masked_lm_accuracy"), ("eval", "next_sentence_accuracy"),
                   ("eval", "loss"), ("train", "loss"))


class TrainingLog:
    """Console lines through `log` and TensorBoard scalars in `summary_dir` (None: none)."""

    def __init__(self, summary_dir, total_steps, log=print, write_summaries=True):
        self.summary_dir = summary_dir if write_summaries else None
        self.total_steps = total_steps
        self.log = log
        self._train_writer = None

    def hyperparameters(self, values, metrics=HPARAMS_METRICS):
        """The run's settings ({flag: value}) as one HParams session, named by the directory,
        with `metrics` ((subdirectory, scalar tag) pairs) as the tab's metric columns."""
        if not self.summary_dir:
            return
        from tensorboard.plugins.hparams import api as hparams

        kept = {name: value if isinstance(value, (bool, int, float, str)) else str(value)
                for name, value in values.items() if value is not None}
        writer = tf.summary.create_file_writer(self.summary_dir)
        with writer.as_default():
            hparams.hparams_config(hparams=[hparams.HParam(name) for name in kept],
                                   metrics=[hparams.Metric(tag, group=group)
                                            for group, tag in metrics])
            hparams.hparams(kept, trial_id=os.path.basename(self.summary_dir.rstrip("/")))
        writer.close()

    def train(self, step, metrics, eta_seconds):
        of = f"/{self.total_steps}" if self.total_steps else ""  # None: a budget of time
        self.log(f"step {step}{of}  " + format_metrics(metrics)
                 + f"  ETA {format_seconds(eta_seconds)}")
        if self.summary_dir:
            if self._train_writer is None:
                self._train_writer = tf.summary.create_file_writer(
                    os.path.join(self.summary_dir, "train"))
            write_scalars(self._train_writer, step, metrics)

    def evaluate(self, step, metrics):
        if self.summary_dir:
            writer = tf.summary.create_file_writer(os.path.join(self.summary_dir, "eval"))
            write_scalars(writer, step, metrics)
            writer.close()

    def close(self):
        if self._train_writer is not None:
            self._train_writer.close()
            self._train_writer = None


def write_scalars(writer, step, metrics):
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
    writer.flush()


def format_metrics(metrics) -> str:
    """"name=value" for each number of `metrics`, 4 significant digits: the progress and
    evaluation lines of pretraining and finetuning alike."""
    return "  ".join(f"{name}={float(value):.4g}" for name, value in metrics.items()
                     if isinstance(value, numbers.Real) and not isinstance(value, bool)
                     or getattr(value, "shape", None) == ())


def format_seconds(seconds) -> str:
    """A duration or ETA as every progress line says it: 6m12s, 2h05m."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
