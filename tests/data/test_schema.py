import numpy as np
import tensorflow as tf

from bert_tf.data import schema


def random_examples(n=6, seq=16, predictions=4, seed=0):
    rng = np.random.default_rng(seed)
    out = {name: rng.integers(0, 2**40, (n, seq)) for name in
           ("input_ids", "input_mask", "segment_ids")}
    out.update({name: rng.integers(0, 30522, (n, predictions)) for name in
                ("masked_lm_positions", "masked_lm_ids")})
    out["masked_lm_weights"] = rng.random((n, predictions)).astype(np.float32)
    out["next_sentence_labels"] = rng.integers(0, 2, (n, 1))
    return out


def test_serialized_bytes_equal_protobufs_own():
    examples = random_examples()
    records = schema.serialize_examples(examples)
    for row, record in enumerate(records):
        example = tf.train.Example()
        for name, values in examples.items():
            feature = example.features.feature[name]
            if values.dtype == np.float32:
                feature.float_list.value[:] = values[row].tolist()
            else:
                feature.int64_list.value[:] = values[row].tolist()
        assert record == example.SerializeToString(deterministic=True)


def test_parse_round_trip():
    examples = random_examples(seq=16, predictions=4)
    parsed = schema.parse_examples(schema.serialize_examples(examples), 16, 4)
    for name, values in examples.items():
        np.testing.assert_array_equal(parsed[name], values)
        assert parsed[name].dtype == (np.float32 if name == "masked_lm_weights" else np.int64)


def test_names_and_spec():
    assert schema.shard_path("out/wiki", 3, 8) == "out/wiki-00003-of-00008.tfrecord"
    assert schema.shard_path("w", 0, 1, gzip=True).endswith(".tfrecord.gz")
    assert schema.manifest_path("out/wiki") == "out/wiki.manifest.json"
    spec = schema.feature_spec(128, 20)
    assert spec["masked_lm_weights"] == tf.io.FixedLenFeature([20], tf.float32)
    assert spec["next_sentence_labels"] == tf.io.FixedLenFeature([1], tf.int64)
    assert set(spec) == set(schema.FEATURE_NAMES)
