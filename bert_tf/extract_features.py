"""CLI: per-token (or pooled) vectors of chosen encoder layers for every line of a text file.

    python -m bert_tf.extract_features --input_file=input.txt --output_file=features.jsonl \
        --init_checkpoint=runs/base --layers=-1,-2,-3,-4 --max_seq_length=128 --batch_size=32

google-research/bert's extract_features.py flags and JSON lines (`text_a ||| text_b` for a pair);
`--output_format=npz|tfrecord` with `--pooling=none|cls|mean` write compact arrays instead. The
encoder comes from --init_checkpoint (a bert_tf checkpoint or run directory, pretrained or
finetuned) or --encoder_saved_model (an encoder export). See `bert_tf.export.features`.
"""

import dataclasses

from bert_tf import cli
from bert_tf.export.features import FORMATS, POOLINGS, FeatureOptions, check_paths, extract
from bert_tf.finetuning.encoder_source import encoder_source, load_encoder, source_vocab
from bert_tf.finetuning.job_settings import EncoderSettings
from bert_tf.settings import setting


@dataclasses.dataclass(frozen=True)
class FeatureConfig(EncoderSettings):
    """The settings of a feature-extraction job (the command line's flags)."""
    input_file: str = setting(None, "Text file: one text per line, or `text_a ||| text_b`.",
                              required=True)
    output_file: str = setting(None, "Where the features go.", required=True)
    layers: str = setting("-1,-2,-3,-4", "Comma list of encoder layers (-1: the last).")
    max_seq_length: int = setting(128, "Tokens per line (longer lines are cut).", above=2)
    batch_size: int = setting(32, "Lines per batch.", above=0)
    output_format: str = setting("jsonl", "jsonl (google's layout), npz or tfrecord.",
                                 choices=FORMATS)
    pooling: str = setting("none", "none: every token's vector; cls: the [CLS] vector; mean: "
                                   "the mean over the line's tokens.",
                           choices=POOLINGS)


def run(config: FeatureConfig, log=print):
    """Loads the encoder and writes the features; returns the number of lines."""
    from bert_tf.text.preprocessing import Preprocessor

    check_paths(config.input_file, config.output_file)
    source = encoder_source(config)
    vocab = source_vocab(source, config.allow_case_mismatch)
    source.check_sequence_length(config.max_seq_length)
    encoder = load_encoder(source)
    preprocessor = Preprocessor(vocab, source.do_lower_case, config.max_seq_length)
    return extract(encoder, preprocessor, config.input_file, config.output_file,
                   FeatureOptions(config.layers, config.batch_size, config.output_format,
                                  config.pooling), log)


@cli.reports_errors("extract_features")
def main(argv):
    del argv
    run(cli.from_flags(FeatureConfig))


SETTINGS = (FeatureConfig,)  # the flags

if __name__ == "__main__":
    cli.start(main, SETTINGS)
