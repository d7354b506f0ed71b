"""harness: the eval data is read from its source once, however many epochs validate; bad flags
are refused as they are read."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.finetuning import harness
from bert_tf.finetuning.classification import ClassificationConfig
from bert_tf.finetuning.question_answering import QuestionAnsweringConfig
from bert_tf.finetuning.tagging import TaggingConfig


def test_fit_reads_the_eval_data_once_and_restores_the_best_epoch(tmp_path):
    reads = tf.Variable(0)

    def counted(x, y):  # counts every element taken from the eval data's source
        reads.assign_add(1)
        return x, y

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    evaluation = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).map(counted).batch(16)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    config = harness.FinetuningConfig(output_dir=str(tmp_path), num_train_epochs=3,
                                      learning_rate=1e-2, mixed_precision="float32")
    harness.compile_model(model, config, total_steps=12,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    harness.fit(model, train, config, steps_per_epoch=4, eval_data=evaluation)
    assert int(reads.numpy()) == 32  # one pass, not one per epoch (96)
    assert (tmp_path / "best.weights.h5").exists()


@pytest.mark.parametrize("config_class", [harness.FinetuningConfig, ClassificationConfig,
                                          TaggingConfig, QuestionAnsweringConfig])
def test_bad_flags_are_refused_as_they_are_read_naming_each(config_class, tmp_path):
    files = {"train_file": "t", "eval_file": "e", "do_train": True}
    fields = {f.name for f in dataclasses.fields(config_class)}
    given = {"output_dir": str(tmp_path), **{k: v for k, v in files.items() if k in fields}}
    config_class(**given)  # the defaults are valid
    with pytest.raises(ValueError) as error:
        config_class(**given, train_batch_size=0, learning_rate=-1e-5, warmup_proportion=1.5,
                     profile_steps="5")
    for flag in ("--train_batch_size", "--learning_rate", "--warmup_proportion",
                 "--profile_steps"):
        assert flag in str(error.value)
    with pytest.raises(ValueError, match=r"--profile_steps=4,2: need 1 <= START <= END"):
        config_class(**given, profile_steps="4,2")
    batch_flag = "predict_batch_size" if "predict_batch_size" in fields else "eval_batch_size"
    if batch_flag in fields:
        with pytest.raises(ValueError, match=f"--{batch_flag} must be positive, got 0"):
            config_class(**given, **{batch_flag: 0})
