"""Attention masks from packing ids, and attention through the accelerator's fused kernels on
the JAX backend.

`SelfAttention` computes attention with `keras.ops` einsums and a softmax on every backend (the
"einsum" implementation: what TensorFlow runs, XLA fusing what it can). On the JAX backend it can
instead hand queries, keys and values to a fused kernel that never writes the [B,N,T,T] scores to
memory:

  "cudnn"   `jax.nn.dot_product_attention(implementation="cudnn")`: cuDNN's flash attention on
            an NVIDIA GPU (Ampere or newer, bfloat16/float16); the packing and window mask
            enter as a boolean mask, which JAX turns into cuDNN's bias input.
  "splash"  the Pallas TPU splash-attention kernel
            (`jax.experimental.pallas.ops.tpu.splash_attention`), with the packing ids as its
            segment ids and a `LocalMask` for sliding-window layers; on a machine without a
            TPU, the kernel's interpreter (slow: for tests). Needs T a multiple of 128.
  "xla"     `jax.nn.dot_product_attention(implementation="xla")`: JAX's own composition, the
            same mask; a check of the mask plumbing on any platform.

"auto" (a layer's default) takes "splash" on a TPU, "cudnn" on a GPU for half-precision inputs,
and "einsum" otherwise, unless Keras's switch is off (`keras.config.disable_flash_attention()`).
The fused kernels have no dropout on the attention probabilities: with
`attention_probs_dropout_prob` > 0 a training call takes the einsum path ("auto") or is refused
(a kernel named).

The packing ids are `input_mask` (0 padding, 1, 2, ... the sequence of a token; `PackedSequenceMask`).
A real token attends to its own sequence in every implementation. Padding queries differ:
the einsum path lets them attend to every real token, the kernels to padding only; no output
of the model reads a padding position's state (the masked-LM head gathers real positions, the
pooler reads [CLS]).

Keras's own `ops.dot_product_attention` does not serve here: on a TPU it gives splash one
batch row's mask and zero segment ids, and inside a jitted step (a traced mask) it falls back
to XLA (keras/src/backend/jax/nn.py, Keras 3.15).
"""

import warnings

import keras
from keras import ops

IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn", "splash")
KERNELS = ("xla", "cudnn", "splash")  # the fused ones, JAX only
SPLASH_BLOCK = 128  # the splash kernel's block of queries and keys (its NUM_LANES)
_HALF_PRECISION = ("bfloat16", "float16")


