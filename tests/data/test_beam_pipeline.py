"""The Apache Beam pipeline on Beam's DirectRunner in multi-process mode: the same examples and
bytes as the local path, for any number of workers, with nothing finished left by a failed job."""

import filecmp
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf.data import schema
from bert_tf.data.beam_pipeline import create_pretraining_data_beam, pipeline_options
from bert_tf.data.instances import InstanceOptions
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.data.writer import DataCreationConfig, DataError, create_pretraining_data
from bert_tf.text.tokenization import write_vocab
from bert_tf.text.vocab_learning import learn_vocab
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # each Beam job starts worker processes (about 5 s)

OPTIONS = InstanceOptions(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=2)
MULTI_PROCESS = ["--direct_running_mode=multi_processing"]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """Python's documentation as (documents, vocab file): real English, ~0.4 MB."""
    directory = tmp_path_factory.mktemp("text")
    path = directory / "topics.txt"
    write_corpus(str(path))
    vocab = directory / "vocab.txt"
    write_vocab(learn_vocab(str(path), vocab_size=2000), vocab)
    documents = [d for d in path.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    return {"documents": documents, "vocab": str(vocab)}


def split_corpus(documents, directory, sizes):
    """Writes consecutive runs of `documents` of the given sizes, one file each (0: an empty
    file); returns the glob pattern."""
    directory.mkdir()
    start = 0
    for i, size in enumerate(sizes):
        part = documents[start:start + size]
        start += size
        (directory / f"part-{i:03d}.txt").write_text("\n\n".join(part) + ("\n" if part else ""),
                                                     encoding="utf-8")
    return str(directory / "part-*.txt")


@pytest.fixture(scope="module")
def many_files(text, tmp_path_factory):
    """12 files of 0 to 40 documents, one of them empty and one a single document."""
    sizes = [3, 40, 1, 0, 12, 7, 25, 2, 9, 30, 5, 15]
    return split_corpus(text["documents"], tmp_path_factory.mktemp("many") / "corpus", sizes)


def config(text, input_file, output, **kwargs):
    args = dict(input_file=input_file, output_file=str(output), vocab_file=text["vocab"],
                options=OPTIONS, random_seed=7, num_shards=3, num_workers=1,
                document_buffer_mb=0.02, progress=False)
    return DataCreationConfig(**{**args, **kwargs})


def beam(job_config, *args, workers=2):
    options = pipeline_options("DirectRunner", [f"--direct_num_workers={workers}", *args])
    return create_pretraining_data_beam(job_config, options)


def records(shards):
    return [[r.numpy() for r in tf.data.TFRecordDataset(path)] for path in shards]


def example_hashes(shards):
    return sorted(hashlib.sha256(r).hexdigest() for shard in records(shards) for r in shard)


def same_bytes(a, b):
    return all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b, strict=True))


def finished_or_temporary(directory, stem):
    return [f for f in os.listdir(directory) if f.startswith(stem)]


@pytest.fixture(scope="module")
def local(text, many_files, tmp_path_factory):
    return create_pretraining_data(config(text, many_files,
                                          tmp_path_factory.mktemp("local") / "data"))


def test_same_examples_and_bytes_as_the_local_path(text, many_files, local, tmp_path):
    summary = beam(config(text, many_files, tmp_path / "data"), *MULTI_PROCESS)
    assert summary["units"] > 5 and summary["examples"] == local["examples"] > 1000
    assert example_hashes(summary["shards"]) == example_hashes(local["shards"])
    assert same_bytes(summary["shards"], local["shards"]), "the same shard for every example"
    ours = schema.read_manifest(summary["manifest"])
    theirs = schema.read_manifest(local["manifest"])
    assert ours["runner"] == "DirectRunner" and theirs["runner"] == "local"
    assert ours["shards"] == theirs["shards"] and ours["statistics"] == theirs["statistics"]
    assert filecmp.cmp(schema.vocab_copy_path(str(tmp_path / "data")), text["vocab"],
                       shallow=False)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f], "no temporary file is left"


def test_fifty_files_byte_identical_with_one_and_two_workers(text, tmp_path):
    sizes = [2 if i % 3 == 0 else 1 for i in range(50)]
    pattern = split_corpus(text["documents"], tmp_path / "corpus", sizes)
    one = beam(config(text, pattern, tmp_path / "one"), *MULTI_PROCESS, workers=1)
    two = beam(config(text, pattern, tmp_path / "two"), *MULTI_PROCESS, workers=2)
    local = create_pretraining_data(config(text, pattern, tmp_path / "local", num_workers=2))
    assert len(schema.read_manifest(one["manifest"])["input_files"]) == 50
    assert one["documents"] == local["documents"] >= sum(sizes)
    assert same_bytes(one["shards"], two["shards"]), "rerun with another worker count"
    assert same_bytes(one["shards"], local["shards"])


