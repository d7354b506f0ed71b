"""CLI: learn a WordPiece vocab from text and write it as google's vocab.txt.

    python -m bert_tf.build_vocab --input_file='corpus/*.txt' --output_file=vocab.txt \
        --vocab_size=30522 --do_lower_case=true

See bert_tf/text/vocab_learning.py for the learner.
"""

import os

from absl import flags

from bert_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("input_file", None, "Comma list of globs of text files.", required=True)
    flags.DEFINE_string("output_file", None, "Where to write vocab.txt.", required=True)
    flags.DEFINE_integer("vocab_size", 30522, "Most tokens in the vocab, special tokens included.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
    flags.DEFINE_integer("min_frequency", 2, "Least count for a merged piece to enter the vocab.")
    flags.DEFINE_integer("limit_alphabet", 1000, "Most single characters kept.")


@cli.reports_errors("build_vocab")
def main(argv):
    del argv
    import tensorflow as tf

    from bert_tf.text.tokenization import write_vocab
    from bert_tf.text.vocab_learning import learn_vocab

    tokens = learn_vocab(FLAGS.input_file, FLAGS.vocab_size, FLAGS.do_lower_case,
                         FLAGS.min_frequency, FLAGS.limit_alphabet)
    directory = os.path.dirname(FLAGS.output_file)
    if directory:
        tf.io.gfile.makedirs(directory)
    write_vocab(tokens, FLAGS.output_file)
    print(f"Wrote {len(tokens):,} tokens to {FLAGS.output_file}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
