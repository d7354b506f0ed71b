"""Sequence packing: several pretraining sequences (NSP pairs) in one row of max_seq_length.

At seq 128 on real text about half of an unpacked batch is padding. A packed row holds up to K
sequences one after the other, each with its own [CLS], segments and masked positions; input_mask
numbers their tokens 1..K (0 = padding), and the encoder confines attention to each sequence and
restarts positions (modeling.layers.PackedSequenceMask), so a packed sequence's outputs are those
it has alone (Krell et al., 2021, "Efficient Sequence Packing without Cross-contamination").

    features  input_word_ids, input_type_ids [B,T]; input_mask [B,T] (sequence index, 0 padding);
              masked_lm_positions [B,P'] (positions in the row); next_sentence_positions [B,K]
    labels    masked_lm_ids, masked_lm_weights [B,P']; next_sentence_labels [B,K],
              next_sentence_weights [B,K] (1.0 for a real sequence)

Packing happens in the input pipeline (`pack_windows`, called by input_pipeline.make_dataset), from google-format examples: any data
set packs, ours or google's, static or not, with no new file format, and the same data trains
packed or unpacked. The packer takes a window of examples and places them longest first, each in
the row with the least room that still fits it (best-fit decreasing), within K sequences and P'
predictions per row; on the sample corpus at seq 128 this fills over 95% of the tokens.
"""

import numpy as np
import tensorflow as tf

FEATURES = ("input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
            "next_sentence_positions")
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels", "next_sentence_weights")


def default_predictions_per_row(max_predictions_per_seq, max_sequences_per_row):
    """P': the unpacked data's max_predictions_per_seq, so the masked-LM head costs what it did.
    masked_lm_prob x tokens does not grow with packing: on the sample corpus at seq 128 (at
    most 20 per sequence) a row of up to 4 sequences needs 17.7 on average and the rows fill as
    well as with room for 26; a row that would need more closes early."""
    del max_sequences_per_row
    return max_predictions_per_seq


def assign_rows(lengths, predictions, max_seq_length, max_sequences_per_row,
                max_predictions_per_row):
    """Best-fit decreasing: a list of rows, each a list of example indices (in placing order)."""
    rows, room, used = [], [], []
    open_rows = [[] for _ in range(max_seq_length + 1)]  # room -> rows with that room left
    for i in np.argsort(-np.asarray(lengths), kind="stable"):
        length, count = int(lengths[i]), int(predictions[i])
        row = None
        for space in range(length, max_seq_length + 1):
            candidates = open_rows[space]
            for j in range(len(candidates) - 1, -1, -1):
                if used[candidates[j]] + count <= max_predictions_per_row:
                    row = candidates.pop(j)
                    break
            if row is not None:
                break
        if row is None:
            row = len(rows)
            rows.append([])
            room.append(max_seq_length)
            used.append(0)
        rows[row].append(int(i))
        room[row] -= length
        used[row] += count
        if room[row] > 0 and len(rows[row]) < max_sequences_per_row:
            open_rows[room[row]].append(row)
    return rows


def pack_arrays(batch, max_sequences_per_row, max_predictions_per_row):
    """A window of unpacked examples (dict of numpy arrays, [N, ...], features and labels by
    their model names) -> packed rows as a dict of numpy arrays [R, ...]."""
    ids, mask = batch["input_word_ids"], batch["input_mask"]
    count, seq = ids.shape
    lengths = (mask > 0).sum(1)
    weights = batch["masked_lm_weights"] > 0
    predictions = weights.sum(1)
    rows = assign_rows(lengths, predictions, seq, max_sequences_per_row,
                       max_predictions_per_row)
    k, p = max_sequences_per_row, max_predictions_per_row
    out = {"input_word_ids": np.zeros((len(rows), seq), np.int32),
           "input_mask": np.zeros((len(rows), seq), np.int32),
           "input_type_ids": np.zeros((len(rows), seq), np.int32),
           "masked_lm_positions": np.zeros((len(rows), p), np.int32),
           "masked_lm_ids": np.zeros((len(rows), p), np.int32),
           "masked_lm_weights": np.zeros((len(rows), p), np.float32),
           "next_sentence_positions": np.zeros((len(rows), k), np.int32),
           "next_sentence_labels": np.zeros((len(rows), k), np.int32),
           "next_sentence_weights": np.zeros((len(rows), k), np.float32)}
    nsp = batch["next_sentence_labels"].reshape(count, -1)[:, 0]
    for r, members in enumerate(rows):
        offset, slot = 0, 0
        for s, i in enumerate(members):
            n, m = lengths[i], predictions[i]
            out["input_word_ids"][r, offset:offset + n] = ids[i, :n]
            out["input_type_ids"][r, offset:offset + n] = batch["input_type_ids"][i, :n]
            out["input_mask"][r, offset:offset + n] = s + 1
            chosen = np.flatnonzero(weights[i])
            out["masked_lm_positions"][r, slot:slot + m] = (
                batch["masked_lm_positions"][i, chosen] + offset)
            out["masked_lm_ids"][r, slot:slot + m] = batch["masked_lm_ids"][i, chosen]
            out["masked_lm_weights"][r, slot:slot + m] = 1.0
            out["next_sentence_positions"][r, s] = offset
            out["next_sentence_labels"][r, s] = nsp[i]
            out["next_sentence_weights"][r, s] = 1.0
            offset += n
            slot += m
    return out


def pack_windows(dataset, max_sequences_per_row, max_predictions_per_row):
    """Windows of examples, (features, labels) batches -> packed (features, labels) rows,
    unbatched.

    Each window is packed on its own (deterministically), so the order of the input decides the
    output; the rows of a window come longest-first, so shuffle after."""
    def pack(features, labels):
        names = FEATURES[:4] + LABELS[:3]
        values = [features[n] if n in features else labels[n] for n in names]

        def run(*arrays):
            packed = pack_arrays(dict(zip(names, arrays)), max_sequences_per_row,
                                 max_predictions_per_row)
            return [packed[n] for n in FEATURES + LABELS]

        dtypes = [tf.float32 if n.endswith("weights") else tf.int32 for n in FEATURES + LABELS]
        arrays = tf.numpy_function(run, values, dtypes, stateful=False)
        seq = features["input_word_ids"].shape[1]
        widths = {"masked_lm_positions": max_predictions_per_row,
                  "masked_lm_ids": max_predictions_per_row,
                  "masked_lm_weights": max_predictions_per_row,
                  "next_sentence_positions": max_sequences_per_row,
                  "next_sentence_labels": max_sequences_per_row,
                  "next_sentence_weights": max_sequences_per_row}
        out = {}
        for name, array in zip(FEATURES + LABELS, arrays):
            array.set_shape([None, widths.get(name, seq)])
            out[name] = array
        return ({n: out[n] for n in FEATURES}, {n: out[n] for n in LABELS})

    return dataset.map(pack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def as_one_sequence_rows(features, labels):
    """An unpacked batch in the packed model's format (K = 1): for evaluating a packed model on
    ordinary data."""
    batch = tf.shape(features["input_word_ids"])[0]
    features = {**features, "next_sentence_positions": tf.zeros([batch, 1], tf.int32)}
    labels = {**labels, "next_sentence_labels": tf.reshape(labels["next_sentence_labels"],
                                                           [batch, 1]),
              "next_sentence_weights": tf.ones([batch, 1], tf.float32)}
    return features, labels


def fill_rate(input_mask):
    """Share of the tokens of rows [R, T] that are real."""
    input_mask = np.asarray(input_mask)
    return float((input_mask > 0).sum() / input_mask.size)
