"""Labelled text files for sentence(-pair) tasks: tsv / csv with a header row, or jsonl.

    read_examples("train.tsv", "tsv", Columns(text_a="sentence", label="label"))
        -> [Example(text_a, text_b or None, label or None, line), ...]

Every problem names the file, the line and the column.
"""

import csv
import dataclasses
import json
from typing import NamedTuple

import numpy as np
import tensorflow as tf


class InputFileError(ValueError):
    """A problem in a labelled text file, naming the file, line and column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which columns hold a file's texts and label, and how its columns are named."""
    text_a: str
    label: str
    text_b: str = None
    index: str | None = None  # a column whose value becomes each example's `index`
    header: tuple | None = None  # the column names of a tsv/csv file without a header row


class Example(NamedTuple):
    text_a: str
    text_b: str | None
    label: str | None
    line: int  # in its file, for messages and predictions
    index: str | None = None  # the row's own id (a GLUE test file's "index" column)


def read_examples(path, input_format, columns: Columns, require_label=True, keep=None,
                  skip_malformed=False, log=print, kept="") -> list:
    """The examples of a tsv/csv (with a header row, or `columns.header`) or jsonl file, read
    from `columns`' columns (`columns.index`: each example's `index`). `keep(row)`: which rows
    ({column: value}) to take (`kept` says which, for the message when none is);
    `skip_malformed`:
    rows with another number of fields than the header are skipped with one warning (some
    distributed corpora have a few), not refused."""
    header, index_column = columns.header, columns.index
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.NotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Windows' editors write one) goes
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputFileError(f"{path}:{line}: not valid UTF-8 ({e.reason})") from None
    wanted = [c for c in (columns.text_a, columns.text_b, columns.label if require_label else None,
                          index_column) if c]
    rows = []
    if input_format == "jsonl":
        for number, line in enumerate(records(text), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise InputFileError(f"{path}:{number}: not JSON ({e.msg})") from None
    elif input_format in ("tsv", "csv"):
        reader = csv.reader([line + "\n" for line in records(text)],
                            delimiter="\t" if input_format == "tsv" else ",",
                            quoting=csv.QUOTE_NONE if input_format == "tsv" else csv.QUOTE_MINIMAL)
        try:
            lines = [(reader.line_num, values) for values in reader]
        except csv.Error as e:
            raise InputFileError(f"{path}:{reader.line_num}: {e}") from None
        if not lines:
            raise InputFileError(f"{path}: empty file")
        if header is None:
            header, lines = lines[0][1], lines[1:]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise InputFileError(f"{path}:1: missing column(s) {', '.join(missing)}; the "
                                     f"header has {', '.join(header)}")
        separator = "tab" if input_format == "tsv" else "comma"
        skipped = 0
        for number, values in lines:
            if values and len(values) != len(header) and skip_malformed:
                skipped += 1
                continue
            if values and len(values) != len(header):
                raise InputFileError(
                    f"{path}:{number}: {len(values)} {separator}-separated fields, but the "
                    f"header has {len(header)} ({', '.join(header)})"
                    + ("; a field holding a tab cannot be written in tsv: use jsonl"
                       if input_format == "tsv" and len(values) > len(header) else ""))
            if values:
                rows.append((number, dict(zip(header, values))))
        if skipped:
            log(f"warning: {path}: skipped {skipped:,} row(s) without the {len(header)} fields "
                f"of its header")
    else:
        raise ValueError(f"--input_format must be tsv, csv or jsonl, got {input_format!r}")
    examples = []
    for number, row in rows:
        if keep is not None and not keep(row):
            continue
        for column in wanted:
            if column not in row:
                raise InputFileError(f"{path}:{number}: missing column {column!r}")
        label = row.get(columns.label) if require_label else None
        if require_label and (label is None or str(label).strip() == ""):
            raise InputFileError(f"{path}:{number}: empty label in column {columns.label!r}")
        examples.append(Example(str(row[columns.text_a]),
                                str(row[columns.text_b]) if columns.text_b else None,
                                str(label).strip() if label is not None else None, number,
                                str(row[index_column]) if index_column else None))
    if not examples:
        raise InputFileError(f"{path}: no examples" + (f" {kept}" if kept and rows else ""))
    return examples


def records(text):
    """The records of a text file: only a newline ends one ("\\r\\n" too). str.splitlines()
    would also split at U+2028, U+0085, form feeds, ..., which may stand inside a field."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def label_ids(examples, labels, path, allow_unknown=False, log=print):
    """(kept examples, their label ids in `labels` order); an unknown label is an error naming
    file and line (skipped with a warning when `allow_unknown`)."""
    index = {label: i for i, label in enumerate(labels)}
    kept, ids = [], []
    for example in examples:
        example = Example(*example)
        if example.label not in index:
            message = (f"{path}:{example.line}: label {example.label!r} is not in the training "
                       f"labels {labels}")
            if not allow_unknown:
                raise InputFileError(message)
            log(f"warning: {message}; skipped")
            continue
        kept.append(example)
        ids.append(index[example.label])
    return kept, np.array(ids, np.int64)
