"""BERT's layers, in `keras.layers` / `keras.ops` only so the model runs on any Keras backend.

Shapes: B batch, T sequence length, H hidden size, P masked positions per sequence, V vocab size.

  TiedEmbedding        word ids [B,T] -> [B,T,H]; and, with reverse=True, [..,H] -> logits [..,V]
  PositionEmbedding    [B,T,H] -> learned position vectors [B,T,H]
  SelfAttention        multi-head attention with one fused QKV matmul, [B,T,H] -> [B,T,H]
  rotary               rotary position embedding of queries or keys (RoFormer)
  LocalAttentionMask   an attention mask cut to a sliding window (local layers)
  TransformerBlock     self-attention + feed-forward block (post- or pre-norm, plain or gated
                       feed-forward), [B,T,H] -> [B,T,H]
  make_norm            LayerNorm or RMSNorm, the config's `norm_type`
  Pooler               tanh dense on the first ([CLS]) token, [B,T,H] -> [B,H]
  MaskedLMTransform    gather masked positions, dense + activation + LayerNorm, -> [B,P,H]
  MaskedLMOutputBias   float32 logits + the output bias of the masked-LM head, [B,P,V]
"""

import math

import keras
from keras import ops

from bert_tf.config import ACTIVATIONS, GATED_ACTIVATIONS
from bert_tf.modeling import attention


HALF_PRECISION = ("bfloat16", "float16")
_SQRT_HALF = math.sqrt(0.5)


def gelu_tanh(x):
    """The tanh approximation of GELU that google-research/bert computes."""
    return keras.activations.gelu(x, approximate=True)


