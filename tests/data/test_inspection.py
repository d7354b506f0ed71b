import io
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf.data import schema
from bert_tf.data.schema import infer_lengths
from bert_tf.data.inspection import Statistics, format_example, inspect
from bert_tf.data.instances import Instance, instances_to_examples
from bert_tf.text.tokenization import SPECIAL_TOKENS, load_vocab, write_vocab
from conftest import REPO_ROOT

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran"]


@pytest.fixture
def shards(tmp_path):
    """Four hand-made examples whose statistics are known exactly."""
    write_vocab(list(SPECIAL_TOKENS) + WORDS, tmp_path / "data.vocab.txt")
    vocab = load_vocab(tmp_path / "data.vocab.txt")
    the, cat, sat, on, mat = (vocab.id(w) for w in WORDS[:5])
    cls, sep, mask = vocab.cls_id, vocab.sep_id, vocab.mask_id
    instances = [
        # [CLS] the [MASK] [SEP] sat on [SEP]: cat masked
        Instance([cls, the, mask, sep, sat, on, sep], [0] * 4 + [1] * 3, [2], [cat], False),
        # [CLS] the cat [SEP] dog(<-mat, random) [SEP]; "the" kept
        Instance([cls, the, cat, sep, vocab.id("dog"), sep], [0] * 4 + [1] * 2, [1, 4],
                 [the, mat], True),
        Instance([cls, mask, sep, mask, sep], [0] * 3 + [1] * 2, [1, 3], [on, mat], True),
        Instance([cls, the, sep, cat, sep], [0] * 3 + [1] * 2, [3], [cat], False),
    ]
    paths = [schema.shard_path(str(tmp_path / "data"), i, 2) for i in range(2)]
    for i, path in enumerate(paths):
        with tf.io.TFRecordWriter(path) as writer:
            for record in schema.serialize_examples(instances_to_examples(instances[i::2], 12,
                                                                            3)):
                writer.write(record)
    return tmp_path, vocab


def test_statistics_are_exact(shards):
    directory, vocab = shards
    out = io.StringIO()
    report = inspect(str(directory / "data-*"), num_examples=4, out=out)
    assert report["examples"] == 4
    # 6 predictions over 4 + 3 + 2 + 2 non-special tokens.
    assert report["masked_fraction"] == pytest.approx(6 / 11)
    assert report["mask_fraction"] == pytest.approx(3 / 6)
    assert report["random_fraction"] == pytest.approx(1 / 6)
    assert report["keep_fraction"] == pytest.approx(2 / 6)
    assert report["random_next_fraction"] == pytest.approx(0.5)
    text = out.getvalue()
    assert "[MASK:cat]" in text and "=the=" in text and "~dog:mat~" in text
    assert "4 examples in 2 file(s); max_seq_length=12, max_predictions_per_seq=3" in text
    assert "input_ids int64[12]" in text and "masked_lm_weights float32[3]" in text
    assert "next sentence: random 50.0%" in text


def test_lengths_are_read_from_the_data(shards):
    directory, _ = shards
    assert infer_lengths(schema.shard_path(str(directory / "data"), 0, 2)) == (12, 3)


def test_histogram_counts_every_example(shards):
    directory, vocab = shards
    stats = Statistics(vocab.mask_id, {vocab.cls_id, vocab.sep_id, vocab.pad_id}, 12)
    parsed = schema.parse_examples(
        [r.numpy() for r in tf.data.TFRecordDataset(
            [schema.shard_path(str(directory / "data"), i, 2) for i in range(2)])], 12, 3)
    stats.update(parsed)
    assert sum(count for _, _, count in stats.histogram()) == 4
    assert stats.report()["mean_length"] == pytest.approx((7 + 6 + 5 + 5) / 4)


def test_format_example_names_segments(shards):
    directory, vocab = shards
    parsed = schema.parse_examples(
        [next(iter(tf.data.TFRecordDataset(schema.shard_path(str(directory / "data"), 0, 2))))
         .numpy()], 12, 3)
    text = format_example(parsed, 0, vocab)
    assert text.startswith("example 0: 7 tokens, 1 predictions, is next, segment B starts at 4")


def test_errors(shards, tmp_path):
    directory, _ = shards
    (directory / "data.vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="--vocab_file: not given and no"):
        inspect(str(directory / "data-*"), out=io.StringIO())
    other = tmp_path / "other.tfrecord"
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    with pytest.raises(ValueError, match="not a BERT pretraining example"):
        infer_lengths(str(other))


@pytest.mark.slow
def test_cli(shards):
    directory, _ = shards
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.inspect_tfrecords", f"--input_file={directory}/data-*",
         "--num_examples=1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "masked fraction 54.55%" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bert_tf.inspect_tfrecords", f"--input_file={directory}/none*"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no files match" in bad.stderr


def test_a_gzipped_shard_without_gz_in_its_name_is_read(shards, tmp_path):
    directory, vocab = shards
    plain = sorted(directory.glob("data-*"))[0]
    renamed = tmp_path / "zipped" / "data-00000-of-00001.tfrecord"
    renamed.parent.mkdir()
    with tf.io.TFRecordWriter(str(renamed), "GZIP") as writer:
        for record in tf.data.TFRecordDataset(str(plain)):
            writer.write(record.numpy())
    assert schema.compression_type(str(renamed)) == "GZIP"
    out = io.StringIO()
    inspect(str(renamed), vocab_file=vocab.path, num_examples=1, out=out)
    assert "masked fraction" in out.getvalue()


def test_a_manifest_without_a_key_is_named(tmp_path):
    import json
    path = tmp_path / "data.manifest.json"
    manifest = schema.manifest(12, 3, load_vocab_like(tmp_path), True, str(tmp_path / "data"),
                               [(str(tmp_path / "data-00000-of-00001.tfrecord"), 1)], False)
    del manifest["vocab"]["sha256"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="the manifest's 'vocab.sha256' is missing"):
        schema.read_manifest(str(path))


def load_vocab_like(directory):
    write_vocab(list(SPECIAL_TOKENS) + WORDS, directory / "v.txt")
    return load_vocab(directory / "v.txt")
