"""Token classification (NER, chunking) on BERT: the model, its features, and the job
(`python -m bert_tf.run_tagging` is its command line).

    model = build_tagger(encoder, num_labels)   # encoder inputs -> logits [B, T, num_labels]

A word's tag is predicted at its first WordPiece; its other pieces, [CLS], [SEP] and padding
carry no label (weight 0 in the loss and the accuracy). A sentence longer than max_seq_length - 2
pieces is cut into consecutive chunks at word boundaries (no overlap, no truncation): every word
is labelled in exactly one chunk, and predictions are put back together per sentence. A single
word of more pieces than a chunk holds keeps only its first pieces (its label is on the first).
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from bert_tf import io, locks
from bert_tf.finetuning import harness
from bert_tf.finetuning.tagged_files import SCHEMES, read_tagged
from bert_tf.finetuning.tagging_metrics import tagging_metrics
from bert_tf.modeling import INPUT_NAMES
from bert_tf.settings import flat_dict, setting

TASK = "tagging"


def build_tagger(encoder, num_labels, dropout_rate=0.1, initializer_range=0.02,
                 name="bert_tagger"):
    """Encoder inputs -> logits [batch, seq, num_labels] (float32)."""
    if hasattr(encoder, "pooler"):  # unused here: kept as it is, out of the optimizer's way
        encoder.pooler.trainable = False
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in INPUT_NAMES}
    sequence = encoder(inputs)["sequence_output"]  # [B, T, H]
    sequence = keras.layers.Dropout(dropout_rate, name="dropout")(sequence)
    logits = keras.layers.Dense(
        num_labels, dtype="float32", name="classifier",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))(sequence)
    return keras.Model(inputs, logits, name=name)


class TaggingFeatures(NamedTuple):
    """Chunks of sentences as model inputs [C, T], labels [C, T] (0 where weight is 0),
    weights [C, T], and for each chunk its sentence and the position of each labelled token's
    word in that sentence ([C, T], -1 elsewhere)."""
    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    sentence: np.ndarray
    word: np.ndarray

    def inputs(self):
        return {"input_word_ids": self.input_word_ids, "input_mask": self.input_mask,
                "input_type_ids": self.input_type_ids}


def make_features(sentences, tokenizer, labels, max_seq_length) -> TaggingFeatures:
    """The chunks of every sentence (labels: tag names in id order; tags of sentences without
    tags become weight-1 label 0 for prediction)."""
    vocab, index = tokenizer.vocab, {label: i for i, label in enumerate(labels)}
    words = [w for s in sentences for w in s.words]
    pieces = tokenizer.tokenize(tf.constant(words)).to_list() if words else []
    room, rows, position = max_seq_length - 2, [], 0
    for number, sentence in enumerate(sentences):
        chunk = []  # (word position, pieces)
        for w in range(len(sentence.words)):
            word_pieces = pieces[position + w][:room] or [vocab.unk_id]
            if chunk and sum(len(p) for _, p in chunk) + len(word_pieces) > room:
                rows.append((number, chunk))
                chunk = []
            chunk.append((w, word_pieces))
        rows.append((number, chunk))
        position += len(sentence.words)
    arrays = {name: np.zeros((len(rows), max_seq_length), np.int32) for name in (
        "input_word_ids", "input_mask", "input_type_ids", "labels")}
    arrays["weights"] = np.zeros((len(rows), max_seq_length), np.float32)
    arrays["word"] = np.full((len(rows), max_seq_length), -1, np.int64)
    for row, (number, chunk) in enumerate(rows):
        tags = sentences[number].tags
        ids, t = [vocab.cls_id], 1
        for w, word_pieces in chunk:
            arrays["word"][row, t] = w
            arrays["weights"][row, t] = 1.0
            arrays["labels"][row, t] = index[tags[w]] if tags else 0
            ids.extend(word_pieces)
            t += len(word_pieces)
        ids.append(vocab.sep_id)
        arrays["input_word_ids"][row, :len(ids)] = ids
        arrays["input_mask"][row, :len(ids)] = 1
    return TaggingFeatures(**arrays, sentence=np.array([n for n, _ in rows], np.int64))


def predicted_tags(features, logits, sentences, labels):
    """Tag names per sentence from the chunks' logits [C, T, L]."""
    tags = [["O"] * len(s.words) for s in sentences]
    best = np.argmax(logits, axis=-1)
    for row, sentence in enumerate(features.sentence):
        for t in np.nonzero(features.word[row] >= 0)[0]:
            tags[sentence][features.word[row, t]] = labels[best[row, t]]
    return tags


