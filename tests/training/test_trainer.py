import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.training import optimization
from bert_tf.training.summaries import hms
from bert_tf.training.trainer import Trainer, TrainOptions, _to_next
from bert_tf.data.input_pipeline import make_dataset
from bert_tf.modeling import build_pretrainer
from conftest import tiny_config
from pretraining_fixtures import PREDICTIONS, SEQ, make_tiny_data


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    files = tf.io.gfile.glob(make_tiny_data(str(tmp_path_factory.mktemp("data"))))
    return next(iter(make_dataset(files, 8, SEQ, PREDICTIONS, seed=3)))


def trainer_for(parts, tmp_path):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    keras.utils.set_random_seed(5)
    with strategy.scope():
        model = build_pretrainer(tiny_config(vocab_size=2000, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0))
        optimizer = optimization.create_optimizer("adamw", 1e-3, 10)
    options = TrainOptions(output_dir=str(tmp_path / f"p{parts}"), num_train_steps=10,
                                    gradient_accumulation_steps=parts)
    return Trainer(strategy, model, optimizer, options)


def test_accumulated_gradient_equals_the_big_batch_gradient(batch, tmp_path):
    whole, whole_stats = trainer_for(1, tmp_path).gradients(*batch)
    split, split_stats = trainer_for(4, tmp_path).gradients(*batch)
    assert len(whole) == len(split)
    for a, b in zip(whole, split):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)
    assert float(whole_stats["masked_lm_count"]) == float(split_stats["masked_lm_count"])
    for name in ("loss", "masked_lm_loss", "next_sentence_loss"):
        assert float(whole_stats[name]) == pytest.approx(float(split_stats[name]), rel=1e-5)


def test_to_next_boundary():
    assert _to_next(0, 100) == 100
    assert _to_next(250, 100) == 50
    assert hms(3725) == "1:02:05"
