"""CLI: learn a WordPiece vocab from text and write it as google's vocab.txt.

    python -m bert_tf.build_vocab --input_file='corpus/*.txt' --output_file=vocab.txt \
        --vocab_size=30522 --do_lower_case=true

See bert_tf/text/vocab_learning.py for the learner.
"""

import dataclasses
import os

from bert_tf import cli
from bert_tf.data.mixing import MixingSettings
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class VocabConfig(Settings):
    """The settings of vocab learning (the command line's flags)."""
    input_file: str | None = setting(None, "Comma list of globs of text files (or --corpus).")
    output_file: str = setting(None, "Where to write vocab.txt.", required=True)
    vocab_size: int = setting(30522, "Most tokens in the vocab, special tokens included.",
                              minimum=1)
    do_lower_case: bool = setting(True, "Lower-case and strip accents (uncased models).")
    min_frequency: int = setting(2, "Least count for a merged piece to enter the vocab.",
                                 minimum=1)
    limit_alphabet: int = setting(1000, "Most single characters kept.", minimum=1)
    mixture: MixingSettings = MixingSettings()

    def check(self):
        return self.mixture.input_problems(self.input_file)


@cli.reports_errors("build_vocab")
def main(argv):
    del argv
    import tensorflow as tf

    from bert_tf.text.tokenization import write_vocab

    config = cli.from_flags(VocabConfig)
    tokens = learn_mixed_vocab(config)
    directory = os.path.dirname(config.output_file)
    if directory:
        tf.io.gfile.makedirs(directory)
    write_vocab(tokens, config.output_file)
    print(f"Wrote {len(tokens):,} tokens to {config.output_file}")


def learn_mixed_vocab(config: VocabConfig):
    """learn_vocab on --input_file, or on the mixture of the --corpus corpora: their documents
    as often as data creation with the same mixing flags takes them (a local temporary file)."""
    import tempfile

    from bert_tf.data.writer import DOCUMENT_BUFFER_MB, plan_job, write_text
    from bert_tf.text.vocab_learning import learn_vocab

    args = (config.vocab_size, config.do_lower_case, config.min_frequency,
            config.limit_alphabet)
    if not config.mixture.corpus:
        return learn_vocab(config.input_file, *args)
    buffer_bytes = int(DOCUMENT_BUFFER_MB * 1e6)  # the units data creation reads by default
    _, units, _ = plan_job(None, config.mixture, buffer_bytes)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "mixture.txt")
        write_text(units, path, buffer_bytes)
        return learn_vocab(path, *args)


SETTINGS = (VocabConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
