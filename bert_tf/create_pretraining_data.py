"""CLI: text files -> pretraining TFRecord shards in google-research/bert's schema.

    python -m bert_tf.create_pretraining_data --input_file='corpus/*.txt' \
        --output_file=tfrecords/wiki --vocab_file=vocab.txt --do_lower_case=true \
        --max_seq_length=128 --max_predictions_per_seq=20 --num_shards=8 --num_workers=2

The flags are the fields of `bert_tf.data.writer.DataCreationConfig` (and its InstanceOptions);
how the data is made is described in bert_tf/data/writer.py and bert_tf/data/instances.py.
"""

from absl import app

from bert_tf import cli
from bert_tf.data.writer import DataCreationConfig, create_pretraining_data


@cli.reports_errors("create_pretraining_data")
def main(argv):
    del argv
    config = cli.from_flags(DataCreationConfig)
    summary = create_pretraining_data(config)
    print(f"Wrote {summary['examples']:,} examples from {summary['documents']:,} documents "
          f"({summary['bytes'] / 1e6:.2f} MB, {summary['tokens']:,} tokens) to "
          f"{len(summary['shards'])} shard(s) in {summary['seconds']:.1f}s: "
          f"{summary['mb_per_second']:.2f} MB/s, {summary['examples_per_second']:,.0f} "
          f"examples/s; random next {summary['random_next'] / summary['examples']:.1%}, "
          f"{summary['masked'] / summary['examples']:.1f} predictions per example.")
    print(f"Manifest: {summary['manifest']}")
    workers = (f", largest worker {summary['peak_worker_rss_mb']:,.0f} MB"
               if config.num_workers > 1 else "")
    print(f"Peak RSS: main {summary['peak_rss_mb']:,.0f} MB{workers}")


if __name__ == "__main__":
    cli.define_flags(DataCreationConfig)
    app.run(main)
