"""Tagged sentences for token classification (NER, chunking): CoNLL-style files or JSONL.

    conll  one word per line, its tag in the last column (columns split on whitespace), a blank
           line between sentences, -DOCSTART- lines skipped
    jsonl  one sentence per line: {"tokens": [...], "tags": [...]}

Tags follow a scheme: BIO (O, B-TYPE, I-TYPE) or IOBES (also E-TYPE, S-TYPE). Every problem
names the file and the line.
"""

import json
import re
from typing import NamedTuple

import tensorflow as tf

from bert_tf.finetuning.labelled_files import InputFileError

SCHEMES = {"BIO": ("B", "I"), "IOBES": ("B", "I", "E", "S")}


class Sentence(NamedTuple):
    words: list
    tags: list | None  # None when the file has no tags (prediction)
    line: int  # where it starts in its file


def read_tagged(path, input_format, scheme="BIO", require_tags=True) -> list:
    """The sentences of a CoNLL or JSONL file, their tags checked against `scheme`."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.NotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputFileError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    if input_format == "conll":
        sentences = _read_conll(path, text, require_tags)
    elif input_format == "jsonl":
        sentences = _read_jsonl(path, text, require_tags)
    else:
        raise ValueError(f"--input_format must be conll or jsonl, got {input_format!r}")
    if not sentences:
        raise InputFileError(f"{path}: no sentences")
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags or []):
            check_tag(tag, scheme, path, sentence.line + (offset if input_format == "conll"
                                                          else 0))
    return sentences


def check_tag(tag, scheme, path, line):
    prefixes = SCHEMES[scheme]
    if tag == "O" or (tag[:2] in {p + "-" for p in prefixes} and len(tag) > 2):
        return
    raise InputFileError(f"{path}:{line}: tag {tag!r} is not in the {scheme} scheme (O, "
                         f"{', '.join(p + '-TYPE' for p in prefixes)})"
                         + ("; pass --tag_scheme=IOBES" if scheme == "BIO"
                            and tag[:2] in ("E-", "S-") else ""))


_COLUMNS = re.compile(r"[ \t]+")  # CoNLL's columns: ASCII spaces and tabs


def _read_conll(path, text, require_tags):
    sentences, words, tags, start = [], [], [], None
    lines = text.split("\n")
    for number, line in enumerate(lines + [""], start=1):
        fields = _COLUMNS.split(line.strip(" \t\r"))  # not str.split(): a word may hold U+00A0
        fields = [] if fields == [""] else fields
        if fields and fields[0] == "-DOCSTART-":
            fields = []
        if not fields:
            if words:
                sentences.append(Sentence(words, tags if tags else None, start))
            words, tags, start = [], [], None
            continue
        if start is None:
            start = number
        if require_tags and len(fields) < 2:
            raise InputFileError(f"{path}:{number}: expected a word and its tag, got {line!r}")
        words.append(fields[0])
        if len(fields) >= 2:
            tags.append(fields[-1])
        elif tags:
            raise InputFileError(f"{path}:{number}: a word without a tag among tagged ones")
    return sentences


def _read_jsonl(path, text, require_tags):
    sentences = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("tokens"), list):
            raise InputFileError(f"{path}:{number}: expected {{\"tokens\": [...], \"tags\": "
                                 f"[...]}}")
        tags = row.get("tags")
        if tags is None and require_tags:
            raise InputFileError(f"{path}:{number}: no \"tags\"")
        if tags is not None and len(tags) != len(row["tokens"]):
            raise InputFileError(f"{path}:{number}: {len(row['tokens'])} tokens but "
                                 f"{len(tags)} tags")
        if row["tokens"]:
            sentences.append(Sentence([str(w) for w in row["tokens"]],
                                      None if tags is None else [str(t) for t in tags], number))
    return sentences
