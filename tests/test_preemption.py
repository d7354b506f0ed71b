"""Stopping on a signal: the exit statuses, the signal flag (real signals), host calls sized to
the grace period, and every command's status for a stopped job."""

import importlib
import os
import signal
import types

import pytest

from bert_tf import preemption
from bert_tf.preemption import EXIT_RESERVE_SECS, HostCallSizer, Preempted, SignalFlag


def test_exit_statuses_are_those_schedulers_read():
    assert preemption.EXIT_STATUS == {"finished": 0, "error": 1, "SIGINT": 130, "SIGTERM": 143}
    assert preemption.exit_status(None) == 0
    assert preemption.exit_status(Preempted("SIGTERM", "saved")) == 143
    assert preemption.exit_status(Preempted("SIGINT", "saved")) == 130
    assert preemption.exit_status(preemption.LostPeer("lost worker 1")) == 143
    assert preemption.exit_status(ValueError("--input_file: no shard")) == 1
    assert preemption.exit_status(OSError("disk full")) == 1


def test_the_flag_records_real_signals_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with SignalFlag() as flag:
        assert flag.name is None
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.name == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a preemption notice is not undone by a Ctrl-C
        assert flag.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_host_calls_grow_from_one_step_and_fit_the_grace_period():
    sizer = HostCallSizer(25, checkpoint_bytes=0)
    assert [sizer.steps(1000) for _ in range(4)] == [1, 2, 4, 8]  # nothing measured yet
    sizer.agree(step_secs=0.5, save_secs=2.0)  # (25 - 2 - reserve) / 2 = 10 s of steps: 20
    budget = (25 - 2.0 - EXIT_RESERVE_SECS) / 2
    assert [sizer.steps(1000) for _ in range(3)] == [16, int(budget / 0.5), int(budget / 0.5)]
    assert sizer.steps(7) == 7  # the loop's own bound (a log or save due) stands
    sizer.agree(step_secs=0.01, save_secs=None)  # faster steps: grows again, by doubling
    assert sizer.steps(10_000) == 40 and sizer.steps(10_000) == 80
    assert sizer.steps(100) == 100  # --steps_per_loop


def test_a_step_that_cannot_fit_is_said_once_and_calls_are_one_step():
    lines = []
    sizer = HostCallSizer(10, checkpoint_bytes=int(5e8))  # 5 s at the assumed speed
    assert sizer.save_secs == pytest.approx(5.0)
    sizer.agree(step_secs=2.0, save_secs=None)  # (10 - 5 - 3) / 2 = 1 s: no step fits
    assert [sizer.steps(1000, lines.append) for _ in range(3)] == [1, 1, 1]
    assert len(lines) == 1 and "cannot fit in --preemption_grace_secs=10" in lines[0]


def test_no_grace_period_means_steps_per_loop():
    sizer = HostCallSizer(0)
    sizer.agree(step_secs=100.0, save_secs=100.0)
    assert sizer.steps(1000) == 1000


@pytest.mark.parametrize("module,job", [("run_pretraining", "run"), ("run_classifier", "run"),
                                        ("run_squad", "run"), ("run_tagging", "run"),
                                        ("run_glue", "run_suite")])
def test_every_training_command_exits_with_the_table_s_status(module, job, monkeypatch, capsys):
    """A command's job stopped after its save, or a lost peer, exits with the retryable status,
    Ctrl-C with 130, bad input with 1, each with one line on stderr."""
    command = importlib.import_module(f"bert_tf.{module}")
    monkeypatch.setattr(command.cli, "from_flags",
                        lambda settings: types.SimpleNamespace(mode="train"))
    if module == "run_pretraining":
        monkeypatch.setattr(command, "for_this_task", lambda config: config)
    for error, status, text in (
            (Preempted("SIGTERM", "SIGTERM: saved at step 7"), 143, "SIGTERM: saved at step 7"),
            (Preempted("SIGINT", "SIGINT: saved"), 130, "SIGINT: saved"),
            (preemption.LostPeer("lost contact with worker 1"), 143, "error: lost contact"),
            (ValueError("--train_file x: no such file"), 1, "error: --train_file x")):
        def failing(config, error=error):
            raise error
        monkeypatch.setattr(command, job, failing)
        with pytest.raises(SystemExit) as stopped:
            command.main([])
        assert stopped.value.code == status
        assert text in capsys.readouterr().err
