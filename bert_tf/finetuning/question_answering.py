"""Extractive question answering (SQuAD v1.1 / v2.0) on BERT: the model and the job
(`python -m bert_tf.run_squad` is its command line).

    model = build_question_answerer(encoder)   # encoder inputs -> start_logits, end_logits [B, T]

The head is google-research/bert's: one dense layer from each token's final hidden state to a
start and an end logit; the loss is the mean of the start and end cross-entropies. Training,
prediction (predictions.json, nbest_predictions.json, null_odds.json for v2) and the official
evaluation (eval_results.json) follow run_squad.py; the model is saved as a run directory
(`ckpt-0`, bert_config.json, vocab.txt, run_config.json with "task": "question_answering") and
exported as a text-in SavedModel under output_dir/export/<model_name>/<version>.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from bert_tf import io, locks, run_dir
from bert_tf.finetuning import harness, squad
from bert_tf.finetuning.squad_evaluation import evaluate
from bert_tf.modeling import INPUT_NAMES
from bert_tf.settings import flat_dict, setting

TASK = "question_answering"


def build_question_answerer(encoder, initializer_range=0.02, name="bert_question_answerer"):
    """Encoder inputs -> {"start_logits", "end_logits"} [batch, seq] (float32)."""
    if hasattr(encoder, "pooler"):  # unused here: kept as it is, out of the optimizer's way
        encoder.pooler.trainable = False
    inputs = {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in INPUT_NAMES}
    sequence = encoder(inputs)["sequence_output"]  # [B, T, H]
    logits = keras.layers.Dense(
        2, dtype="float32", name="qa_outputs",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))(sequence)
    return keras.Model(inputs, {"start_logits": logits[:, :, 0],  # [B, T]
                                "end_logits": logits[:, :, 1]}, name=name)


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringConfig(harness.FinetuningConfig):
    """The settings of a SQuAD job (google-research/bert's run_squad flags)."""
    train_file: str | None = setting(None, "SQuAD JSON for training (v1.1 or v2.0).")
    predict_file: str | None = setting(None, "SQuAD JSON to answer; evaluated when it has "
                                             "answers.")
    do_train: bool = setting(False, "Train on --train_file.")
    do_predict: bool = setting(False, "Answer --predict_file.")
    max_seq_length: int = setting(384, "Tokens per window: [CLS] question [SEP] context [SEP].")
    doc_stride: int = setting(128, "Pieces between the starts of a context's windows.")
    max_query_length: int = setting(64, "Question pieces kept.")
    predict_batch_size: int = setting(8, "Batch size for prediction.")
    train_batch_size: int = setting(32, "Batch size for training.")
    learning_rate: float = setting(5e-5, "Peak learning rate (AdamW).")
    n_best_size: int = setting(20, "Start and end candidates per window, and answers kept in "
                                   "nbest_predictions.json.")
    max_answer_length: int = setting(30, "Longest answer, in pieces.")
    version_2_with_negative: bool = setting(False, "SQuAD v2.0: questions may have no answer.")
    null_score_diff_threshold: float = setting(0.0, "v2.0: answer nothing when the null score "
                                                    "beats the best answer's by more than this.")
    model_name: str = setting("squad", "Name of the exported model.")

    def __post_init__(self):
        super().__post_init__()
        if not (self.do_train or self.do_predict):
            raise ValueError("give --do_train and/or --do_predict")
        for flag in (["train_file"] if self.do_train else []) + (
                ["predict_file"] if self.do_predict else []):
            if not getattr(self, flag):
                raise ValueError(f"--{flag} is needed with --do_{flag.split('_')[0]}")
        if self.max_seq_length <= self.max_query_length + 3:
            raise ValueError(f"--max_seq_length={self.max_seq_length} leaves no room for the "
                             f"context after --max_query_length={self.max_query_length}")


@locks.holds_run_lock
def run(config: QuestionAnsweringConfig, log=print):
    """Trains and/or predicts; returns the eval results (with "export": the SavedModel's path)."""
    from bert_tf.export.question_answering import export_question_answerer
    from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab

    source = harness.encoder_source(config)
    vocab = load_vocab(source.vocab_file)
    tokenizer = WordpieceTokenizer(vocab, source.do_lower_case)
    tf.io.gfile.makedirs(config.output_dir)
    keras.utils.set_random_seed(config.random_seed)
    precision = harness.set_precision(config, log)
    finetuned = (source.checkpoint is not None and source.checkpoint.record.get("task") == TASK)
    if config.do_train:
        examples = squad.read_squad(config.train_file, True, config.version_2_with_negative)
        features = squad.make_features(examples, tokenizer, config.max_seq_length,
                                       config.doc_stride, config.max_query_length, True)
        log(f"train: {len(examples):,} questions, {len(features.example_index):,} windows")
        steps_per_epoch = max(len(features.example_index) // config.train_batch_size, 1)
    elif not finetuned:
        given = config.init_checkpoint or config.encoder_saved_model
        raise ValueError(f"--do_predict without --do_train needs a question-answering "
                         f"checkpoint (a run_squad --output_dir or a converted "
                         f"BertForQuestionAnswering); {given} is a pretrained encoder")
    with harness.make_strategy(config.distribution_strategy).scope():
        encoder, _ = harness.load_encoder(source, pretrained=not finetuned)
        model = build_question_answerer(encoder)
        if finetuned:
            run_dir.load_model_weights(model, source.checkpoint.checkpoint)
        if config.do_train:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            harness.compile_model(model, config,
                                  int(steps_per_epoch * config.num_train_epochs),
                                  loss={"start_logits": loss, "end_logits": loss},
                                  loss_weights={"start_logits": 0.5, "end_logits": 0.5})
    if config.do_train:
        data = tf.data.Dataset.from_tensor_slices((features.inputs(), {
            "start_logits": features.start_positions, "end_logits": features.end_positions}))
        data = data.shuffle(len(features.example_index), seed=config.random_seed,
                            reshuffle_each_iteration=True).repeat().batch(
            config.train_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        harness.fit(model, data, config, steps_per_epoch)
    harness.save_run(model, encoder.config, source, config.output_dir, TASK,
                     flags=flat_dict(config), precision=precision.as_record())
    results = {}
    if config.do_predict:
        results = predict_file(model, tokenizer, config, log)
    exported = export_question_answerer(
        model, vocab, source.do_lower_case, config.max_seq_length, config.doc_stride,
        config.max_query_length, config.max_answer_length, config.version_2_with_negative,
        config.null_score_diff_threshold,
        model_dir=os.path.join(config.output_dir, "export", config.model_name))
    log(f"exported: {exported}")
    return {**results, "export": exported}


def predict_file(model, tokenizer, config, log=print):
    """predictions.json, nbest_predictions.json, null_odds.json (v2) and, when the file has
    answers, eval_results.json; returns the eval results ({} without answers)."""
    examples = squad.read_squad(config.predict_file, False, config.version_2_with_negative)
    pieces = squad.tokenize_contexts(examples, tokenizer)
    features = squad.make_features(examples, tokenizer, config.max_seq_length,
                                   config.doc_stride, config.max_query_length, False, pieces)
    outputs = model.predict(tf.data.Dataset.from_tensor_slices(features.inputs()).batch(
        config.predict_batch_size), verbose=0)
    predictions, nbest, null_odds = squad.predict(
        examples, features, np.asarray(outputs["start_logits"]),
        np.asarray(outputs["end_logits"]), pieces, config.n_best_size,
        config.max_answer_length, config.version_2_with_negative,
        config.null_score_diff_threshold)
    output_dir = config.output_dir
    io.write_json(os.path.join(output_dir, "predictions.json"), predictions)
    io.write_json(os.path.join(output_dir, "nbest_predictions.json"), nbest)
    if config.version_2_with_negative:
        io.write_json(os.path.join(output_dir, "null_odds.json"), null_odds)
    if not any(e.answers for e in examples) and not config.version_2_with_negative:
        return {}
    results = evaluate({e.qas_id: e.answers for e in examples}, predictions)
    io.write_json(os.path.join(output_dir, "eval_results.json"), results)
    log("eval: " + "  ".join(f"{k}={v:.4g}" for k, v in results.items()))
    return results
