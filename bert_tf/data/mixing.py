"""Several corpora mixed by weight: `--corpus=NAME:GLOB` (repeated) with `--corpus_weights` or
google's exponentially smoothed sampling (`--sampling_exponent=S`).

    --corpus=wiki:'text/wiki/*.txt' --corpus=books:'text/books/*.txt' --sampling_exponent=0.7

Corpus i, of b_i bytes of text, is given the share p_i of the mixture: p_i proportional to its
weight, or to (b_i / B)^S with the exponent (google-research/bert's multilingual recipe, S=0.7:
small corpora are sampled more often than their size alone would, large ones less). The mixture
keeps the corpora's total size B, so corpus i is read f_i = p_i * B / b_i times: whole passes, and
for the fraction left a part of its documents chosen evenly through it (a running quota: a
document is kept when that brings the kept bytes closest to f * the bytes seen). Each pass has
keys of its own, so a repeated document makes other pairs and masks. The choice depends on the
text and the seed alone, never on which worker reads it: the local and the Beam runner make the
same mixture, and the manifest records the shares requested and those realised.
"""

from __future__ import annotations

import dataclasses
import math

from bert_tf import io
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class MixingSettings(Settings):
    """Corpora mixed by weight (the flags of data creation and vocab learning)."""
    corpus: tuple[str, ...] = setting((), "NAME:GLOB, once per corpus (instead of "
                                          "--input_file): corpora mixed by --corpus_weights or "
                                          "--sampling_exponent (default: by size).")
    corpus_weights: str = setting("", "NAME:WEIGHT,...: each corpus's share of the mixture "
                                      "(normalized).")
    sampling_exponent: float | None = setting(None, "S: shares proportional to (corpus "
                                                    "size)^S, google's multilingual recipe "
                                                    "(S=0.7); 1: by size, 0: equal.",
                                              minimum=0, maximum=1)

    def check(self):
        problems = []
        if self.corpus_weights and self.sampling_exponent is not None:
            problems.append("give --corpus_weights or --sampling_exponent, not both")
        if (self.corpus_weights or self.sampling_exponent is not None) and not self.corpus:
            problems.append("--corpus_weights and --sampling_exponent mix corpora given by "
                            "--corpus=NAME:GLOB")
        return problems

    def input_problems(self, input_file) -> list:
        """What is wrong with these settings beside --input_file (one of the two is needed)."""
        if bool(input_file) == bool(self.corpus):
            return ["give --input_file or --corpus=NAME:GLOB (once per corpus), not both" if
                    input_file else "give --input_file, or --corpus=NAME:GLOB once per corpus"]
        return []


@dataclasses.dataclass(frozen=True)
class Corpus:
    name: str
    files: tuple
    bytes: int


@dataclasses.dataclass(frozen=True)
class Unit:
    """Files read as one unit of work: its buffers are keyed (key, k); `fraction` of its
    documents are kept."""
    key: object  # int (a single corpus) or "POSITION/NAME/PASS/UNIT" (sorts in plan order)
    files: tuple
    fraction: float = 1.0


def corpus_of(key) -> str | None:
    """The corpus a buffer key (unit key, k) belongs to; None for unmixed data."""
    unit = key[0]
    return unit.split("/")[1] if isinstance(unit, str) else None


def parse_corpora(specs, flag="--corpus") -> list:
    """`NAME:GLOB` strings -> Corpus list (files expanded, sizes read)."""
    import tensorflow as tf

    corpora, names = [], set()
    for spec in specs:
        name, sep, pattern = spec.partition(":")
        if not sep or not name or not pattern or "/" in name or "," in name:
            raise ValueError(f"{flag}={spec}: expected NAME:GLOB (a name without '/', ':' or "
                             f"',', then a comma list of globs)")
        if name in names:
            raise ValueError(f"{flag}: the name {name} is given twice")
        names.add(name)
        files = tuple(io.expand_file_patterns(pattern, f"{flag}={spec}"))
        size = sum(tf.io.gfile.stat(path).length for path in files)
        if not size or not _has_text(files):
            raise ValueError(f"{flag}={spec}: its files are empty (no text, or only blank "
                             f"lines): it would take a share of the mixture and give nothing")
        corpora.append(Corpus(name, files, size))
    return corpora


def _has_text(files) -> bool:
    """Whether any of the files holds a character other than white space (read until the
    first one)."""
    import tensorflow as tf

    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            while chunk := f.read(1 << 20):
                if chunk.strip():
                    return True
    return False


