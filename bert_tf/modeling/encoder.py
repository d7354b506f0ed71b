"""The BERT encoder: a Keras functional model with TF Hub's input and output names.

    inputs   input_word_ids [B,T] int32, input_mask [B,T] int32 (1 = real token, 0 = padding),
             input_type_ids [B,T] int32 (segment A = 0, B = 1)
             A packed row (several sequences in one row, see layers.PackedSequenceMask) numbers
             its sequences' tokens 1, 2, ... in input_mask: each attends only to its own
             sequence, with positions from 0; an ordinary row is one sequence.
    outputs  sequence_output [B,T,H]   the last block's hidden states
             pooled_output   [B,H]     tanh dense on the [CLS] state
             encoder_outputs [[B,T,H]] * L, one per block (the last equals sequence_output)

Example:

    config = BertConfig.from_json_file("configs/bert_tiny.json")
    encoder = BertEncoder(config)
    outputs = encoder({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types})
    outputs["pooled_output"]  # [B, H]
"""

from collections.abc import Mapping

import keras
import numpy as np

from bert_tf.config import BertConfig
from bert_tf.modeling import attention, layers

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")

# google-research/bert's feature names for the same tensors, named in the error for a misnamed input.
GOOGLE_INPUT_NAMES = {"input_ids": "input_word_ids", "segment_ids": "input_type_ids"}


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEncoder(keras.Model):
    """BERT: token + position + type embeddings, L post-LayerNorm blocks, and a pooler (or,
    with the config's options beyond BERT, pre-norm blocks and a final norm, RMSNorm, gated
    feed-forward layers, no biases: `BertConfig`).

    Args:
      config: a `BertConfig` (or its dict).
      **kwargs: `keras.Model` arguments such as `name` and `dtype` (a mixed-precision policy).
    """

    def __init__(self, config, **kwargs):
        if isinstance(config, Mapping):
            config = BertConfig.from_dict(dict(config))
        init = layers.truncated_normal(config.initializer_range)
        dtype = kwargs.get("dtype")

        # === Layers ===
        word_embeddings = layers.TiedEmbedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=init,
            name="word_embeddings", dtype=dtype)
        rotary = config.position_embedding_type == "rope"  # no table: positions turn q and k
        position_embedding = None if rotary else layers.PositionEmbedding(
            config.max_position_embeddings, config.initializer_range,
            name="position_embedding", dtype=dtype)
        type_embeddings = keras.layers.Embedding(
            config.type_vocab_size, config.hidden_size, embeddings_initializer=init,
            name="type_embeddings", dtype=dtype) if config.type_vocab_size else None
        embeddings_layer_norm = layers.make_norm(
            config.norm_type, config.layer_norm_eps, "embeddings_layer_norm", dtype,
            config.norm_bias)
        embeddings_dropout = layers.Dropout(
            config.hidden_dropout_prob, name="embeddings_dropout", dtype=dtype)
        blocks = [
            layers.TransformerBlock(
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
                hidden_dropout_prob=config.hidden_dropout_prob,
                attention_probs_dropout_prob=config.attention_probs_dropout_prob,
                initializer_range=config.initializer_range,
                layer_norm_eps=config.layer_norm_eps, layer_norm=config.layer_norm,
                norm_type=config.norm_type, use_bias=config.use_bias,
                rope_theta=config.layer_rope_theta(i), norm_bias=config.norm_bias,
                attention_norm=i > 0 or config.first_block_attention_norm,
                local_window=config.local_attention_window if config.is_local_layer(i) else None,
                name=f"transformer_layer_{i}", dtype=dtype)
            for i in range(config.num_hidden_layers)]
        # pre-norm blocks leave the stream unnormalised: one more norm after the last
        final_layer_norm = (layers.make_norm(config.norm_type, config.layer_norm_eps,
                                             "final_layer_norm", dtype, config.norm_bias)
                            if config.layer_norm == "pre" else None)
        pooler = layers.Pooler(config.initializer_range, name="pooler", dtype=dtype)
        packed_mask = layers.PackedSequenceMask(name="packed_sequence_mask", dtype=dtype)

        # === Functional model ===
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
                  for name in INPUT_NAMES}
        _, positions = packed_mask(inputs["input_mask"])  # [B, T]
        words = word_embeddings(inputs["input_word_ids"])  # [B, T, H]
        summed = [words]
        if position_embedding is not None:
            summed.append(position_embedding(words, positions))
        if type_embeddings is not None:  # else input_type_ids is accepted and not read
            summed.append(type_embeddings(inputs["input_type_ids"]))
        hidden = (keras.layers.Add(name="embeddings_sum", dtype=dtype)(summed)
                  if len(summed) > 1 else words)
        hidden = embeddings_dropout(embeddings_layer_norm(hidden))
        encoder_outputs = []
        for block in blocks:  # each attends by the packing ids (layers.SelfAttention)
            hidden = (block(hidden, inputs["input_mask"], positions) if rotary
                      else block(hidden, inputs["input_mask"]))
            encoder_outputs.append(hidden)
        if final_layer_norm is not None:
            hidden = encoder_outputs[-1] = final_layer_norm(hidden)
        outputs = {"sequence_output": hidden, "pooled_output": pooler(hidden),
                   "encoder_outputs": encoder_outputs}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        set_dtype_policy(self, dtype)

        self.config = config
        self.word_embeddings = word_embeddings
        self.position_embedding = position_embedding
        self.type_embeddings = type_embeddings
        self.embeddings_layer_norm = embeddings_layer_norm
        self.transformer_layers = blocks
        self.final_layer_norm = final_layer_norm
        self.pooler = pooler

    def set_remat(self, mode):
        """Rematerialization in training: "none", "layers" or "full" (`TransformerBlock`)."""
        if mode not in layers.REMAT_MODES:
            raise ValueError(f"--remat must be one of {', '.join(layers.REMAT_MODES)}, got "
                             f"{mode!r}")
        for block in self.transformer_layers:
            block.remat = mode

    def set_attention(self, implementation):
        """How the blocks compute attention: "auto" (the default), "einsum", or on the JAX
        backend a fused kernel, "cudnn", "splash" or "xla" (`attention`). The weights and
        (but for rounding, and padding positions) the outputs are the same."""
        attention.check_implementation(implementation)
        for block in self.transformer_layers:
            block.self_attention.implementation = implementation

    def __call__(self, inputs, *args, **kwargs):
        # Checked before Keras's own input handling, whose messages know nothing of BERT.
        check_encoder_inputs(inputs, self.config.max_position_embeddings)
        return super().__call__(inputs, *args, **kwargs)

    def get_config(self):
        return {"config": self.config.to_dict(), **model_base_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**restore_dtype(config))


