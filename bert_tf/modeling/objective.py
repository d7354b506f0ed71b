"""The pretraining objective: BERT's losses and the statistics behind its accuracies, in keras.ops.

    labels   masked_lm_ids [B,P], masked_lm_weights [B,P] (1.0 real, 0.0 padding),
             next_sentence_labels [B] or [B,1] (0 = B follows A, 1 = B is random)
    outputs  masked_lm_logits [B,P,V], next_sentence_logits [B,2]
    packed   next_sentence_labels and next_sentence_weights [B,K], next_sentence_logits [B,K,2]

Losses follow google-research/bert:

    masked_lm_loss     = sum(weights * cross_entropy) / (sum(weights) + 1e-5)
    next_sentence_loss = mean(cross_entropy)   (packed: over the real sequences)
    loss               = masked_lm_loss + next_sentence_loss

A masked-LM-only model (outputs without next_sentence_logits) has loss = masked_lm_loss, and its
metrics no next-sentence figures.

`statistics` gives one batch's losses and the counts behind its accuracies, as values that add up:
over the parts of a batch (gradient accumulation), over replicas (given the global `batch_sums`,
each replica's losses are its share of the global means, so several replicas compute exactly
what one device does) and over steps. `metrics` turns
such sums into the logged figures. The training loop and `BertPretrainer.compute_loss` (fit())
both use them, so an accuracy is computed in one place.
"""

import keras
from keras import ops

LABEL_NAMES = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
# Statistics that are means over a batch (summed over replicas, each replica contributes its
# share) and those that are counts (summed as they are).
MEANS = ("loss", "masked_lm_loss", "next_sentence_loss")
COUNTS = ("masked_lm_correct", "masked_lm_count", "next_sentence_correct", "next_sentence_count",
          "sequence_count")


def sparse_cross_entropy(labels, logits):
    """-log softmax(logits)[label]: int labels [...], float32 logits [..., V] -> [...].

    What `keras.losses.sparse_categorical_crossentropy(from_logits=True)` computes, with the
    gradient (softmax - one_hot) written out: on TensorFlow's CPU that op's fused kernel took
    105 ms forward and backward for the masked-LM head's [640, 30522] logits, this 64 ms
    (log_softmax and a gather forward; equal to 1e-6, gradients to 4e-6).
    """
    labels = ops.cast(labels, "int32")

    @ops.custom_gradient
    def cross_entropy(logits):
        log_probs = ops.log_softmax(logits, axis=-1)  # [..., V]
        loss = -ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]  # [...]

        def grad(*args, upstream=None):  # TF and JAX pass the upstream gradient positionally
            if upstream is None:
                (upstream,) = args
            one_hot = ops.one_hot(labels, ops.shape(logits)[-1], dtype=logits.dtype)
            return (ops.exp(log_probs) - one_hot) * upstream[..., None]

        return loss, grad

    return cross_entropy(logits)


def masked_lm_loss(masked_lm_ids, masked_lm_weights, masked_lm_logits, denominator=None):
    """Weighted mean cross-entropy over the real masked positions; a float32 scalar.

    `denominator` replaces `sum(weights) + 1e-5`: a part of a batch (a replica's share, a part
    under gradient accumulation) divides by the whole batch's, so that the parts add up to it.
    """
    cross_entropy = sparse_cross_entropy(masked_lm_ids, masked_lm_logits)  # [B, P]
    weights = ops.cast(masked_lm_weights, "float32")
    if denominator is None:
        denominator = ops.sum(weights) + 1e-5
    return ops.sum(weights * cross_entropy) / denominator


def next_sentence_loss(next_sentence_labels, next_sentence_logits, weights=None,
                       denominator=None):
    """Mean cross-entropy over the (real, when `weights` are given) sequences; `denominator`
    replaces their count, as for the masked-LM loss."""
    labels = ops.reshape(ops.cast(next_sentence_labels, "int32"), (-1,))  # [B,1], [B,K] -> [N]
    logits = ops.reshape(next_sentence_logits, (-1, 2))  # [B,2] or [B,K,2] -> [N,2]
    cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    weights = (ops.ones_like(cross_entropy) if weights is None
               else ops.reshape(ops.cast(weights, "float32"), (-1,)))
    if denominator is None:
        denominator = ops.sum(weights)
    return ops.divide_no_nan(ops.sum(weights * cross_entropy), denominator)


