"""CLI: look inside pretraining TFRecords (ours or google-research/bert's).

    python -m bert_tf.inspect_tfrecords --input_file='tfrecords/wiki-*' [--vocab_file=...] \
        [--num_examples=3]

Prints the example count and schema, a few decoded examples and statistics; see
bert_tf/data/inspection.py.
"""

import tensorflow as tf
from absl import flags

from bert_tf import cli
from bert_tf.data.inspection import inspect

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("input_file", None, "Comma list of globs of TFRecord shards.",
                        required=True)
    flags.DEFINE_string("vocab_file", None, "vocab.txt; defaults to NAME.vocab.txt beside the "
                        "shards.")
    flags.DEFINE_integer("num_examples", 3, "Examples to print decoded.")


@cli.reports_errors("inspect_tfrecords", errors=(ValueError, OSError, tf.errors.OpError))
def main(argv):
    del argv
    inspect(FLAGS.input_file, FLAGS.vocab_file, FLAGS.num_examples)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
