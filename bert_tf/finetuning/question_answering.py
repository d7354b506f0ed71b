"""Extractive question answering (SQuAD v1.1 / v2.0): its task for the finetuning harness
(`python -m bert_tf.run_squad` is its command line). The model is
`bert_tf.modeling.build_question_answerer` (encoder inputs -> start_logits, end_logits [B, T]).

The head is google-research/bert's: one dense layer from each token's final hidden state to a
start and an end logit; the loss is the mean of the start and end cross-entropies. Training,
prediction (predictions.json, nbest_predictions.json, null_odds.json for v2) and the official
evaluation (eval_results.json) follow run_squad.py; the output directory is a run directory
(`ckpt-0`, bert_config.json, vocab.txt, run_config.json with "task": "question_answering"),
and the text-in SavedModel goes under output_dir/export/<model_name>/<version>.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf

from bert_tf import io
from bert_tf.finetuning import harness, squad
from bert_tf.finetuning.fitting import predict
from bert_tf.finetuning.job_settings import FinetuningConfig
from bert_tf.finetuning.batching import batch_by_length
from bert_tf.finetuning.squad_evaluation import evaluate
from bert_tf.tasks import QUESTION_ANSWERING
from bert_tf.settings import setting


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringConfig(FinetuningConfig):
    """The settings of a SQuAD job (google-research/bert's run_squad flags)."""
    train_file: str | None = setting(None, "SQuAD JSON for training (v1.1 or v2.0).")
    predict_file: str | None = setting(None, "SQuAD JSON to answer; evaluated when it has "
                                             "answers.")
    do_train: bool = setting(False, "Train on --train_file.")
    do_predict: bool = setting(False, "Answer --predict_file.")
    max_seq_length: int = setting(384, "Tokens per window: [CLS] question [SEP] context [SEP].",
                                  above=0)
    doc_stride: int = setting(128, "Pieces between the starts of a context's windows.", above=0)
    max_query_length: int = setting(64, "Question pieces kept.", above=0)
    predict_batch_size: int = setting(8, "Batch size for prediction.", above=0)
    train_batch_size: int = setting(32, "Batch size for training.", above=0)
    learning_rate: float = setting(5e-5, "Peak learning rate (AdamW).", above=0)
    n_best_size: int = setting(20, "Start and end candidates per window, and answers kept in "
                                   "nbest_predictions.json.", above=0)
    max_answer_length: int = setting(30, "Longest answer, in pieces.", above=0)
    version_2_with_negative: bool = setting(False, "SQuAD v2.0: questions may have no answer.")
    null_score_diff_threshold: float = setting(0.0, "v2.0: answer nothing when the null score "
                                                    "beats the best answer's by more than this.")
    model_name: str = setting("squad", "Name of the exported model.")

    def check(self):
        problems = super().check()
        if not (self.do_train or self.do_predict):
            problems.append("give --do_train and/or --do_predict")
        for flag in (["train_file"] if self.do_train else []) + (
                ["predict_file"] if self.do_predict else []):
            if not getattr(self, flag):
                problems.append(f"--{flag} is needed with --do_{flag.split('_')[0]}")
        if self.max_seq_length <= self.max_query_length + 3:
            problems.append(f"--max_seq_length={self.max_seq_length} leaves no room for the "
                            f"context after --max_query_length={self.max_query_length}")
        return problems


class QuestionAnswering:
    """The question-answering task (see `harness.Task`). Evaluating answers --predict_file and
    scores it when it has answers (after every epoch, the best kept by F1); predicting writes
    the answers of the kept model."""
    name = QUESTION_ANSWERING

    def __init__(self, config: QuestionAnsweringConfig):
        self.config = config

    def read(self, source, vocab, log):
        from bert_tf.text.tokenization import WordpieceTokenizer

        config = self.config
        tokenizer = WordpieceTokenizer(vocab, source.do_lower_case)
        # evaluate and predict answer --predict_file with the tokenizer
        data = harness.TaskData([], evaluation=tokenizer if config.do_predict else None,
                                prediction=tokenizer if config.do_predict else None)
        if not config.do_train:
            return data
        examples = squad.read_squad(config.train_file, True, config.version_2_with_negative)
        features = squad.make_features(examples, tokenizer, config.max_seq_length,
                                       config.doc_stride, config.max_query_length, True)
        windows = len(features.example_index)
        log(f"train: {len(examples):,} questions, {windows:,} windows")
        rows = tf.data.Dataset.from_tensor_slices((features.inputs(), {
            "start_logits": features.start_positions, "end_logits": features.end_positions}))
        batches = batch_by_length(rows, config.train_batch_size, config.max_seq_length,
                                  shuffle=True, seed=config.random_seed,
                                  dynamic_padding=config.dynamic_padding, num_rows=windows,
                                  drop_remainder=True)
        steps = max(windows // config.train_batch_size, 1)
        return dataclasses.replace(data, train=batches.repeat(), steps_per_epoch=steps)

    def compile_args(self):
        import keras

        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return {"loss": {"start_logits": loss, "end_logits": loss},
                "loss_weights": {"start_logits": 0.5, "end_logits": 0.5}}

    def evaluate(self, model, data, log):
        """The SQuAD metrics of --predict_file's answers; None without answers to score."""
        if data.evaluation is None:
            return None
        examples, predictions, _, _ = answer_file(model, data.evaluation, self.config)
        if not all(e.labelled for e in examples):  # a test set: nothing to score
            return None
        return evaluate({e.qas_id: e.answers for e in examples}, predictions)

    def score(self, metrics) -> float:
        """What the best epoch is chosen by: F1 (0-100)."""
        return metrics["f1"]

    def predict(self, model, data, log):
        if data.prediction is None:
            return None
        return write_answers(self.config, *answer_file(model, data.prediction, self.config)[1:])


def run(config: QuestionAnsweringConfig, log=print):
    """Trains and/or predicts (bert_tf.finetuning.harness); returns the eval results (with
    "export": the SavedModel's path)."""
    return harness.run(config, QuestionAnswering(config), log)


def answer_file(model, tokenizer, config):
    """(examples, predictions, nbest, null_odds) of --predict_file: every question answered
    by `model`, as run_squad answers them."""
    examples = squad.read_squad(config.predict_file, False, config.version_2_with_negative)
    pieces = squad.tokenize_contexts(examples, tokenizer)
    features = squad.make_features(examples, tokenizer, config.max_seq_length,
                                   config.doc_stride, config.max_query_length, False, pieces)
    batches = batch_by_length(tf.data.Dataset.from_tensor_slices(features.inputs()),
                              config.predict_batch_size, config.max_seq_length,
                              dynamic_padding=config.dynamic_padding)
    outputs = predict(model, batches, config.max_seq_length)
    predictions, nbest, null_odds = squad.predict(
        examples, features, outputs["start_logits"], outputs["end_logits"], pieces,
        squad.Answering.of(config))
    return examples, predictions, nbest, null_odds


def write_answers(config, predictions, nbest, null_odds) -> str:
    """predictions.json, nbest_predictions.json and null_odds.json (v2) in --output_dir;
    returns predictions.json's path."""
    path = os.path.join(config.output_dir, "predictions.json")
    io.write_json(path, predictions)
    io.write_json(os.path.join(config.output_dir, "nbest_predictions.json"), nbest)
    if config.version_2_with_negative:
        io.write_json(os.path.join(config.output_dir, "null_odds.json"), null_odds)
    return path
