"""The run directory: written once, read back by export, finetuning, conversion and resume."""

import os

import keras
import pytest
import tensorflow as tf

from bert_tf import run_dir
from bert_tf.config import BertConfig
from bert_tf.modeling import build_pretrainer
from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab
from conftest import tiny_config


@pytest.fixture(params=["local", "ram"])
def directory(request, tmp_path):
    """A run directory with a checkpoint, on the local disk or TensorFlow's ram:// filesystem."""
    path = (str(tmp_path / "run") if request.param == "local"
            else f"ram://run_dir_test_{os.getpid()}")
    vocab = str(tmp_path / "source_vocab.txt")
    write_vocab(list(SPECIAL_TOKENS) + [f"w{i}" for i in range(50)], vocab)
    config = tiny_config()
    run_dir.write(path, config, vocab, do_lower_case=False, flags={"x": 1})
    keras.utils.set_random_seed(0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=build_pretrainer(config)),
                                         path, 1)
    manager.save(checkpoint_number=3)
    yield path
    if path.startswith("ram://"):
        tf.io.gfile.rmtree(path)


def test_resolve_from_the_directory_or_a_checkpoint(directory):
    files = run_dir.resolve(directory=directory)
    assert files.checkpoint == os.path.join(directory, "ckpt-3")
    assert files.bert_config_file == os.path.join(directory, "bert_config.json")
    assert files.vocab_file == os.path.join(directory, "vocab.txt")
    assert files.do_lower_case is False and files.record["flags"] == {"x": 1}
    assert run_dir.resolve(files.checkpoint + ".index") == files
    assert run_dir.resolve(directory) == files, "a run directory as the checkpoint: its latest"
    explicit = run_dir.resolve(files.checkpoint, vocab_file="v.txt", do_lower_case=True)
    assert (explicit.vocab_file, explicit.do_lower_case) == ("v.txt", True)


def test_load_pretrainer_gives_the_checkpointed_weights(directory):
    pretrainer, vocab = run_dir.load_pretrainer(run_dir.resolve(directory=directory))
    assert len(vocab) == 55 and vocab.tokens[:5] == SPECIAL_TOKENS
    keras.utils.set_random_seed(0)
    original = build_pretrainer(tiny_config())
    for ours, theirs in zip(pretrainer.weights, original.weights, strict=True):
        assert (ours.numpy() == theirs.numpy()).all(), ours.path


def test_problems_name_the_flag_and_files(directory, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no checkpoint in .*empty: give --checkpoint"):
        run_dir.resolve(directory=str(empty))
    with pytest.raises(ValueError, match="give --init_checkpoint or a run directory"):
        run_dir.resolve(flag="--init_checkpoint")
    small = str(tmp_path / "bert_config.json")
    BertConfig.from_dict({**tiny_config().to_dict(), "vocab_size": 40}).to_json_file(small)
    with pytest.raises(ValueError, match=r"vocab.txt has 55 tokens, more than vocab_size=40 of "
                                         r".*bert_config.json"):
        run_dir.load_pretrainer(run_dir.resolve(directory=directory, bert_config_file=small))


def test_a_packed_pretrainers_checkpoint_loads_into_the_unpacked_model(tmp_path):
    """run_pretraining --pack_sequences saves a packed pretrainer, whose Keras operations come in
    another order; export and conversion build the unpacked one and get the same weights."""
    config = tiny_config()
    keras.utils.set_random_seed(5)
    packed = build_pretrainer(config, packed=True)
    optimizer = keras.optimizers.AdamW()
    optimizer.build(packed.trainable_variables)  # as the Trainer's checkpoint holds it too
    path = tf.train.Checkpoint(model=packed, optimizer=optimizer).write(str(tmp_path / "ckpt-1"))
    model = build_pretrainer(config)
    run_dir.load_model_weights(model, path)
    by_path = {w.path: w.numpy() for w in packed.weights}
    assert len(model.weights) == len(by_path)
    for weight in model.weights:
        assert (weight.numpy() == by_path[weight.path]).all(), weight.path
