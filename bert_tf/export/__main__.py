"""CLI: SavedModels for finetuning (TF Hub style) and for TF Serving (text in).

    python -m bert_tf.export --output_dir=runs/base --export_dir=exports [--model_name=bert]
    python -m bert_tf.export --checkpoint=runs/base/ckpt-1000 --export_dir=exports \
        [--bert_config_file=... --vocab_file=... --do_lower_case=true] --max_seq_length=128

writes <model_name>_encoder, <model_name>_preprocessor and <model_name> under
<export_dir>/<name>/<version>/ (the version one above the highest present unless --version is
given), each written to a temporary directory and renamed when complete; see bert_tf/export/.
The config, vocab and lower-casing default to those of the checkpoint's run directory. A
finetuned run (run_classifier, run_squad, run_tagging, or a converted Hugging Face
BertForSequenceClassification, BertForQuestionAnswering or BertForTokenClassification) gets its
task's text-in SavedModel instead. --format=litert and --format=onnx write LiteRT and ONNX
models instead (bert_tf/export/litert.py, onnx.py).
"""

import dataclasses

from bert_tf import cli
from bert_tf.export.runs import FORMATS
from bert_tf.settings import Settings, setting
from bert_tf.training.precision import SERVING_HELP, SERVING_POLICIES


@dataclasses.dataclass(frozen=True)
class ExportConfig(Settings):
    """The settings of an export (the command line's flags)."""
    output_dir: str | None = setting(None, "A run directory: run_pretraining's or a finetuning "
                                           "job's output_dir (config, vocab, checkpoints).")
    checkpoint: str | None = setting(None, "A checkpoint prefix, or best: the run's best "
                                           "evaluated model (OUTPUT_DIR/best/); default: the "
                                           "run's latest.")
    bert_config_file: str | None = setting(None, "Default: bert_config.json of the run.")
    vocab_file: str | None = setting(None, "Default: vocab.txt of the run.")
    do_lower_case: bool | None = setting(None, "Default: as recorded in the run.")
    max_seq_length: int | None = setting(None, "Sequence length of the text-in models (a "
                                              "question-answering window); default: the run's "
                                              "own --max_seq_length, else 128.", minimum=1)
    export_dir: str = setting(None, "Where <model_name>/<version>/ go.", required=True)
    model_name: str | None = setting(None, "Model name (directory) for TF Serving; default: "
                                           "bert, or classifier / squad / tagger for a "
                                           "finetuned run.")
    version: int | None = setting(None, "Version number; default: one above the highest.",
                                  minimum=1)
    overwrite: bool = setting(False, "Replace an existing version.")
    format: str = setting("saved_model", "saved_model: SavedModels for TF Serving and "
                                         "finetuning; litert: model.tflite and "
                                         "model_int8.tflite for LiteRT (text in for a "
                                         "classifier, ids in otherwise); onnx: model.onnx, "
                                         "ids in.",
                          choices=tuple(FORMATS))
    serving_precision: str = setting("float32", SERVING_HELP + " saved_model only: LiteRT "
                                     "and ONNX models are float32 (and LiteRT's int8).",
                                     choices=tuple(SERVING_POLICIES))

    def check(self):
        if self.serving_precision != "float32" and not FORMATS[self.format].bfloat16:
            return [f"--serving_precision={self.serving_precision} is for --format="
                    f"saved_model; --format={self.format} writes float32 models"]
        return []


@cli.reports_errors("export")
def main(argv):
    del argv
    from bert_tf import run_dir
    from bert_tf.export.runs import export_run

    config = cli.from_flags(ExportConfig)
    files = run_dir.resolve(config.checkpoint, config.output_dir, config.bert_config_file,
                            config.vocab_file, config.do_lower_case)
    paths = export_run(files, config.export_dir, config.max_seq_length, config.model_name,
                       config.version, config.overwrite, config.format,
                       config.serving_precision)
    for name, path in paths.items():
        print(f"{name}: {path}")


SETTINGS = (ExportConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