@dataclasses.dataclass(frozen=True)
class TaggingConfig(harness.FinetuningConfig):
    """The settings of a token-classification job (the command line's flags)."""
    train_file: str = setting(None, "Tagged training file.", required=True)
    eval_file: str = setting(None, "Tagged evaluation file.", required=True)
    predict_file: str | None = setting(None, "Sentences to tag; writes predictions.txt.")
    input_format: str = setting("conll", "File format.", choices=("conll", "jsonl"))
    tag_scheme: str = setting("BIO", "Tagging scheme of the files.", choices=tuple(SCHEMES))
    eval_batch_size: int = setting(32, "Batch size for eval and predict.")
    learning_rate: float = setting(5e-5, "Peak learning rate (AdamW).")
    model_name: str = setting("tagger", "Name of the exported model.")


@locks.holds_run_lock
def run(config: TaggingConfig, log=print):
    """Finetunes, evaluates, predicts and exports; returns the eval metrics, the export's path
    and the labels."""
    from bert_tf.export.tagging import export_tagger
    from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab

    source = harness.encoder_source(config)
    vocab = load_vocab(source.vocab_file)
    tokenizer = WordpieceTokenizer(vocab, source.do_lower_case)
    train = read_tagged(config.train_file, config.input_format, config.tag_scheme)
    labels = ["O"] + sorted({t for s in train for t in s.tags} - {"O"})
    evaluation = read_tagged(config.eval_file, config.input_format, config.tag_scheme)
    unknown = {t for s in evaluation for t in s.tags} - set(labels)
    if unknown:
        raise ValueError(f"{config.eval_file}: tag(s) {', '.join(sorted(unknown))} are not in "
                         f"the training tags {labels}")
    tf.io.gfile.makedirs(config.output_dir)
    io.write_json(os.path.join(config.output_dir, "labels.json"), labels)
    train_features = make_features(train, tokenizer, labels, config.max_seq_length)
    eval_features = make_features(evaluation, tokenizer, labels, config.max_seq_length)

    keras.utils.set_random_seed(config.random_seed)
    precision = harness.set_precision(config, log)
    steps_per_epoch = max(len(train_features.sentence) // config.train_batch_size, 1)
    with harness.make_strategy(config.distribution_strategy).scope():
        encoder, dropout = harness.load_encoder(source)
        model = build_tagger(encoder, len(labels), dropout)
        harness.compile_model(model, config, int(steps_per_epoch * config.num_train_epochs),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              weighted_metrics=["accuracy"])

    def dataset(features, batch_size, training=False):
        data = tf.data.Dataset.from_tensor_slices((features.inputs(), features.labels,
                                                   features.weights))
        if training:
            data = data.shuffle(len(features.sentence), seed=config.random_seed).repeat()
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    harness.fit(model, dataset(train_features, config.train_batch_size, True), config,
                steps_per_epoch, dataset(eval_features, config.eval_batch_size),
                monitor="val_accuracy")
    logits = model.predict(dataset(eval_features, config.eval_batch_size), verbose=0)
    predicted = predicted_tags(eval_features, logits, evaluation, labels)
    metrics = tagging_metrics([s.tags for s in evaluation], predicted)
    io.write_json(os.path.join(config.output_dir, "eval_results.json"), metrics)
    log("eval: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                             if isinstance(v, float)))
    if config.predict_file:
        sentences = read_tagged(config.predict_file, config.input_format, config.tag_scheme,
                                require_tags=False)
        features = make_features(sentences, tokenizer, labels, config.max_seq_length)
        tags = predicted_tags(features, model.predict(dataset(features, config.eval_batch_size),
                                                      verbose=0), sentences, labels)
        io.write_file(os.path.join(config.output_dir, "predictions.txt"), "".join(
            "".join(f"{w}\t{t}\n" for w, t in zip(s.words, sentence_tags)) + "\n"
            for s, sentence_tags in zip(sentences, tags)))
    harness.save_run(model, encoder.config, source, config.output_dir, TASK,
                     labels=labels, flags=flat_dict(config), precision=precision.as_record())
    exported = export_tagger(model, vocab, source.do_lower_case, config.max_seq_length, labels,
                             model_dir=os.path.join(config.output_dir, "export",
                                                    config.model_name))
    log(f"exported: {exported}")
    return {**metrics, "export": exported, "labels": labels}
