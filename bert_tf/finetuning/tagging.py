"""Token classification (NER, chunking): its features, and its task for the finetuning harness
(`python -m bert_tf.run_tagging` is its command line). The model is
`bert_tf.modeling.build_tagger` (encoder inputs -> logits [B, T, num_labels]).

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

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.finetuning import harness
from bert_tf.finetuning.fitting import predict
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.finetuning.batching import batch_by_length
from bert_tf.finetuning.tagged_files import SCHEMES, read_tagged
from bert_tf.finetuning.tagging_metrics import tagging_metrics
from bert_tf.tasks import TAGGING
from bert_tf.settings import setting

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
class TaggingConfig(FinetuningConfig):
    """The settings of a token-classification job (the command line's flags)."""
    train_file: str = setting(None, "Tagged training file.", required=True)
    eval_file: str = setting(None, "Tagged evaluation file.", required=True)
    predict_file: str | None = setting(None, "Sentences to tag; writes predictions.txt.")
    input_format: str = setting("conll", "File format.", choices=("conll", "jsonl"))
    tag_scheme: str = setting("BIO", "Tagging scheme of the files.", choices=tuple(SCHEMES))
    eval_batch_size: int = setting(32, "Batch size for eval and predict.", above=0)
    learning_rate: float = setting(5e-5, "Peak learning rate (AdamW).", above=0)
    model_name: str = setting("tagger", "Name of the exported model.")


class Tagging:
    """The token-classification task (see `harness.Task`)."""
    name = TAGGING

    def __init__(self, config: TaggingConfig):
        self.config = config

    def read(self, source, vocab, log):
        from bert_tf.text.tokenization import WordpieceTokenizer

        config = self.config
        tokenizer = WordpieceTokenizer(vocab, source.do_lower_case)
        train = read_tagged(config.train_file, config.input_format, config.tag_scheme)
        labels = ["O"] + sorted({t for s in train for t in s.tags} - {"O"})
        evaluation = read_tagged(config.eval_file, config.input_format, config.tag_scheme)
        unknown = {t for s in evaluation for t in s.tags} - set(labels)
        if unknown:
            raise ValueError(f"{config.eval_file}: tag(s) {', '.join(sorted(unknown))} are not "
                             f"in the training tags {labels}")
        train_features = make_features(train, tokenizer, labels, config.max_seq_length)
        # (sentences, their features) of the eval file, and of the predict file if any
        dev = (evaluation, make_features(evaluation, tokenizer, labels, config.max_seq_length))
        test = None
        if config.predict_file:
            sentences = read_tagged(config.predict_file, config.input_format,
                                    config.tag_scheme, require_tags=False)
            test = (sentences, make_features(sentences, tokenizer, labels,
                                             config.max_seq_length))
        chunks = len(train_features.sentence)
        log(f"train: {len(train):,} sentences ({chunks:,} chunks), {len(labels)} tags; "
            f"eval: {len(evaluation):,} sentences")
        steps = max(chunks // config.train_batch_size, 1)
        return harness.TaskData(labels, self._batches(train_features, training=True), steps,
                                evaluation=dev, prediction=test)

    def _batches(self, features, training=False):
        config = self.config
        rows = tf.data.Dataset.from_tensor_slices((features.inputs(), features.labels,
                                                   features.weights))
        batches = batch_by_length(
            rows, config.train_batch_size if training else config.eval_batch_size,
            config.max_seq_length, shuffle=training, seed=config.random_seed,
            dynamic_padding=config.dynamic_padding, num_rows=max(len(features.sentence), 1))
        return batches.repeat() if training else batches

    def compile_args(self):
        import keras

        # The mean over labelled tokens (google's and transformers' token-classification loss).
        # Keras's default divides by every position of the batch, padding and word-piece tails
        # included, so a batch's loss (and its step) shrank with its share of unlabelled
        # positions and changed with its padded length; that trained measurably worse (entity
        # F1 0.79 against 0.85, tools/finetune_compare.py).
        return {"loss": keras.losses.SparseCategoricalCrossentropy(
                    from_logits=True, reduction="mean_with_sample_weight"),
                "weighted_metrics": ["accuracy"]}

    def _tags(self, model, sentences, features, labels):
        logits = predict(model, self._batches(features), self.config.max_seq_length)
        return predicted_tags(features, logits, sentences, labels)

    def evaluate(self, model, data, log):
        sentences, _ = data.evaluation
        predicted = self._tags(model, *data.evaluation, data.labels)
        return tagging_metrics([s.tags for s in sentences], predicted)

    def score(self, metrics) -> float:
        """What the best epoch is chosen by: entity F1 (what the task reports), not the
        word-piece accuracy Keras computes."""
        return metrics["f1"]

    def predict(self, model, data, log):
        if data.prediction is None:
            return None
        sentences, _ = data.prediction
        tags = self._tags(model, *data.prediction, data.labels)
        path = os.path.join(self.config.output_dir, "predictions.txt")
        io.write_file(path, "".join(
            "".join(f"{w}\t{t}\n" for w, t in zip(s.words, sentence_tags)) + "\n"
            for s, sentence_tags in zip(sentences, tags)))
        return path


def run(config: TaggingConfig, log=print):
    """Finetunes, evaluates, predicts and exports (bert_tf.finetuning.harness); returns the eval
    metrics, the export's path and the labels."""
    return harness.run(config, Tagging(config), log)