def parse_weights(text, names, flag="--corpus_weights") -> dict:
    """"NAME:W,NAME:W" -> {name: weight}, every corpus named once with a positive weight."""
    weights = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        if name in weights:
            raise ValueError(f"{flag}={text}: {name} is given twice")
        try:
            weights[name] = float(value) if sep else float("nan")
        except ValueError:
            weights[name] = float("nan")
        if not (math.isfinite(weights[name]) and weights[name] > 0):
            raise ValueError(f"{flag}={text}: expected NAME:WEIGHT pairs with positive weights "
                             f"(finite numbers), got {part!r}")
    if set(weights) != set(names):
        raise ValueError(f"{flag}={text}: give a weight for each --corpus "
                         f"({', '.join(names)}), got {', '.join(weights)}")
    return weights


def shares(corpora, weights=None, sampling_exponent=None) -> dict:
    """{name: requested share of the mixture}: by `weights`, by size^`sampling_exponent`, or
    (neither) by size, as concatenating them would."""
    total = sum(c.bytes for c in corpora)
    if weights:
        raw = {c.name: weights[c.name] for c in corpora}
    else:
        exponent = 1.0 if sampling_exponent is None else sampling_exponent
        raw = {c.name: (c.bytes / total) ** exponent for c in corpora}
    norm = sum(raw.values())
    return {name: value / norm for name, value in raw.items()}


def plan(corpora, requested, buffer_bytes) -> list:
    """The units of the mixture: each corpus's units, in f_i passes (see the module)."""
    total = sum(c.bytes for c in corpora)
    units = []
    for corpus in corpora:
        factor = requested[corpus.name] * total / corpus.bytes
        passes = math.ceil(factor - 1e-9)
        for number in range(passes):
            fraction = min(1.0, factor - number)
            for index, files in enumerate(plan_units(list(corpus.files), buffer_bytes)):
                units.append(Unit(f"{len(units):06d}/{corpus.name}/{number}/{index}",
                                  tuple(files), fraction))
    return units


def plan_units(files, buffer_bytes):
    """The corpus split into units that are read on their own: runs of consecutive files of at
    most `buffer_bytes` together, and each larger file alone. Only file sizes are looked at, so
    a distributed pipeline splits the corpus without reading it; a unit's buffers never take text
    from another unit, so each can be read by a different worker."""
    import tensorflow as tf

    units, current, size = [], [], 0
    for path in files:
        length = tf.io.gfile.stat(path).length
        if current and size + length > buffer_bytes:
            units.append(current)
            current, size = [], 0
        current.append(path)
        size += length
    if current:
        units.append(current)
    return units


class Quota:
    """Keeps `fraction` of the documents offered to it, by bytes, evenly: a document is kept
    when that brings the kept bytes closer to fraction x the bytes offered so far."""

    def __init__(self, fraction):
        self.fraction, self.seen, self.kept = fraction, 0, 0

    def keep(self, size) -> bool:
        if self.fraction >= 1.0:
            return True
        self.seen += size
        target = self.fraction * self.seen
        if abs(self.kept + size - target) < abs(self.kept - target):
            self.kept += size
            return True
        return False


def realised(statistics, requested) -> dict:
    """{name: {"requested", "bytes", "share", "examples", "example_share", ...}} from the
    summed statistics' per-corpus entries ("NAME/bytes", "NAME/examples", ...)."""
    totals = {stat: sum(statistics.get(f"{name}/{stat}", 0) for name in requested)
              for stat in ("text_bytes", "examples", "tokens")}
    report = {}
    for name, share in requested.items():
        values = {stat: statistics.get(f"{name}/{stat}", 0)
                  for stat in ("text_bytes", "examples", "tokens", "documents")}
        report[name] = {"requested": share, **values,
                        "share": values["text_bytes"] / max(totals["text_bytes"], 1),
                        "example_share": values["examples"] / max(totals["examples"], 1),
                        "token_share": values["tokens"] / max(totals["tokens"], 1)}
    return report


def per_corpus(key, stats, documents) -> dict:
    """A buffer's statistics with, for a mixed corpus, that corpus's copies ("NAME/examples",
    ..., and "NAME/text_bytes": the UTF-8 bytes of its kept sentences) added."""
    name = corpus_of(key)
    if name is None:
        return stats
    text_bytes = sum(len(line.encode()) for document in documents for line in document)
    return {**stats, f"{name}/text_bytes": text_bytes,
            **{f"{name}/{stat}": stats[stat] for stat in ("examples", "tokens", "documents")}}
