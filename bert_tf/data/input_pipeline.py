"""Pretraining TFRecord shards -> tf.data, per worker, as (features, labels) for the pretrainer.

    features  input_word_ids, input_mask, input_type_ids, masked_lm_positions   int32 [B, T|P]
    labels    masked_lm_ids int32 [B, P], masked_lm_weights float32 [B, P],
              next_sentence_labels int32 [B, 1]

The shards are ours or google-research/bert's (the same schema), or the Model Garden's with its
v2 feature names (`input_word_ids`, `input_type_ids`). Before training, `check_data`
compares the data with the flags: the manifest beside shards made by bert_tf, else the first
record's shapes.
"""

import dataclasses
import os
from typing import Any

import tensorflow as tf
from absl import logging

from bert_tf import io
from bert_tf.data import masking
from bert_tf.data import packing as packing_lib
from bert_tf.data import schema

# google's feature names -> the model's (TF Hub) input names
FEATURE_TO_INPUT = {"input_ids": "input_word_ids", "input_mask": "input_mask",
                    "segment_ids": "input_type_ids", "masked_lm_positions": "masked_lm_positions"}
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


class DataMismatchError(ValueError):
    """The data does not fit the flags (or a shard is unreadable); the message says how."""


def check_data(files, max_seq_length, max_predictions_per_seq, flag="--input_file"):
    """Returns the manifest (or None for foreign data) after checking the data against the flags:
    every data set `files` draw from is complete (its manifest's shards, or all N of names
    `-of-N`), its vocab is the one recorded, and its lengths are the flags'."""
    missing = schema.missing_shards(files)
    if missing:
        raise DataMismatchError(
            f"{flag}: incomplete data set: {len(missing)} shard(s) missing "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); was its creation "
            f"interrupted? Run it again")
    first_manifest, maskings = None, set()
    for prefix in dict.fromkeys(schema.dataset_prefix(f) for f in files):
        manifest = _check_data_set(prefix, [f for f in files
                                            if schema.dataset_prefix(f) == prefix],
                                   (max_seq_length, max_predictions_per_seq), flag)
        if first_manifest is None and manifest is not None:
            first_manifest = manifest
        elif manifest is not None and manifest["vocab"]["sha256"] != first_manifest["vocab"][
                "sha256"]:
            raise DataMismatchError(f"{flag}: {prefix} was made with another vocab than "
                                    f"the data before it")
        maskings.add(masking.is_dynamic(manifest))
    if len(maskings) > 1:
        raise DataMismatchError(f"{flag}: mixes data sets with static masks and data sets made "
                                f"with --dynamic_masking; train on one kind at a time")
    return first_manifest


def data_vocab_file(files):
    """The vocab beside the first of `files`' data sets that has a manifest (checked), or None."""
    for prefix in dict.fromkeys(schema.dataset_prefix(f) for f in files):
        manifest_file = schema.manifest_path(prefix)
        if tf.io.gfile.exists(manifest_file):
            return schema.manifest_vocab_file(manifest_file, schema.read_manifest(manifest_file))
    return None


def _check_data_set(prefix, files, asked, flag):
    manifest_file = schema.manifest_path(prefix)
    manifest = None
    if tf.io.gfile.exists(manifest_file):
        manifest = schema.read_manifest(manifest_file)
        held = (manifest["max_seq_length"], manifest["max_predictions_per_seq"])
        source = manifest_file
        directory = os.path.dirname(manifest_file)
        absent = [shard["file"] for shard in manifest["shards"]
                  if not tf.io.gfile.exists(io.file_in(directory, shard["file"], manifest_file))]
        if absent:
            raise DataMismatchError(f"{flag}: {manifest_file} lists shards that are gone: "
                                    f"{', '.join(absent[:3])}")
        schema.manifest_vocab_file(manifest_file, manifest)
    else:  # e.g. made by google's script: trust the first record
        try:
            held = schema.infer_lengths(files[0])
        except (ValueError, tf.errors.OpError) as e:
            raise DataMismatchError(f"{flag}: cannot read {files[0]}: {e}") from None
        source = f"{files[0]} (first record; no manifest)"
    if held != asked:
        raise DataMismatchError(
            f"{flag}: the data holds max_seq_length={held[0]}, max_predictions_per_seq="
            f"{held[1]} ({source}), but the flags ask --max_seq_length={asked[0]} "
            f"--max_predictions_per_seq={asked[1]}")
    if not masking.is_dynamic(manifest) and not _has_masks(files[0], *asked):
        why = (f"its manifest {manifest_file} says its masks are static" if manifest
               else f"no manifest {manifest_file} lies beside it")
        raise DataMismatchError(
            f"{flag}: {files[0]} holds no masked positions (masked_lm_weights all 0 in its first "
            f"records) and {why}: shards made with --dynamic_masking are masked as read, by the "
            f"rules in their manifest; put the manifest made with them back")
    return manifest


