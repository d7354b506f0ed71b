"""CLI: look inside pretraining TFRecords (ours or google-research/bert's).

    python -m bert_tf.inspect_tfrecords --input_file='tfrecords/wiki-*' [--vocab_file=...] \
        [--num_examples=3]

Prints the example count and schema, a few decoded examples and statistics; see
bert_tf/data/inspection.py.
"""

import dataclasses

import tensorflow as tf

from bert_tf import cli
from bert_tf.data.inspection import inspect
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class InspectionConfig(Settings):
    """The settings of an inspection (the command line's flags)."""
    input_file: str = setting(None, "Comma list of globs of TFRecord shards.", required=True)
    vocab_file: str | None = setting(None, "vocab.txt; defaults to NAME.vocab.txt beside the "
                                           "shards.")
    num_examples: int = setting(3, "Examples to print decoded.", minimum=0)


@cli.reports_errors("inspect_tfrecords", errors=(ValueError, OSError, tf.errors.OpError))
def main(argv):
    del argv
    config = cli.from_flags(InspectionConfig)
    inspect(config.input_file, config.vocab_file, config.num_examples)


SETTINGS = (InspectionConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
