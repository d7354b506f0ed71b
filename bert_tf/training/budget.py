"""Training budgets: how long a run trains, in optimizer steps or in wall time.

    --train_budget=4h        (also 90m, 1h30m, 45s, 2d)    train for four hours of training time
    --train_budget=20000steps                              the same as --num_train_steps=20000

The recipes that train an encoder on a fixed budget (24hBERT, Izsak et al. 2021; Cramming,
Geiping & Goldstein 2022) lay the learning-rate schedule out over the budget itself: warmup and
decay are fractions of it, and the run ends when it is spent, however many steps that was. A
`Clock` holds the training time spent so far: the wall time of the host calls that run training
steps (the first one's compilation included), not the start-up, checkpoint saves or evaluations,
so that the checkpoint of the step a budget ends at holds it exactly. It is saved in each
checkpoint, so a
preempted run resumes at its place in the schedule (the time lost between the last checkpoint
and the preemption is trained again, as its steps are).

The learning rate is a function of the optimizer step inside the compiled step, so the clock
also keeps the step its time was last measured at and the seconds a step took then: the schedule
reads `seconds + (step - at_step) * seconds_per_step`, exact at each host call's start and
extrapolated within it.
"""

import re
from typing import NamedTuple

import tensorflow as tf

UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_TIME = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_STEPS = re.compile(r"(\d+)\s*steps?")
# The step limit of a run bounded by time: int32, as the loop's step counts are.
NO_STEP_LIMIT = 2**31 - 1


class Budget(NamedTuple):
    steps: int | None  # a budget of optimizer steps
    seconds: float | None  # or of training time


def parse_budget(text, flag="--train_budget"):
    """A `Budget` from "4h", "1h30m", "90m", "45s", "2d", "20000steps"; "" gives None."""
    text = (text or "").strip().lower()
    if not text:
        return None
    if match := _STEPS.fullmatch(text):
        steps = int(match.group(1))
        if steps < 1:
            raise ValueError(f"{flag}={text}: a budget of steps must be at least 1 step")
        return Budget(steps, None)
    parts = _TIME.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text.replace(" ", ""):
        raise ValueError(f"{flag}={text!r}: expected a time such as 4h, 90m, 1h30m or 45s, or "
                         f"a number of steps such as 20000steps")
    seconds = sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{flag}={text}: the budget must be more than 0 seconds")
    return Budget(None, seconds)


class Clock(tf.Module):
    """The training time of a run against its `budget_seconds`, saved with its checkpoints
    (create it under the strategy's scope, as the model)."""

    def __init__(self, budget_seconds):
        super().__init__(name="clock")
        self.budget_seconds = float(budget_seconds)
        self.seconds = tf.Variable(0.0, trainable=False, name="seconds")
        self.at_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="at_step")
        self.seconds_per_step = tf.Variable(0.0, trainable=False, name="seconds_per_step")

    def position(self, step):
        """The training time (float32 seconds) at optimizer step `step`, as the schedule reads
        it: measured up to the clock's last step, extrapolated after it."""
        steps = tf.cast(tf.cast(step, tf.int64) - self.at_step, tf.float32)
        return self.seconds + tf.maximum(steps, 0.0) * self.seconds_per_step

    @property
    def spent(self) -> float:
        return float(self.seconds.numpy())

    @property
    def left(self) -> float:
        return max(self.budget_seconds - self.spent, 0.0)

    def is_spent(self) -> bool:
        return self.spent >= self.budget_seconds

    def advance(self, seconds, step, steps=0):
        """Adds `seconds` of training, which `steps` steps ending at `step` took (0: the
        per-step time stays as it was)."""
        self.seconds.assign(self.seconds + seconds)
        self.at_step.assign(step)
        if steps:
            self.seconds_per_step.assign(seconds / steps)

    def steps_left(self, limit) -> int:
        """How many steps (1 to `limit`) the next host call may run without passing the budget
        by more than a step: one until a step's time is known."""
        per_step = float(self.seconds_per_step.numpy())
        if per_step <= 0:
            return 1
        return max(1, min(limit, int(self.left / per_step) + 1))
