"""The ops a SavedModel needs its server to have, and which of them are tensorflow-text's.

    python tools/serving_ops.py exports/bert/1 [runs/sst2/export/classifier/1 ...] [--all]

A server that lacks one of them fails with "Op type not registered '...'". TF Serving registers
tensorflow-text's ops of the version it was built with (docs/export-and-serving.md has the table).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bert_tf.export.serving import non_core_ops, saved_model_ops  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_models", nargs="+", help="SavedModel directories (a version)")
    parser.add_argument("--all", action="store_true", help="list every op type, not only "
                        "those TensorFlow's core does not define")
    args = parser.parse_args()
    for path in args.saved_models:
        ops = saved_model_ops(path)
        extra = sorted(non_core_ops(ops))
        print(f"{path}: {len(ops)} op types; not in TensorFlow's core: "
              f"{', '.join(extra) or 'none'}")
        if args.all:
            print("  " + " ".join(sorted(ops)))


if __name__ == "__main__":
    main()
