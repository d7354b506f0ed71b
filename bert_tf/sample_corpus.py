"""CLI: write the sample corpus (Python's own documentation, then docstrings) as a text file.

    python -m bert_tf.sample_corpus --output=/tmp/corpus.txt --megabytes=11

See bert_tf/data/sample_corpus.py.
"""

import argparse
import sys

from bert_tf.data.sample_corpus import write_corpus


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--megabytes", type=float, default=None,
                        help="size to reach with docstrings after the topics (default: topics only)")
    args = parser.parse_args()
    size = write_corpus(args.output, None if args.megabytes is None else int(args.megabytes * 1e6))
    print(f"wrote {size / 1e6:.2f} MB to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
