"""The finetuning fit (fitting.py): the eval data is read from its source once, however many epochs validate; bad flags
are refused as they are read; batches by length; progress lines."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.finetuning import fitting, job_settings
from bert_tf.finetuning.batching import batch_by_length
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
    config = job_settings.FinetuningConfig(output_dir=str(tmp_path), num_train_epochs=3,
                                      learning_rate=1e-2, mixed_precision="float32")
    fitting.compile_model(model, config, total_steps=12,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    fitting.fit(model, train, config, steps_per_epoch=4, eval_data=evaluation)
    assert int(reads.numpy()) == 32  # one pass, not one per epoch (96)
    assert (tmp_path / "best" / "best.weights.h5").exists()


@pytest.mark.parametrize("config_class", [job_settings.FinetuningConfig, ClassificationConfig,
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


# === Batches by length, and predictions over them ===

def rows_of_lengths(lengths, max_seq_length=64):
    mask = (np.arange(max_seq_length)[None] < np.array(lengths)[:, None]).astype("int32")
    inputs = {"input_word_ids": mask * 7, "input_mask": mask, "input_type_ids": mask * 0}
    return tf.data.Dataset.from_tensor_slices((inputs, mask.astype("float32"),
                                               np.arange(len(lengths))))


def test_batches_are_cut_to_their_bucket_and_eval_keeps_the_order():
    lengths = [3, 40, 5, 17, 64, 2, 9, 30]
    batches = list(batch_by_length(rows_of_lengths(lengths), 2, 64))
    assert [b[0]["input_mask"].shape[1] for b in batches] == [64, 32, 64, 32]
    assert [b[1].shape[1] for b in batches] == [64, 32, 64, 32]  # per-token weights cut too
    assert np.concatenate([b[2] for b in batches]).tolist() == list(range(8))  # order kept
    plain = list(batch_by_length(rows_of_lengths(lengths), 2, 64, dynamic_padding=False))
    assert {b[0]["input_mask"].shape[1] for b in plain} == {64}


def test_training_batches_group_rows_of_one_bucket_and_are_always_full():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 65, 400)
    seen = []
    batches = batch_by_length(rows_of_lengths(lengths), 8, 64, shuffle=True, seed=1,
                              num_rows=400)
    assert batches.element_spec[2].shape.as_list() == [8]  # a static batch size
    for inputs, _, index in batches.take(150):  # 3 passes' worth: the rows repeat
        width = inputs["input_mask"].shape[1]
        longest = lengths[index.numpy()]
        assert longest.max() <= width and (width == 16 or longest.min() > width // 2), \
            (width, longest)  # every row of the batch needs this bucket
        seen.extend(index.numpy().tolist())
    assert set(seen) == set(range(400))
    counts = np.bincount(seen, minlength=400)
    assert counts.min() >= 1 and counts.max() <= 6, counts  # passes follow each other


def test_predict_pads_per_token_outputs_of_every_length():
    inputs = keras.Input((None,), dtype="int32", name="input_mask")
    model = keras.Model({"input_mask": inputs},
                        {"per_token": keras.ops.cast(inputs, "float32") * 2.0})
    lengths = [3, 40, 5, 17]
    batches = batch_by_length(rows_of_lengths(lengths).map(
        lambda inputs, *rest: ({"input_mask": inputs["input_mask"]},)), 2, 64)
    out = fitting.predict(model, batches, pad_to=64)["per_token"]
    assert out.shape == (4, 64)
    np.testing.assert_array_equal(out.sum(1), 2 * np.array(lengths))


def test_progress_lines_during_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    config = job_settings.FinetuningConfig(output_dir=str(tmp_path), num_train_epochs=2,
                                      mixed_precision="float32", log_steps=3)
    fitting.compile_model(model, config, total_steps=16,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    lines = []
    fitting.fit(model, train, config, steps_per_epoch=8, log=lines.append)
    steps = [line.split()[1] for line in lines if line.startswith("step ")]
    assert steps == ["3/16", "6/16", "9/16", "12/16", "15/16", "16/16"], lines
    assert all("ETA" in line and "accuracy=" in line for line in lines if "step " in line)
    assert [line.split(" done")[0] for line in lines if line.startswith("epoch")] == [
        "epoch 1/2", "epoch 2/2"]
