import shutil

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import io
from bert_tf.data.input_pipeline import (DataMismatchError, PipelineOptions, check_data,
                                    find_corrupt_shard, make_dataset)
from pretraining_fixtures import PREDICTIONS, SEQ, make_tiny_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return io.expand_file_patterns(make_tiny_data(str(directory)))


def test_batches_have_model_names_and_int32(data):
    features_, labels = next(iter(make_dataset(data, 8, SEQ, PREDICTIONS, PipelineOptions(seed=1))))
    assert set(features_) == {"input_word_ids", "input_mask", "input_type_ids",
                              "masked_lm_positions"}
    assert set(labels) == {"masked_lm_ids", "masked_lm_weights", "next_sentence_labels"}
    assert features_["input_word_ids"].shape == (8, SEQ)
    assert features_["input_word_ids"].dtype == tf.int32
    assert labels["masked_lm_weights"].dtype == tf.float32
    assert labels["next_sentence_labels"].shape == (8, 1)


def test_eval_data_is_finite_and_drops_the_remainder(data):
    total = sum(1 for _ in tf.data.TFRecordDataset(data))
    batches = list(make_dataset(data, 7, SEQ, PREDICTIONS, PipelineOptions(is_training=False)))
    assert len(batches) == total // 7
    assert all(b[0]["input_word_ids"].shape[0] == 7 for b in batches)


def test_workers_read_different_files(data):
    def ids(pipeline):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline)
        batches = make_dataset(data, 4, SEQ, PREDICTIONS, PipelineOptions(is_training=False),
                               input_context=context)
        return {tuple(row) for b in batches for row in b[0]["input_word_ids"].numpy()}
    first, second = ids(0), ids(1)
    assert first and second and not first & second


def test_manifest_mismatch_is_refused(data):
    assert check_data(data, SEQ, PREDICTIONS)["max_seq_length"] == SEQ
    with pytest.raises(DataMismatchError) as error:
        check_data(data, 128, PREDICTIONS)
    message = str(error.value)
    assert "the data holds max_seq_length=32, max_predictions_per_seq=5" in message
    assert "--max_seq_length=128" in message and "manifest.json" in message


def test_data_without_manifest_is_checked_from_its_first_record(data, tmp_path):
    copy = tmp_path / "google-00000-of-00001.tfrecord"
    shutil.copy(data[0], copy)
    assert check_data([str(copy)], SEQ, PREDICTIONS) is None
    with pytest.raises(DataMismatchError, match="first record; no manifest"):
        check_data([str(copy)], SEQ, 20)


def copy_data_set(data, directory, shards=None):
    """A copy of the tiny data set (all shards, or those of `shards`) with its manifest and vocab
    in `directory`; returns the copied shards."""
    prefix = data[0].rsplit("-", 3)[0]
    for suffix in (".manifest.json", ".vocab.txt"):
        shutil.copy(prefix + suffix, directory)
    copies = []
    for index, shard in enumerate(data):
        if shards is None or index in shards:
            copies.append(str(shutil.copy(shard, directory)))
    return copies


def test_incomplete_set_is_refused_naming_the_missing_shards(data, tmp_path):
    # a run killed while renaming: some shards final, no manifest
    (tmp_path / "a").mkdir()
    first = copy_data_set(data, tmp_path / "a", shards=[0])
    (tmp_path / "a" / "tiny.manifest.json").unlink()
    files = io.expand_file_patterns(str(tmp_path / "a" / "tiny-*.tfrecord"))
    with pytest.raises(DataMismatchError, match=r"incomplete data set: 1 shard.s. missing "
                                                r"\(.*tiny-00001-of-00002.tfrecord\)"):
        check_data(files, SEQ, PREDICTIONS)
    # a manifest whose shards are not all there
    shutil.copy(data[0].rsplit("-", 3)[0] + ".manifest.json", tmp_path / "a")
    with pytest.raises(DataMismatchError, match="incomplete data set"):
        check_data(first, SEQ, PREDICTIONS)
    # some shards of a complete set, chosen on purpose, are fine
    (tmp_path / "b").mkdir()
    copies = copy_data_set(data, tmp_path / "b")
    assert check_data(copies[:1], SEQ, PREDICTIONS)["max_seq_length"] == SEQ


def test_manifest_paths_stay_beside_it_and_its_vocab_hash_is_checked(data, tmp_path):
    import json
    copies = copy_data_set(data, tmp_path)
    manifest_file = tmp_path / "tiny.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    for name in ("../../../../../etc/passwd", "/etc/passwd", "sub/vocab.txt", ".."):
        manifest_file.write_text(json.dumps({**manifest, "vocab": {**manifest["vocab"],
                                                                   "file": name}}))
        with pytest.raises(ValueError, match="is not a file name; the files this one lists"):
            check_data(copies, SEQ, PREDICTIONS)
    manifest_file.write_text(json.dumps({**manifest, "shards": [
        {**manifest["shards"][0], "file": "/etc/passwd"}] + manifest["shards"][1:]}))
    with pytest.raises(ValueError, match="is not a file name"):
        check_data(copies, SEQ, PREDICTIONS)
    manifest_file.write_text(json.dumps(manifest))
    vocab = tmp_path / "tiny.vocab.txt"
    vocab.write_text(vocab.read_text().replace("the\n", "thee\n", 1))
    with pytest.raises(ValueError, match="tiny.vocab.txt: not the vocab the data was made with"):
        check_data(copies, SEQ, PREDICTIONS)


def test_largest_token_id_is_sampled_from_the_records(data):
    from bert_tf.data.input_pipeline import largest_token_id
    ids = [int(v) for record in tf.data.TFRecordDataset(data[:1]).take(50)
           for v in tf.train.Example.FromString(record.numpy()).features.feature[
               "input_ids"].int64_list.value]
    assert largest_token_id(data[:1], SEQ, PREDICTIONS, examples=50) >= max(ids) > 100


def test_corrupt_shard_is_found(data, tmp_path):
    bad = tmp_path / "bad-00000-of-00001.tfrecord"
    raw = open(data[0], "rb").read()
    bad.write_bytes(raw[:len(raw) // 2] + b"\x00" * 100 + raw[len(raw) // 2:])
    assert find_corrupt_shard([data[0], str(bad)]) == str(bad)
    assert find_corrupt_shard(data) is None


def test_gzip_shards_are_read(data, tmp_path):
    import gzip
    path = tmp_path / "gz-00000-of-00001.tfrecord.gz"
    with open(data[0], "rb") as f, gzip.open(path, "wb") as out:
        out.write(f.read())
    plain = list(make_dataset([data[0]], 4, SEQ, PREDICTIONS, PipelineOptions(is_training=False)))
    zipped = list(make_dataset([str(path)], 4, SEQ, PREDICTIONS,
                               PipelineOptions(is_training=False)))
    assert len(plain) == len(zipped) > 0
    np.testing.assert_array_equal(plain[0][0]["input_word_ids"], zipped[0][0]["input_word_ids"])
