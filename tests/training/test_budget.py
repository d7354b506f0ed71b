"""Training budgets: parsing, the trapezoidal schedule, the clock the schedule reads, and the
settings that lay a schedule out over a budget."""

import dataclasses

import numpy as np
import pytest

from bert_tf.training.budget import NO_STEP_LIMIT, Budget, Clock, parse_budget
from bert_tf.training.optimization import WarmupLinearDecay
from bert_tf.training.pretraining import PretrainingConfig


@pytest.mark.parametrize("text, expected", [
    ("4h", Budget(None, 14400.0)), ("1h30m", Budget(None, 5400.0)), ("90m", Budget(None, 5400.0)),
    ("1.5h", Budget(None, 5400.0)), ("45s", Budget(None, 45.0)), ("2d", Budget(None, 172800.0)),
    ("20000steps", Budget(20000, None)), ("1step", Budget(1, None)), ("", None)])
def test_budgets_parse(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["4x", "h", "4h30", "4 hours", "-1h", "0s", "0steps", "h4"])
def test_bad_budgets_are_named(text):
    with pytest.raises(ValueError, match=r"--train_budget="):
        parse_budget(text)


def test_trapezoidal_schedule_warms_up_holds_and_decays_at_the_end():
    schedule = WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10,
                                 end_learning_rate=1e-5, num_decay_steps=20)
    values = {step: float(schedule(step)) for step in (0, 5, 10, 50, 80, 90, 100, 150)}
    assert values[0] == 0.0 and values[5] == pytest.approx(5e-4)
    assert values[10] == values[50] == values[80] == pytest.approx(1e-3)  # stable
    assert values[90] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway down the decay
    assert values[100] == pytest.approx(1e-5) and values[150] == pytest.approx(1e-5)
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(90)) == pytest.approx(values[90])
    # a decay longer than the run after warmup: linear from the warmup's end, as BERT's
    longest = WarmupLinearDecay(1e-3, 100, 10, num_decay_steps=1000)
    linear = WarmupLinearDecay(1e-3, 100, 10)
    assert [float(longest(s)) for s in range(0, 101, 7)] == [float(linear(s))
                                                            for s in range(0, 101, 7)]


def test_one_minus_sqrt_decay():
    schedule = WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10,
                                 num_decay_steps=20, decay_shape="sqrt")
    assert float(schedule(80)) == pytest.approx(1e-3)  # stable until the decay
    for step in (85, 90, 95, 100):
        assert float(schedule(step)) == pytest.approx(1e-3 * (1 - ((step - 80) / 20) ** 0.5))
    assert float(schedule(150)) == 0.0
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(85)) == pytest.approx(float(schedule(85)))
    assert "decay_shape" not in WarmupLinearDecay(1e-3, 100).get_config()  # as before
    with pytest.raises(ValueError, match="decay_shape must be one of linear, sqrt"):
        WarmupLinearDecay(1e-3, 100, decay_shape="cosine")


def test_the_schedule_of_a_clock_runs_over_its_seconds():
    clock = Clock(100.0)
    schedule = WarmupLinearDecay(1e-3, num_train_steps=100.0, num_warmup_steps=10.0,
                                 clock=clock)
    assert float(schedule(0)) == 0.0 and clock.steps_left(50) == 1  # a step's time unknown
    clock.advance(5.0, step=10, steps=10)  # 10 steps took 5 s: 0.5 s a step
    assert float(clock.position(10)) == 5.0 and float(clock.position(14)) == 7.0
    assert float(schedule(10)) == pytest.approx(5e-4)  # halfway through the 10 s warmup
    assert float(schedule(30)) == pytest.approx(1e-3 * (1 - 5 / 90))  # at 15 s, extrapolated
    clock.advance(50.0, step=60, steps=50)  # 1 s a step now
    assert float(clock.position(60)) == 55.0 and float(schedule(60)) == pytest.approx(
        1e-3 * (1 - 45 / 90))
    assert clock.steps_left(1000) == 46 and clock.steps_left(20) == 20 and not clock.is_spent()
    clock.advance(45.0, step=105, steps=45)
    assert clock.is_spent() and clock.left == 0.0 and clock.steps_left(100) == 1
    assert float(schedule(105)) == 0.0 and float(schedule(500)) == 0.0


def test_settings_lay_the_schedule_over_the_budget():
    timed = PretrainingConfig(input_file="x", train_budget="2h", warmup_fraction=0.06,
                              lr_schedule="trapezoidal", decay_fraction=0.2)
    assert timed.num_train_steps == NO_STEP_LIMIT and timed.num_warmup_steps == 0
    clock = Clock(timed.budget.seconds)
    schedule = timed.schedule(clock)
    assert schedule == dict(num_train_steps=7200.0, num_warmup_steps=pytest.approx(432.0),
                            num_decay_steps=pytest.approx(1440.0), clock=clock,
                            decay_shape="linear")
    assert dataclasses.replace(timed, log_steps=7).schedule(clock) == schedule  # re-checks pass
    # the recipe's share of warmup when none is given (BERT paper: 1%)
    assert PretrainingConfig(input_file="x", train_budget="100s").schedule(
        Clock(100))["num_warmup_steps"] == pytest.approx(1.0)
    steps = PretrainingConfig(input_file="x", train_budget="5000steps", warmup_fraction=0.1)
    assert (steps.num_train_steps, steps.num_warmup_steps) == (5000, 500)
    assert steps.schedule() == dict(num_train_steps=5000, num_warmup_steps=500,
                                    num_decay_steps=None, clock=None, decay_shape="linear")
    trapezoid = PretrainingConfig(input_file="x", num_train_steps=1000, warmup_fraction=0.05,
                                  lr_schedule="trapezoidal")
    assert trapezoid.schedule() == dict(num_train_steps=1000, num_warmup_steps=50,
                                        num_decay_steps=pytest.approx(100.0), clock=None,
                                        decay_shape="linear")
    sqrt = dataclasses.replace(trapezoid, lr_schedule="trapezoidal_sqrt").schedule()
    assert sqrt == {**trapezoid.schedule(), "decay_shape": "sqrt"}


@pytest.mark.parametrize("flags, message", [
    (dict(train_budget="2h", num_train_steps=100), "--num_train_steps=100 counts steps; "
                                                   "--train_budget=2h is a time"),
    (dict(train_budget="2h", num_warmup_steps=10), "--warmup_fraction sets the warmup"),
    (dict(train_budget="300steps", num_train_steps=100), "disagree: give one"),
    (dict(num_train_steps=100, num_warmup_steps=3, warmup_fraction=0.5), "both set"),
    (dict(train_budget="4 parsecs"), "--train_budget='4 parsecs': expected a time"),
    (dict(warmup_fraction=1.5), "--warmup_fraction must be in"),
    (dict(next_sentence=False, best_checkpoint_metric="next_sentence_accuracy"),
     "needs the next-sentence head"),
    (dict(masked_lm_prob=1.0), "--masked_lm_prob must be in"),
])
def test_budget_and_objective_settings_are_checked(flags, message):
    with pytest.raises(ValueError, match=message):
        PretrainingConfig(input_file="x", **flags)


def test_a_budget_of_time_needs_the_time_not_the_steps():
    # (a value the settings computed themselves passes again, as dataclasses.replace does)
    config = PretrainingConfig(input_file="x", train_budget="30m")
    again = dataclasses.replace(config, train_batch_size=8)
    assert np.isclose(again.budget.seconds, 1800) and again.num_train_steps == NO_STEP_LIMIT