def _has_masks(path, max_seq_length, max_predictions_per_seq, records=64) -> bool:
    """Whether the first `records` examples of `path` have any masked position."""
    try:
        first = first_records(path, records, max_seq_length, max_predictions_per_seq)
    except tf.errors.OpError:
        return True  # damaged: reading it for training names the corrupt shard
    # empty: nothing to say here
    return first is None or bool(tf.reduce_any(first[1]["masked_lm_weights"] > 0))


def first_records(path, count, max_seq_length, max_predictions_per_seq):
    """(features, labels) of the first `count` records of `path`, decoded; None if it has none."""
    dataset = tf.data.TFRecordDataset(path, compression_type=schema.compression_type(path))
    for batch in dataset.take(count).batch(count):
        return decode(batch, max_seq_length, max_predictions_per_seq)
    return None


def largest_token_id(files, max_seq_length, max_predictions_per_seq, examples=1000) -> int:
    """The largest token id among the first `examples` records of (up to 8) files (input_ids and
    masked_lm_ids): checks data without a manifest against the config's vocab_size."""
    largest = 0
    for path in files[:8]:
        first = first_records(path, examples, max_seq_length, max_predictions_per_seq)
        if first is not None:
            inputs, labels = first
            largest = max(largest, int(tf.reduce_max(inputs["input_word_ids"])),
                          int(tf.reduce_max(labels["masked_lm_ids"])))
    return largest