def model_base_config(model):
    """The `keras.Model` arguments our functional subclasses pass through get_config."""
    return {"name": model.name, "trainable": model.trainable,
            "dtype": keras.saving.serialize_keras_object(model.dtype_policy)}


def set_dtype_policy(model, dtype):
    """Functional models drop `dtype`; keep it so get_config (and .keras files) carry it."""
    if dtype is not None:
        model.dtype_policy = keras.dtype_policies.get(dtype)


def restore_dtype(config):
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
    return config


def check_encoder_inputs(inputs, max_position_embeddings, extra_names=()):
    """Raises a ValueError/TypeError naming the problem with a dict of encoder inputs.

    `extra_names` are further keys the caller accepts (the pretraining model's positions).
    Checks what is known before running: names, integer dtypes, rank 2, equal static shapes and
    a static length within `max_position_embeddings`.
    """
    expected = INPUT_NAMES + tuple(extra_names)
    if not isinstance(inputs, Mapping):
        raise TypeError(f"BERT inputs must be a dict with keys {', '.join(expected)}; "
                        f"got {type(inputs).__name__}")
    missing = [k for k in expected if k not in inputs]
    unknown = [k for k in inputs if k not in expected]
    if missing or unknown:
        hints = [f"{k!r} is google-research's name for {GOOGLE_INPUT_NAMES[k]!r}"
                 for k in unknown if k in GOOGLE_INPUT_NAMES]
        raise ValueError(
            "BERT inputs must be exactly " + ", ".join(expected)
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unexpected: {', '.join(map(str, unknown))}" if unknown else "")
            + (f" ({'; '.join(hints)})" if hints else ""))
    shapes = {}
    for name in expected:
        value = inputs[name]
        dtype = getattr(value, "dtype", None)
        dtype = keras.backend.standardize_dtype(dtype if dtype is not None
                                                else np.asarray(value).dtype)
        if "int" not in dtype:
            raise TypeError(f"BERT input {name!r} must be an integer tensor, got dtype {dtype}")
        shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
        if len(shape) != 2:
            raise ValueError(f"BERT input {name!r} must have shape [batch, seq_length], "
                             f"got shape {shape}")
        shapes[name] = shape
    first = shapes[INPUT_NAMES[0]]
    for name in INPUT_NAMES[1:]:
        if any(a is not None and b is not None and a != b for a, b in zip(first, shapes[name])):
            raise ValueError(f"BERT input {name!r} has shape {shapes[name]}, but "
                             f"{INPUT_NAMES[0]!r} has shape {first}; they must match")
    layers.check_sequence_length(first[1], max_position_embeddings)
