"""Converting a checkpoint between formats, through our model (which checks every shape):

    convert("google_tf1", "uncased_L-12_H-768_A-12/bert_model.ckpt", "bert_tf", "ckpt/base")

Inputs: google_tf1 (a checkpoint prefix or its directory, bert_config.json and vocab.txt beside
it), huggingface (a directory with config.json, model.safetensors or its shards, vocab.txt,
tokenizer_config.json), keras_hub (a preset directory), tf_hub (a TF Hub BERT encoder
SavedModel, TF2 or TF1 Hub layout), tf_models (a Model Garden TF2 checkpoint with its
bert_config.json or params.yaml), bert_tf (a checkpoint or a run directory). Outputs: bert_tf (ckpt-0 and a run directory's files), huggingface
(BertForPreTraining safetensors; BertModel loads it too), google_tf1 (bert_model.ckpt),
keras_hub (a BertBackbone or BertTextClassifier preset). A ModernBERT (a Hugging Face directory
of model_type "modernbert", or a bert_tf run of its settings) converts between huggingface and
bert_tf (modernbert.py). `python -m bert_tf.convert_checkpoint` is its command line.
"""

import dataclasses
import os

import keras
import tensorflow as tf

from bert_tf import io, locks, run_dir
from bert_tf.checkpoints.google_tf1 import read_google_tf1, write_google_tf1
from bert_tf.checkpoints.huggingface import read_huggingface, write_huggingface
from bert_tf.checkpoints.keras_hub import read_keras_hub, write_keras_hub
from bert_tf.checkpoints.model_garden import read_tf_models
from bert_tf.checkpoints.modernbert import read_modern, write_modernbert
from bert_tf.checkpoints.names import (assign_to_model, check_tensors, model_tensors,
                                       refuse_beyond_bert)
from bert_tf.checkpoints.native import read_bert_tf, write_bert_tf
from bert_tf.checkpoints.tf_hub import read_tf_hub
from bert_tf.text.tokenization import load_vocab

READERS = {"google_tf1": read_google_tf1, "huggingface": read_huggingface,
           "keras_hub": read_keras_hub, "tf_hub": read_tf_hub, "tf_models": read_tf_models,
           "bert_tf": read_bert_tf}


def _bert_tf(source, model, tensors, vocab, directory, origin):
    write_bert_tf(model, source.config, directory, source.do_lower_case, origin, source.task,
                  source.labels)
    return []


def _huggingface(source, model, tensors, vocab, directory, origin):
    write_huggingface(tensors, source.config, vocab, source.do_lower_case, directory,
                      source.task, source.labels)
    return []


def _keras_hub(source, model, tensors, vocab, directory, origin):
    return write_keras_hub(tensors, source.config, source.vocab_file, source.do_lower_case,
                           directory, source.task, source.labels)


def _google_tf1(source, model, tensors, vocab, directory, origin):
    return write_google_tf1(tensors, source.config, directory, source.labels)


# --output_format -> (source Weights, the checked model, its google-named tensors, Vocab,
# directory, {"format", "path"} of the input) -> notes for the report
WRITERS = {"bert_tf": _bert_tf, "huggingface": _huggingface, "google_tf1": _google_tf1,
           "keras_hub": _keras_hub}
OUTPUT_FORMATS = tuple(WRITERS)


@dataclasses.dataclass(frozen=True)
class Given:
    """What the user gives beside the input (--bert_config_file, --vocab_file,
    --do_lower_case); None: what the input holds, or infers."""
    bert_config_file: str | None = None
    vocab_file: str | None = None
    do_lower_case: bool | None = None


