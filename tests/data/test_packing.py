"""Sequence packing: every example lands whole in one row, rows fill well, and a packed row gives
each sequence the outputs, losses and accuracies it has alone (no cross-contamination)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import input_pipeline, packing
from bert_tf.data.instances import InstanceOptions
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.data.writer import DataCreationConfig, create_pretraining_data
from bert_tf.modeling import build_pretrainer, objective
from conftest import tiny_config
from pretraining_fixtures import PREDICTIONS, SEQ, make_tiny_data

K, P_ROW = 3, PREDICTIONS + 4


def unpacked_examples(n, seq=SEQ, predictions=PREDICTIONS, vocab=100, seed=0, lengths=None):
    """Random google-layout examples: [CLS] A [SEP] B [SEP], padding, masked positions."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, seq + 1, size=n) if lengths is None else np.asarray(lengths)
    batch = {"input_word_ids": np.zeros((n, seq), np.int32),
             "input_mask": np.zeros((n, seq), np.int32),
             "input_type_ids": np.zeros((n, seq), np.int32),
             "masked_lm_positions": np.zeros((n, predictions), np.int32),
             "masked_lm_ids": np.zeros((n, predictions), np.int32),
             "masked_lm_weights": np.zeros((n, predictions), np.float32),
             "next_sentence_labels": rng.integers(0, 2, size=(n, 1)).astype(np.int32)}
    for i, length in enumerate(lengths):
        batch["input_word_ids"][i, :length] = rng.integers(5, vocab, size=length)
        batch["input_word_ids"][i, 0] = 2
        split = rng.integers(2, length - 1)
        batch["input_word_ids"][i, [split, length - 1]] = 3
        batch["input_mask"][i, :length] = 1
        batch["input_type_ids"][i, split + 1:length] = 1
        count = min(predictions, max(1, round(0.15 * length)))
        chosen = np.sort(rng.choice(np.arange(1, length - 1), size=count, replace=False))
        batch["masked_lm_positions"][i, :count] = chosen
        batch["masked_lm_ids"][i, :count] = rng.integers(5, vocab, size=count)
        batch["masked_lm_weights"][i, :count] = 1.0
    return batch


def sequences_of(packed):
    """Each packed sequence back in unpacked form: {tokens, types, predictions, nsp} keyed by
    its token ids (unique enough for random data)."""
    out = []
    for r in range(len(packed["input_word_ids"])):
        for s in range(K):
            if packed["next_sentence_weights"][r, s] == 0:
                continue
            where = np.flatnonzero(packed["input_mask"][r] == s + 1)
            start = where[0]
            assert packed["next_sentence_positions"][r, s] == start
            assert (np.diff(where) == 1).all(), "a sequence is contiguous"
            positions = packed["masked_lm_positions"][r]
            mine = (packed["masked_lm_weights"][r] > 0) & np.isin(positions, where)
            out.append((tuple(packed["input_word_ids"][r, where]),
                        tuple(packed["input_type_ids"][r, where]),
                        tuple(zip(positions[mine] - start, packed["masked_lm_ids"][r][mine])),
                        int(packed["next_sentence_labels"][r, s])))
    return out


def test_every_example_lands_whole_in_one_row():
    batch = unpacked_examples(500)
    packed = packing.pack_arrays(batch, K, P_ROW)
    expected = []
    for i in range(500):
        n = batch["input_mask"][i].sum()
        w = batch["masked_lm_weights"][i] > 0
        expected.append((tuple(batch["input_word_ids"][i, :n]),
                         tuple(batch["input_type_ids"][i, :n]),
                         tuple(zip(batch["masked_lm_positions"][i][w],
                                   batch["masked_lm_ids"][i][w])),
                         int(batch["next_sentence_labels"][i, 0])))
    assert sorted(sequences_of(packed)) == sorted(expected)
    assert ((packed["input_mask"] > 0).sum(1) <= SEQ).all()
    assert (packed["next_sentence_weights"].sum(1) <= K).all()
    assert (packed["masked_lm_weights"].sum(1) <= P_ROW).all()
    assert len(packed["input_word_ids"]) < 500 / 1.5
    assert packing.fill_rate(packed["input_mask"]) > 0.9


def test_packing_is_deterministic():
    batch = unpacked_examples(300, seed=3)
    a, b = packing.pack_arrays(batch, K, P_ROW), packing.pack_arrays(batch, K, P_ROW)
    assert all((a[name] == b[name]).all() for name in a)


def test_rows_respect_the_prediction_budget():
    """Short sequences with many predictions: rows close on predictions, not tokens."""
    batch = unpacked_examples(60, lengths=[10] * 60)
    batch["masked_lm_weights"][:, :3] = 1.0
    batch["masked_lm_positions"][:, :3] = [[1, 2, 4]]
    packed = packing.pack_arrays(batch, K, 7)
    assert (packed["masked_lm_weights"].sum(1) <= 7).all()
    assert len(packed["input_word_ids"]) == 30  # two sequences of 3 predictions each


