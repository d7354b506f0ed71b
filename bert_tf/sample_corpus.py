"""A real English corpus that needs no download, from what every Python install ships.

The text is Python's own documentation (the `pydoc_data` topics, about 0.4 MB) and, for larger
corpora, the docstrings of installed modules, in google's corpus format: one sentence per line, a
blank line between documents. run_pretraining's embedded default trains on it; tests and
benchmarks use it as real text.

    python -m bert_tf.sample_corpus --output=/tmp/corpus.txt --megabytes=11
"""

import argparse
import ast
import os
import re
import sys
import sysconfig

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def sentences(text):
    """Paragraphs -> sentences; code-looking lines (indented, >>>) are dropped."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines()
                 if line.strip() and not line.startswith((" " * 4, "\t", ">>>", "..."))]
        if lines:
            out.extend(s for s in _SENTENCE_END.split(" ".join(lines)) if len(s) > 1)
    return out


def documents_from_topics():
    from pydoc_data.topics import topics
    for name in sorted(topics):
        doc = sentences(topics[name])
        if doc:
            yield doc


def documents_from_docstrings(roots):
    for root in roots:
        for directory, subdirs, files in os.walk(root):
            subdirs.sort()
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                try:
                    with open(os.path.join(directory, name), encoding="utf-8") as f:
                        tree = ast.parse(f.read())
                except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                         ast.AsyncFunctionDef)):
                        doc = sentences(ast.get_docstring(node) or "")
                        if len(doc) >= 2:
                            yield doc


def write_corpus(path, max_bytes=None, docstring_roots=None):
    """Writes topics, then docstrings, until `max_bytes`; returns the bytes written."""
    if docstring_roots is None:
        docstring_roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for documents in (documents_from_topics(), documents_from_docstrings(docstring_roots)):
            for doc in documents:
                block = "\n".join(doc) + "\n\n"
                f.write(block)
                written += len(block.encode("utf-8"))
                if max_bytes is not None and written >= max_bytes:
                    return written
            if max_bytes is None:
                return written
    return written


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
