"""CLI and library: SavedModels for finetuning (TF Hub-style) and for TF Serving (text in).

    python -m bert_tf.export --output_dir=runs/base --export_dir=exports [--model_name=bert]
    python -m bert_tf.export --checkpoint=runs/base/ckpt-1000 --bert_config_file=... \
        --vocab_file=... --do_lower_case=true --export_dir=exports --max_seq_length=128

writes, in TF Serving's layout (`<export_dir>/<name>/<version>/`, the version one above the
highest present unless --version is given), each written to a temporary directory and renamed
when complete:

  <model_name>_encoder       serving_default: int32 input_word_ids, input_mask, input_type_ids
                             [batch, seq] -> pooled_output, sequence_output, encoder_outputs_<i>;
                             also callable, trainable, as TF Hub BERT encoders are:
                             loaded({"input_word_ids": ..., ...}, training=False) -> dict
  <model_name>_preprocessor  serving_default: text [batch] string -> the three int32 inputs;
                             pair: text, text_b -> the same, for sentence pairs
  <model_name>               text in, for TF Serving: serving_default: text -> pooled_output,
                             sentence_embedding (mean over real tokens, L2-normalised); pair:
                             text, text_b -> the same; fill_mask: text with [MASK] -> top 5
                             tokens and scores for each of its first 8 [MASK]s

Only TensorFlow and tensorflow-text ops are inside, which the standard tensorflow/serving image
runs; vocab.txt travels as an asset, do_lower_case and max_seq_length as attributes.
"""

import os
import re
import sys

import tensorflow as tf
import tensorflow_text as tf_text
from absl import app, flags

from bert_tf import features
from bert_tf.encoder import INPUT_NAMES
from bert_tf.tokenization import MASK, WordpieceTokenizer, load_vocab

FILL_MASK_SLOTS = 8  # [MASK]s answered per text
FILL_MASK_TOP_K = 5


class Preprocessor(tf.__internal__.tracking.AutoTrackable):
    """Raw strings -> input_word_ids, input_mask, input_type_ids [batch, max_seq_length].

    Tokenizes with the same `WordpieceTokenizer` as the data pipeline, trims a pair round-robin
    (the longer text loses tokens first, as google's `_truncate_seq_pair`), lays out
    [CLS] A [SEP] (B [SEP]) and pads.
    """

    def __init__(self, vocab, do_lower_case, max_seq_length):
        self.vocab_file = tf.saved_model.Asset(vocab.path)
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        self.max_seq_length = tf.Variable(max_seq_length, trainable=False, name="max_len")
        self.tokenizer = WordpieceTokenizer(vocab, do_lower_case)
        self._seq = max_seq_length
        self._cls, self._sep, self._mask = vocab.cls_id, vocab.sep_id, vocab.mask_id

    def pack(self, segments):
        """Ragged token ids per segment -> the three [batch, max_seq_length] int32 inputs."""
        budget = self._seq - 1 - len(segments)  # [CLS] and a [SEP] per segment
        trimmed = tf_text.RoundRobinTrimmer(budget).trim(segments)
        ids, types = tf_text.combine_segments(trimmed, self._cls, self._sep)
        ids, mask = tf_text.pad_model_inputs(ids, self._seq)
        types, _ = tf_text.pad_model_inputs(types, self._seq)
        return {"input_word_ids": tf.cast(ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(types, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def single(self, text):
        return self.pack([self.tokenizer.tokenize(text)])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.string, name="text_b")])
    def pair(self, text, text_b):
        return self.pack([self.tokenizer.tokenize(text), self.tokenizer.tokenize(text_b)])

    def tokenize_with_masks(self, text):
        """Like `single`, but each literal "[MASK]" in the text becomes the [MASK] id."""
        pieces = tf.strings.split(text, MASK)  # [B, (pieces)]
        tokens = self.tokenizer.tokenize(pieces.flat_values)  # [pieces, (tokens)]
        mask = tf.fill([tokens.nrows(), 1], tf.cast(self._mask, tokens.dtype))
        tokens = tf.concat([tokens, tf.RaggedTensor.from_tensor(mask)], axis=1)
        tokens = pieces.with_flat_values(tokens).merge_dims(1, 2)  # [B, (tokens)], + a mask
        return self.pack([tokens[:, :-1]])  # the last piece has no [MASK] after it


