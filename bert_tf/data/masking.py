"""Dynamic masking: masked-LM predictions chosen in tf.data each time an example is read.

Data made with `--dynamic_masking` holds unmasked pairs ([CLS] A [SEP] B [SEP] and the NSP
label; masked_lm_* all zero) and says so in its manifest. run_pretraining then masks every batch
as it is read, so each pass over the data sees new masks (RoBERTa, Liu et al., 2019), where the
static path writes `dupe_factor` masked copies. The rules are the static path's
(bert_tf.data.instances): `masked_lm_prob` of the non-special tokens, rounded, at least 1 and
at most `max_predictions_per_seq`, chosen uniformly; of them `mask_replace_prob` (80%) become
[MASK], `random_replace_prob` (10%) a random ordinary token (never [PAD] [UNK] [CLS] [SEP] [MASK]
or [unusedN]) and the rest stay; run_pretraining's --masked_lm_prob may change the rate of such
data (masking as read has no copies to remake). With whole-word
masking a "##" piece joins the word before it, words are taken in random order and a word that
does not fit the remaining budget is skipped, and each word gets one 80/10/10 decision.

    mask_batch: features input_word_ids, input_mask, input_type_ids [B,T] (+ zero masked_lm_*)
             -> the same with input_word_ids masked, masked_lm_positions [B,P] (sorted), and
                labels masked_lm_ids [B,P], masked_lm_weights [B,P]

It draws from stateless random ops seeded by (seed, batch number), so a batch's masks depend on
the seed and its place in the stream only: a resumed run masks as the uninterrupted one did.
"""

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from bert_tf.data.instances import TokenIds


class MaskingRules(NamedTuple):
    masked_lm_prob: float
    max_predictions_per_seq: int
    do_whole_word_mask: bool
    ids: TokenIds
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1


def rules_from_manifest(manifest, vocab) -> MaskingRules:
    """The masking a dynamic data set asks for (its manifest's options) with its vocab (data
    made before the split was a setting has BERT's 80/10/10)."""
    options = manifest["options"]
    return MaskingRules(float(options["masked_lm_prob"]), int(manifest["max_predictions_per_seq"]),
                        bool(options["do_whole_word_mask"]), TokenIds.from_vocab(vocab),
                        float(options.get("mask_replace_prob", 0.8)),
                        float(options.get("random_replace_prob", 0.1)))


def is_dynamic(manifest) -> bool:
    return bool(manifest) and manifest.get("masking") == "dynamic"


class Masker:
    """`mask_batch` with its vocab tables built once (call it inside a tf.data map)."""

    def __init__(self, rules: MaskingRules):
        self.rules = rules
        self._ordinary = tf.constant(np.asarray(rules.ids.ordinary_ids, np.int32))
        self._continuation = tf.constant(
            np.frombuffer(rules.ids.is_continuation, np.uint8).astype(bool))

    def __call__(self, features, labels, seed):
        """Masks a batch; `seed` is an int64 [2] tensor (random seed, batch number)."""
        rules = self.rules
        ids = features["input_word_ids"]  # [B, T]
        batch, seq = tf.shape(ids)[0], tf.shape(ids)[1]
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
        candidate = ((features["input_mask"] > 0) & (ids != rules.ids.cls_id)
                     & (ids != rules.ids.sep_id))  # [B, T]
        count = tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1)
        budget = tf.minimum(rules.max_predictions_per_seq, tf.maximum(1, tf.cast(
            tf.round(tf.cast(count, tf.float64) * rules.masked_lm_prob), tf.int32)))  # [B]

        # Words: a "##" piece right after a candidate joins its word (whole-word masking).
        starts = candidate
        if rules.do_whole_word_mask:
            previous = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
            continues = tf.gather(self._continuation, tf.clip_by_value(
                ids, 0, tf.size(self._continuation) - 1))
            starts = candidate & ~(continues & previous)
        word = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1  # [B, T] a token's word
        words = tf.reduce_sum(tf.cast(starts, tf.int32), axis=1)  # [B]
        slot = tf.range(seq)[None, :]  # words are numbered 0..words-1 < T
        length = tf.math.bincount(tf.where(candidate, word, seq), minlength=seq + 1,
                                  maxlength=seq + 1, axis=-1)[:, :seq]  # [B, T] pieces per word

        # Words in random order; take each that still fits the budget (google's greedy skip).
        keys = tf.where(slot < words[:, None],
                        tf.random.stateless_uniform([batch, seq], seeds[0]), 2.0)
        order = tf.argsort(keys, axis=1, stable=True)  # [B, T] word numbers, shuffled
        ordered_length = tf.gather(length, order, batch_dims=1)
        if rules.do_whole_word_mask:
            def take(used, length_j):  # over the shuffled words j, all rows at once
                fits = used + length_j <= budget
                return used + tf.where(fits, length_j, 0)
            used = tf.scan(take, tf.transpose(ordered_length), tf.zeros([batch], tf.int32))
            before = tf.concat([tf.zeros([1, batch], tf.int32), used[:-1]], 0)
            taken_in_order = tf.transpose(used > before)  # [B, T]
        else:  # one piece per word: the first `budget` of the shuffled ones
            taken_in_order = slot < budget[:, None]
        taken_word = tf.gather(taken_in_order, tf.argsort(order, axis=1), batch_dims=1)
        chosen = candidate & tf.gather(taken_word, tf.maximum(word, 0), batch_dims=1)

        # One mask/random/keep draw per word; a random replacement per piece.
        draw = tf.gather(tf.random.stateless_uniform([batch, seq], seeds[1]),
                         tf.maximum(word, 0), batch_dims=1)
        replacement = tf.gather(self._ordinary, tf.random.stateless_uniform(
            [batch, seq], seeds[2], 0, tf.size(self._ordinary), tf.int32))
        shown = tf.where(draw < rules.mask_replace_prob, rules.ids.mask_id,
                         tf.where(draw >= 1 - rules.random_replace_prob, replacement, ids))
        masked_ids = tf.where(chosen, shown, ids)

        # Sorted positions, padded with 0 (weight 0) to max_predictions_per_seq.
        predictions = rules.max_predictions_per_seq
        positions = tf.sort(tf.where(chosen, slot, seq), axis=1)
        positions = tf.pad(positions, [[0, 0], [0, tf.maximum(predictions - seq, 0)]],
                           constant_values=seq)[:, :predictions]
        valid = positions < seq
        positions = tf.where(valid, positions, 0)
        features = {**features, "input_word_ids": masked_ids, "masked_lm_positions": positions}
        labels = {**labels,
                  "masked_lm_ids": tf.where(valid, tf.gather(ids, positions, batch_dims=1), 0),
                  "masked_lm_weights": tf.cast(valid, tf.float32)}
        return features, labels
