"""A classification workspace shared by the finetuning tests: a pretraining run directory with
random weights, and a single-sentence and a sentence-pair task that a tiny model can learn."""

import json
import random

import keras
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.finetuning.classification import ClassificationConfig
from bert_tf.modeling import build_pretrainer
from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "table", "house", "tree",
         "big", "small", "old", "new", "and", "then", "very", "quite", "good", "bad", "red",
         "blue", "is", "was", "it", "this", "that", "with"]
NEUTRAL = [w for w in WORDS if w not in ("good", "bad", "red", "blue")]


def sentence(rng, extra):
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(5, 9))]
    words.insert(rng.randint(0, len(words)), extra)
    return " ".join(words) + " ."


def write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")


def make_workspace(directory, dropout=0.1):
    """A pretraining run directory (random weights) and the two tasks' files."""
    run_dir = directory / "pretrain"
    run_dir.mkdir()
    write_vocab(list(SPECIAL_TOKENS) + WORDS + [".", ","], run_dir / "vocab.txt")
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config.to_json_file(run_dir / "bert_config.json")
    (run_dir / "run_config.json").write_text(json.dumps({"do_lower_case": True}))
    keras.utils.set_random_seed(0)
    tf.train.Checkpoint(model=build_pretrainer(config)).write(str(run_dir / "ckpt-1"))
    rng = random.Random(0)
    for split, n in (("train", 480), ("dev", 120)):
        single = [(sentence(rng, w), "positive" if w == "good" else "negative")
                  for w in (rng.choice(["good", "bad"]) for _ in range(n))]
        write_tsv(directory / f"single_{split}.tsv", ["text", "label"], single)
        # The label needs both texts: "both" only when each of them says "good".
        pairs = []
        for _ in range(n):
            if rng.random() < 0.5:
                a, b, label = "good", "good", "both"
            else:
                a, b = rng.choice([("good", "bad"), ("bad", "good"), ("bad", "bad")])
                label = "not_both"
            pairs.append((sentence(rng, a), sentence(rng, b), label))
        write_tsv(directory / f"pair_{split}.tsv", ["premise", "hypothesis", "label"], pairs)
    return directory


def values(workspace, task, output, **overrides):
    """A ClassificationConfig for one of the workspace's tasks."""
    base = dict(
        train_file=str(workspace / f"{task}_train.tsv"),
        eval_file=str(workspace / f"{task}_dev.tsv"), predict_file=None, output_dir=str(output),
        input_format="tsv", text_a_column="text", text_b_column=None, label_column="label",
        init_checkpoint=str(workspace / "pretrain" / "ckpt-1"), bert_config_file=None,
        encoder_saved_model=None, vocab_file=None, do_lower_case=None, max_seq_length=32,
        dynamic_padding=True,
        train_batch_size=32, eval_batch_size=32, learning_rate=2e-3, num_train_epochs=6,
        warmup_proportion=0.1, distribution_strategy="one_device", mixed_precision="float32",
        early_stopping_patience=0, allow_unknown_labels=False, model_name="classifier",
        random_seed=1)
    if task == "pair":
        base.update(text_a_column="premise", text_b_column="hypothesis")
    base.update(overrides)
    return ClassificationConfig(**base)
