"""Shared fixtures: quiet CPU-only TensorFlow, tiny configs, random BERT inputs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Under pytest-xdist the worker processes already keep every core busy: each (and every command
# it starts) runs an op on one thread, instead of two threads per process contending for the
# same cores (about 10% less time for the suite on 2 cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import random  # noqa: E402
import unicodedata  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bert_tf.config import BertConfig  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A line TensorFlow's C++ runtime logs at error or fatal level.
TF_ERROR_LINE = r"^\d{4}-\d\d-\d\d [\d:.]+: [EF] .*$"
CONFIGS_DIR = os.path.join(REPO_ROOT, "configs")


# ModernBERT's settings (BertConfig's options beyond BERT) at a tiny size: pre-norm, GeGLU, no
# biases (nor in the norms and the masked-LM head), no segment table, no first attention norm,
# rotary positions with a base of their own in the local layers (window 4, every other layer).
MODERNBERT = dict(layer_norm="pre", hidden_act="geglu", use_bias=False, norm_bias=False,
                  head_bias=False, type_vocab_size=0, first_block_attention_norm=False,
                  position_embedding_type="rope", rope_theta=160000.0, local_rope_theta=10000.0,
                  local_attention_window=4, global_attention_every_n_layers=2)


def tiny_config(**overrides) -> BertConfig:
    """hidden 32, 2 layers, 4 heads, vocab 100: the size unit tests use."""
    values = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


def random_inputs(config, batch=3, seq_length=16, lengths=None, seed=0):
    """Encoder inputs with padding: row i has lengths[i] real tokens, then zeros."""
    rng = np.random.default_rng(seed)
    lengths = lengths if lengths is not None else rng.integers(seq_length // 2, seq_length + 1,
                                                               size=batch)
    mask = (np.arange(seq_length)[None, :] < np.asarray(lengths)[:, None]).astype("int32")
    ids = rng.integers(1, config.vocab_size, size=(batch, seq_length)).astype("int32") * mask
    types = (rng.random((batch, seq_length)) < 0.5).astype("int32") * mask
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def assigned_unicode_texts(n, seed=0):
    """Random strings over characters Python's Unicode database knows (category not Cn)."""
    rng = random.Random(seed)
    pool = [chr(c) for c in list(range(0x20, 0x3000)) + list(range(0x4e00, 0x4e80))
            + list(range(0xff00, 0xff60)) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    pool += ["\x07", "\u200b", "\ufeff", "\ufffd", "\x00", "\t", "\n", "\xa0", "😀"]
    return ["".join(rng.choice(pool) if rng.random() < 0.3 else rng.choice("abcxé fi ss .,")
                    for _ in range(rng.randint(1, 60))) for _ in range(n)]


@pytest.fixture(autouse=True)
def _float32_policy_and_seed():
    """Each test starts in float32 with a fixed Keras seed, whatever the previous test set."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


# Test files by their time on CI's 2 cores, longest first: pytest-xdist (pytest.ini's
# `-n 2 --dist loadfile`) hands out whole files in collection order, so the longest start first
# and the short ones fill in at the end. Files not listed follow, in their usual order.
LONGEST_FIRST = [
    "test_fault_injection.py", "test_packaging.py", "checkpoints/test_checkpoints.py",
    "test_docs.py", "finetuning/test_classification.py", "finetuning/test_strategies.py",
    "training/test_exact_resume.py", "test_smoke.py",
    "test_object_store_paths.py", "training/test_pretraining.py", "data/test_beam_pipeline.py",
    "test_console.py", "test_benchmark.py", "export/test_export.py", "training/test_trainer.py",
    "export/test_signature_fuzz.py", "finetuning/test_question_answering.py",
    "modeling/test_jax_backend.py", "modeling/test_pretrainer.py", "data/test_writer.py",
    "test_gpu_benchmark.py", "finetuning/test_tagging.py", "data/test_packing.py",
]


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0].removeprefix("tests/")
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: tests keep their order within a file
