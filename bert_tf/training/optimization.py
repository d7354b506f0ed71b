"""The optimizer of BERT pretraining: AdamW or LAMB, warmup then linear decay (or warmup,
constant, decay: trapezoidal), over steps or a training-time budget, no decay on LayerNorm
weights and biases, global-norm clipping. Keras optimizers, configured; on the
TensorFlow backend AdamW's update runs as TensorFlow's fused Adam kernel.
"""

import keras
from keras import ops

# Variables whose name contains one of these get no weight decay (google's AdamWeightDecay
# excludes "LayerNorm", "layer_norm" and "bias"; in Keras the LayerNorm weights are gamma/beta).
NO_DECAY_NAMES = ["gamma", "beta", "bias"]


def _replicas_in_sync() -> int:
    """How many replicas sum their gradients in this step (1 outside a tf.distribute step)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def global_norm(gradients):
    """The global norm of `gradients` as their dense sum: on TensorFlow an embedding's gradient
    is an IndexedSlices with one row per occurrence of a token, and Keras's norm (base
    optimizer's `global_norm`) squares those rows before adding them up. A token seen k times
    in a batch ([CLS] in every row) then counts up to sqrt(k) times too little, so the clipping
    scale differed from google-research/bert's and transformers' (tools/lockstep.py). Here the
    rows of one token are summed first, as the dense gradient has them."""
    squares = []
    for gradient in gradients:
        if gradient is None:
            continue
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if isinstance(gradient, tf.IndexedSlices):
                unique, position = tf.unique(gradient.indices)
                gradient = tf.math.unsorted_segment_sum(gradient.values, position,
                                                        tf.shape(unique)[0])
        squares.append(ops.sum(ops.square(ops.cast(gradient, "float32"))))
    return ops.sqrt(ops.sum(ops.stack(squares)))


def clip_by_global_norm(gradients, clip_norm):
    """Keras's `clip_by_global_norm` (a NaN or infinite norm makes every gradient NaN), with
    `global_norm` above; IndexedSlices stay sparse."""
    norm = global_norm(gradients)
    scale = clip_norm * ops.minimum(1.0 / norm, 1.0 / clip_norm) + (norm - norm)
    clipped = []
    for gradient in gradients:
        if gradient is None:
            clipped.append(None)
        elif keras.backend.backend() == "tensorflow" and type(gradient).__name__ == \
                "IndexedSlices":
            import tensorflow as tf

            clipped.append(tf.IndexedSlices(gradient.values * ops.cast(scale,
                                                                       gradient.values.dtype),
                                            gradient.indices, gradient.dense_shape))
        else:
            clipped.append(gradient * ops.cast(scale, gradient.dtype))
    return clipped


class ClipsSummedGradients:
    """Clips the gradient once it is summed over replicas, by its dense norm (`global_norm`).
    Keras 3.15 clips in `apply` (base_optimizer's `_clip_gradients`) before its TensorFlow
    backend sums the replicas' gradients (`_all_reduce_sum_gradients`, in
    `_backend_update_step`): under a strategy of several replicas each replica's share was
    clipped to the norm, and their sum could reach replicas x the norm in another direction (a
    classifier finetuned under mirrored on two devices learned at chance where one device
    learned the task). Here the clipping waits for the sum, as google-research/bert's and the
    Model Garden's optimizers do."""

    def _clip_gradients(self, grads):
        if _replicas_in_sync() > 1:
            return grads  # clipped once summed, below
        return self._clip_summed(grads)

    def _clip_summed(self, grads):
        if self.global_clipnorm and self.global_clipnorm > 0 and not self.clipnorm:
            return clip_by_global_norm(grads, self.global_clipnorm)
        return super()._clip_gradients(grads)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        summed = super()._all_reduce_sum_gradients(grads_and_vars)
        if _replicas_in_sync() <= 1:
            return summed
        clipped = self._clip_summed([gradient for gradient, _ in summed])
        return list(zip(clipped, [variable for _, variable in summed]))


@keras.saving.register_keras_serializable(package="bert_tf")
class Lamb(ClipsSummedGradients, keras.optimizers.Lamb):
    """keras.optimizers.Lamb, clipped after the replicas' gradients are summed."""


