"""Batches by length for every finetuning task (dynamic padding).

Rows are padded to max_seq_length when they are made; a batch is cut to the smallest of
`length_buckets` that holds its longest row, so short rows cost short sequences, and a
jit-compiled step sees only a few shapes. In training, rows are also grouped into batches of
one bucket (after shuffling), so one long row does not lengthen a batch of short ones;
otherwise (evaluation, prediction) the order is kept.

    batches = batch_by_length(rows, batch_size, max_seq_length, shuffle=True, seed=1)

`rows`: a tf.data.Dataset of (inputs, ...) rows, inputs a dict with "input_mask" [T]; every
tensor of shape [T] (inputs, per-token labels and weights) is cut with it, others (a class id,
an answer's positions) are left as they are.
"""

import tensorflow as tf

from bert_tf.text.preprocessing import length_buckets


def batch_by_length(rows, batch_size, max_seq_length, shuffle=False, seed=None,
                    dynamic_padding=True, num_rows=None, drop_remainder=False):
    """Batches of `rows` cut to their bucket (see the module's docstring); with `shuffle` (for
    training), rows repeat without end, shuffled (a buffer of `num_rows`) and
    grouped by bucket, every batch full: static batch shapes, one per bucket, which a TPU
    compiles once each, and which multi-worker strategies split evenly. Without
    `dynamic_padding`, batches of max_seq_length."""
    if shuffle:
        drop_remainder = True  # full batches, from rows of the next pass where one runs out
        # The order is the same for every iterator made over the stream (a strategy may make
        # one before the one that trains): each pass is shuffled anew inside the stream.
        rows = rows.repeat().shuffle(num_rows or 10_000, seed=seed,
                                     reshuffle_each_iteration=False)
    if not dynamic_padding:
        return rows.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    buckets = tf.constant(length_buckets(max_seq_length), tf.int32)

    def bucket(mask):  # [..., T] -> index of the smallest bucket holding every row
        longest = tf.reduce_max(tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1))
        return tf.searchsorted(buckets, longest[None])[0]

    def mask(row):  # the row's (or batch's) input_mask; rows are inputs or (inputs, ...)
        return (row[0] if isinstance(row, tuple) else row)["input_mask"]

    def cut(*row):
        row = row if len(row) > 1 else row[0]
        length = buckets[bucket(mask(row))]
        return tf.nest.map_structure(
            lambda t: t[:, :length] if t.shape.rank >= 2 and t.shape[1] == max_seq_length
            else t, row)

    if shuffle:
        rows = rows.group_by_window(
            key_func=lambda *row: tf.cast(bucket(mask(row if len(row) > 1 else row[0])),
                                          tf.int64),
            reduce_func=lambda key, group: group.batch(batch_size, drop_remainder=drop_remainder),
            window_size=batch_size)
    else:
        rows = rows.batch(batch_size, drop_remainder=drop_remainder)
    return rows.map(cut, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
