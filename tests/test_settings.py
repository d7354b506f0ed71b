"""Job settings: one dataclass per job defines its flags, and parsed flags build it back."""

import dataclasses

import pytest
from absl import flags

from bert_tf import settings
from bert_tf.data.instances import InstanceOptions
from bert_tf.data.writer import DataCreationConfig
from bert_tf.finetuning.classification import ClassificationConfig
from bert_tf.finetuning.question_answering import QuestionAnsweringConfig
from bert_tf.finetuning.tagging import TaggingConfig
from bert_tf.training.pretraining import PretrainingConfig


@dataclasses.dataclass(frozen=True)
class Inner:
    rate: float = settings.setting(0.5, "A rate.")


@dataclasses.dataclass(frozen=True)
class Job:
    name: str = settings.setting(None, "A name.", required=True)
    steps: int = settings.setting(3, "Steps.")
    fast: bool = settings.setting(False, "Go fast.")
    mode: str = settings.setting("a", "Mode.", choices=("a", "b"))
    maybe: int | None = settings.setting(None, "Optional.")
    inner: Inner = Inner()


def parse(config_class, *argv):
    values = flags.FlagValues()
    settings.define_flags(config_class, values)
    values(["prog", *argv])
    return values


def test_flags_from_a_dataclass_round_trip():
    values = parse(Job, "--name=x", "--steps=7", "--fast", "--mode=b", "--rate=0.25")
    job = settings.from_flags(Job, values)
    assert job == Job(name="x", steps=7, fast=True, mode="b", inner=Inner(0.25))
    assert settings.flat_dict(job) == {"name": "x", "steps": 7, "fast": True, "mode": "b",
                                       "maybe": None, "rate": 0.25}
    assert values["steps"].help == "Steps."


def test_required_and_choices_are_enforced():
    with pytest.raises(flags.IllegalFlagValueError):
        parse(Job)  # --name is required
    with pytest.raises(flags.IllegalFlagValueError):
        parse(Job, "--name=x", "--mode=c")


@pytest.mark.parametrize("config_class,required", [
    (PretrainingConfig, {}),
    (DataCreationConfig, {"input_file": "a", "output_file": "b", "vocab_file": "c"}),
    (ClassificationConfig, {"train_file": "a", "eval_file": "b", "output_dir": "c"}),
    (TaggingConfig, {"train_file": "a", "eval_file": "b", "output_dir": "c"}),
    (QuestionAnsweringConfig, {"output_dir": "c", "do_predict": True, "predict_file": "p"})])
def test_every_job_parses_to_its_own_defaults(config_class, required):
    values = parse(config_class, *(f"--{k}={v}" for k, v in required.items()))
    assert settings.from_flags(config_class, values) == config_class(**required)


def test_the_dataclass_validates():
    with pytest.raises(ValueError, match="max_seq_length must be at least 5"):
        InstanceOptions(max_seq_length=4)
    with pytest.raises(ValueError, match="--num_shards must be at least 1, got 0"):
        DataCreationConfig("a", "b", "c", num_shards=0)
    with pytest.raises(ValueError, match="--learning_rate must be positive"):
        PretrainingConfig(learning_rate=0.0).validate()
