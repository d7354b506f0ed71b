"""harness.fit: the eval data is read from its source once, however many epochs validate."""

import keras
import numpy as np
import tensorflow as tf

from bert_tf.finetuning import harness


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
