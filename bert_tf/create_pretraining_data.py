"""CLI: text files -> pretraining TFRecord shards in google-research/bert's schema.

    python -m bert_tf.create_pretraining_data --input_file='corpus/*.txt' \
        --output_file=tfrecords/wiki --vocab_file=vocab.txt --do_lower_case=true \
        --max_seq_length=128 --max_predictions_per_seq=20 --num_shards=8 --num_workers=2
    # the same, as an Apache Beam pipeline (pip install .[beam]); Beam's own options pass through
    python -m bert_tf.create_pretraining_data ... --runner=DataflowRunner --project=P \
        --region=us-central1 --temp_location=gs://B/tmp --extra_package=dist/bert_tf-0.1.0-py3-none-any.whl
    # several corpora mixed by google's exponentially smoothed weights (bert_tf/data/mixing.py)
    python -m bert_tf.create_pretraining_data --corpus='wiki:text/wiki/*' \
        --corpus='books:text/books/*' --sampling_exponent=0.7 --output_file=... ...

The flags are the fields of `bert_tf.data.writer.DataCreationConfig` (and its InstanceOptions);
how the data is made is described in bert_tf/data/writer.py, bert_tf/data/instances.py and
bert_tf/data/beam_pipeline.py. Both paths write the same examples for the same flags.
"""

import dataclasses
import logging

from absl import flags

from bert_tf import cli, io
from bert_tf.data.writer import DataCreationConfig, create_pretraining_data
from bert_tf.settings import Settings, setting

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class RunnerConfig(Settings):
    """Where the job runs (a flag of the command line, beside DataCreationConfig's)."""
    runner: str | None = setting(None, "Run as an Apache Beam pipeline on this runner "
                                       "(DirectRunner, DataflowRunner, FlinkRunner, "
                                       "SparkRunner); Beam's other options (--project, "
                                       "--region, --temp_location, --direct_num_workers, ...) "
                                       "pass through. Default: this machine's worker processes "
                                       "(--num_workers).")



def parse_flags(argv):
    """absl's flags; what it does not know is left for Beam (checked in main)."""
    return FLAGS(argv, known_only=True)


@cli.reports_errors("create_pretraining_data")
def main(argv):
    beam_args = argv[1:]
    config = cli.from_flags(DataCreationConfig)
    runner = cli.from_flags(RunnerConfig).runner
    if runner:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)  # Beam's INFO lines
        from bert_tf.data.beam_pipeline import create_pretraining_data_beam, pipeline_options
        if FLAGS["num_workers"].present:  # Beam's own flag of that name: the runner's workers
            beam_args.append(f"--num_workers={FLAGS.num_workers}")
        summary = create_pretraining_data_beam(config, pipeline_options(runner, beam_args))
    elif beam_args:
        raise ValueError(f"unknown flag(s) {' '.join(beam_args)} (Beam's options need --runner)")
    else:
        summary = create_pretraining_data(config)
    print(f"Wrote {summary['examples']:,} examples from {summary['documents']:,} documents "
          f"({summary['bytes'] / 1e6:.2f} MB, {summary['tokens']:,} tokens) to "
          f"{len(summary['shards'])} shard(s) in {summary['seconds']:.1f}s: "
          f"{summary['mb_per_second']:.2f} MB/s, {summary['examples_per_second']:,.0f} "
          f"examples/s; random next {summary['random_next'] / summary['examples']:.1%}, "
          f"{summary['masked'] / summary['examples']:.1f} predictions per example.")
    print(f"Manifest: {summary['manifest']}")
    for name, corpus in io.read_json(summary["manifest"]).get("corpora", {}).items():
        print(f"  corpus {name}: {corpus['share']:.2%} of the text (requested "
              f"{corpus['requested']:.2%}), {corpus['example_share']:.2%} of the examples")
    if "buffers" in summary:
        print(f"{summary['runner']}: {summary['units']:,} unit(s) of input, {summary['buffers']:,} "
              f"buffer(s), {summary['buffer_seconds'] / summary['buffers']:.2f}s of work per "
              f"buffer on average")
    if "peak_rss_mb" in summary:
        workers = (f", largest worker {summary['peak_worker_rss_mb']:,.0f} MB"
                   if runner or config.num_workers > 1 else "")
        print(f"Peak RSS: main {summary['peak_rss_mb']:,.0f} MB{workers}")


SETTINGS = (DataCreationConfig, RunnerConfig)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS, flags_parser=parse_flags)
