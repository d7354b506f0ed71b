"""CLI: write the sample corpus (Python's own documentation, then docstrings) as a text file.

    python -m bert_tf.sample_corpus --output=/tmp/corpus.txt --megabytes=11

See bert_tf/data/sample_corpus.py.
"""

import dataclasses
import sys

from bert_tf import cli
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class CorpusConfig(Settings):
    """The settings of the sample corpus (the command line's flags)."""
    output: str = setting(None, "Text file to write.", required=True)
    megabytes: float | None = setting(None, "Size to reach with docstrings after the topics "
                                            "(default: topics only).", above=0)


@cli.reports_errors("sample_corpus")
def main(argv):
    del argv
    from bert_tf.data.sample_corpus import write_corpus

    config = cli.from_flags(CorpusConfig)
    size = write_corpus(config.output,
                        None if config.megabytes is None else int(config.megabytes * 1e6))
    print(f"wrote {size / 1e6:.2f} MB to {config.output}", file=sys.stderr)


SETTINGS = (CorpusConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