def _next_sentence_weights(labels):
    """[N] weights of the flattened next-sentence labels (packed rows have empty slots)."""
    if "next_sentence_weights" in labels:
        return ops.reshape(ops.cast(labels["next_sentence_weights"], "float32"), (-1,))
    return ops.ones_like(ops.reshape(ops.cast(labels["next_sentence_labels"], "float32"), (-1,)))


def batch_sums(labels):
    """(masked-LM weight, next-sentence weight) sums of a batch: what its mean losses divide by.
    Summed over the parts of a global batch (replicas, accumulation parts) they give each part
    its share of the global mean."""
    return (ops.sum(ops.cast(labels["masked_lm_weights"], "float32")),
            ops.sum(_next_sentence_weights(labels)))


def pretraining_losses(labels, outputs, sums=None):
    """{"masked_lm_loss", "next_sentence_loss", "loss"} from label and output dicts: this batch's
    means, or its share of the means of a larger batch whose `batch_sums` are `sums`."""
    mlm_sum, nsp_sum = sums if sums is not None else batch_sums(labels)
    mlm = masked_lm_loss(labels["masked_lm_ids"], labels["masked_lm_weights"],
                         outputs["masked_lm_logits"], mlm_sum + 1e-5)
    if "next_sentence_logits" not in outputs:  # masked LM only
        return {"masked_lm_loss": mlm, "next_sentence_loss": ops.zeros_like(mlm), "loss": mlm}
    nsp = next_sentence_loss(labels["next_sentence_labels"], outputs["next_sentence_logits"],
                             _next_sentence_weights(labels), nsp_sum)
    return {"masked_lm_loss": mlm, "next_sentence_loss": nsp, "loss": mlm + nsp}


def statistics(labels, outputs, sums=None):
    """MEANS and COUNTS of a batch, float32 scalars.

    For a part of a larger batch (one replica's, one accumulation part's), give the larger
    batch's `batch_sums` as `sums`: the part's means are then its share, and the parts' add up
    to the larger batch's means exactly.
    """
    losses = pretraining_losses(labels, outputs, sums)
    weights = ops.cast(labels["masked_lm_weights"], "float32")  # [B, P]
    mlm_hit = ops.cast(ops.equal(ops.cast(ops.argmax(outputs["masked_lm_logits"], -1), "int32"),
                                 ops.cast(labels["masked_lm_ids"], "int32")), "float32")
    sequences = _next_sentence_weights(labels)  # [N] 1.0 for each real sequence
    stats = {**losses,
             "masked_lm_correct": ops.sum(weights * mlm_hit), "masked_lm_count": ops.sum(weights),
             "sequence_count": ops.sum(sequences)}
    if "next_sentence_logits" not in outputs:  # masked LM only
        return {**stats, "next_sentence_correct": ops.zeros_like(stats["masked_lm_count"]),
                "next_sentence_count": ops.zeros_like(stats["masked_lm_count"])}
    nsp_labels = ops.reshape(ops.cast(labels["next_sentence_labels"], "int32"), (-1,))  # [N]
    nsp_predicted = ops.reshape(ops.argmax(outputs["next_sentence_logits"], -1), (-1,))
    nsp_hit = sequences * ops.cast(ops.equal(ops.cast(nsp_predicted, "int32"), nsp_labels),
                                   "float32")
    return {**stats, "next_sentence_correct": ops.sum(nsp_hit),
            "next_sentence_count": ops.sum(sequences)}


def metrics(sums, steps):
    """Statistics summed over `steps` batches -> mean losses and accuracies (Python floats); no
    next-sentence figures for a masked-LM-only model (no next-sentence count)."""
    figures = {"loss": sums["loss"] / steps,
               "masked_lm_loss": sums["masked_lm_loss"] / steps,
               "masked_lm_accuracy": sums["masked_lm_correct"] / max(sums["masked_lm_count"], 1)}
    if sums["next_sentence_count"]:
        figures.update(next_sentence_loss=sums["next_sentence_loss"] / steps,
                       next_sentence_accuracy=sums["next_sentence_correct"]
                       / sums["next_sentence_count"])
    return figures
