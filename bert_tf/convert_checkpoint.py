"""CLI: convert BERT checkpoints between google-research TF1, Hugging Face and bert_tf.

    python -m bert_tf.convert_checkpoint --input_format=google_tf1 \
        --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=huggingface --input=bert-base-uncased/ \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=bert_tf --input=runs/base \
        --output_format=huggingface --output=hf/my-bert

Use a bert_tf output as --init_checkpoint=DIR/ckpt-0 of run_pretraining / run_classifier, or
--output_dir of export. The pooler and the pretraining heads are converted too; where the source
has none they are freshly initialised, and the report says so. Optimizer slots and other unused
source variables are skipped and counted. See bert_tf/checkpoints/ for the formats and name maps.
"""

from absl import flags

from bert_tf import cli
from bert_tf.checkpoints.convert import OUTPUT_FORMATS, READERS, convert

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("input_format", None, list(READERS), "Format of --input.")
    flags.DEFINE_string("input", None, "Checkpoint prefix or directory to convert.")
    flags.DEFINE_enum("output_format", None, list(OUTPUT_FORMATS), "Format to write.")
    flags.DEFINE_string("output", None, "Directory to write (must not exist without --overwrite).")
    flags.DEFINE_string("bert_config_file", None, "Default: the one beside --input "
                        "(bert_config.json; config.json for huggingface).")
    flags.DEFINE_string("vocab_file", None, "Default: vocab.txt beside --input.")
    flags.DEFINE_bool("do_lower_case", None, "Default: recorded by the source (tokenizer_config."
                      "json, run_config.json), else inferred from the vocab's letter case.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
    for name in ("input_format", "input", "output_format", "output"):
        flags.mark_flag_as_required(name)


@cli.reports_errors("convert_checkpoint")
def main(argv):
    del argv
    convert(FLAGS.input_format, FLAGS.input, FLAGS.output_format, FLAGS.output,
            bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
            do_lower_case=FLAGS.do_lower_case, overwrite=FLAGS.overwrite)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