class EncoderExport(tf.__internal__.tracking.AutoTrackable):
    """The Keras encoder as a TF Hub-style object: a trainable callable plus a signature."""

    def __init__(self, encoder, vocab, do_lower_case):
        self.encoder = encoder
        self.vocab_file = tf.saved_model.Asset(vocab.path)  # so finetuning knows the tokenizer
        self.do_lower_case = tf.Variable(bool(do_lower_case), trainable=False, name="lower")
        # the bert_config.json text, so that a Keras BertEncoder can be rebuilt from the export
        self.bert_config = tf.Variable(encoder.config.to_json_string(), trainable=False,
                                       name="bert_config")
        self.variables = [v.value for v in encoder.variables]
        self.trainable_variables = [v.value for v in encoder.trainable_variables]
        self.regularization_losses = []
        self.__call__ = tf.function(self._call, input_signature=[
            {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES},
            tf.TensorSpec([], tf.bool, name="training")])
        self.serve = tf.function(self._serve, input_signature=[
            {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}])

    def _call(self, inputs, training):
        return tf.cond(training, lambda: self.encoder(inputs, training=True),
                       lambda: self.encoder(inputs, training=False))

    def _serve(self, inputs):
        return flat_encoder_outputs(self.encoder(inputs, training=False))


def flat_encoder_outputs(outputs):
    flat = {"pooled_output": outputs["pooled_output"],
            "sequence_output": outputs["sequence_output"]}
    flat.update({f"encoder_outputs_{i}": x for i, x in enumerate(outputs["encoder_outputs"])})
    return flat


class TextModel(tf.__internal__.tracking.AutoTrackable):
    """Strings in, embeddings (and fill-mask predictions) out: one SavedModel for TF Serving."""

    def __init__(self, pretrainer, preprocessor):
        self.pretrainer = pretrainer
        self.preprocessor = preprocessor
        self.variables = [v.value for v in pretrainer.variables]
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self.serve_pair = tf.function(self._serve_pair, input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_b")])
        self.fill_mask = tf.function(self._fill_mask, input_signature=[
            tf.TensorSpec([None], tf.string, name="text")])
        self._tokens = tf.constant(list(preprocessor.tokenizer.vocab.tokens))

    def _embed(self, inputs):
        outputs = self.pretrainer.encoder(inputs, training=False)
        sequence = tf.cast(outputs["sequence_output"], tf.float32)  # [B, T, H]
        mask = tf.cast(inputs["input_mask"], tf.float32)[:, :, None]
        mean = tf.reduce_sum(sequence * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        return {"pooled_output": tf.cast(outputs["pooled_output"], tf.float32),
                "sentence_embedding": tf.math.l2_normalize(mean, axis=-1)}

    def _serve(self, text):
        return self._embed(self.preprocessor.single(text))

    def _serve_pair(self, text, text_b):
        return self._embed(self.preprocessor.pair(text, text_b))

    def _fill_mask(self, text):
        inputs = self.preprocessor.tokenize_with_masks(text)
        is_mask = tf.equal(inputs["input_word_ids"], self.preprocessor._mask)
        # the positions of the first FILL_MASK_SLOTS masks of each text; -1 where there are fewer
        order = tf.argsort(tf.cast(~is_mask, tf.int32), axis=1, stable=True)
        positions = order[:, :FILL_MASK_SLOTS]  # [B, S]
        found = tf.gather(is_mask, positions, batch_dims=1)
        logits = self.pretrainer({**inputs, "masked_lm_positions": positions},
                                 training=False)["masked_lm_logits"]  # [B, S, V]
        scores, ids = tf.math.top_k(tf.nn.softmax(logits), FILL_MASK_TOP_K)  # [B, S, K]
        return {"mask_positions": tf.where(found, positions, -1),
                "top_tokens": tf.where(found[:, :, None], tf.gather(self._tokens, ids), ""),
                "top_scores": tf.where(found[:, :, None], scores, 0.0)}


# === Loading a run and writing versions ===

def load_pretrainer(output_dir=None, checkpoint=None, bert_config_file=None, vocab_file=None,
                    do_lower_case=None):
    """(pretrainer, vocab, do_lower_case) from a run directory and/or explicit files."""
    from bert_tf.config import BertConfig
    from bert_tf.pretraining_model import build_pretrainer
    from bert_tf.training import load_model_weights, run_directory_files

    if output_dir:
        checkpoint = checkpoint or tf.train.latest_checkpoint(output_dir)
        run_config, run_vocab, run_lower = run_directory_files(output_dir)
        bert_config_file = bert_config_file or run_config
        vocab_file = vocab_file or run_vocab
        do_lower_case = run_lower if do_lower_case is None else do_lower_case
    if not checkpoint:
        raise ValueError(f"no checkpoint: give --checkpoint, or an --output_dir that has one "
                         f"({output_dir})")
    if not bert_config_file or not vocab_file:
        raise ValueError("--bert_config_file and --vocab_file are needed without --output_dir")
    if do_lower_case is None:
        raise ValueError("--do_lower_case is needed: the run directory does not record it")
    vocab = load_vocab(vocab_file)
    config = BertConfig.from_json_file(bert_config_file)
    if len(vocab) > config.vocab_size:
        raise ValueError(f"{vocab_file} has {len(vocab)} tokens, more than vocab_size="
                         f"{config.vocab_size} of {bert_config_file}")
    pretrainer = build_pretrainer(config)
    load_model_weights(pretrainer, checkpoint)
    return pretrainer, vocab, bool(do_lower_case)


def next_version(model_dir):
    versions = [int(v) for v in (tf.io.gfile.listdir(model_dir)
                                 if tf.io.gfile.isdir(model_dir) else [])
                if re.fullmatch(r"\d+/?", v)]
    return max(versions, default=0) + 1


def save_version(obj, signatures, model_dir, version=None, overwrite=False):
    """Saves to model_dir/<version> through a temporary directory; returns the path."""
    version = version or next_version(model_dir)
    target = os.path.join(model_dir, str(version))
    if tf.io.gfile.exists(target):
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite or another --version")
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    with features.directory_written_atomically(target, tmp):
        tf.saved_model.save(obj, tmp, signatures=signatures)
    return target


def export_all(pretrainer, vocab, do_lower_case, max_seq_length, export_dir, model_name="bert",
               version=None, overwrite=False):
    """Writes the three SavedModels; returns {kind: path}."""
    if max_seq_length > pretrainer.config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={max_seq_length} exceeds max_position_embeddings="
                         f"{pretrainer.config.max_position_embeddings}")
    preprocessor = Preprocessor(vocab, do_lower_case, max_seq_length)
    encoder = EncoderExport(pretrainer.encoder, vocab, do_lower_case)
    text_model = TextModel(pretrainer, preprocessor)
    plan = {
        f"{model_name}_encoder": (encoder, {"serving_default": encoder.serve}),
        f"{model_name}_preprocessor": (preprocessor, {"serving_default": preprocessor.single,
                                                      "pair": preprocessor.pair}),
        model_name: (text_model, {"serving_default": text_model.serve,
                                  "pair": text_model.serve_pair,
                                  "fill_mask": text_model.fill_mask}),
    }
    if version is None:
        version = max(next_version(os.path.join(export_dir, name)) for name in plan)
    targets = [os.path.join(export_dir, name, str(version)) for name in plan]
    existing = [t for t in targets if tf.io.gfile.exists(t)]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); pass --overwrite or another "
                              f"--version")
    return {name: save_version(obj, signatures, os.path.join(export_dir, name), version,
                               overwrite) for name, (obj, signatures) in plan.items()}