def check_implementation(name):
    """Raises a ValueError unless `name` is an implementation this backend can run."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {', '.join(IMPLEMENTATIONS)}"
                         f", got {name!r}")
    if name in KERNELS and keras.backend.backend() != "jax":
        raise ValueError(f"attention implementation {name!r} needs the JAX backend "
                         f"(KERAS_BACKEND=jax); this is {keras.backend.backend()!r}: use "
                         f"'einsum' or 'auto'")


def choose(implementation, dtype, seq_length, dropout, training):
    """The implementation a call takes: `implementation` resolved for this backend, platform,
    dtype, static sequence length and attention dropout. Returns one of "einsum" and KERNELS."""
    dropping = bool(training) and dropout > 0
    if implementation != "auto":
        if implementation in KERNELS and dropping:
            raise ValueError(
                f"attention implementation {implementation!r} has no dropout on attention "
                f"probabilities, and this layer trains with attention_probs_dropout_prob="
                f"{dropout}: set it to 0 in the config, or use 'auto' or 'einsum'")
        if implementation == "splash":
            _check_splash_length(seq_length)
        return implementation
    if (keras.backend.backend() != "jax" or dropping
            or keras.config.is_flash_attention_enabled() is False):
        return "einsum"
    platform = _platform()
    if platform == "tpu" and isinstance(seq_length, int) and seq_length % SPLASH_BLOCK == 0:
        return "splash"
    if platform == "gpu" and keras.backend.standardize_dtype(dtype) in _HALF_PRECISION:
        return "cudnn"
    return "einsum"


def attention(query, key, value, segment_ids, window, implementation, fall_back=False):
    """Fused attention, query (already scaled by 1/sqrt(d)), key, value [B,T,N,d] -> [B,T,N,d].

    segment_ids [B,T]: the packing ids (0 = padding); window: a local layer's sliding window
    (keys at most window // 2 away), or None; implementation: one of KERNELS. `fall_back`:
    where the kernel refuses the inputs (cuDNN's shape and version limits, raised when traced),
    warn and return None, for the einsum path to take the call (as Keras's own attention does).
    """
    if not fall_back:
        return _fused(query, key, value, segment_ids, window, implementation)
    try:
        return _fused(query, key, value, segment_ids, window, implementation)
    except (ValueError, NotImplementedError, RuntimeError) as e:
        warnings.warn(f"attention: the {implementation} kernel refused these inputs "
                      f"({type(e).__name__}: {e}); computing it with einsum", stacklevel=2)
        return None


def _fused(query, key, value, segment_ids, window, implementation):
    if implementation == "splash":
        return _splash(query, key, value, segment_ids, window)
    import jax  # noqa: PLC0415 (the JAX backend only)
    mask = ops.expand_dims(allowed_keys(segment_ids, window), 1)  # [B, 1, T, T]
    return jax.nn.dot_product_attention(query, key, value, mask=mask, scale=1.0,
                                        implementation=implementation)


def allowed_keys(segment_ids, window=None):
    """[B,T] packing ids -> bool [B,T,T] (query, key): a real query attends to the keys of its
    own sequence (within `window // 2` positions, given a window); a padding query to every
    real key. The einsum path's mask."""
    ids = ops.cast(segment_ids, "int32")
    query, key = ops.expand_dims(ids, 2), ops.expand_dims(ids, 1)  # [B,T,1], [B,1,T]
    allowed = ops.logical_and(ops.greater(key, 0),
                              ops.logical_or(ops.equal(query, key), ops.equal(query, 0)))
    return within_window(allowed, window)


def within_window(allowed, window):
    """bool [B,T,T] -> the same, keeping only keys at most `window // 2` positions from their
    query (a local layer's sliding window); unchanged without a window."""
    if not window:
        return allowed
    return ops.logical_and(allowed, ops.expand_dims(near(ops.shape(allowed)[-1], window), 0))


def near(length, window):
    """bool [T,T]: whether key and query lie at most `window // 2` positions apart."""
    index = ops.arange(length, dtype="int32")
    return ops.less_equal(ops.abs(ops.expand_dims(index, 1) - ops.expand_dims(index, 0)),
                          window // 2)


def _splash(query, key, value, segment_ids, window):
    import jax  # noqa: PLC0415 (the JAX backend only)
    from jax.experimental.pallas.ops.tpu.splash_attention import (  # noqa: PLC0415
        splash_attention_kernel as kernels, splash_attention_mask as masks)
    _, length, heads, _ = query.shape
    _check_splash_length(length)
    shape = (length, length)
    head_mask = (masks.LocalMask(shape, window_size=(window // 2, window // 2), offset=0)
                 if window else masks.FullMask(shape))
    kernel = kernels.make_splash_mha(
        masks.MultiHeadMask([head_mask] * heads), head_shards=1, q_seq_shards=1,
        interpret=_platform() != "tpu")
    ids = ops.cast(segment_ids, "int32")
    per_row = jax.vmap(lambda q, k, v, s: kernel(q, k, v, segment_ids=kernels.SegmentIds(s, s)))
    heads_first = [ops.transpose(x, (0, 2, 1, 3)) for x in (query, key, value)]  # [B,N,T,d]
    return ops.transpose(per_row(*heads_first, ids), (0, 2, 1, 3))  # [B,T,N,d]


def _check_splash_length(length):
    if not isinstance(length, int) or length % SPLASH_BLOCK:
        raise ValueError(f"the splash attention kernel needs a static sequence length that is "
                         f"a multiple of {SPLASH_BLOCK}, got {length}: pad to max_seq_length "
                         f"(a multiple of {SPLASH_BLOCK}) or use 'auto'")


def _platform():
    import jax  # noqa: PLC0415 (the JAX backend only)
    return jax.devices()[0].platform
