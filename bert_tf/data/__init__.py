"""Pretraining data: text -> instances -> TFRecord shards -> tf.data.

  schema.py          THE TFRecord format (google-research/bert's), shard names, the manifest
  instances.py       documents -> NSP pairs + masking (pure numpy, seedable)
  writer.py          text files -> shards, on local worker processes
  input_pipeline.py  shards -> tf.data batches for the model, data checks
  inspection.py      decode and count what shards hold
  sample_corpus.py   real English text from Python's own documentation
  sample_data.py     the embedded default's vocab and shards, made once
"""