FLAGS = flags.FLAGS


def define_flags():
    """The command-line flags; defined only when run as a program, so importing is free."""
    flags.DEFINE_string("output_dir", None, "A run_pretraining output_dir (config, vocab, "
                        "checkpoints).")
    flags.DEFINE_string("checkpoint", None, "A checkpoint prefix (default: the run's latest).")
    flags.DEFINE_string("bert_config_file", None, "Default: output_dir/bert_config.json.")
    flags.DEFINE_string("vocab_file", None, "Default: output_dir/vocab.txt.")
    flags.DEFINE_bool("do_lower_case", None, "Default: as recorded in output_dir.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the text-in models.")
    flags.DEFINE_string("export_dir", None, "Where <model_name>/<version>/ go.")
    flags.DEFINE_string("model_name", "bert", "Model name (directory) for TF Serving.")
    flags.DEFINE_integer("version", None, "Version number; default: one above the highest.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version.")


def main(argv):
    del argv
    try:
        pretrainer, vocab, lower = load_pretrainer(
            FLAGS.output_dir, FLAGS.checkpoint, FLAGS.bert_config_file, FLAGS.vocab_file,
            FLAGS.do_lower_case)
        paths = export_all(pretrainer, vocab, lower, FLAGS.max_seq_length, FLAGS.export_dir,
                           FLAGS.model_name, FLAGS.version, FLAGS.overwrite)
    except (ValueError, OSError) as e:
        sys.exit(f"export: error: {e}")
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["export_dir"])
    app.run(main)


def load_encoder_export(path):
    """A Keras `BertEncoder` with the weights of an encoder export (its variables in order)."""
    import json

    from bert_tf.config import BertConfig
    from bert_tf.encoder import BertEncoder

    loaded = tf.saved_model.load(path)
    if not hasattr(loaded, "bert_config"):
        raise ValueError(f"{path}: not a bert_tf encoder export (no bert_config)")
    config = BertConfig.from_dict(json.loads(loaded.bert_config.numpy().decode()), source=path)
    encoder = BertEncoder(config)
    if len(encoder.variables) != len(loaded.variables):
        raise ValueError(f"{path}: {len(loaded.variables)} variables, the config builds "
                         f"{len(encoder.variables)}")
    for ours, theirs in zip(encoder.variables, loaded.variables):
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ValueError(f"{path}: variable {ours.path} has shape {tuple(theirs.shape)} in "
                             f"the export, {tuple(ours.shape)} in the config's model")
        ours.assign(theirs)
    return encoder, bool(loaded.do_lower_case.numpy())
