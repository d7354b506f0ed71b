import subprocess
import sys

import pytest
import tensorflow as tf

from bert_tf.text.vocab_learning import learn_vocab
from bert_tf.text.tokenization import SPECIAL_TOKENS, WordpieceTokenizer, load_vocab, write_vocab
from conftest import REPO_ROOT
from bert_tf.data.sample_corpus import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "topics.txt"
    write_corpus(str(path))
    return str(path)


def test_learned_vocab_is_a_bert_vocab(corpus, tmp_path):
    tokens = learn_vocab(corpus, vocab_size=3000)
    assert tuple(tokens[:5]) == SPECIAL_TOKENS
    assert 1000 < len(tokens) <= 3000 and len(set(tokens)) == len(tokens)
    assert any(t.startswith("##") for t in tokens)
    assert all(t == t.lower() for t in tokens[5:]), "lower-cased"
    path = tmp_path / "vocab.txt"
    write_vocab(tokens, path)
    vocab = load_vocab(path)
    # The vocab covers its own corpus: few unknown tokens.
    with open(corpus, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if line][:2000]
    ids = WordpieceTokenizer(vocab, do_lower_case=True).tokenize(tf.constant(lines)).flat_values
    assert (ids.numpy() == vocab.unk_id).mean() < 0.01


def test_cased_vocab_keeps_case(corpus):
    tokens = learn_vocab(corpus, vocab_size=3000, do_lower_case=False)
    assert any(t != t.lower() for t in tokens[5:])


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--input_file: no files match"):
        learn_vocab(str(tmp_path / "missing*.txt"))
    (tmp_path / "a.txt").write_text("hello world\n")
    with pytest.raises(ValueError, match="--vocab_size must exceed"):
        learn_vocab(str(tmp_path / "a.txt"), vocab_size=5)


@pytest.mark.slow
def test_cli(corpus, tmp_path):
    out = tmp_path / "sub" / "vocab.txt"
    result = subprocess.run(
        [sys.executable, "-m", "bert_tf.build_vocab", f"--input_file={corpus}",
         f"--output_file={out}", "--vocab_size=2000"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(load_vocab(out)) <= 2000
    bad = subprocess.run(
        [sys.executable, "-m", "bert_tf.build_vocab", f"--input_file={tmp_path}/none*",
         f"--output_file={out}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no files match" in bad.stderr


def test_the_same_text_gives_the_same_vocab_every_run(corpus, tmp_path):
    """Data, checkpoints and exports all key on the vocab's bytes: learning is deterministic."""
    for run in range(3):
        write_vocab(learn_vocab(corpus, vocab_size=1500), tmp_path / f"vocab{run}.txt")
    first = (tmp_path / "vocab0.txt").read_bytes()
    assert all((tmp_path / f"vocab{run}.txt").read_bytes() == first for run in (1, 2))