def decode(serialized, max_seq_length, max_predictions_per_seq):
    """A batch of serialized examples -> (features, labels) with the model's names and int32.

    tf.Example only has int64, but TPUs want int32 (as google's input_fn says).
    """
    parsed = schema.merge_names(tf.io.parse_example(
        serialized, schema.feature_spec(max_seq_length, max_predictions_per_seq,
                                        either_names=True)))
    parsed = {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in parsed.items()}
    inputs = {name: parsed[feature] for feature, name in FEATURE_TO_INPUT.items()}
    return inputs, {name: parsed[name] for name in LABELS}


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How `make_dataset` reads, masks, packs and serves its files (see its docstring)."""
    is_training: bool = True  # repeat and shuffle; else one pass in file order
    seed: int | None = None
    shuffle_buffer: int = 10_000
    packing: tuple | None = None  # (max_sequences_per_row, max_predictions_per_row)
    packing_window: int = 1024
    masking_rules: Any = None  # bert_tf.data.masking rules for dynamic data
    skip_batches: int = 0
    reshuffle: bool = True
    data_service: str | None = None  # grpc://HOST:PORT of a tf.data service dispatcher
    job_name: str = "bert_tf"


def make_dataset(files, batch_size, max_seq_length, max_predictions_per_seq,
                 options: PipelineOptions = PipelineOptions(), input_context=None):
    """A dataset of (features, labels) batches of `batch_size` (per replica when
    `input_context` is given, as `strategy.distribute_datasets_from_function` passes it), read
    as `options` say.

    `masking_rules` (bert_tf.data.masking) masks unmasked (dynamic) data as it is read, each
    batch (or packing window) by the seed and its number in this pipeline's stream.

    The stream is a function of the files, the seed and the settings alone, so `skip_batches`
    resumes it exactly: a resumed run skips the batches its steps so far consumed and goes on
    with the one that would have come next. Unpacked, the skipped batches are only read and
    shuffled, not decoded or masked; packed, they are packed (rows are shuffled after packing).

    `packing` = (max_sequences_per_row, max_predictions_per_row) packs the examples of each
    window of `packing_window` into rows (bert_tf.data.packing); batches are then of rows.

    Each input pipeline (host) reads its own share of the files, so the number of files should
    be a multiple of the number of hosts; with fewer files than hosts, each host reads them all
    and keeps its share of the records. Training repeats and shuffles (files, then examples);
    batches drop the remainder, as TPUs need static shapes. `reshuffle=False` keeps one order
    for every pass and every iterator (evaluation: each sees the same batches).

    `data_service` ("grpc://HOST:PORT", a tf.data service dispatcher) moves the reading,
    decoding, masking and packing to the service's workers, in distributed_epoch mode: the
    workers split the files among them and every consumer of job `job_name` (each host's
    pipeline) takes the next batch any worker has ready. Each example is still read once per
    pass over the data, but the order depends on the workers' timing, so the stream is not
    reproducible: masks of dynamic data are drawn from a random seed, not the batch's number,
    and `skip_batches` cannot resume it exactly (it is ignored).
    """
    is_training, seed, packing, data_service = (options.is_training, options.seed,
                                                options.packing, options.data_service)
    skip_batches, reshuffle = options.skip_batches, options.reshuffle
    files = list(files)
    if data_service:  # the service splits the files among its workers: no sharding here
        input_context, skip_batches = None, 0
    hosts = input_context.num_input_pipelines if input_context else 1
    if len(files) % hosts:
        logging.warning(
            "%d files for %d hosts: %s Make the number of shards a multiple of %d.", len(files),
            hosts, "some hosts read one file more than others, so their examples come more "
            "often." if len(files) > hosts else f"every host reads all of them and keeps every "
            f"{hosts}th record ({hosts}x the reading).", hosts)
    # each file with its own compression: a glob may match gzipped and plain data sets
    dataset = tf.data.Dataset.from_tensor_slices(
        (files, schema.compression_types(files)))
    if input_context and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            dataset = dataset.shard(input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
        else:  # fewer files than workers: every worker reads all, keeping its share of records
            dataset = dataset.flat_map(_records).shard(input_context.num_input_pipelines,
                                                       input_context.input_pipeline_id)
            files = ()
    if files:
        if is_training:
            dataset = dataset.shuffle(len(files), seed=seed,
                                      reshuffle_each_iteration=reshuffle).repeat()
        dataset = dataset.interleave(
            _records, cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=seed is not None or not is_training)
    if is_training:
        dataset = dataset.shuffle(options.shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=reshuffle).repeat()
    masker = masking.Masker(options.masking_rules) if options.masking_rules else None
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline = input_context.input_pipeline_id if input_context else 0

    def decode_batch(number, serialized):
        features, labels = decode(serialized, max_seq_length, max_predictions_per_seq)
        if masker is not None:  # this batch's own random stream: (seed, its number)
            features, labels = masker(features, labels, tf.stack(
                [tf.constant(seed or 0, tf.int64), number * pipelines + pipeline]))
        return features, labels

    if packing:
        dataset = _numbered(dataset.batch(options.packing_window), data_service)
        dataset = dataset.map(decode_batch, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = packing_lib.pack_windows(dataset, *packing)
        if is_training:
            dataset = dataset.shuffle(options.packing_window, seed=seed)
        dataset = dataset.batch(batch_size, drop_remainder=True).skip(skip_batches)
    else:
        dataset = _numbered(dataset.batch(batch_size, drop_remainder=True),
                            data_service).skip(skip_batches)
        dataset = dataset.map(decode_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if data_service:
        dataset = dataset.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=data_service, job_name=options.job_name))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _numbered(dataset, data_service):
    """(number, batch) pairs: the batch's number in the stream, which seeds its masks; through
    a tf.data service (which cannot split `enumerate`), a random number instead."""
    if not data_service:
        return dataset.enumerate()
    return dataset.map(lambda batch: (tf.random.uniform((), maxval=2 ** 62, dtype=tf.int64),
                                      batch))


def _records(path, compression):
    return tf.data.TFRecordDataset(path, compression_type=compression)


def find_corrupt_shard(files):
    """The first file that cannot be read to the end, or None (run after a DataLossError)."""
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=schema.compression_type(
                    path)):
                pass
        except tf.errors.OpError:
            return path
    return None
