"""Text files -> pretraining TFRecord shards in google-research/bert's schema, on local processes.

    create_pretraining_data(DataCreationConfig(input_file="corpus/*.txt",
        output_file="tfrecords/wiki", vocab_file="vocab.txt", num_shards=8, num_workers=2))

(`python -m bert_tf.create_pretraining_data` is its command line.)

Input is google's convention: one sentence per line, a blank line between documents, UTF-8 (each
file also starts a new document). The corpus is streamed in buffers of about
`--document_buffer_mb` of text; each buffer is tokenized, made into instances (`dupe_factor`
passes, random-next segments drawn from the same buffer) and shuffled by a worker process, so
memory stays bounded whatever the corpus size. Each buffer has its own random stream derived from
`--random_seed`, and the main process writes the buffers' examples in order, each buffer's
round-robin over the shards from a shard picked by its key (`first_shard`): output bytes depend
on the seed and the flags, not on `--num_workers`, and a distributed pipeline
(bert_tf/data/beam_pipeline.py), which cannot count the examples of earlier buffers, writes the
same shards.

Shards are written under temporary names and renamed when all are complete; the manifest is
written last and marks the data set complete. A killed run leaves no finished-looking shard, and
re-running the same command starts over cleanly.
"""

import collections
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import random
import resource
import sys
import time

from absl import logging

from bert_tf import io, locks
from bert_tf.data import mixing, schema
from bert_tf.data.instances import (InstanceOptions, TokenIds, TokenizedDocuments,
                                    create_examples)
from bert_tf.settings import Settings, flat_dict, setting


class DataError(ValueError):
    """Input that cannot be made into pretraining data, with the file (and line) named."""


DOCUMENT_BUFFER_MB = 1.0  # the default text per buffer (build_vocab's mixture reads the same)


@dataclasses.dataclass(frozen=True)
class DataCreationConfig(Settings):
    """The settings of a data-creation job (the command line's flags); picklable for workers."""
    input_file: str | None = setting(None, "Comma list of globs of text files: one sentence per "
                                           "line, blank lines between documents (or "
                                           "--corpus).")
    output_file: str = setting(None, "Output prefix NAME: writes NAME-00000-of-0000N.tfrecord, "
                               "NAME.manifest.json and NAME.vocab.txt.", required=True)
    vocab_file: str = setting(None, "google-format vocab.txt.", required=True)
    do_lower_case: bool = setting(True, "Lower-case and strip accents (uncased models).")
    allow_case_mismatch: bool = setting(False, "Go on with a --do_lower_case that contradicts "
                                               "the vocab (upper-case tokens, or none).")
    options: InstanceOptions = InstanceOptions()
    mixture: mixing.MixingSettings = mixing.MixingSettings()
    random_seed: int = setting(12345, "Seed; the output is a function of it and the flags.")
    num_shards: int = setting(1, "Number of output shards.", minimum=1)
    num_workers: int = setting(os.cpu_count() or 1, "Worker processes. With --runner, Beam's "
                               "option of that name (Dataflow's worker machines) when given.",
                               minimum=1)
    gzip: bool = setting(False, "Write GZIP-compressed shards (.tfrecord.gz).")
    overwrite: bool = setting(False, "Replace a finished data set of the same name.")
    errors: str = setting("strict", "Invalid UTF-8: fail (naming the file and line) or replace "
                          "with U+FFFD.", choices=("strict", "replace"))
    document_buffer_mb: float = setting(DOCUMENT_BUFFER_MB, "Text per buffer; random-next segments come from "
                                        "the same buffer. Memory per worker grows with it.",
                                        above=0)
    progress: bool = setting(True, "Show a progress line on stderr.")
    shuffle: bool = setting(False, "With --runner: shuffle the examples across all shards, "
                                   "deterministically from --random_seed.")

    def check(self):
        return self.mixture.input_problems(self.input_file)


# === Reading ===

