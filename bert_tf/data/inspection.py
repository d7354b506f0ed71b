"""Look inside pretraining TFRecords (ours or google-research/bert's); `python -m
bert_tf.inspect_tfrecords` is its command line.

`inspect` prints the example count and schema, a few decoded examples with the masked positions shown as
`[MASK:original]`, `~random:original~` or `=kept=`, and statistics: the masked fraction, the
80/10/10 split, the NSP balance and a histogram of sequence lengths. Sequence lengths and
prediction counts are read from the data; the vocab defaults to the `NAME.vocab.txt` beside shards
made by bert_tf.
"""

import collections
import sys

import numpy as np
import tensorflow as tf

from bert_tf import io
from bert_tf.data import schema
from bert_tf.text.tokenization import MASK, load_vocab


def read_examples(files, max_seq_length, max_predictions_per_seq, limit=None):
    """Yields dicts of numpy arrays [batch, length], 1024 examples at a time."""
    spec = schema.feature_spec(max_seq_length, max_predictions_per_seq, either_names=True)
    for path in files:
        dataset = tf.data.TFRecordDataset(path, compression_type=schema.compression_type(path))
        if limit is not None:
            dataset = dataset.take(limit)
        for batch in dataset.batch(1024).map(
                lambda x: schema.merge_names(tf.io.parse_example(x, spec))):
            yield {k: v.numpy() for k, v in batch.items()}


class Statistics:
    """Running counts over examples: masking split, NSP balance, lengths."""

    def __init__(self, mask_id, special_ids, max_seq_length):
        self.mask_id = mask_id
        self.special_ids = np.array(sorted(special_ids))
        self.counts = collections.Counter()
        self.lengths = np.zeros(max_seq_length + 1, np.int64)

    def update(self, batch):
        mask = batch["input_mask"].astype(bool)
        lengths = mask.sum(1)
        self.lengths += np.bincount(lengths, minlength=len(self.lengths))
        weights = batch["masked_lm_weights"] > 0
        positions = batch["masked_lm_positions"]
        shown = np.take_along_axis(batch["input_ids"], positions, axis=1)[weights]
        labels = batch["masked_lm_ids"][weights]
        c = self.counts
        c["examples"] += len(lengths)
        c["tokens"] += int(mask.sum())
        c["candidates"] += int((mask & ~np.isin(batch["input_ids"], self.special_ids)).sum())
        c["predictions"] += int(weights.sum())
        c["masked"] += int((shown == self.mask_id).sum())
        c["kept"] += int(((shown == labels) & (shown != self.mask_id)).sum())
        c["random"] += int(((shown != labels) & (shown != self.mask_id)).sum())
        c["random_next"] += int(batch["next_sentence_labels"].sum())

    def report(self):
        c = self.counts
        p = max(c["predictions"], 1)
        return {"examples": c["examples"],
                "masked_fraction": c["predictions"] / max(c["candidates"], 1),
                "predictions_per_example": c["predictions"] / max(c["examples"], 1),
                "mask_fraction": c["masked"] / p, "random_fraction": c["random"] / p,
                "keep_fraction": c["kept"] / p,
                "random_next_fraction": c["random_next"] / max(c["examples"], 1),
                "mean_length": float((self.lengths * np.arange(len(self.lengths))).sum()
                                     / max(c["examples"], 1))}

    def histogram(self, bins=8):
        edges = np.linspace(0, len(self.lengths) - 1, bins + 1).astype(int)
        return [(int(lo) + 1 if i else 0, int(hi), int(self.lengths[(lo + 1 if i else 0):hi + 1]
                                                       .sum()))
                for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))]


def format_example(example, index, vocab, number=None):
    """One example as text: `[MASK:orig]` masked, `~shown:orig~` replaced, `=tok=` kept."""
    n = int(example["input_mask"][index].sum())
    ids = example["input_ids"][index][:n]
    tokens = [vocab.tokens[i] if 0 <= i < len(vocab) else f"<{i}>" for i in ids]
    weights = example["masked_lm_weights"][index] > 0
    for position, label in zip(example["masked_lm_positions"][index][weights],
                               example["masked_lm_ids"][index][weights]):
        original = vocab.tokens[label]
        shown = tokens[position]
        if shown == MASK:
            tokens[position] = f"[MASK:{original}]"
        elif shown == original:
            tokens[position] = f"={original}="
        else:
            tokens[position] = f"~{shown}:{original}~"
    segments = example["segment_ids"][index][:n]
    label = "random next" if example["next_sentence_labels"][index][0] else "is next"
    return (f"example {index if number is None else number}: {n} tokens, {int(weights.sum())} predictions, {label}, "
            f"segment B starts at {int(np.argmax(segments)) if segments.any() else '-'}\n  "
            + " ".join(tokens))


def inspect(input_file, vocab_file=None, num_examples=3, out=None):
    """Prints the report for the shards matching `input_file` (to `out`, default stdout);
    returns the statistics dict."""
    out = out or sys.stdout
    files = io.expand_file_patterns(input_file)
    max_seq_length, max_predictions = schema.infer_lengths(files[0])
    if vocab_file is None:
        vocab_file = schema.vocab_copy_path(schema.dataset_prefix(files[0]))
        if not tf.io.gfile.exists(vocab_file):
            raise FileNotFoundError(f"--vocab_file: not given and no {vocab_file} beside the "
                                    f"shards")
    vocab = load_vocab(vocab_file)
    special = {vocab.get(t) for t in ("[PAD]", "[CLS]", "[SEP]")} - {None}
    stats = Statistics(vocab.mask_id, special, max_seq_length)
    shown = 0
    for batch in read_examples(files, max_seq_length, max_predictions):
        stats.update(batch)
        for row in range(min(len(batch["input_ids"]), num_examples - shown)):
            print(format_example(batch, row, vocab, number=shown), file=out)
            shown += 1
    report = stats.report()
    print(f"\n{report['examples']:,} examples in {len(files)} file(s); max_seq_length="
          f"{max_seq_length}, max_predictions_per_seq={max_predictions}; vocab {vocab_file} "
          f"({len(vocab):,} tokens)", file=out)
    print("schema: " + ", ".join(f"{name} {spec.dtype.name}{list(spec.shape)}" for name, spec in
                                 schema.feature_spec(max_seq_length, max_predictions).items()),
          file=out)
    print(f"masked fraction {report['masked_fraction']:.2%} of non-special tokens "
          f"({report['predictions_per_example']:.1f} per example); of those [MASK] "
          f"{report['mask_fraction']:.1%}, random {report['random_fraction']:.1%}, kept "
          f"{report['keep_fraction']:.1%}", file=out)
    print(f"next sentence: random {report['random_next_fraction']:.1%}, real "
          f"{1 - report['random_next_fraction']:.1%}", file=out)
    print(f"sequence length (mean {report['mean_length']:.1f}):", file=out)
    total = max(report["examples"], 1)
    for lo, hi, count in stats.histogram():
        print(f"  {lo:4d}-{hi:<4d} {count:9,d} {'#' * round(40 * count / total)}", file=out)
    return report
