"""CLI: convert BERT checkpoints between google-research TF1, Hugging Face and bert_tf.

    python -m bert_tf.convert_checkpoint --input_format=google_tf1 \
        --input=uncased_L-12_H-768_A-12/bert_model.ckpt \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=huggingface --input=bert-base-uncased/ \
        --output_format=bert_tf --output=checkpoints/bert_base_uncased
    python -m bert_tf.convert_checkpoint --input_format=bert_tf --input=runs/base \
        --output_format=huggingface --output=hf/my-bert

Inputs: google_tf1 (a checkpoint prefix or its directory, bert_config.json and vocab.txt beside
it), huggingface (a directory with config.json, model.safetensors or its shards, vocab.txt,
tokenizer_config.json; read with safetensors' numpy API, no torch), bert_tf (a checkpoint or a
run directory). Outputs: bert_tf (ckpt-0 + bert_config.json + vocab.txt + run_config.json: use it
as --init_checkpoint=DIR/ckpt-0 of run_pretraining / run_classifier, or --output_dir of export),
huggingface (BertForPreTraining safetensors; BertModel loads it too), google_tf1
(bert_model.ckpt). The pooler and the pretraining heads are converted too; where the source has
none they are freshly initialised, and the report says so. Optimizer slots and other unused
source variables are skipped and counted. See bert_tf/checkpoints.py for the name maps.
"""

import os
import sys

from absl import app, flags

from bert_tf.checkpoint_formats import (read_bert_tf, read_google_tf1, read_huggingface,
                                        write_bert_tf, write_google_tf1, write_huggingface)
from bert_tf import features
from bert_tf.checkpoints import assign_to_pretrainer, check_tensors, pretrainer_tensors

FLAGS = flags.FLAGS

READERS = {"google_tf1": read_google_tf1, "huggingface": read_huggingface,
           "bert_tf": read_bert_tf}
OUTPUT_FORMATS = ("bert_tf", "huggingface", "google_tf1")


def convert(input_format, input_path, output_format, output_dir, bert_config_file=None,
            vocab_file=None, do_lower_case=None, overwrite=False, log=print) -> dict:
    """Reads a checkpoint, checks it against its config through our model, writes it in
    `output_format` to `output_dir` (a temporary directory renamed when complete); returns
    and logs a report: variables converted, parts freshly initialised, source variables skipped."""
    import keras
    import tensorflow as tf

    from bert_tf.pretraining_model import build_pretrainer
    from bert_tf.tokenization import load_vocab

    if input_format not in READERS or output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--input_format must be one of {', '.join(READERS)} and "
                         f"--output_format one of {', '.join(OUTPUT_FORMATS)}; got "
                         f"{input_format!r}, {output_format!r}")
    if tf.io.gfile.exists(output_dir) and not overwrite:
        raise FileExistsError(f"--output {output_dir} exists; pass --overwrite to replace it")
    source = READERS[input_format](input_path, bert_config_file, vocab_file, do_lower_case)
    config, notes = source.config, list(source.notes)
    vocab = load_vocab(source.vocab_file)
    if len(vocab) > config.vocab_size:
        raise ValueError(f"{source.vocab_file} has {len(vocab)} tokens, more than the config's "
                         f"vocab_size={config.vocab_size}")
    absent = check_tensors(source.tensors, config, input_path,
                           lambda name: source.source_names.get(name, name))
    keras.utils.set_random_seed(0)  # the freshly initialised parts, if any
    pretrainer = build_pretrainer(config)
    assign_to_pretrainer(pretrainer, source.tensors)

    output_dir = os.path.normpath(output_dir)
    parent = os.path.dirname(os.path.abspath(output_dir))
    tmp = os.path.join(parent, f".{os.path.basename(output_dir)}.tmp-{os.getpid()}")
    with features.directory_written_atomically(output_dir, tmp):
        tf.io.gfile.copy(source.vocab_file, os.path.join(tmp, "vocab.txt"))
        if output_format == "bert_tf":
            write_bert_tf(pretrainer, tmp, source.do_lower_case,
                          {"format": input_format, "path": os.path.abspath(input_path)})
        elif output_format == "huggingface":
            write_huggingface(pretrainer_tensors(pretrainer), config, vocab,
                              source.do_lower_case, tmp)
        else:
            notes += write_google_tf1(pretrainer_tensors(pretrainer), config, tmp)

    report = {"converted": len(source.tensors), "freshly_initialized": absent,
              "skipped": len(source.skipped), "skipped_examples": source.skipped[:5],
              "do_lower_case": source.do_lower_case, "notes": notes}
    log(f"{input_format} {input_path} -> {output_format} {output_dir}: "
        f"{len(source.tensors)} variables converted")
    for part in absent:
        log(f"  the source has no {part}: it is freshly initialised")
    if source.skipped:
        log(f"  skipped {len(source.skipped)} source variable(s) that bert_tf does not use, "
            f"e.g. {', '.join(source.skipped[:3])}")
    for note in notes:
        log(f"  {note}")
    return report



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


def main(argv):
    del argv
    try:
        convert(FLAGS.input_format, FLAGS.input, FLAGS.output_format, FLAGS.output,
                bert_config_file=FLAGS.bert_config_file, vocab_file=FLAGS.vocab_file,
                do_lower_case=FLAGS.do_lower_case, overwrite=FLAGS.overwrite)
    except (ValueError, OSError) as e:  # ConfigError and VocabError are ValueErrors
        sys.exit(f"convert_checkpoint: error: {e}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