def test_single_document_and_empty_files(text, tmp_path):
    """(Beam's in-memory runner: what is checked here does not depend on worker processes.)"""
    pattern = split_corpus(text["documents"][5:], tmp_path / "corpus", [0, 1, 0])
    summary = beam(config(text, pattern, tmp_path / "one", num_shards=2), workers=1)
    local = create_pretraining_data(config(text, pattern, tmp_path / "local", num_shards=2))
    assert summary["documents"] == 1 and summary["examples"] > 0
    assert same_bytes(summary["shards"], local["shards"])

    empty = split_corpus([], tmp_path / "empty", [0, 0])
    with pytest.raises(DataError, match="--input_file: no text in .*part-000.txt"):
        beam(config(text, empty, tmp_path / "nothing"), workers=1)
    assert not finished_or_temporary(tmp_path, "nothing")


def test_invalid_utf8_is_named_with_file_and_line_and_nothing_is_left(text, many_files, local,
                                                                     tmp_path):
    bad = tmp_path / "corpus" / "bad.txt"
    bad.parent.mkdir()
    bad.write_bytes(b"A good line.\nAnother one.\n\nBroken \xff\xfe bytes here.\nMore.\n")
    with pytest.raises(DataError, match=re.escape(f"{bad}:4: invalid UTF-8")):
        beam(config(text, f"{many_files},{bad}", tmp_path / "data"), *MULTI_PROCESS)
    assert not finished_or_temporary(tmp_path, "data")
    # A finished data set under the same name is kept when a later job fails.
    prefix = local["manifest"].removesuffix(".manifest.json")
    with pytest.raises(DataError):
        beam(config(text, f"{many_files},{bad}", prefix, overwrite=True), workers=1)
    assert schema.read_manifest(schema.manifest_path(prefix))["num_examples"] == local["examples"]


def test_shuffle_is_global_and_deterministic(text, many_files, local, tmp_path):
    first = beam(config(text, many_files, tmp_path / "a", shuffle=True), *MULTI_PROCESS)
    second = beam(config(text, many_files, tmp_path / "b", shuffle=True), workers=1)
    assert same_bytes(first["shards"], second["shards"]), "the same shuffle on every run"
    assert example_hashes(first["shards"]) == example_hashes(local["shards"])
    shuffled, ordered = records(first["shards"]), records(local["shards"])
    assert all(len(shard) > 0.2 * local["examples"] for shard in shuffled)
    assert shuffled[0][:20] != ordered[0][:20]
    # Examples of one buffer (neighbours in the local path's order) spread over every shard.
    first_buffer = {r for shard in ordered for r in shard[:5]}
    assert all(first_buffer & set(shard) for shard in shuffled)
    other_seed = beam(config(text, many_files, tmp_path / "c", shuffle=True, random_seed=8),
                      workers=1)
    assert example_hashes(other_seed["shards"]) != example_hashes(first["shards"])
    with pytest.raises(ValueError, match="--shuffle needs --runner"):
        create_pretraining_data(config(text, many_files, tmp_path / "d", shuffle=True))


def test_object_store_paths(text, many_files, local):
    """ram:// is TensorFlow's in-memory file system: one process, so the in-memory runner."""
    bucket = "ram://beam-bucket"
    tf.io.gfile.makedirs(f"{bucket}/corpus")
    for path in sorted(tf.io.gfile.glob(many_files)):
        tf.io.gfile.copy(path, f"{bucket}/corpus/{os.path.basename(path)}")
    tf.io.gfile.copy(text["vocab"], f"{bucket}/vocab.txt")
    job = config(text, f"{bucket}/corpus/part-*.txt", f"{bucket}/data/wiki",
                 vocab_file=f"{bucket}/vocab.txt")
    summary = beam(job, "--direct_running_mode=in_memory", workers=1)
    assert example_hashes(summary["shards"]) == example_hashes(local["shards"])
    assert sorted(tf.io.gfile.listdir(f"{bucket}/data")) == [
        "wiki-00000-of-00003.tfrecord", "wiki-00001-of-00003.tfrecord",
        "wiki-00002-of-00003.tfrecord", "wiki.manifest.json", "wiki.vocab.txt"]


def test_command_line(text, many_files, local, tmp_path):
    base = [sys.executable, "-m", "bert_tf.create_pretraining_data", f"--input_file={many_files}",
            f"--vocab_file={text['vocab']}", "--max_seq_length=64",
            "--max_predictions_per_seq=10", "--dupe_factor=2", "--random_seed=7",
            "--num_shards=3", "--document_buffer_mb=0.02"]
    run = subprocess.run(base + [f"--output_file={tmp_path / 'cli'}", "--runner=DirectRunner",
                                 "--direct_num_workers=2", *MULTI_PROCESS],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"Wrote [\d,]+ examples from \d+ documents", run.stdout)
    manifest = json.loads((tmp_path / "cli.manifest.json").read_text())
    assert manifest["runner"] == "DirectRunner"
    assert same_bytes([str(tmp_path / f"cli-0000{i}-of-00003.tfrecord") for i in range(3)],
                      local["shards"])
    stray = subprocess.run(base + [f"--output_file={tmp_path / 'x'}", "--direct_num_workers=2"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert stray.returncode == 1
    assert "unknown flag(s) --direct_num_workers=2 (Beam's options need --runner)" in stray.stderr
