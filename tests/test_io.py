"""File helpers: atomic writes and globbing, on the local disk and TensorFlow's ram:// filesystem
(which goes through the same tf.io.gfile code path as gs://)."""

import os

import pytest
import tensorflow as tf

from bert_tf import io


@pytest.fixture(params=["local", "ram"])
def directory(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
        return
    path = f"ram://io_test_{os.getpid()}_{id(request)}"
    tf.io.gfile.makedirs(path)
    yield path
    tf.io.gfile.rmtree(path)


def test_write_read_and_copy(directory):
    path = f"{directory}/a.json"
    io.write_json(path, {"b": 1, "a": [1, 2]})
    assert io.read_text(path) == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert io.read_json(path) == {"a": [1, 2], "b": 1}
    io.write_file(f"{directory}/b.bin", b"\x00\xff")
    io.copy_file(f"{directory}/b.bin", f"{directory}/c.bin")
    io.copy_file(f"{directory}/a.json", f"{directory}/c.bin")  # over an existing file
    assert io.read_json(f"{directory}/c.bin") == {"a": [1, 2], "b": 1}
    assert sorted(tf.io.gfile.listdir(directory)) == ["a.json", "b.bin", "c.bin"], "no temp files"


def test_directory_is_replaced_only_when_complete(directory):
    target = f"{directory}/out"
    with io.directory_written_atomically(target) as tmp:
        io.write_file(f"{tmp}/x.txt", "first")
    assert io.read_text(f"{target}/x.txt") == "first"
    with pytest.raises(RuntimeError):
        with io.directory_written_atomically(target) as tmp:
            io.write_file(f"{tmp}/x.txt", "second")
            raise RuntimeError("killed half-way")
    assert io.read_text(f"{target}/x.txt") == "first", "a failed write leaves the old one"
    assert tf.io.gfile.listdir(directory) in (["out"], ["out/"]), "and no temporary directory"


def test_expand_file_patterns(tmp_path):
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / name).write_text("x")
    files = io.expand_file_patterns(f"{tmp_path}/*.txt, {tmp_path}/a.txt,{tmp_path}/c.md")
    assert [f.rsplit("/", 1)[1] for f in files] == ["a.txt", "b.txt", "c.md"]
    with pytest.raises(FileNotFoundError, match="--input_file: no files match"):
        io.expand_file_patterns(f"{tmp_path}/*.json")


def test_temporary_names_match_no_glob_of_the_final_names(tmp_path):
    """A killed run's leftovers must not be read as data: `d-*` or `*.tfrecord` never match."""
    final = tmp_path / "d-00000-of-00004.tfrecord"
    tmp = io.temp_name(str(final))
    open(tmp, "w").close()
    assert os.path.dirname(tmp) == str(tmp_path) and ".tmp-" in tmp
    for pattern in ("d-*", "d-*.tfrecord", "*.tfrecord", "d-?????-of-?????.tfrecord"):
        assert tf.io.gfile.glob(str(tmp_path / pattern)) == [], pattern
    assert tf.io.gfile.glob(io.temp_pattern(str(tmp_path / "d-*"))) == [tmp]


def test_a_folder_with_a_dotted_sibling_moves_whole_on_ram():
    """TensorFlow's ram:// lists "assets.extra/x" as "assets/.extra/x" too (a SavedModel with TF
    Serving's warm-up has both folders): the move and the cleanup go past the phantom names."""
    bert_io = io

    source, target = "ram://io_test/tmp_version", "ram://io_test/1"
    for name in ("assets/vocab.txt", "assets.extra/tf_serving_warmup_requests", "saved_model.pb"):
        tf.io.gfile.makedirs(os.path.dirname(f"{source}/{name}"))
        bert_io.write_file(f"{source}/{name}", name)
    bert_io.move_directory(source, target)
    for name in ("assets/vocab.txt", "assets.extra/tf_serving_warmup_requests", "saved_model.pb"):
        assert bert_io.read_text(f"{target}/{name}") == name
    assert not tf.io.gfile.exists(f"{source}/saved_model.pb")