def read_unit_buffers(files, buffer_bytes, errors="strict", fraction=1.0):
    """Yields (documents, n_bytes) of one unit: about `buffer_bytes` of text each, as documents
    of sentence strings.

    Buffers end at document boundaries; a document over twice `buffer_bytes` is cut at a sentence;
    a new file starts a new document. Invalid UTF-8 is a `DataError` naming the file and line
    unless `errors="replace"`. `fraction` < 1 keeps that share of the documents, by bytes,
    evenly through the unit (mixing.Quota); n_bytes counts all the text read.
    """
    import tensorflow as tf

    quota = mixing.Quota(fraction)
    buffer, buffer_size, document, document_size = [], 0, [], 0
    for path in files:
        # Python's own reader for local files: GFile's readline is ~20x slower per line.
        with (open(path, "rb") if io.is_local(path) else tf.io.gfile.GFile(path, "rb")) as f:
            for line_number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8", errors=errors).strip()
                except UnicodeDecodeError as e:
                    raise DataError(f"{path}:{line_number}: invalid UTF-8 ({e.reason} at byte "
                                    f"{e.start}); pass --errors=replace to substitute U+FFFD"
                                    ) from None
                buffer_size += len(raw)
                if line:
                    document.append(line)
                    document_size += len(raw)
                    if buffer_size < 2 * buffer_bytes:
                        continue
                elif not document:
                    continue
                if quota.keep(document_size):
                    buffer.append(document)
                document, document_size = [], 0
                if buffer_size >= buffer_bytes:
                    if buffer:
                        yield buffer, buffer_size
                    buffer, buffer_size = [], 0
        if document and quota.keep(document_size):  # a new file starts a new document
            buffer.append(document)
        document, document_size = [], 0
    if buffer:
        yield buffer, buffer_size


def read_document_buffers(units, buffer_bytes, errors="strict"):
    """Yields ((unit key, k), documents, n_bytes) for every buffer of the `units`
    (mixing.Unit), in order; the key seeds the buffer's random stream."""
    for unit in units:
        for k, (documents, n_bytes) in enumerate(read_unit_buffers(
                unit.files, buffer_bytes, errors, unit.fraction)):
            yield (unit.key, k), documents, n_bytes


def plan_job(input_file, settings: mixing.MixingSettings, buffer_bytes):
    """(input files, units, requested shares or None) of a job: the text of `input_file`, or the
    mixture of the corpora `settings` name (bert_tf.data.mixing)."""
    if not settings.corpus:
        files = io.expand_file_patterns(input_file)
        return files, [mixing.Unit(index, tuple(unit_files)) for index, unit_files in
                       enumerate(mixing.plan_units(files, buffer_bytes))], None
    corpora = mixing.parse_corpora(settings.corpus)
    weights = (mixing.parse_weights(settings.corpus_weights, [c.name for c in corpora])
               if settings.corpus_weights else None)
    requested = mixing.shares(corpora, weights, settings.sampling_exponent)
    files = [path for corpus in corpora for path in corpus.files]
    return files, mixing.plan(corpora, requested, buffer_bytes), requested


def write_text(units, path, buffer_bytes, errors="strict") -> None:
    """The documents the `units` keep, as text in the input's format (a blank line after each
    document), to the local file `path`: a mixture for the vocab learner."""
    with open(path, "w", encoding="utf-8") as f:  # a local temporary file of the caller's
        for _, documents, _ in read_document_buffers(units, buffer_bytes, errors):
            for document in documents:
                f.write("\n".join(document) + "\n\n")


def first_shard(seed, key, num_shards):
    """The shard that the first example of buffer `key` = (unit, k) goes to; its next examples go
    to the next shards, round-robin. A hash of the seed and the key, so shards fill evenly (within
    one example per buffer) without knowing how many examples earlier buffers made."""
    return stable_hash(f"{seed}:{key[0]}:{key[1]}") % num_shards