def gelu_exact(x):
    """GELU with erf, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2: the form of PyTorch and JAX, where
    TensorFlow (and Keras on it) computes 0.5 x erfc(-x / sqrt 2), and TensorFlow's CPU erfc runs
    2.5x slower than its erf (14 vs 5.5 ms on [4096, 2048]): forward and backward 70 -> 51 ms in
    float32, 74 -> 62 ms in bfloat16. In float32 for half-precision inputs, then cast back
    (TensorFlow's CPU erf is 2.2x slower in bfloat16). Autodiff, not a written-out gradient: a
    custom gradient inside the exported encoder's training/inference branch breaks
    differentiating the loaded SavedModel (cond_v2), and measured no faster. Written as
    0.5 * x * (1 + erf(x / sqrt 2)), the order the LiteRT converter fuses into its GELU op (it
    has no erf)."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    x_c = ops.cast(x, "float32") if dtype in HALF_PRECISION else x
    return ops.cast(0.5 * x_c * (1.0 + ops.erf(x_c * _SQRT_HALF)), dtype)


def get_activation(name: str):
    """Maps a `hidden_act` name (Hugging Face convention) to a function; a gated one ("geglu")
    to the function of its gate's activation."""
    functions = {"gelu": gelu_exact, "gelu_new": gelu_tanh, "gelu_tanh": gelu_tanh,
                 "gelu_pytorch_tanh": gelu_tanh, "relu": keras.activations.relu,
                 "silu": keras.activations.silu}
    name = GATED_ACTIVATIONS.get(name, name)
    if name not in functions:
        raise ValueError(f"hidden_act must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return functions[name]


def make_norm(norm_type, epsilon, name, dtype, bias=True):
    """The encoder's normalisation: LayerNorm (with a bias unless `bias` is false) or RMSNorm
    (scale only)."""
    if norm_type == "rms_norm":
        return keras.layers.RMSNormalization(epsilon=epsilon, name=name, dtype=dtype)
    return keras.layers.LayerNormalization(epsilon=epsilon, center=bias, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="bert_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose keep mask is drawn in float32 and multiplied in.

    Under mixed precision Keras draws the random numbers in the compute dtype and selects; on
    CPU, TensorFlow draws bfloat16 uniforms 1.3x slower than float32 ones, and a multiply by
    the mask is cheaper than a select. The statistics are Keras's: each unit kept with
    probability 1 - rate and scaled by 1 / (1 - rate).
    """

    def call(self, inputs, training=False):
        if not training or self.rate <= 0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        replayed = self.__dict__.get("_replayed_seed")  # see TransformerBlock.remat
        seed = DrawnSeed(replayed) if replayed is not None else self.seed_generator
        keep = ops.greater_equal(keras.random.uniform(ops.shape(inputs), seed=seed), self.rate)
        scale = ops.cast(1.0 / (1.0 - self.rate), inputs.dtype)
        return inputs * ops.cast(keep, inputs.dtype) * scale


class DrawnSeed(keras.random.SeedGenerator):
    """A seed already drawn, given to `keras.random` where it takes a SeedGenerator: it returns
    the same seed every time and has no state of its own."""

    def __init__(self, value):  # no SeedGenerator.__init__: no state variable
        self.value = value

    def next(self, ordered=True):
        return self.value


REMAT_MODES = ("none", "layers", "full")


def truncated_normal(stddev: float):
    return keras.initializers.TruncatedNormal(stddev=stddev)


@keras.saving.register_keras_serializable(package="bert_tf")
class TiedEmbedding(keras.layers.Embedding):
    """The word-embedding table, which the masked-LM head reuses as its output projection.

    `layer(ids)` looks ids [B,T] up into [B,T,H]; `layer(hidden, reverse=True)` multiplies hidden
    states [..,H] by the transposed table into logits [..,V]. Calling one layer both ways ties the
    weights: there is one variable, not a copy.
    """

    def call(self, inputs, reverse=False):
        if not reverse:
            return super().call(inputs)
        table = ops.cast(self.embeddings, self.compute_dtype)
        return ops.matmul(inputs, ops.transpose(table))  # [..,H] x [H,V] -> [..,V]

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape)[:-1] + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="bert_tf")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embeddings for positions 0..T-1, broadcast over the batch.

    Args:
      max_length: rows of the table (`max_position_embeddings`); longer inputs are an error.
      initializer_range: stddev of the truncated-normal initialiser.
    """

    def __init__(self, max_length, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.initializer_range = initializer_range

    def build(self, inputs_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, inputs_shape[-1]),
            initializer=truncated_normal(self.initializer_range))

    def call(self, inputs, positions=None):
        # inputs = [B, T, H], the word embeddings; positions [B, T] (default 0..T-1 in each row).
        seq_length = ops.shape(inputs)[1]
        check_sequence_length(seq_length, self.max_length)
        table = ops.cast(self.embeddings, self.compute_dtype)
        if positions is not None:
            return ops.take(table, ops.cast(positions, "int32"), axis=0)  # [B, T, H]
        hidden_size = ops.shape(inputs)[-1]
        rows = ops.slice(table, (0, 0), (seq_length, hidden_size))  # [T, H]
        return ops.broadcast_to(rows, ops.shape(inputs))  # [B, T, H]

    def compute_output_shape(self, inputs_shape, positions_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "initializer_range": self.initializer_range}


def check_sequence_length(seq_length, max_length):
    """Rejects a static sequence length beyond the position table, naming both figures."""
    if isinstance(seq_length, int) and seq_length > max_length:
        raise ValueError(
            f"Input sequence length {seq_length} exceeds max_position_embeddings={max_length}: "
            f"truncate the inputs (max_seq_length) or use a config with more positions.")


@keras.saving.register_keras_serializable(package="bert_tf")
class PackedSequenceMask(keras.layers.Layer):
    """input_mask [B,T] -> (attention mask [B,T,T], positions [B,T]), for rows that hold one
    sequence or several packed ones.

    input_mask is 0 on padding and, on real tokens, the index (1, 2, ...) of the sequence a token
    belongs to; sequences lie one after the other from the start of the row. An ordinary mask
    (all real tokens 1) is one sequence per row. A real token attends to the tokens of its own
    sequence only (a padding query to every real token, as without packing), and positions
    restart at 0 with each sequence. For a one-sequence row both are what BERT always did:
    padding keys masked, positions 0..T-1. The encoder reads the positions and hands the blocks
    input_mask itself, from which each attention layer makes its mask (`attention`).
    """

    def call(self, input_mask):
        mask = ops.cast(input_mask, "int32")
        # expand_dims, not [:, None]: LiteRT's converter cannot turn a new-axis slice of a
        # tensor of unknown length into its own ops
        query, key = ops.expand_dims(mask, 2), ops.expand_dims(mask, 1)  # [B,T,1], [B,1,T]
        # A token's sequence starts after the real tokens of earlier sequences.
        start = ops.sum(ops.cast(ops.logical_and(ops.greater(key, 0), ops.less(key, query)),
                                 "int32"), axis=-1)  # [B, T]
        positions = ops.expand_dims(ops.arange(ops.shape(mask)[1], dtype="int32"), 0) - start
        return ops.cast(attention.allowed_keys(mask), "int32"), positions

    def compute_output_spec(self, input_mask):
        batch, length = input_mask.shape
        return (keras.KerasTensor((batch, length, length), dtype="int32"),
                keras.KerasTensor((batch, length), dtype="int32"))


@keras.saving.register_keras_serializable(package="bert_tf")
class LocalAttentionMask(keras.layers.Layer):
    """An attention mask [B,T,T] -> the same, keeping only keys at most `window // 2`
    positions from their query (a local layer's sliding window). Kept for encoders saved
    before `SelfAttention` took its window itself."""

    def __init__(self, window, **kwargs):
        super().__init__(**kwargs)
        self.window = window

    def call(self, attention_mask):
        near = attention.near(ops.shape(attention_mask)[-1], self.window)  # [T, T]
        return attention_mask * ops.expand_dims(ops.cast(near, attention_mask.dtype), 0)

    def compute_output_spec(self, attention_mask):
        return keras.KerasTensor(attention_mask.shape, dtype=attention_mask.dtype)

    def get_config(self):
        return {**super().get_config(), "window": self.window}


# Added to the scores of padding keys (google's value): exp() of it is 0 in float32, and it
# fits float16.
_MASKED_SCORE = -10000.0


@keras.saving.register_keras_serializable(package="bert_tf")
class SelfAttention(keras.layers.Layer):
    """Bidirectional multi-head self-attention, [B,T,H] -> [B,T,H], N heads of size d.

    The weights are those of `keras.layers.MultiHeadAttention` (query/key/value kernels [H,N,d],
    biases [N,d], attention_output kernel [N,d,H]), so checkpoints and the name maps are shared.
    The three projections run as one [H, 3N, d] matmul and padding enters as one additive bias;
    about 2% faster per training step than MultiHeadAttention on bert_small (CPU, oneDNN).

    Call with `(hidden [B,T,H], input_mask [B,T])`, input_mask the packing ids
    (`PackedSequenceMask`; a 0/1 mask is one sequence per row), or with an attention mask
    [B,T,T] (query, key); with `rope_theta`, also `positions` [B,T], by which queries and keys
    are rotated (`rotary`). With `local_window`, a query attends only to keys at most
    `local_window // 2` positions away.

    `implementation` (not part of the config: set it on a built model, like `remat`) picks how
    the attention itself is computed: "einsum" (keras.ops, every backend), "auto" (the default)
    or a fused kernel of the JAX backend ("cudnn", "splash", "xla"; see `attention`), which
    needs input_mask as packing ids; under "auto", a kernel that refuses the inputs (when
    traced) leaves the call to the einsum path, with a warning.
    """

    def __init__(self, num_heads, head_size, dropout=0.0, initializer_range=0.02,
                 use_bias=True, rope_theta=None, local_window=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout_rate = dropout
        self.initializer_range = initializer_range
        self.use_bias = use_bias
        self.rope_theta = rope_theta
        self.local_window = local_window or None
        self.implementation = "auto"

    def build(self, inputs_shape):
        hidden_size = inputs_shape[-1]
        common = dict(kernel_initializer=truncated_normal(self.initializer_range),
                      dtype=self.dtype_policy)
        shape = (None, self.num_heads, self.head_size)
        self.query, self.key, self.value = (
            keras.layers.EinsumDense("abc,cde->abde", shape, name=name,
                                     bias_axes="de" if self.use_bias else None, **common)
            for name in ("query", "key", "value"))
        for projection in (self.query, self.key, self.value):
            projection.build(inputs_shape)
        self.attention_output = keras.layers.EinsumDense(
            "abcd,cde->abe", (None, hidden_size), bias_axes="e" if self.use_bias else None,
            name="attention_output", **common)
        self.attention_output.build((None, None, self.num_heads, self.head_size))
        self.dropout = Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, inputs, input_mask, positions=None, training=None):
        kernel = ops.concatenate([self.query.kernel, self.key.kernel, self.value.kernel],
                                 axis=1)  # [H, 3N, d]
        bias = (ops.concatenate([self.query.bias, self.key.bias, self.value.bias], axis=0)
                if self.use_bias else None)
        qkv = _project(inputs, kernel, bias)  # [B, T, 3N, d]
        query, key, value = ops.split(qkv, 3, axis=2)  # each [B, T, N, d]
        if self.rope_theta is not None:
            query, key = (rotary(x, positions, self.rope_theta) for x in (query, key))
        query = query * ops.cast(1.0 / float(self.head_size) ** 0.5, query.dtype)
        packing_ids = len(input_mask.shape) == 2
        how = (attention.choose(self.implementation, query.dtype, query.shape[1],
                                self.dropout_rate, training) if packing_ids else "einsum")
        context = None if how == "einsum" else attention.attention(
            query, key, value, input_mask, self.local_window, how,
            fall_back=self.implementation == "auto")
        if context is None:
            if packing_ids:
                allowed = attention.allowed_keys(input_mask, self.local_window)  # [B, T, T]
            else:
                allowed = attention.within_window(ops.cast(input_mask, "bool"),
                                                  self.local_window)
            scores = ops.einsum("btnd,bsnd->bnts", query, key)  # [B, N, T, T]
            masked = 1.0 - ops.cast(allowed, scores.dtype)  # [B, T, T]
            scores = scores + ops.expand_dims(masked, 1) * _MASKED_SCORE
            probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
            context = ops.einsum("bnts,bsnd->btnd", probs, value)  # [B, T, N, d]
        return _project(context, self.attention_output.kernel,
                        self.attention_output.bias, input_dims=2)  # [B, T, H]

    def compute_output_shape(self, inputs_shape, input_mask_shape=None, positions_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "head_size": self.head_size, "dropout": self.dropout_rate,
                "initializer_range": self.initializer_range, "use_bias": self.use_bias,
                "rope_theta": self.rope_theta, "local_window": self.local_window}


def rotary(x, positions, theta):
    """Rotary position embedding (Su et al. 2021, RoFormer, eq. 34), x [B,T,N,d], positions
    [B,T]: each pair (x_i, x_{i+d/2}) turns by the angle position * theta^(-2i/d), so a query-key
    product depends on the two positions only through their difference. The half-split pairing
    of GPT-NeoX, Llama and ModernBERT (not RoFormer's adjacent pairs); computed in float32."""
    dtype = x.dtype
    half = x.shape[-1] // 2
    inverse = theta ** (-ops.arange(0, half, dtype="float32") * 2.0 / (2 * half))  # [d/2]
    angles = ops.cast(positions, "float32")[:, :, None, None] * inverse  # [B, T, 1, d/2]
    cos, sin = ops.cos(angles), ops.sin(angles)
    x = ops.cast(x, "float32")
    first, second = x[..., :half], x[..., half:]
    turned = ops.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return ops.cast(turned, dtype)


def _project(inputs, kernel, bias, input_dims=1):
    """inputs [B,T,*in] x kernel [*in,*out] + bias [*out] -> [B,T,*out], as one 2-D matmul.

    What EinsumDense computes, but TensorFlow runs an einsum whose kernel is shared over the
    batch as a batched matmul, and its kernel gradient as per-example products summed over B:
    a [B, *in, *out] temporary. The 2-D form takes that gradient as one matmul.
    """
    kernel = ops.cast(kernel, inputs.dtype)
    in_shape, out_shape = tuple(kernel.shape[:input_dims]), tuple(kernel.shape[input_dims:])
    rows = ops.reshape(inputs, (-1, math.prod(in_shape)))  # [B*T, in]
    outputs = ops.matmul(rows, ops.reshape(kernel, (math.prod(in_shape), -1)))  # [B*T, out]
    if bias is not None:
        outputs = outputs + ops.reshape(ops.cast(bias, inputs.dtype), (-1,))
    return ops.reshape(outputs, (ops.shape(inputs)[0], ops.shape(inputs)[1]) + out_shape)


@keras.saving.register_keras_serializable(package="bert_tf")
class TransformerBlock(keras.layers.Layer):
    """One BERT block: attention, add & norm, feed-forward, add & norm. With
    `layer_norm="pre"` each part normalises its input instead and adds to the unnormalised
    stream (x + attention(norm(x)), then h + ffn(norm(h))). A gated `hidden_act` ("geglu",
    "swiglu") makes the feed-forward layer act(x W) * (x V), W and V each [H, intermediate_size],
    kept as one [H, 2 * intermediate_size] kernel (W first); `use_bias=False` drops the biases of
    the attention and feed-forward projections.

    Call with `(hidden [B,T,H], input_mask [B,T])`; positions where input_mask is 0 are never
    attended to. Attention is bidirectional: no causal mask.

    `remat` (rematerialization, gradient checkpointing) trades compute for memory in training:
    "layers" keeps only the block's input for the backward pass and recomputes the rest there
    (`keras.remat`); "full" also recomputes the attention and the feed-forward parts separately
    inside that recomputation, so that only one part's activations are alive at a time. The
    dropout masks are drawn once per call, outside the recomputed function, and replayed in it:
    the recomputation sees the forward pass's masks, so gradients are exactly those without
    remat.
    """

    def __init__(self, num_attention_heads, intermediate_size, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 initializer_range=0.02, layer_norm_eps=1e-12, remat="none", layer_norm="post",
                 norm_type="layer_norm", use_bias=True, rope_theta=None, norm_bias=True,
                 attention_norm=True, local_window=None, **kwargs):
        super().__init__(**kwargs)
        if remat not in REMAT_MODES:
            raise ValueError(f"remat must be one of {', '.join(REMAT_MODES)}, got {remat!r}")
        self.remat = remat
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.layer_norm = layer_norm
        self.norm_type = norm_type
        self.use_bias = use_bias
        self.rope_theta = rope_theta
        self.norm_bias = norm_bias
        self.attention_norm = attention_norm
        self.local_window = local_window or None
        self.gated = hidden_act in GATED_ACTIVATIONS
        self.activation = get_activation(hidden_act)

    def build(self, inputs_shape):
        hidden_size = inputs_shape[-1]
        if hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        init = truncated_normal(self.initializer_range)
        common = dict(dtype=self.dtype_policy)
        # === Attention ===
        self.self_attention = SelfAttention(
            self.num_attention_heads, hidden_size // self.num_attention_heads,
            self.attention_probs_dropout_prob, self.initializer_range, use_bias=self.use_bias,
            rope_theta=self.rope_theta, local_window=self.local_window, name="self_attention",
            **common)
        self.self_attention.build(inputs_shape)
        self.self_attention_dropout = Dropout(self.hidden_dropout_prob, **common)
        self.self_attention_layer_norm = None  # pre-norm without an attention-input norm
        if self.attention_norm:
            self.self_attention_layer_norm = make_norm(
                self.norm_type, self.layer_norm_eps, "self_attention_layer_norm",
                self.dtype_policy, self.norm_bias)
            self.self_attention_layer_norm.build(inputs_shape)
        # === Feed-forward ===
        self.intermediate = keras.layers.Dense(
            self.intermediate_size * (2 if self.gated else 1),
            activation=None if self.gated else self.activation, use_bias=self.use_bias,
            kernel_initializer=init, name="intermediate", **common)
        self.intermediate.build(inputs_shape)
        self.output_dense = keras.layers.Dense(
            hidden_size, kernel_initializer=init, use_bias=self.use_bias, name="output",
            **common)
        self.output_dense.build(tuple(inputs_shape)[:-1] + (self.intermediate_size,))
        self.output_dropout = Dropout(self.hidden_dropout_prob, **common)
        self.output_layer_norm = make_norm(
            self.norm_type, self.layer_norm_eps, "output_layer_norm", self.dtype_policy,
            self.norm_bias)
        self.output_layer_norm.build(inputs_shape)

    def call(self, inputs, input_mask, positions=None, training=None):
        if self.remat == "none" or not training:
            return self._block(inputs, input_mask, positions, training)
        dropouts = [layer for layer in (self.self_attention.dropout, self.self_attention_dropout,
                                        self.output_dropout) if layer.rate > 0]
        seeds = [layer.seed_generator.next() for layer in dropouts]

        def block(hidden):
            for layer, seed in zip(dropouts, seeds):  # the same masks when recomputed
                layer.__dict__["_replayed_seed"] = seed  # untracked: a tensor of this call
            return self._block(hidden, input_mask, positions, training)
        return keras.remat(block)(inputs)

    def _block(self, inputs, input_mask, positions, training):
        part = keras.remat if self.remat == "full" and training else (lambda f: f)
        # Every query may look at every real (non-padding) key.
        attend = part(lambda x: self.self_attention_dropout(self.self_attention(
            x, input_mask, positions, training=training), training=training))  # [B, T, H]
        feed_forward = part(lambda x: self.output_dropout(self.output_dense(self._inner(
            x)), training=training))  # [B,T,H] -> [B,T,I] -> [B,T,H]
        if self.layer_norm == "pre":
            normed = (self.self_attention_layer_norm(inputs) if self.attention_norm
                      else inputs)
            hidden = inputs + attend(normed)
            return hidden + feed_forward(self.output_layer_norm(hidden))
        hidden = self.self_attention_layer_norm(inputs + attend(inputs))
        return self.output_layer_norm(hidden + feed_forward(hidden))

    def _inner(self, x):
        """The feed-forward layer's inner activations [B,T,I]: act(x W), or act(x W) * (x V)."""
        inner = self.intermediate(x)
        if not self.gated:
            return inner
        value, gate = ops.split(inner, 2, axis=-1)
        return self.activation(value) * gate

    def compute_output_shape(self, inputs_shape, input_mask_shape=None, positions_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(),
                "num_attention_heads": self.num_attention_heads,
                "intermediate_size": self.intermediate_size,
                "hidden_act": self.hidden_act,
                "hidden_dropout_prob": self.hidden_dropout_prob,
                "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
                "initializer_range": self.initializer_range,
                "layer_norm_eps": self.layer_norm_eps, "layer_norm": self.layer_norm,
                "norm_type": self.norm_type, "use_bias": self.use_bias,
                "rope_theta": self.rope_theta, "norm_bias": self.norm_bias,
                "attention_norm": self.attention_norm, "local_window": self.local_window}


@keras.saving.register_keras_serializable(package="bert_tf")
class Pooler(keras.layers.Layer):
    """`pooled_output`: a tanh dense layer on the first token's hidden state, [B,T,H] -> [B,H]."""

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, inputs_shape):
        self.dense = keras.layers.Dense(
            inputs_shape[-1], activation="tanh", name="dense", dtype=self.dtype_policy,
            kernel_initializer=truncated_normal(self.initializer_range))
        self.dense.build((inputs_shape[0], inputs_shape[-1]))

    def call(self, inputs, positions=None):
        # positions [B, K]: pool the states there instead (the [CLS] of each packed sequence).
        if positions is None:
            return self.dense(inputs[:, 0, :])  # [B, H]
        return self.dense(gather_positions(inputs, positions))  # [B, K, H]

    def compute_output_shape(self, inputs_shape, positions_shape=None):
        if positions_shape is None:
            return (inputs_shape[0], inputs_shape[-1])
        return (inputs_shape[0], positions_shape[1], inputs_shape[-1])

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


def gather_positions(sequence, positions):
    """Picks hidden states at `positions`: sequence [B,T,H], positions [B,P] -> [B,P,H]."""
    positions = ops.cast(positions, "int32")
    return ops.take_along_axis(sequence, ops.expand_dims(positions, -1), axis=1)


@keras.saving.register_keras_serializable(package="bert_tf")
class MaskedLMTransform(keras.layers.Layer):
    """The masked-LM head up to the tied projection: gather, dense, `hidden_act`, LayerNorm.

    Call with `(sequence_output [B,T,H], masked_lm_positions [B,P])`; returns [B,P,H]. The
    logits are `TiedEmbedding(..., reverse=True)` of this, then `MaskedLMOutputBias`.
    """

    def __init__(self, hidden_act="gelu", initializer_range=0.02, layer_norm_eps=1e-12,
                 norm_type="layer_norm", use_bias=True, norm_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.norm_type = norm_type
        self.use_bias = use_bias
        self.norm_bias = norm_bias

    def build(self, sequence_output_shape, masked_lm_positions_shape):
        hidden_size = sequence_output_shape[-1]
        self.dense = keras.layers.Dense(
            hidden_size, activation=get_activation(self.hidden_act), name="dense",
            use_bias=self.use_bias, kernel_initializer=truncated_normal(self.initializer_range),
            dtype=self.dtype_policy)
        self.dense.build((None, None, hidden_size))
        self.layer_norm = make_norm(self.norm_type, self.layer_norm_eps, "layer_norm",
                                    self.dtype_policy, self.norm_bias)
        self.layer_norm.build((None, None, hidden_size))

    def call(self, sequence_output, masked_lm_positions):
        hidden = gather_positions(sequence_output, masked_lm_positions)  # [B, P, H]
        return self.layer_norm(self.dense(hidden))

    def compute_output_shape(self, sequence_output_shape, masked_lm_positions_shape):
        return tuple(masked_lm_positions_shape) + (sequence_output_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "hidden_act": self.hidden_act,
                "initializer_range": self.initializer_range,
                "layer_norm_eps": self.layer_norm_eps, "norm_type": self.norm_type,
                "use_bias": self.use_bias, "norm_bias": self.norm_bias}


@keras.saving.register_keras_serializable(package="bert_tf")
class MaskedLMOutputBias(keras.layers.Layer):
    """Adds the masked-LM output bias [V] to the tied-projection logits, in float32.

    Logits stay float32 under mixed precision so the softmax and the loss do not overflow.
    """

    def build(self, logits_shape):
        self.bias = self.add_weight(name="bias", shape=(logits_shape[-1],),
                                    initializer="zeros", dtype="float32",
                                    autocast=False)

    def call(self, logits):
        return ops.cast(logits, "float32") + ops.cast(self.bias, "float32")

    def compute_output_spec(self, logits):
        return keras.KerasTensor(logits.shape, dtype="float32")