@pytest.fixture(scope="module")
def data_128(tmp_path_factory):
    """Python's documentation and docstrings at seq 128, as the embedded default makes them:
    about half padding."""
    directory = tmp_path_factory.mktemp("data")
    make_tiny_data(str(directory))  # the vocab
    corpus = str(directory / "docs.txt")
    write_corpus(corpus, 3_000_000)
    prefix = str(directory / "seq128")
    create_pretraining_data(DataCreationConfig(
        corpus, prefix, str(directory / "vocab.txt"),
        options=InstanceOptions(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=1),
        num_shards=1, num_workers=1, progress=False))
    return tf.io.gfile.glob(f"{prefix}-*.tfrecord")


def test_input_pipeline_packs_real_data_well(data_128):
    p_row = packing.default_predictions_per_row(20, K)
    one_pass = input_pipeline.PipelineOptions(is_training=False)
    plain = input_pipeline.make_dataset(data_128, 512, 128, 20, one_pass)
    dataset = input_pipeline.make_dataset(data_128, 64, 128, 20, dataclasses.replace(
        one_pass, packing=(K, p_row), packing_window=512))
    features, labels = next(iter(dataset))
    assert features["input_word_ids"].shape == (64, 128)
    assert features["next_sentence_positions"].shape == (64, K)
    assert labels["masked_lm_ids"].shape == (64, p_row)
    unpacked_fill = packing.fill_rate(np.concatenate([f["input_mask"] for f, _ in plain]))
    rows = list(dataset)
    packed_fill = packing.fill_rate(np.concatenate([f["input_mask"] for f, _ in rows]))
    sequences = sum(float(l["next_sentence_weights"].numpy().sum()) for _, l in rows)
    assert packed_fill > 0.9 > 0.6 > unpacked_fill
    assert sequences / (len(rows) * 64) > 1.5


def test_a_packed_row_equals_its_sequences_run_alone():
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    batch = unpacked_examples(3, seq=24, vocab=config.vocab_size, seed=5, lengths=[9, 7, 6])
    packed = packing.pack_arrays(batch, K, P_ROW)
    assert len(packed["input_word_ids"]) == 1, "the three fit one row of 24"
    packed_model = build_pretrainer(config, packed=True)
    plain_model = build_pretrainer(config)
    plain_model.set_weights(packed_model.get_weights())
    names = ("input_word_ids", "input_mask", "input_type_ids")
    plain_out = plain_model({**{n: batch[n] for n in names},
                             "masked_lm_positions": batch["masked_lm_positions"]})
    packed_out = packed_model({n: packed[n] for n in names + ("masked_lm_positions",
                                                              "next_sentence_positions")})
    # Per sequence: the encoder's states, the NSP logits, and the MLM logits.
    packed_states = packed_model.encoder({n: packed[n] for n in names})["sequence_output"][0]
    plain_states = plain_model.encoder({n: batch[n] for n in names})["sequence_output"]
    order = [int(i) for i in np.argsort(-batch["input_mask"].sum(1), kind="stable")]
    for slot, i in enumerate(order):
        start = packed["next_sentence_positions"][0, slot]
        n = batch["input_mask"][i].sum()
        np.testing.assert_allclose(packed_states[start:start + n], plain_states[i, :n],
                                   atol=1e-5)
        np.testing.assert_allclose(packed_out["next_sentence_logits"][0, slot],
                                   plain_out["next_sentence_logits"][i], atol=1e-5)
    real = packed["masked_lm_weights"][0] > 0
    plain_real = batch["masked_lm_weights"] > 0
    np.testing.assert_allclose(
        np.sort(np.asarray(packed_out["masked_lm_logits"])[0][real], axis=0),
        np.sort(np.asarray(plain_out["masked_lm_logits"])[np.asarray(order)][
            plain_real[order]], axis=0), atol=1e-5)
    # The objective: the same losses and accuracy counts as the unpacked batch.
    packed_stats = objective.statistics(
        {n: packed[n] for n in packing.LABELS}, packed_out)
    plain_stats = objective.statistics(
        {n: batch[n] for n in ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")},
        plain_out)
    for name in objective.MEANS + objective.COUNTS:
        np.testing.assert_allclose(float(packed_stats[name]), float(plain_stats[name]),
                                   atol=1e-5, err_msg=name)


def test_a_one_sequence_row_is_the_ordinary_encoder():
    """input_mask of 0/1 means what it always did: positions 0..T-1, padding keys masked."""
    config = tiny_config()
    batch = unpacked_examples(4, seq=16, vocab=config.vocab_size, seed=9)
    model = build_pretrainer(config, packed=True)
    features, labels = packing.as_one_sequence_rows(
        {n: tf.constant(batch[n]) for n in ("input_word_ids", "input_mask", "input_type_ids",
                                            "masked_lm_positions")},
        {n: tf.constant(batch[n]) for n in ("masked_lm_ids", "masked_lm_weights",
                                            "next_sentence_labels")})
    plain = build_pretrainer(config)
    plain.set_weights(model.get_weights())
    ours = model(features)
    theirs = plain({n: features[n] for n in ("input_word_ids", "input_mask", "input_type_ids",
                                             "masked_lm_positions")})
    np.testing.assert_allclose(ours["next_sentence_logits"][:, 0],
                               theirs["next_sentence_logits"], atol=1e-6)
    np.testing.assert_allclose(ours["masked_lm_logits"], theirs["masked_lm_logits"], atol=1e-6)
