"""The pretraining model: the encoder plus the masked-LM and next-sentence heads.

    inputs   the encoder's three inputs, plus masked_lm_positions [B,P] int32
    outputs  masked_lm_logits [B,P,V] float32, next_sentence_logits [B,2] float32
    labels   masked_lm_ids [B,P], masked_lm_weights [B,P] (1.0 real, 0.0 padding),
             next_sentence_labels [B] or [B,1] (0 = B follows A, 1 = B is random)

Packed (`packed=True`, rows of up to K sequences, see data.packing): input_mask numbers the
sequences, and
    inputs   + next_sentence_positions [B,K] int32, each sequence's [CLS]
    outputs  next_sentence_logits [B,K,2]
    labels   next_sentence_labels [B,K], next_sentence_weights [B,K] (1.0 real, 0.0 padding)

Masked-LM only (`next_sentence=False`: RoBERTa, Cramming, ModernBERT): no next-sentence head,
output or loss (next_sentence_positions, next_sentence_labels and weights are read, not used).

`fit()` takes `(features, labels)` with those dicts; its losses and accuracies are those of
`bert_tf.modeling.objective`, the same the pretraining loop logs.
"""

from collections.abc import Mapping

import keras
from keras import ops

from bert_tf.config import BertConfig
from bert_tf.modeling import layers, objective
from bert_tf.modeling.encoder import (INPUT_NAMES, BertEncoder, check_encoder_inputs,
                                      model_base_config, restore_dtype, set_dtype_policy)


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

    def __init__(self, encoder, packed=False, next_sentence=True, **kwargs):
        config = encoder.config
        dtype = kwargs.get("dtype", encoder.dtype_policy)
        kwargs["dtype"] = dtype

        # === Layers ===
        masked_lm_transform = layers.MaskedLMTransform(
            config.hidden_act, config.initializer_range, config.layer_norm_eps,
            norm_type=config.norm_type, use_bias=config.head_bias, norm_bias=config.norm_bias,
            name="masked_lm_transform", dtype=dtype)
        masked_lm_output_bias = layers.MaskedLMOutputBias(name="masked_lm_output_bias",
                                                          dtype=dtype)
        next_sentence_head = keras.layers.Dense(
            2, kernel_initializer=layers.truncated_normal(config.initializer_range),
            name="next_sentence", dtype="float32") if next_sentence else None

        # === Functional model ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
                  for name in INPUT_NAMES + packed_input_names(packed, next_sentence)}
        encoded = encoder({name: inputs[name] for name in INPUT_NAMES})
        hidden = masked_lm_transform(encoded["sequence_output"],
                                     inputs["masked_lm_positions"])  # [B, P, H]
        logits = encoder.word_embeddings(hidden, reverse=True)  # [B, P, V], tied
        outputs = {"masked_lm_logits": masked_lm_output_bias(logits)}
        if next_sentence_head is not None:
            if packed:  # the pooler on each sequence's [CLS]: [B, K, H]
                pooled = encoder.pooler(encoded["sequence_output"],
                                        inputs["next_sentence_positions"])
            else:
                pooled = encoded["pooled_output"]  # [B, H]
            outputs["next_sentence_logits"] = next_sentence_head(pooled)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        set_dtype_policy(self, dtype)

        self.encoder = encoder
        self.packed = packed
        self.masked_lm_transform = masked_lm_transform
        self.masked_lm_output_bias = masked_lm_output_bias
        self.next_sentence = next_sentence_head  # None when masked-LM only
        # === Metrics (shown in fit() logs) ===
        # An accuracy is the mean of correct/count weighted by count: sum(correct) / sum(count).
        self.masked_lm_accuracy = keras.metrics.Mean("masked_lm_accuracy")
        self.masked_lm_loss = keras.metrics.Mean("masked_lm_loss")
        if next_sentence_head is not None:
            self.next_sentence_accuracy = keras.metrics.Mean("next_sentence_accuracy")
            self.next_sentence_loss = keras.metrics.Mean("next_sentence_loss")

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    @property
    def untrained_variables(self) -> list:
        """Variables the objective gives no gradient: the pooler, without the next-sentence
        head. They are not among `trainable_weights` (no optimizer slots, no weight decay):
        they keep their initial values."""
        return [] if self.next_sentence is not None else list(self.encoder.pooler.weights)

    @property
    def trainable_weights(self):
        untrained = {id(v) for v in self.untrained_variables}
        return [v for v in super().trainable_weights if id(v) not in untrained]

    @property
    def trainable_variables(self):  # (Keras builds optimizers from this one)
        return self.trainable_weights

    def __call__(self, inputs, *args, **kwargs):
        # a packed batch's features, its next-sentence positions read even when not used
        check_encoder_inputs(inputs, self.config.max_position_embeddings,
                             extra_names=packed_input_names(self.packed))
        if self.next_sentence is None:
            inputs = {name: value for name, value in inputs.items()
                      if name != "next_sentence_positions"}
        return super().__call__(inputs, *args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        names = objective.LABEL_NAMES
        if not isinstance(y, Mapping) or any(name not in y for name in names):
            raise ValueError(f"BertPretrainer is trained on (features, labels) where labels is "
                             f"a dict with {', '.join(names)}; got {type(y).__name__}"
                             + (f" with keys {sorted(y)}" if isinstance(y, Mapping) else ""))
        stats = objective.statistics(y, y_pred)
        self.masked_lm_loss.update_state(stats["masked_lm_loss"])
        tasks = ("masked_lm",)
        if self.next_sentence is not None:
            self.next_sentence_loss.update_state(stats["next_sentence_loss"])
            tasks += ("next_sentence",)
        for task in tasks:
            correct, count = stats[f"{task}_correct"], stats[f"{task}_count"]
            getattr(self, f"{task}_accuracy").update_state(ops.divide_no_nan(correct, count),
                                                           sample_weight=count)
        total = stats["loss"]
        for regularization_loss in self.losses:  # none unless a user adds regularizers
            total = total + ops.cast(ops.sum(regularization_loss), "float32")
        return total

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "packed": self.packed, "next_sentence": self.next_sentence is not None,
                **model_base_config(self)}

    @classmethod
    def from_config(cls, config):
        config = restore_dtype(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def packed_input_names(packed, next_sentence=True):
    """The pretrainer's inputs beyond the encoder's."""
    return ("masked_lm_positions",) + (("next_sentence_positions",) if packed and next_sentence
                                       else ())


def build_pretrainer(config: BertConfig, packed=False, next_sentence=True,
                     **kwargs) -> BertPretrainer:
    """A fresh encoder and heads from a config (`next_sentence=False`: masked LM only);
    `kwargs` go to both models (e.g. `dtype`)."""
    return BertPretrainer(BertEncoder(config, **kwargs), packed=packed,
                          next_sentence=next_sentence, **kwargs)
