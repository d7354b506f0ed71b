"""Tiny pretraining data and configs shared by the training tests."""

import glob
import json
import os
import shutil
import socket

from bert_tf.text.vocab_learning import learn_vocab
from bert_tf.config import BertConfig
from bert_tf.data.writer import DataCreationConfig, create_pretraining_data
from bert_tf.data.instances import InstanceOptions
from bert_tf.data.sample_corpus import write_corpus
from bert_tf.text.tokenization import write_vocab
from bert_tf.training.pretraining import PretrainingConfig

SEQ, PREDICTIONS = 32, 5


def make_tiny_data(directory, num_shards=2, dynamic_masking=False, next_sentence=True):
    """Python's docs as 2 shards of seq-32 examples, with a 2000-token vocab; returns the glob.
    `dynamic_masking`: unmasked pairs, masked when read (named tiny_dynamic-*); without
    `next_sentence`, single segments."""
    corpus = os.path.join(directory, "corpus.txt")
    write_corpus(corpus)
    vocab = os.path.join(directory, "vocab.txt")
    write_vocab(learn_vocab(corpus, vocab_size=2000), vocab)
    prefix = os.path.join(directory, "tiny_dynamic" if dynamic_masking else "tiny")
    create_pretraining_data(DataCreationConfig(corpus, prefix, vocab, options=InstanceOptions(
        max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS, dupe_factor=1,
        dynamic_masking=dynamic_masking, next_sentence=next_sentence),
        num_shards=num_shards, num_workers=1, progress=False))
    return f"{prefix}-*.tfrecord"




def tiny_config_file(directory, dropout=0.1, **options):
    path = os.path.join(directory, "bert_config.json")
    BertConfig(**{**dict(vocab_size=2000, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                         hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout),
                  **options}).to_json_file(path)
    return path


def flag_values(data, config_file, output_dir, **overrides):
    """A PretrainingConfig for the tiny data and config."""
    values = dict(
        bert_config_file=config_file, input_file=data, eval_input_file=None,
        output_dir=str(output_dir), init_checkpoint=None, max_seq_length=SEQ,
        max_predictions_per_seq=PREDICTIONS, train_batch_size=16, eval_batch_size=16,
        num_train_steps=40, num_warmup_steps=4, learning_rate=3e-3, end_learning_rate=0.0,
        optimizer="adamw", weight_decay_rate=0.01, clip_norm=1.0, gradient_accumulation_steps=1,
        distribution_strategy="one_device", tpu="", mixed_precision="float32",
        jit_compile=False, steps_per_loop=10, random_seed=1, save_checkpoints_steps=20,
        keep_checkpoint_max=3, do_eval=True, max_eval_steps=4, log_steps=10)
    values.update(overrides)
    return PretrainingConfig(**values)


def other_vocab_data(data, directory):
    """The tiny data set relabelled as made with another vocab of the same size (two tokens
    swapped): a consistent data set whose ids mean other words."""
    source = os.path.dirname(data["glob"])
    directory.mkdir()
    for shard in glob.glob(data["glob"]):
        shutil.copy(shard, directory)
    vocab = open(os.path.join(source, "tiny.vocab.txt")).read().split("\n")
    vocab[500], vocab[501] = vocab[501], vocab[500]
    (directory / "tiny.vocab.txt").write_text("\n".join(vocab))
    from bert_tf.text.tokenization import load_vocab
    manifest = json.loads(open(os.path.join(source, "tiny.manifest.json")).read())
    manifest["vocab"]["sha256"] = load_vocab(str(directory / "tiny.vocab.txt")).sha256()
    (directory / "tiny.manifest.json").write_text(json.dumps(manifest))
    return str(directory / os.path.basename(data["glob"]))


def launch_workers(data, output_dir, flags, skip=None):
    """run_pretraining as the two workers of a local multi_worker_mirrored cluster (worker
    `skip` not started) on the tiny data, with `flags` added: {index: Popen}, output merged."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    return launch_tasks(data, output_dir, {
        index: {"cluster": cluster, "task": {"type": "worker", "index": index}}
        for index in range(2) if index != skip}, flags)


def launch_tasks(data, output_dir, tf_configs, flags):
    """run_pretraining --distribution_strategy=multi_worker_mirrored once per TF_CONFIG of
    `tf_configs` ({name: TF_CONFIG as a dict}) on the tiny data, with `flags` added: {name:
    Popen}, output merged."""
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    processes = {}
    for name, tf_config in tf_configs.items():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "bert_tf.run_pretraining",
             "--distribution_strategy=multi_worker_mirrored", f"--input_file={data['glob']}",
             f"--bert_config_file={data['config']}", f"--output_dir={output_dir}",
             f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
             "--train_batch_size=16", "--num_warmup_steps=2", "--learning_rate=2e-3",
             "--steps_per_loop=5", *flags],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return processes


def free_ports(n):
    """`n` local TCP ports free now (for the workers of a multi-worker cluster)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
