"""The pretraining objective: BERT's losses and the statistics behind its accuracies, in keras.ops.

    labels   masked_lm_ids [B,P], masked_lm_weights [B,P] (1.0 real, 0.0 padding),
             next_sentence_labels [B] or [B,1] (0 = B follows A, 1 = B is random)
    outputs  masked_lm_logits [B,P,V], next_sentence_logits [B,2]

Losses follow google-research/bert:

    masked_lm_loss     = sum(weights * cross_entropy) / (sum(weights) + 1e-5)
    next_sentence_loss = mean(cross_entropy)
    loss               = masked_lm_loss + next_sentence_loss

`statistics` gives one batch's losses and the counts behind its accuracies, as values that add up:
over the parts of a batch (gradient accumulation), over replicas and over steps. `metrics` turns
such sums into the logged figures. The training loop and `BertPretrainer.compute_loss` (fit())
both use them, so an accuracy is computed in one place.
"""

import keras
from keras import ops

LABEL_NAMES = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")
# Statistics that are means over a batch (summed over replicas, each replica contributes its
# share) and those that are counts (summed as they are).
MEANS = ("loss", "masked_lm_loss", "next_sentence_loss")
COUNTS = ("masked_lm_correct", "masked_lm_count", "next_sentence_correct", "next_sentence_count")


def masked_lm_loss(masked_lm_ids, masked_lm_weights, masked_lm_logits, denominator=None):
    """Weighted mean cross-entropy over the real masked positions; a float32 scalar.

    `denominator` replaces `sum(weights) + 1e-5`: a part of a batch (gradient accumulation)
    divides by the whole batch's, so that the parts' losses add up to the batch's.
    """
    cross_entropy = keras.losses.sparse_categorical_crossentropy(
        ops.cast(masked_lm_ids, "int32"), masked_lm_logits, from_logits=True)  # [B, P]
    weights = ops.cast(masked_lm_weights, "float32")
    if denominator is None:
        denominator = masked_lm_denominator(masked_lm_weights)
    return ops.sum(weights * cross_entropy) / denominator


def masked_lm_denominator(masked_lm_weights):
    return ops.sum(ops.cast(masked_lm_weights, "float32")) + 1e-5


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


def statistics(labels, outputs, batch_labels=None, parts=1):
    """MEANS and COUNTS of a batch, float32 scalars.

    For one of `parts` equal parts of a batch, give the whole batch's labels as `batch_labels`:
    each part's losses are then its share of the whole batch's, and the parts add up to it.
    """
    denominator = masked_lm_denominator((batch_labels or labels)["masked_lm_weights"])
    losses = pretraining_losses(labels, outputs, denominator)
    nsp_loss = losses["next_sentence_loss"] / parts
    weights = ops.cast(labels["masked_lm_weights"], "float32")  # [B, P]
    mlm_hit = ops.cast(ops.equal(ops.cast(ops.argmax(outputs["masked_lm_logits"], -1), "int32"),
                                 ops.cast(labels["masked_lm_ids"], "int32")), "float32")
    nsp_labels = ops.reshape(ops.cast(labels["next_sentence_labels"], "int32"), (-1,))  # [B]
    nsp_hit = ops.cast(ops.equal(ops.cast(ops.argmax(outputs["next_sentence_logits"], -1),
                                          "int32"), nsp_labels), "float32")
    return {"loss": losses["masked_lm_loss"] + nsp_loss,
            "masked_lm_loss": losses["masked_lm_loss"], "next_sentence_loss": nsp_loss,
            "masked_lm_correct": ops.sum(weights * mlm_hit), "masked_lm_count": ops.sum(weights),
            "next_sentence_correct": ops.sum(nsp_hit),
            "next_sentence_count": ops.cast(ops.shape(nsp_hit)[0], "float32")}


def metrics(sums, steps):
    """Statistics summed over `steps` batches -> mean losses and accuracies (Python floats)."""
    return {"loss": sums["loss"] / steps,
            "masked_lm_loss": sums["masked_lm_loss"] / steps,
            "masked_lm_accuracy": sums["masked_lm_correct"] / max(sums["masked_lm_count"], 1),
            "next_sentence_loss": sums["next_sentence_loss"] / steps,
            "next_sentence_accuracy": sums["next_sentence_correct"]
            / max(sums["next_sentence_count"], 1)}
