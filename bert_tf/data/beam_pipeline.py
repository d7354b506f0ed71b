"""Pretraining data on Apache Beam (Dataflow, Flink, Spark, or Beam's local DirectRunner): the
same buffers, random streams and examples as the local path (bert_tf.data.writer), on as many
machines as the runner gives.

    create_pretraining_data_beam(config, PipelineOptions(["--runner=DataflowRunner", ...]))

(`python -m bert_tf.create_pretraining_data --runner=...` is its command line; apache-beam is the
`beam` extra.) The steps:

  1. the corpus is planned into units from the file sizes alone (mixing.plan_units; several
     corpora: mixing.plan), on the launching machine; nothing reads the corpus there;
  2. each unit is read where it lands, into buffers of about --document_buffer_mb, keyed
     (unit, k) as the local path keys them, and each buffer is made into serialized examples
     with its own random stream;
  3. example j of buffer (unit, k) goes to shard (writer.first_shard(seed, (unit, k)) + j) %
     num_shards, and a shard holds its examples in (unit, k, j) order: as the local path writes
     them, so both write the same shards byte for byte, and no step needs to know how many
     examples other buffers made. With --shuffle, an example's shard and its place in it come
     from a hash of the seed and (unit, k, j) instead: a global shuffle, the same on every run;
  4. the examples are grouped by shard (the one shuffle of the examples), and each shard is
     written whole by one worker under a temporary name; when the job has
     succeeded, the launching process renames the shards, writes the vocab copy and, last, the
     manifest. A failed or cancelled job leaves nothing that looks finished.

A worker holds one buffer and its examples, or one shard's examples while writing it: memory is
bounded by --document_buffer_mb and the shard size, not by the corpus.
"""

import os
import re
import resource
import time

import apache_beam as beam

from bert_tf import io, locks
from bert_tf.data import schema
from bert_tf.data.writer import (BufferProcessor, DataCreationConfig, DataError, check_not_empty,
                                 commit, first_shard, prepare_output, read_document_buffers,
                                 record_options, remove_files, stable_hash)



class _ReadUnit(beam.DoFn):
    def __init__(self, config):
        self.config = config

    def process(self, unit):
        yield from read_document_buffers([unit], int(self.config.document_buffer_mb * 1e6),
                                         self.config.errors)


class _MakeExamples(beam.DoFn):
    """A buffer -> ((unit, k), serialized examples, statistics); the tokenizer is built once per
    worker."""

    def __init__(self, config):
        self.config = config

    def setup(self):
        from bert_tf.text.tokenization import load_vocab

        self.processor = BufferProcessor(self.config, load_vocab(self.config.vocab_file))

    def process(self, element):
        key, documents, n_bytes = element
        start = time.perf_counter()
        records, stats = self.processor(key, documents, n_bytes)
        yield key, records, {**stats, "buffers": 1, "buffer_seconds": time.perf_counter() - start}


def _shuffle_key(seed, key, j):
    return stable_hash(f"{seed}:{key[0]}:{key[1]}:{j}")


def _to_shards(element, num_shards, seed, shuffle):
    """(shard, (order, record)) for each example of a processed buffer; a shard is written in
    `order`."""
    key, records, _ = element
    key = tuple(key)
    start = first_shard(seed, key, num_shards)
    for j, record in enumerate(records):
        if shuffle:
            order = _shuffle_key(seed, key, j)
            yield order % num_shards, (order, record)
        else:
            yield (start + j) % num_shards, ((*key, j), record)


class _WriteShard(beam.DoFn):
    def __init__(self, paths, gzip):
        self.paths, self.gzip = paths, gzip

    def process(self, element):
        import tensorflow as tf

        shard, items = element
        count = 0
        with tf.io.TFRecordWriter(self.paths[shard], record_options(self.gzip)) as writer:
            for _, record in sorted(items, key=lambda item: item[0]):
                writer.write(record)
                count += 1
        yield shard, count


STATISTICS = ("documents", "bytes", "tokens", "examples", "random_next", "masked", "buffers",
              "buffer_seconds")  # and, of mixed corpora, each one's ("NAME/examples", ...)


def _sum_statistics(stats):
    total = dict.fromkeys(STATISTICS, 0)
    for s in stats:
        for name, value in s.items():
            total[name] = total.get(name, 0) + value
    return total


def create_pretraining_data_beam(config: DataCreationConfig, pipeline_options):
    """Runs the pipeline and, when it has succeeded, commits the data set; returns the summary
    dict (as the local path's). The launcher holds the data set's lock throughout."""
    with locks.sibling_lock(config.output_file, "--output_file"):
        return _create_pretraining_data_beam(config, pipeline_options)