def convert(input_format, input_path, output_format, output_dir, given=Given(),
            overwrite=False, log=print) -> dict:
    """Reads a checkpoint, checks it against its config through our model, writes it in
    `output_format` to `output_dir` (a temporary directory renamed when complete); returns
    and logs a report: variables converted, parts freshly initialised, source variables skipped."""
    if input_format not in READERS or output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--input_format must be one of {', '.join(READERS)} and "
                         f"--output_format one of {', '.join(OUTPUT_FORMATS)}; got "
                         f"{input_format!r}, {output_format!r}")
    with locks.sibling_lock(output_dir, "--output"):
        io.remove_all(tf.io.gfile.glob(io.temp_pattern(output_dir.rstrip("/"))))  # a killed run's
        if tf.io.gfile.exists(output_dir) and not overwrite:
            raise FileExistsError(f"--output {output_dir} exists; pass --overwrite to replace "
                                  f"it")
        modern = read_modern(input_format, input_path, given)
        if modern is not None:
            return _convert_modern(modern, input_format, input_path, output_format, output_dir,
                                   log)
        source = READERS[input_format](input_path, given.bert_config_file, given.vocab_file,
                                       given.do_lower_case)
        refuse_beyond_bert(source.config, f"--input {input_path}")
        return _convert(source, input_format, input_path, output_format, output_dir, log)


# A ModernBERT (bert_tf's pre-norm, rotary, GeGLU, local/global encoder) goes between these only;
# google's and keras-hub's formats hold BERT.
MODERN_OUTPUTS = ("bert_tf", "huggingface")


def _convert_modern(modern, input_format, input_path, output_format, output_dir, log):
    if output_format not in MODERN_OUTPUTS:
        raise ValueError(f"--input {input_path} is a ModernBERT, which converts to "
                         f"--output_format={' or '.join(MODERN_OUTPUTS)} only ("
                         f"{output_format} holds google's BERT)")
    model, config = modern.model, modern.model.encoder.config
    vocab = load_vocab(modern.vocab_file)
    run_dir.check_vocab_fits(vocab, config, modern.vocab_file, "the config")
    origin = {"format": input_format,
              "path": os.path.abspath(input_path) if io.is_local(input_path) else input_path}
    with io.directory_written_atomically(output_dir) as tmp:
        io.copy_file(modern.vocab_file, os.path.join(tmp, "vocab.txt"))
        if output_format == "bert_tf":
            write_bert_tf(model, config, tmp, modern.do_lower_case, origin,
                          flags={"next_sentence": model.next_sentence is not None})
        else:
            write_modernbert(model, vocab, modern.do_lower_case, tmp)
    return _report(input_format, input_path, output_format, output_dir, modern.converted,
                   modern.absent, None, modern.skipped, modern.do_lower_case, modern.notes, log)


def _convert(source, input_format, input_path, output_format, output_dir, log):
    config, notes = source.config, list(source.notes)
    vocab = load_vocab(source.vocab_file)
    run_dir.check_vocab_fits(vocab, config, source.vocab_file, "the config")
    shapes = source.shapes()
    absent = check_tensors(source.tensors, shapes, input_path,
                           lambda name: source.source_names.get(name, name))
    keras.utils.set_random_seed(0)  # the freshly initialised parts, if any
    model = run_dir.build_model(config, source.task, source.labels)
    assign_to_model(model, source.tensors)
    tensors = model_tensors(model, shapes)

    origin = {"format": input_format,
              "path": os.path.abspath(input_path) if io.is_local(input_path) else input_path}
    with io.directory_written_atomically(output_dir) as tmp:
        io.copy_file(source.vocab_file, os.path.join(tmp, "vocab.txt"))
        notes += WRITERS[output_format](source, model, tensors, vocab, tmp, origin)

    return _report(input_format, input_path, output_format, output_dir, len(source.tensors),
                   absent, source.task, source.skipped, source.do_lower_case, notes, log)


def _report(input_format, input_path, output_format, output_dir, converted, absent, task,
            skipped, do_lower_case, notes, log):
    report = {"converted": converted, "freshly_initialized": absent, "task": task,
              "skipped": len(skipped), "skipped_examples": skipped[:5],
              "do_lower_case": do_lower_case, "notes": notes}
    log(f"{input_format} {input_path} -> {output_format} {output_dir}: "
        f"{converted} variables converted")
    for part in absent:
        log(f"  the source has no {part}: it is freshly initialised")
    if skipped:
        log(f"  skipped {len(skipped)} source variable(s) that bert_tf does not use, "
            f"e.g. {', '.join(skipped[:3])}")
    for note in notes:
        log(f"  {note}")
    return report
