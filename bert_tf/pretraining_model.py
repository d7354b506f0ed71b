"""The pretraining model: the encoder plus the masked-LM and next-sentence heads, losses and metrics.

    inputs   the encoder's three inputs, plus masked_lm_positions [B,P] int32
    outputs  masked_lm_logits [B,P,V] float32, next_sentence_logits [B,2] float32
    labels   masked_lm_ids [B,P], masked_lm_weights [B,P] (1.0 real, 0.0 padding),
             next_sentence_labels [B] or [B,1] (0 = B follows A, 1 = B is random)

`fit()` takes `(features, labels)` with those dicts. `pretraining_losses` is the loss on its own,
for custom training loops. Losses follow google-research/bert:

    masked_lm_loss     = sum(weights * cross_entropy) / (sum(weights) + 1e-5)
    next_sentence_loss = mean(cross_entropy)
    loss               = masked_lm_loss + next_sentence_loss
"""

from collections.abc import Mapping

import keras
from keras import ops

from bert_tf import layers
from bert_tf.config import BertConfig
from bert_tf.encoder import (INPUT_NAMES, BertEncoder, check_encoder_inputs, model_base_config,
                             restore_dtype, set_dtype_policy)

LABEL_NAMES = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def masked_lm_loss(masked_lm_ids, masked_lm_weights, masked_lm_logits, denominator=None):
    """Weighted mean cross-entropy over the real masked positions; a float32 scalar.

    `denominator` replaces `sum(weights) + 1e-5`: a part of a batch (gradient accumulation)
    divides by the whole batch's, so that the parts' losses add up to the batch's.
    """
    cross_entropy = keras.losses.sparse_categorical_crossentropy(
        ops.cast(masked_lm_ids, "int32"), masked_lm_logits, from_logits=True)  # [B, P]
    weights = ops.cast(masked_lm_weights, "float32")
    if denominator is None:
        denominator = ops.sum(weights) + 1e-5
    return ops.sum(weights * cross_entropy) / denominator


def next_sentence_loss(next_sentence_labels, next_sentence_logits):
    labels = ops.reshape(ops.cast(next_sentence_labels, "int32"), (-1,))  # [B,1] or [B] -> [B]
    return ops.mean(keras.losses.sparse_categorical_crossentropy(
        labels, next_sentence_logits, from_logits=True))


def pretraining_losses(labels, outputs, masked_lm_denominator=None):
    """Returns {"masked_lm_loss", "next_sentence_loss", "loss"} from label and output dicts."""
    mlm = masked_lm_loss(labels["masked_lm_ids"], labels["masked_lm_weights"],
                         outputs["masked_lm_logits"], masked_lm_denominator)
    nsp = next_sentence_loss(labels["next_sentence_labels"], outputs["next_sentence_logits"])
    return {"masked_lm_loss": mlm, "next_sentence_loss": nsp, "loss": mlm + nsp}


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPretrainer(keras.Model):
    """A `BertEncoder` with BERT's masked-LM head (tied to the word embeddings) and NSP head.

    Args:
      encoder: the `BertEncoder` to pretrain; its layers are shared, not copied, so after
        training `pretrainer.encoder` is the trained encoder.
      **kwargs: `keras.Model` arguments.

    Example:

        pretrainer = BertPretrainer(BertEncoder(BertConfig.from_json_file(path)))
        pretrainer.compile(optimizer="adam")
        pretrainer.fit(dataset_of_features_and_labels)
    """

    def __init__(self, encoder, **kwargs):
        config = encoder.config
        dtype = kwargs.get("dtype", encoder.dtype_policy)
        kwargs["dtype"] = dtype

        # === Layers ===
        masked_lm_transform = layers.MaskedLMTransform(
            config.hidden_act, config.initializer_range, config.layer_norm_eps,
            name="masked_lm_transform", dtype=dtype)
        masked_lm_output_bias = layers.MaskedLMOutputBias(name="masked_lm_output_bias",
                                                          dtype=dtype)
        next_sentence = keras.layers.Dense(
            2, kernel_initializer=layers.truncated_normal(config.initializer_range),
            name="next_sentence", dtype="float32")

        # === Functional model ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
                  for name in INPUT_NAMES + ("masked_lm_positions",)}
        encoded = encoder({name: inputs[name] for name in INPUT_NAMES})
        hidden = masked_lm_transform(encoded["sequence_output"],
                                     inputs["masked_lm_positions"])  # [B, P, H]
        logits = encoder.word_embeddings(hidden, reverse=True)  # [B, P, V], tied
        outputs = {"masked_lm_logits": masked_lm_output_bias(logits),
                   "next_sentence_logits": next_sentence(encoded["pooled_output"])}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        set_dtype_policy(self, dtype)

        self.encoder = encoder
        self.masked_lm_transform = masked_lm_transform
        self.masked_lm_output_bias = masked_lm_output_bias
        self.next_sentence = next_sentence
        # === Metrics (shown in fit() logs) ===
        self.masked_lm_accuracy = keras.metrics.SparseCategoricalAccuracy("masked_lm_accuracy")
        self.masked_lm_loss = keras.metrics.Mean("masked_lm_loss")
        self.next_sentence_accuracy = keras.metrics.SparseCategoricalAccuracy(
            "next_sentence_accuracy")
        self.next_sentence_loss = keras.metrics.Mean("next_sentence_loss")

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    def __call__(self, inputs, *args, **kwargs):
        check_encoder_inputs(inputs, self.config.max_position_embeddings,
                             extra_names=("masked_lm_positions",))
        return super().__call__(inputs, *args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y, Mapping) or any(name not in y for name in LABEL_NAMES):
            raise ValueError(f"BertPretrainer is trained on (features, labels) where labels is "
                             f"a dict with {', '.join(LABEL_NAMES)}; got {type(y).__name__}"
                             + (f" with keys {sorted(y)}" if isinstance(y, Mapping) else ""))
        losses = pretraining_losses(y, y_pred)
        self.masked_lm_loss.update_state(losses["masked_lm_loss"])
        self.next_sentence_loss.update_state(losses["next_sentence_loss"])
        self.masked_lm_accuracy.update_state(y["masked_lm_ids"], y_pred["masked_lm_logits"],
                                             sample_weight=y["masked_lm_weights"])
        self.next_sentence_accuracy.update_state(
            ops.reshape(y["next_sentence_labels"], (-1,)), y_pred["next_sentence_logits"])
        total = losses["loss"]
        for regularization_loss in self.losses:  # none unless a user adds regularizers
            total = total + ops.cast(ops.sum(regularization_loss), "float32")
        return total

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                **model_base_config(self)}

    @classmethod
    def from_config(cls, config):
        config = restore_dtype(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def build_pretrainer(config: BertConfig, **kwargs) -> BertPretrainer:
    """A fresh encoder and heads from a config; `kwargs` go to both models (e.g. `dtype`)."""
    return BertPretrainer(BertEncoder(config, **kwargs), **kwargs)
