"""CLI: convert BERT checkpoints between google-research TF1, Hugging Face, keras-hub and bert_tf;
read TF Hub SavedModels and Model Garden TF2 checkpoints.

    python -m bert_tf.convert_checkpoint --input_format=google_tf1 \
        --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=huggingface --input=bert-base-uncased/ \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=bert_tf --input=runs/base \
        --output_format=huggingface --output=hf/my-bert
    python -m bert_tf.convert_checkpoint --input_format=bert_tf --input=runs/sst2 \
        --output_format=keras_hub --output=presets/sst2
    python -m bert_tf.convert_checkpoint --input_format=tf_hub \
        --input=bert_en_uncased_L-12_H-768_A-12_4 --output_format=bert_tf --output=ckpt/base
    python -m bert_tf.convert_checkpoint --input_format=tf_models --input=model_dir \
        --output_format=bert_tf --output=ckpt/mine
    python -m bert_tf.convert_checkpoint --input_format=huggingface --input=my-modernbert/ \
        --output_format=bert_tf --output=ckpt/my_modernbert

Use a bert_tf output as --init_checkpoint=DIR/ckpt-0 of run_pretraining / run_classifier, or
--output_dir of export. The pooler and the pretraining heads are converted too; where the source
has none they are freshly initialised, and the report says so. Optimizer slots and other unused
source variables are skipped and counted. See bert_tf/checkpoints/ for the formats and name maps.
"""

import dataclasses

from bert_tf import cli
from bert_tf.checkpoints.convert import OUTPUT_FORMATS, READERS, Given, convert
from bert_tf.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class ConversionConfig(Settings):
    """The settings of a conversion (the command line's flags)."""
    input_format: str = setting(None, "Format of --input.", choices=READERS, required=True)
    input: str = setting(None, "Checkpoint prefix or directory to convert.", required=True)
    output_format: str = setting(None, "Format to write.", choices=OUTPUT_FORMATS, required=True)
    output: str = setting(None, "Directory to write (must not exist without --overwrite).",
                          required=True)
    bert_config_file: str | None = setting(None, "Default: the one beside --input "
                                                 "(bert_config.json; config.json for "
                                                 "huggingface; bert_config.json or "
                                                 "params.yaml for tf_models; tf_hub reads the "
                                                 "SavedModel's own).")
    vocab_file: str | None = setting(None, "Default: vocab.txt beside --input (tf_hub: the "
                                           "SavedModel's assets/vocab.txt; a preprocessor "
                                           "SavedModel's directory may be given).")
    do_lower_case: bool | None = setting(None, "Default: recorded by the source "
                                               "(tokenizer_config.json, run_config.json, a TF "
                                               "Hub SavedModel's do_lower_case), else "
                                               "inferred from the vocab's letter case.")
    overwrite: bool = setting(False, "Replace an existing --output.")


@cli.reports_errors("convert_checkpoint")
def main(argv):
    del argv
    config = cli.from_flags(ConversionConfig)
    convert(config.input_format, config.input, config.output_format, config.output,
            Given(config.bert_config_file, config.vocab_file, config.do_lower_case),
            overwrite=config.overwrite)


SETTINGS = (ConversionConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
