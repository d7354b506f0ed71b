"""CLI: SavedModels for finetuning (TF Hub style) and for TF Serving (text in).

    python -m bert_tf.export --output_dir=runs/base --export_dir=exports [--model_name=bert]
    python -m bert_tf.export --checkpoint=runs/base/ckpt-1000 --export_dir=exports \
        [--bert_config_file=... --vocab_file=... --do_lower_case=true] --max_seq_length=128

writes <model_name>_encoder, <model_name>_preprocessor and <model_name> under
<export_dir>/<name>/<version>/ (the version one above the highest present unless --version is
given), each written to a temporary directory and renamed when complete; see bert_tf/export/.
The config, vocab and lower-casing default to those of the checkpoint's run directory. A
finetuned run (run_squad, run_tagging, or a converted Hugging Face BertForQuestionAnswering or
BertForTokenClassification) gets its task's text-in SavedModel instead.
"""

from absl import flags

from bert_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("output_dir", None, "A run_pretraining output_dir (config, vocab, "
                        "checkpoints).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint prefix (default: the run's latest).")
    flags.DEFINE_string("bert_config_file", None, "Default: bert_config.json of the run.")
    flags.DEFINE_string("vocab_file", None, "Default: vocab.txt of the run.")
    flags.DEFINE_bool("do_lower_case", None, "Default: as recorded in the run.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the text-in models (a "
                         "question-answering window).")
    flags.DEFINE_string("export_dir", None, "Where <model_name>/<version>/ go.", required=True)
    flags.DEFINE_string("model_name", None, "Model name (directory) for TF Serving; default: "
                        "bert, or squad / tagger for a finetuned run.")
    flags.DEFINE_integer("version", None, "Version number; default: one above the highest.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version.")


@cli.reports_errors("export")
def main(argv):
    del argv
    from bert_tf import run_dir
    from bert_tf.export.runs import export_run

    files = run_dir.resolve(FLAGS.checkpoint, FLAGS.output_dir, FLAGS.bert_config_file,
                            FLAGS.vocab_file, FLAGS.do_lower_case)
    paths = export_run(files, FLAGS.export_dir, FLAGS.max_seq_length, FLAGS.model_name,
                       FLAGS.version, FLAGS.overwrite)
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