def _create_pretraining_data_beam(config, pipeline_options):
    import tensorflow as tf

    files, vocab, units, requested = prepare_output(config)
    runner = pipeline_options.get_all_options().get("runner") or "DirectRunner"
    num_shards = config.num_shards
    shard_files = [schema.shard_path(config.output_file, i, num_shards, config.gzip)
                   for i in range(num_shards)]
    job = f"{os.getpid()}-{int(time.time())}"
    tmp_files = [io.temp_name(path, f"beam-{job}") for path in shard_files]
    results_file = io.temp_name(f"{config.output_file}-results.json", f"beam-{job}")
    start = time.monotonic()
    try:
        with make_pipeline(pipeline_options) as pipeline:
            processed = (pipeline
                         | "Units" >> beam.Create(units)
                         | "SpreadUnits" >> beam.Reshuffle()
                         | "Read" >> beam.ParDo(_ReadUnit(config))
                         | "SpreadBuffers" >> beam.Reshuffle()
                         | "Examples" >> beam.ParDo(_MakeExamples(config)))
            written = (processed
                       | "ToShards" >> beam.FlatMap(_to_shards, num_shards=num_shards,
                                                    seed=config.random_seed,
                                                    shuffle=config.shuffle)
                       | "GroupShards" >> beam.GroupByKey()
                       | "Write" >> beam.ParDo(_WriteShard(tmp_files, config.gzip))
                       | "Written" >> beam.combiners.ToList())
            statistics = (processed
                          | "Statistics" >> beam.Map(lambda e: e[2])
                          | "Sum" >> beam.CombineGlobally(_sum_statistics))
            _ = (statistics
                 | "Record" >> beam.Map(
                     lambda stats, written: io.write_json(
                         results_file, {"statistics": stats, "written": written}),
                     written=beam.pvalue.AsSingleton(written)))
        results = io.read_json(results_file)
    except BaseException as e:
        remove_files(tmp_files + [results_file])
        data_error = _data_error(e)
        if data_error:
            raise data_error from e
        raise
    seconds = time.monotonic() - start
    totals = results["statistics"]
    counts = [0] * num_shards
    for shard, count in results["written"]:
        counts[shard] = count
    try:
        check_not_empty(totals, files)
    except ValueError:
        remove_files(tmp_files + [results_file])
        raise
    for shard, path in enumerate(tmp_files):  # a shard no example went to is still a shard
        if not tf.io.gfile.exists(path):
            with tf.io.TFRecordWriter(path, record_options(config.gzip)):
                pass
    summary = {**totals, "seconds": seconds, "mb_per_second": totals["bytes"] / 1e6 / seconds,
               "examples_per_second": totals["examples"] / seconds, "runner": runner,
               "units": len(units),
               # This process, and the DirectRunner's worker processes (other runners' workers are
               # on other machines: 0).
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    manifest_file = commit(config, files, vocab, list(zip(tmp_files, shard_files)), counts,
                           summary, runner=runner, requested=requested)
    remove_files([results_file])
    return {**summary, "shards": shard_files, "manifest": manifest_file}


def _data_error(error):
    """The DataError (bad input, named with its file and line) a worker raised, which the runner
    passes on inside its own error's text; None if there was none."""
    if isinstance(error, DataError):
        return error
    match = re.search(r"DataError: (.+)", str(error))
    return DataError(match.group(1).strip()) if match else None


def pipeline_options(runner, beam_args):
    """Beam's PipelineOptions from --runner and the command line's other Beam options
    (--project, --region, --temp_location, --direct_num_workers, ...), under their own names.
    Beam's SDK workers log warnings and errors only unless --default_sdk_harness_log_level says
    otherwise."""
    from apache_beam.options.pipeline_options import PipelineOptions

    quiet = ([] if any(a.startswith("--default_sdk_harness_log_level") for a in beam_args)
             else ["--default_sdk_harness_log_level=WARNING"])
    return PipelineOptions([f"--runner={runner}", *quiet, *beam_args])


def make_pipeline(pipeline_options):
    """A Beam pipeline on the options' runner. For DirectRunner, Beam's Python FnApiRunner, which
    the DirectRunner would otherwise pick only after trying to download its Go runner (Prism),
    which ignores --direct_num_workers and --direct_running_mode: no network, and the worker
    processes asked for."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    if pipeline_options.get_all_options().get("runner") not in (None, "DirectRunner"):
        return beam.Pipeline(options=pipeline_options)
    encoded = JobServiceHandle.encode_pipeline_options(pipeline_options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision),
                         options=pipeline_options)
