"""Finetuning task models: a small head around a `BertEncoder`, one function per task, and
`build_task_model`, which builds a task's model from its name (what a run directory records;
`bert_tf.tasks.SPECS` says which head each task has).

    model = build_classifier(encoder, num_classes=2)     # -> logits [B, num_classes]
    model = build_regressor(encoder)                     # -> score [B]
    model = build_question_answerer(encoder)             # -> start_logits, end_logits [B, T]
    model = build_tagger(encoder, num_labels=9)          # -> logits [B, T, num_labels]

Every model takes the encoder's inputs (`INPUT_NAMES`, [B, T] int32, any T) and returns float32
logits, whatever the dtype policy. The heads are google-research/bert's: a dense layer on the
pooled [CLS] vector (classification, after dropout) or on each token's final hidden state.
"""

from __future__ import annotations

import keras

from bert_tf.modeling.encoder import INPUT_NAMES, BertEncoder
from bert_tf.tasks import SPECS, spec_for

def _inputs():
    return {n: keras.Input(shape=(None,), dtype="int32", name=n) for n in INPUT_NAMES}


def _dense(units, initializer_range, name):
    return keras.layers.Dense(
        units, dtype="float32", name=name,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))


def _freeze_pooler(encoder):
    """The pooler is unused by token-level heads: kept as it is, out of the optimizer's way."""
    if hasattr(encoder, "pooler"):
        encoder.pooler.trainable = False


def build_classifier(encoder, num_classes, dropout_rate=0.1, initializer_range=0.02,
                     name="bert_classifier"):
    """Encoder inputs -> logits [batch, num_classes] (float32): pooled [CLS], dropout, dense."""
    inputs = _inputs()
    pooled = encoder(inputs)["pooled_output"]  # [B, H]
    pooled = keras.layers.Dropout(dropout_rate, name="dropout")(pooled)
    return keras.Model(inputs, _dense(num_classes, initializer_range, "logits")(pooled),
                       name=name)


def build_regressor(encoder, dropout_rate=0.1, initializer_range=0.02, name="bert_regressor"):
    """Encoder inputs -> one score per example [batch] (float32): the classifier's head with
    one output (STS-B's similarity)."""
    inputs = _inputs()
    pooled = encoder(inputs)["pooled_output"]  # [B, H]
    pooled = keras.layers.Dropout(dropout_rate, name="dropout")(pooled)
    score = _dense(1, initializer_range, "logits")(pooled)  # [B, 1]
    return keras.Model(inputs, score[:, 0], name=name)


def build_question_answerer(encoder, initializer_range=0.02, name="bert_question_answerer"):
    """Encoder inputs -> {"start_logits", "end_logits"} [batch, seq] (float32)."""
    _freeze_pooler(encoder)
    inputs = _inputs()
    sequence = encoder(inputs)["sequence_output"]  # [B, T, H]
    logits = _dense(2, initializer_range, "qa_outputs")(sequence)  # [B, T, 2]
    return keras.Model(inputs, {"start_logits": logits[:, :, 0],  # [B, T]
                                "end_logits": logits[:, :, 1]}, name=name)


def build_tagger(encoder, num_labels, dropout_rate=0.1, initializer_range=0.02,
                 name="bert_tagger"):
    """Encoder inputs -> logits [batch, seq, num_labels] (float32)."""
    _freeze_pooler(encoder)
    inputs = _inputs()
    sequence = encoder(inputs)["sequence_output"]  # [B, T, H]
    sequence = keras.layers.Dropout(dropout_rate, name="dropout")(sequence)
    return keras.Model(inputs, _dense(num_labels, initializer_range, "classifier")(sequence),
                       name=name)


# a spec's `head` -> (encoder, labels, dropout, initializer_range) -> its model
HEADS = {
    "classifier": lambda encoder, labels, dropout, init: build_classifier(
        encoder, len(labels), dropout, init),
    "regressor": lambda encoder, labels, dropout, init: build_regressor(encoder, dropout, init),
    "question_answerer": lambda encoder, labels, dropout, init: build_question_answerer(
        encoder, init),
    "tagger": lambda encoder, labels, dropout, init: build_tagger(
        encoder, len(labels), dropout, init),
}


def build_task_model(task, encoder, labels=(), dropout_rate=None):
    """The model of `task` (a name of `bert_tf.tasks.SPECS`) around `encoder` (a
    `BertEncoder`); `labels` are the classes or tags in id order. Dropout defaults to the
    encoder's hidden dropout."""
    spec = spec_for(task)
    if spec.head is None:
        raise ValueError(f"no task model for {task!r}; known tasks: {', '.join(SPECS)}")
    config = encoder.config
    dropout = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
    return HEADS[spec.head](encoder, labels, dropout, config.initializer_range)


def task_encoder(model) -> BertEncoder:
    """The `BertEncoder` inside a task model (or a pretrainer)."""
    if isinstance(getattr(model, "encoder", None), BertEncoder):
        return model.encoder
    for layer in model.layers:
        if isinstance(layer, BertEncoder):
            return layer
    raise ValueError(f"{model.name} holds no BertEncoder")