def stable_hash(text):
    """A 64-bit integer from `text`, the same in every process and on every run (Python's
    hash() of a string is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def record_options(gzip):
    import tensorflow as tf

    return tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")


# === Worker: one buffer of documents -> serialized examples ===

_TOKENIZE_LINES = 4096


class BufferProcessor:
    """Tokenizes a buffer of documents and turns it into serialized tf.train.Examples.

    It reads no file: the vocab comes loaded, the documents with each call, and the records go
    back to the caller. So worker processes need no shared filesystem (ram:// is per process;
    gs:// is read and written by the main process only).
    """

    def __init__(self, config: DataCreationConfig, vocab):
        from bert_tf.text.tokenization import WordpieceTokenizer

        self.config = config
        # Eager: per slice of 4096 lines, a tf.function is no faster, and tracing it costs ~1 s.
        self._tokenize = WordpieceTokenizer(vocab, config.do_lower_case).tokenize
        self.ids = TokenIds.from_vocab(vocab)

    def tokenize(self, documents) -> TokenizedDocuments:
        """Documents of strings -> flat token ids; sentences without tokens dropped."""
        import numpy as np
        import tensorflow as tf

        lines = [line for document in documents for line in document]
        flat, lengths = [], []
        # In slices: tensorflow-text's offsets take ~200 bytes of memory per byte of text at once.
        for start in range(0, len(lines), _TOKENIZE_LINES):
            ragged = self._tokenize(tf.constant(lines[start:start + _TOKENIZE_LINES]))
            flat.append(ragged.flat_values.numpy())
            lengths.append(ragged.row_lengths().numpy())
        lengths = np.concatenate(lengths)
        keep = lengths > 0
        # documents: their count of non-empty sentences, then only the non-empty documents
        doc_of_line = np.repeat(np.arange(len(documents)), [len(d) for d in documents])
        per_doc = np.bincount(doc_of_line[keep], minlength=len(documents))
        per_doc = per_doc[per_doc > 0]
        return TokenizedDocuments(np.concatenate(flat),
                                  np.concatenate([[0], np.cumsum(lengths[keep])]),
                                  np.concatenate([[0], np.cumsum(per_doc)]))

    def __call__(self, key, documents, n_bytes):
        """Serialized examples and statistics of the buffer `key` = (unit, k) (of a mixed
        corpus: with its corpus's copies, mixing.per_corpus)."""
        records, stats = self._examples(key, documents, n_bytes)
        return records, mixing.per_corpus(key, stats, documents)

    def _examples(self, key, documents, n_bytes):
        tokenized = self.tokenize(documents)
        rng = random.Random(f"{self.config.random_seed}:{key[0]}:{key[1]}")
        stats = {"documents": len(documents), "bytes": n_bytes,
                 "tokens": len(tokenized.tokens), "examples": 0, "random_next": 0, "masked": 0}
        if len(tokenized.document_starts) < 2:  # every sentence tokenized to nothing
            return [], stats
        examples = create_examples(tokenized, self.config.options, self.ids, rng)
        records = schema.serialize_examples(examples)
        stats.update(examples=len(records),
                     random_next=int(examples["next_sentence_labels"].sum()),
                     masked=int(examples["masked_lm_weights"].sum()))
        return records, stats


_processor = None


def _init_worker(config, vocab):
    global _processor
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _processor = BufferProcessor(config, vocab)


def _process(task):
    return task[0], *_processor(*task)


def _ordered_results(tasks, config, vocab, num_workers):
    """(key, documents, n_bytes) tasks -> (key, records, statistics) in order, with at most 2 per
    worker in flight (so memory stays bounded)."""
    if num_workers <= 1:
        processor = BufferProcessor(config, vocab)
        for task in tasks:
            yield task[0], *processor(*task)
        return
    context = multiprocessing.get_context("spawn" if _tensorflow_runtime_started() else "fork")
    with context.Pool(num_workers, initializer=_init_worker, initargs=(config, vocab)) as pool:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(_process, (task,)))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _tensorflow_runtime_started():
    """Whether this process has run TensorFlow ops (and so started its thread pools).

    Forking such a process can deadlock the child, so workers are then spawned afresh, paying
    TensorFlow's import again (seconds). The CLI forks before it runs any op: quick to start.
    """
    try:
        from tensorflow.python.eager import context
        ctx = context.context_safe()
        return ctx is not None and ctx._context_handle is not None
    except (ImportError, AttributeError):  # private API moved: take the safe path
        return True


# === Progress ===

class Progress:
    """A one-line progress report on stderr, at most once a second, and the final summary."""

    def __init__(self, total_bytes, enabled=True):
        self.total_bytes = max(total_bytes, 1)
        self.enabled = enabled
        self.start = self.last = time.monotonic()
        self.totals = collections.Counter()

    def update(self, stats, final=False):
        self.totals.update(stats)
        now = time.monotonic()
        if self.enabled and (final or now - self.last >= 1.0):
            self.last = now
            elapsed = max(now - self.start, 1e-9)
            t = self.totals
            sys.stderr.write(
                f"\r{100 * t['bytes'] / self.total_bytes:5.1f}% "
                f"{t['bytes'] / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB  "
                f"{t['documents']:,} documents ({t['documents'] / elapsed:,.0f} documents/s)  "
                f"{t['examples']:,} examples ({t['examples'] / elapsed:,.0f} examples/s)  ")
            sys.stderr.flush()

    def summary(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        t = self.totals
        return {**dict(t), "seconds": elapsed, "mb_per_second": t["bytes"] / 1e6 / elapsed,
                "examples_per_second": t["examples"] / elapsed}


# === The job ===

def create_pretraining_data(config: DataCreationConfig):
    """Writes shards, `NAME.vocab.txt` and `NAME.manifest.json` with local worker processes;
    returns the summary dict."""
    if config.shuffle:
        raise ValueError("--shuffle needs --runner: the global shuffle is the Beam pipeline's")
    with locks.sibling_lock(config.output_file, "--output_file"):
        return _create_pretraining_data(config)


def _create_pretraining_data(config):
    import tensorflow as tf

    files, vocab, units, requested = prepare_output(config)
    num_shards = config.num_shards
    shard_files = [schema.shard_path(config.output_file, i, num_shards, config.gzip)
                   for i in range(num_shards)]
    tmp_files = [io.temp_name(path) for path in shard_files]
    compression = record_options(config.gzip)
    writers = [tf.io.TFRecordWriter(path, compression) for path in tmp_files]
    counts = [0] * num_shards
    tracker = Progress(sum(unit.fraction * tf.io.gfile.stat(f).length for unit in units
                           for f in unit.files), enabled=config.progress)
    try:
        tasks = read_document_buffers(units, int(config.document_buffer_mb * 1e6), config.errors)
        for key, records, stats in _ordered_results(tasks, config, vocab, config.num_workers):
            start = first_shard(config.random_seed, key, num_shards)
            for j, record in enumerate(records):
                shard = (start + j) % num_shards
                writers[shard].write(record)
                counts[shard] += 1
                tracker.totals["examples"] += 1
            tracker.update({k: v for k, v in stats.items() if k != "examples"})
        for writer in writers:
            writer.close()
        check_not_empty(tracker.totals, files)
    except BaseException:
        for writer in writers:  # closing flushes, which fails again on a full disk
            with contextlib.suppress(tf.errors.OpError):
                writer.close()
        for path in tmp_files:
            io.remove_quietly(path)
        raise
    if config.progress:
        tracker.update({}, final=True)
        sys.stderr.write("\n")
    summary = tracker.summary()
    manifest_file = commit(config, files, vocab, list(zip(tmp_files, shard_files)), counts,
                           summary, runner="local", requested=requested)
    return {**summary, "shards": shard_files, "manifest": manifest_file,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def prepare_output(config: DataCreationConfig):
    """Checks the job before it writes anything: (input files, vocab, units, requested shares
    of a mixture or None; see plan_job). A finished data set is kept unless --overwrite; what a
    killed run left is removed."""
    import tensorflow as tf

    from bert_tf.text.tokenization import check_casing, load_vocab

    files, units, requested = plan_job(config.input_file, config.mixture,
                                       int(config.document_buffer_mb * 1e6))
    options, output_file = config.options, config.output_file
    vocab = load_vocab(config.vocab_file)
    if not config.allow_case_mismatch:
        check_casing(vocab, config.do_lower_case, config.vocab_file)
    expected_masks = options.masked_lm_prob * (options.max_seq_length - options.special_tokens)
    if options.max_predictions_per_seq < expected_masks:
        logging.warning(
            "--max_predictions_per_seq=%d is below --masked_lm_prob x sequence tokens = %.1f: "
            "long sequences will have fewer than %.0f%% of their tokens masked.",
            options.max_predictions_per_seq, expected_masks, 100 * options.masked_lm_prob)
    manifest_file = schema.manifest_path(output_file)
    if tf.io.gfile.exists(manifest_file) and not config.overwrite:
        raise FileExistsError(f"{manifest_file} exists: {output_file} is a finished data set; "
                              f"pass --overwrite to replace it")
    output_dir = os.path.dirname(output_file)
    if output_dir:
        tf.io.gfile.makedirs(output_dir)
    remove_files(tf.io.gfile.glob(io.temp_pattern(f"{output_file}-*")))  # left by a killed run
    return files, vocab, units, requested


def check_not_empty(totals, files):
    if totals["documents"] == 0:
        raise DataError(f"--input_file: no text in {', '.join(files)}")
    if totals["examples"] == 0:
        raise DataError(f"--input_file: no example could be made from {', '.join(files)} "
                        f"(every document tokenized to nothing)")


def commit(config, files, vocab, renames, counts, summary, runner, requested=None):
    """Makes a written data set final: the old manifest goes first (a crash from here on leaves
    an incomplete set), the shards take their names (`renames`: (temporary, final) pairs, in
    shard order), the vocab copy, the manifest last."""
    import tensorflow as tf

    from bert_tf.text.tokenization import write_vocab

    output_file, options = config.output_file, config.options
    manifest_file = schema.manifest_path(output_file)
    remove_files([manifest_file])
    old_shards = [path for suffix in (".tfrecord", ".tfrecord.gz")
                  for path in tf.io.gfile.glob(f"{output_file}-?????-of-?????{suffix}")]
    shard_files = [path for _, path in renames]
    remove_files(set(old_shards) - set(shard_files))
    for tmp, path in renames:
        tf.io.gfile.rename(tmp, path, overwrite=True)
    write_vocab(vocab.tokens, schema.vocab_copy_path(output_file))
    flags = {k: v for k, v in flat_dict(config).items() if k not in ("overwrite", "progress")}
    io.write_json(manifest_file, schema.manifest(
        options.max_seq_length, options.max_predictions_per_seq, vocab, config.do_lower_case,
        output_file, list(zip(shard_files, counts)), config.gzip,
        created_by="bert_tf.create_pretraining_data", runner=runner,
        masking="dynamic" if options.dynamic_masking else "static",
        random_seed=config.random_seed, options=dataclasses.asdict(options), input_files=files,
        statistics={k: summary[k] for k in ("documents", "bytes", "tokens", "examples",
                                            "random_next", "masked")},
        flags=flags, **({"corpora": mixing.realised(summary, requested)} if requested else {})))
    return manifest_file


def remove_files(paths):
    """Removes those of `paths` that exist (temporary or superseded files)."""
    import tensorflow as tf

    for path in paths:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