@keras.saving.register_keras_serializable(package="bert_tf")
class AdamW(ClipsSummedGradients, keras.optimizers.AdamW):
    """keras.optimizers.AdamW whose Adam update is one fused kernel on the TensorFlow backend
    (ResourceApplyAdam: reads the variable, gradient and both moments once, writes three),
    where Keras writes it as a dozen element-wise ops, each a pass over memory: 0.50 -> 0.22 s
    per step over bert_base's 110M weights on a 2-core CPU, the same in float32 and bfloat16
    steps. The update is the Adam paper's and PyTorch's, epsilon added to the bias-corrected
    sqrt(v): w -= lr m_hat / (sqrt(v_hat) + eps), written as the kernel's w -= lr_t m /
    (sqrt(v) + eps_t) with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) and eps_t = eps sqrt(1 - b2^t).
    Keras's own update adds eps to the uncorrected sqrt(v), which early in training (and for
    small gradients) is up to 30x larger: on small finetuning runs that slowed learning
    measurably against transformers (tools/finetune_compare.py). The decoupled weight decay
    stays Keras's. XLA compiles the kernel (TPU, jit_compile); other backends get Keras's
    update."""

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        # `variable` is the tf.Variable (a replica's, under a strategy's update()); the moments
        # are Keras variables around one.
        beta2_power = tf.pow(beta_2, step)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=beta2_power,
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            # epsilon added to the bias-corrected sqrt(v), as in the Adam paper and PyTorch
            epsilon=tf.cast(self.epsilon, dtype) * tf.sqrt(1 - beta2_power),
            grad=tf.convert_to_tensor(tf.cast(gradient, dtype)))


DECAY_SHAPES = ("linear", "sqrt")


@keras.saving.register_keras_serializable(package="bert_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `learning_rate` over `num_warmup_steps`, then linear decay
    (polynomial, power 1) to `end_learning_rate` at `num_train_steps`, constant after.

    `num_decay_steps` (trapezoidal, warmup-stable-decay): the rate stays at `learning_rate`
    after the warmup and decays over the last `num_decay_steps` only; `decay_shape="sqrt"`
    decays by 1 - sqrt(progress) instead (the "1-sqrt" cooldown of Hägele et al. 2024, which
    ModernBERT uses). With a `clock`
    (bert_tf.training.budget.Clock) the schedule runs over training seconds rather than steps:
    its "steps" are then seconds of the budget, and the position is the clock's at the step.
    """

    def __init__(self, learning_rate, num_train_steps, num_warmup_steps=0,
                 end_learning_rate=0.0, num_decay_steps=None, clock=None, decay_shape="linear"):
        if decay_shape not in DECAY_SHAPES:
            raise ValueError(f"decay_shape must be one of {', '.join(DECAY_SHAPES)}, got "
                             f"{decay_shape!r}")
        self.learning_rate = learning_rate
        self.decay_shape = decay_shape
        self.num_train_steps = num_train_steps
        self.num_warmup_steps = num_warmup_steps
        self.end_learning_rate = end_learning_rate
        self.num_decay_steps = num_decay_steps
        self.clock = clock

    def __call__(self, step):
        step = ops.cast(step if self.clock is None else self.clock.position(step), "float32")
        warmup = ops.cast(self.num_warmup_steps, "float32")
        decay_start = (self.num_warmup_steps if self.num_decay_steps is None
                       else max(self.num_train_steps - self.num_decay_steps,
                                self.num_warmup_steps))
        decay_steps = ops.cast(max(self.num_train_steps - decay_start, 1), "float32")
        progress = ops.clip((step - decay_start) / decay_steps, 0.0, 1.0)
        if self.decay_shape == "sqrt":
            progress = ops.sqrt(progress)
        decayed = (self.learning_rate - self.end_learning_rate) * (1.0 - progress) \
            + self.end_learning_rate
        warming = self.learning_rate * step / ops.maximum(warmup, 1.0)
        return ops.where(step < warmup, warming, decayed)

    def get_config(self):  # (a clock is the run's: not part of the config)
        config = {"learning_rate": self.learning_rate, "num_train_steps": self.num_train_steps,
                  "num_warmup_steps": self.num_warmup_steps,
                  "end_learning_rate": self.end_learning_rate}
        if self.num_decay_steps is not None:
            config["num_decay_steps"] = self.num_decay_steps
        if self.decay_shape != "linear":
            config["decay_shape"] = self.decay_shape
        return config


def create_optimizer(name="adamw", *, learning_rate, num_train_steps, num_warmup_steps=0,
                     end_learning_rate=0.0, weight_decay_rate=0.01, clip_norm=1.0,
                     mixed_precision="float32", num_decay_steps=None, clock=None,
                     decay_shape="linear"):
    """`adamw` or `lamb` with BERT's settings (beta 0.9/0.999, epsilon 1e-6); float16 adds
    dynamic loss scaling. The schedule is `WarmupLinearDecay`'s (with `num_decay_steps`:
    trapezoidal; with `clock`: over its seconds; `decay_shape`: linear or 1 - sqrt)."""
    schedule = WarmupLinearDecay(learning_rate, num_train_steps, num_warmup_steps,
                                 end_learning_rate, num_decay_steps, clock, decay_shape)
    common = dict(learning_rate=schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                  weight_decay=float(weight_decay_rate),
                  global_clipnorm=clip_norm if clip_norm and clip_norm > 0 else None)
    if name == "adamw":
        optimizer = AdamW(**common)
    elif name == "lamb":
        optimizer = Lamb(**common)
    else:
        raise ValueError(f"--optimizer must be adamw or lamb, got {name!r}")
    if weight_decay_rate:
        optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
