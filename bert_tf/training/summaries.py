"""What a training run reports: a console line per logging window and TensorBoard scalars.

    step 200/1000  loss=7.1  masked_lm_loss=6.4  ...  learning_rate=0.0008  ETA 0:03:20

Scalars go to `<summary_dir>/train` and `<summary_dir>/eval`, under the same names as the console
line; only the chief writes them.
"""

import os

import tensorflow as tf


class TrainingLog:
    """Console lines through `log` and TensorBoard scalars in `summary_dir` (None: none)."""

    def __init__(self, summary_dir, total_steps, log=print, write_summaries=True):
        self.summary_dir = summary_dir if write_summaries else None
        self.total_steps = total_steps
        self.log = log
        self._train_writer = None

    def train(self, step, metrics, eta_seconds):
        self.log(f"step {step}/{self.total_steps}  " + format_metrics(metrics)
                 + f"  ETA {hms(eta_seconds)}")
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


def format_metrics(metrics):
    return "  ".join(f"{name}={value:.4g}" for name, value in metrics.items())


def hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
