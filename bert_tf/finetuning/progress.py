"""Progress lines for a finetuning fit(): one every --log_steps training steps, and one per epoch.

    step 200/1,170 (epoch 1/3)  loss=0.4127  accuracy=0.8203  312.4 examples/s  ETA 6m12s
    epoch 1/3 done in 2m05s  loss=0.3921  accuracy=0.8301  val_loss=0.3512  val_accuracy=0.8542

Keras's own `verbose=2` prints nothing until an epoch ends; a long epoch then looks hung.
"""

import time

import keras

from bert_tf.training.summaries import format_metrics, format_seconds


class Progress(keras.callbacks.Callback):
    """Logs training progress every `log_steps` steps: the running loss and metrics of the epoch
    (Keras's), examples per second since the last line, and the time left for the whole fit
    (at the speed since the first step: the first step's tracing and compiling excluded)."""

    def __init__(self, log_steps, steps_per_epoch, epochs, batch_size, log=print):
        super().__init__()
        self.log_steps, self.steps_per_epoch, self.epochs = log_steps, steps_per_epoch, epochs
        self.batch_size, self.log = batch_size, log
        self.total = steps_per_epoch * epochs
        self.done = 0
        self.first_step_end = self.last_time = self.epoch_start = None
        self.last_done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch, time.monotonic()
        if self.first_step_end is None:  # a resumed job starts after the epochs it had done
            self.done = self.last_done = epoch * self.steps_per_epoch

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        now = time.monotonic()
        if self.first_step_end is None:
            self.first_step_end, self.last_time, self.last_done = now, now, self.done
            return
        if self.done % self.log_steps and self.done != self.total:
            return
        rate = (self.done - self.last_done) * self.batch_size / max(now - self.last_time, 1e-9)
        per_step = (now - self.first_step_end) / max(self.done - 1, 1)
        self.log(f"step {self.done:,}/{self.total:,} (epoch {self.epoch + 1}/{self.epochs})  "
                 f"{format_metrics(logs or {})}  {rate:,.1f} examples/s  "
                 f"ETA {format_seconds(per_step * (self.total - self.done))}")
        self.last_time, self.last_done = now, self.done

    def on_epoch_end(self, epoch, logs=None):
        self.log(f"epoch {epoch + 1}/{self.epochs} done in "
                 f"{format_seconds(time.monotonic() - self.epoch_start)}  "
                 f"{format_metrics(logs or {})}")
