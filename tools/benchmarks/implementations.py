"""The machine (its matmul peak) and the three pretraining implementations timed side by side:
ours, the Model Garden's and keras-hub's, each as run(steps) on a repeated batch."""

import os
import tempfile
import time

from bench_common import synthetic_batch


# === Environment ===

def environment():
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    return {"tensorflow": tf.__version__, "onednn": bool(_pywrap_util_port.IsMklEnabled()),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(default)"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default",
            "cpus": os.cpu_count()}


def matmul_peak(n=2048, repeats=5, dtype="float32"):
    """GFLOP/s of an n x n matmul in `dtype`, ten per host call; the best of `repeats` (a peak)."""
    import tensorflow as tf

    a, b = (tf.cast(tf.random.normal([n, n]), dtype) for _ in range(2))

    @tf.function
    def ten(a, b):
        c = a
        for _ in range(10):
            c = tf.matmul(c, b) * tf.cast(1e-3, c.dtype)
        return tf.reduce_sum(tf.cast(c, tf.float32))

    ten(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ten(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 10 * 2 * n ** 3 / min(times) / 1e9


# === The three implementations, each as run(steps) on a repeated batch ===

def ours(config, batch, seq, predictions, jit, remat="none"):
    """bert_tf's Trainer, built as run_pretraining builds it."""
    import tensorflow as tf

    from bert_tf.modeling import build_pretrainer
    from bert_tf.training import optimization
    from bert_tf.training.trainer import Trainer, TrainOptions

    strategy = tf.distribute.get_strategy()
    pretrainer = build_pretrainer(config)
    pretrainer.encoder.set_remat(remat)
    optimizer = optimization.create_optimizer(learning_rate=1e-4, num_train_steps=10 ** 6,
                                              clip_norm=0.0)
    trainer = Trainer(strategy, pretrainer, optimizer, TrainOptions(
        output_dir=tempfile.mkdtemp(), num_train_steps=10 ** 6, jit_compile=jit))
    dataset = tf.data.Dataset.from_tensors(synthetic_batch(config, batch, seq, predictions)
                                           ).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    return lambda steps: trainer.train_steps(iterator, steps)


def _peer_loop(model, loss_fn, variables, optimizer, batch, jit):
    """The same loop shape as ours: one host call runs `steps` steps; forward and backward in
    a function that XLA compiles when jit is on; global-norm clip; apply. Like ours (and like
    the Model Garden's task and keras-hub's compiled metrics), each step also counts correct
    masked-LM (and NSP) predictions."""
    import tensorflow as tf

    iterator = None if isinstance(batch, tuple) else batch  # an iterator of real batches

    def next_batch():
        return next(iterator) if iterator is not None else batch

    @tf.function(jit_compile=jit or None)
    def gradients(features, labels):
        with tf.GradientTape() as tape:
            loss, correct = loss_fn(model(features, training=True), labels)
        return tape.gradient(loss, variables), loss, correct

    @tf.function
    def loop(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            features, labels = next_batch()
            grads, loss, correct = gradients(features, labels)
            grads, _ = tf.clip_by_global_norm(grads, 1.0)
            optimizer.apply_gradients(zip(grads, variables))
            total += loss + 0.0 * correct
        return total

    return lambda steps: loop(tf.constant(steps))


def _mlm_nsp_loss(mlm_logits, nsp_logits, labels):
    """(loss, correct predictions) as google's pretraining loss and accuracy metrics."""
    import tensorflow as tf

    weights = labels["masked_lm_weights"]
    mlm_logits = tf.cast(mlm_logits, tf.float32)
    mlm = tf.keras.losses.sparse_categorical_crossentropy(
        labels["masked_lm_ids"], mlm_logits, from_logits=True)
    loss = tf.reduce_sum(mlm * weights) / (tf.reduce_sum(weights) + 1e-5)
    hit = tf.equal(tf.argmax(mlm_logits, -1, tf.int32), labels["masked_lm_ids"])
    correct = tf.reduce_sum(tf.cast(hit, tf.float32) * weights)
    if nsp_logits is not None:
        nsp_logits = tf.cast(nsp_logits, tf.float32)
        nsp_labels = labels["next_sentence_labels"][:, 0]
        loss += tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            nsp_labels, nsp_logits, from_logits=True))
        correct += tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(nsp_logits, -1, tf.int32), nsp_labels), tf.float32))
    return loss, correct


def model_garden(config, batch, seq, predictions, jit, batches=None):
    """tf-models-official: BertEncoder + BertPretrainerV2 with its NSP ClassificationHead, as its
    BERT pretraining task builds them; tf-keras AdamW."""
    import keras
    import tensorflow as tf
    import tf_keras
    from official.modeling import tf_utils
    from official.nlp.modeling import layers, models, networks

    # The Model Garden's models follow tf_keras's global policy; ours and keras-hub's Keras's.
    tf_keras.mixed_precision.set_global_policy(keras.mixed_precision.global_policy().name)
    init = tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)
    encoder = networks.BertEncoder(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        activation=tf_utils.get_activation("gelu"), dropout_rate=0.1,
        attention_dropout_rate=0.1, max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, initializer=init)
    model = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=tf_utils.get_activation("gelu"),
        mlm_initializer=init, classification_heads=[layers.ClassificationHead(
            inner_dim=config.hidden_size, num_classes=2, dropout_rate=0.1,
            name="next_sentence")])
    features, labels = synthetic_batch(config, batch, seq, predictions)
    features = {k: tf.constant(v) for k, v in features.items()}
    model(features)
    tf_keras.mixed_precision.set_global_policy("float32")
    optimizer = tf_keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)

    def loss_fn(outputs, labels):
        return _mlm_nsp_loss(outputs["mlm_logits"], outputs["next_sentence"], labels)

    return _peer_loop(model, loss_fn, model.trainable_variables, optimizer,
                      batches or (features, labels), jit)


def keras_hub(config, batch, seq, predictions, jit):
    """keras-hub: BertBackbone + BertMaskedLM (MLM only, no NSP head); Keras AdamW."""
    import keras
    import keras_hub as hub
    import tensorflow as tf

    backbone = hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=0.1,
        max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size)
    model = hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    features, labels = synthetic_batch(config, batch, seq, predictions)
    features = {"token_ids": tf.constant(features["input_word_ids"]),
                "segment_ids": tf.constant(features["input_type_ids"]),
                "padding_mask": tf.constant(features["input_mask"] > 0),
                "mask_positions": tf.constant(features["masked_lm_positions"])}
    # A functional model is built already. (Called eagerly under mixed_bfloat16, keras-hub
    # 0.32's MaskedLMHead adds its float32 bias to bfloat16 logits and fails; in a
    # tf.function, as timed, it runs.)
    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6)
    optimizer.build(model.trainable_variables)

    def loss_fn(logits, labels):
        return _mlm_nsp_loss(logits, None, labels)

    return _peer_loop(model, loss_fn, model.trainable_variables, optimizer,
                      (features, labels), jit)


IMPLEMENTATIONS = {"bert_tf": ours, "model_garden": model_garden, "keras_hub": keras_hub}


def installed(peer):
    import importlib.util

    return importlib.util.find_spec({"model_garden": "official", "keras_hub": "keras_hub"}[peer]
                                    ) is not None
