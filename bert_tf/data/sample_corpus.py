"""A real English corpus that needs no download, from what every Python install ships.

The text is Python's own documentation (the `pydoc_data` topics, about 0.4 MB) and, for larger
corpora, the docstrings of installed modules, in google's corpus format: one sentence per line, a
blank line between documents. run_pretraining's embedded default trains on it; tests and
benchmarks use it as real text. `python -m bert_tf.sample_corpus` is its command line.
"""

import ast
import itertools
import os
import re
import sysconfig

from bert_tf import io

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
    """Writes topics, then docstrings, until `max_bytes` (default: the topics alone); returns
    the bytes written."""
    if docstring_roots is None:
        docstring_roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]]
    documents = documents_from_topics()
    if max_bytes is not None:
        documents = itertools.chain(documents, documents_from_docstrings(docstring_roots))
    blocks, written = [], 0
    for doc in documents:
        blocks.append("\n".join(doc) + "\n\n")
        written += len(blocks[-1].encode("utf-8"))
        if max_bytes is not None and written >= max_bytes:
            break
    io.write_file(path, "".join(blocks))
    return written
