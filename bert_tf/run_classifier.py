"""CLI: finetune BERT for sentence or sentence-pair classification with Keras fit().

    python -m bert_tf.run_classifier --train_file=train.tsv --eval_file=dev.tsv \
        --text_a_column=sentence --label_column=label --init_checkpoint=runs/base/ckpt-1000 \
        --output_dir=runs/sst2

The encoder comes from exactly one of --init_checkpoint (a bert_tf checkpoint; its run directory
supplies bert_config.json, vocab.txt and lower-casing unless given) or --encoder_saved_model (an
export; it carries its vocab and lower-casing). Writes labels.json, the best weights by eval
accuracy, TensorBoard logs, eval_results.json, predictions.tsv (with --predict_file) and a
text-in SavedModel under output_dir/export/<model_name>/<version>.
"""

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
FLAG_NAMES = (
    "train_file", "eval_file", "predict_file", "output_dir", "input_format", "text_a_column",
    "text_b_column", "label_column", "init_checkpoint", "bert_config_file",
    "encoder_saved_model", "vocab_file", "do_lower_case", "max_seq_length", "dynamic_padding",
    "train_batch_size", "eval_batch_size", "learning_rate", "num_train_epochs", "warmup_proportion",
    "distribution_strategy", "mixed_precision", "early_stopping_patience",
    "allow_unknown_labels", "model_name", "random_seed")


def define_flags():
    """The command-line flags; defined only when run as a program, so importing is free."""
    flags.DEFINE_string("train_file", None, "Labelled training file.")
    flags.DEFINE_string("eval_file", None, "Labelled evaluation file.")
    flags.DEFINE_string("predict_file", None, "Texts to label; writes predictions.tsv.")
    flags.DEFINE_string("output_dir", None, "Where everything goes.")
    flags.DEFINE_enum("input_format", "tsv", ["tsv", "csv", "jsonl"], "File format (tsv/csv "
                      "with a header row).")
    flags.DEFINE_string("text_a_column", "text", "Column of the (first) text.")
    flags.DEFINE_string("text_b_column", None, "Column of the second text, for pair tasks.")
    flags.DEFINE_string("label_column", "label", "Column of the label.")
    flags.DEFINE_string("init_checkpoint", None, "A bert_tf pretraining checkpoint.")
    flags.DEFINE_string("bert_config_file", None, "Default: beside --init_checkpoint.")
    flags.DEFINE_string("encoder_saved_model", None, "An encoder export (bert_tf.export).")
    flags.DEFINE_string("vocab_file", None, "Default: from the checkpoint's run or the export.")
    flags.DEFINE_bool("do_lower_case", None, "Default: from the checkpoint's run or the export.")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per example.")
    flags.DEFINE_bool("dynamic_padding", True, "Cut each batch to the smallest of 16, 32, 64, ... "
                      "max_seq_length that holds its longest text, instead of padding all to "
                      "max_seq_length.")
    flags.DEFINE_integer("train_batch_size", 32, "Batch size for training.")
    flags.DEFINE_integer("eval_batch_size", 32, "Batch size for eval and predict.")
    flags.DEFINE_float("learning_rate", 2e-5, "Peak learning rate (AdamW).")
    flags.DEFINE_float("num_train_epochs", 3, "Epochs.")
    flags.DEFINE_float("warmup_proportion", 0.1, "Fraction of steps for linear warmup.")
    flags.DEFINE_enum("distribution_strategy", "one_device", ["one_device", "mirrored"],
                      "Strategy for fit().")
    flags.DEFINE_enum("mixed_precision", "float32",
                      ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy.")
    flags.DEFINE_integer("early_stopping_patience", 0, "Stop after this many epochs without "
                         "better eval accuracy; 0: off.")
    flags.DEFINE_bool("allow_unknown_labels", False, "Skip eval examples with labels unseen in "
                      "training (with a warning) instead of failing.")
    flags.DEFINE_string("model_name", "classifier", "Name of the exported model.")
    flags.DEFINE_integer("random_seed", 12345, "Seed.")


def encoder_source(values):
    """Resolves the encoder, vocab and lower-casing from the flags; errors name the flags."""
    import tensorflow as tf

    from bert_tf.training import run_directory_files

    checkpoint, saved_model = values["init_checkpoint"], values["encoder_saved_model"]
    if bool(checkpoint) == bool(saved_model):
        raise ValueError("give exactly one of --init_checkpoint and --encoder_saved_model "
                         f"(got {'both' if checkpoint else 'neither'})")
    vocab_file, lower, config_file = (values["vocab_file"], values["do_lower_case"],
                                      values["bert_config_file"])
    if checkpoint:
        run_config, run_vocab, run_lower = run_directory_files(os.path.dirname(checkpoint))
        config_file = config_file or run_config
        vocab_file = vocab_file or run_vocab
        lower = run_lower if lower is None else lower
    else:
        if not tf.io.gfile.exists(os.path.join(saved_model, "saved_model.pb")):
            raise ValueError(f"--encoder_saved_model {saved_model}: no SavedModel there")
        vocab_file = vocab_file or os.path.join(saved_model, "assets", "vocab.txt")
        if lower is None:
            lower = bool(tf.saved_model.load(saved_model).do_lower_case.numpy())
    if lower is None:
        raise ValueError("--do_lower_case is needed: the encoder source does not record it")
    return config_file, vocab_file, bool(lower)


def run(values, log=print):
    """The whole job from a dict of flag values; returns the eval metrics."""
    import keras
    import numpy as np
    import tensorflow as tf

    from bert_tf import classifier, features, optimization
    from bert_tf.classifier import Columns
    from bert_tf.tokenization import load_vocab

    config_file, vocab_file, lower = encoder_source(values)
    vocab = load_vocab(vocab_file)
    columns = Columns(values["text_a_column"], values["label_column"], values["text_b_column"])
    train = classifier.read_examples(values["train_file"], values["input_format"], columns)
    labels = sorted({e[2] for e in train})
    train, train_ids = classifier.label_ids(train, labels, values["train_file"])
    evaluation = classifier.read_examples(values["eval_file"], values["input_format"], columns)
    evaluation, eval_ids = classifier.label_ids(evaluation, labels, values["eval_file"],
                                                values["allow_unknown_labels"], log)
    output_dir = values["output_dir"]
    os.makedirs(output_dir, exist_ok=True)
    features.write_json_atomically(os.path.join(output_dir, "labels.json"), labels)

    keras.utils.set_random_seed(values["random_seed"])
    keras.mixed_precision.set_global_policy(values["mixed_precision"])
    # one_device is TensorFlow's default strategy: Keras fit() under an explicit
    # OneDeviceStrategy ran 20x slower per epoch here (Keras 3.15, TF 2.20).
    strategy = (tf.distribute.MirroredStrategy() if values["distribution_strategy"] == "mirrored"
                else tf.distribute.get_strategy())
    steps_per_epoch = max(len(train) // values["train_batch_size"], 1)
    total_steps = int(steps_per_epoch * values["num_train_epochs"])
    with strategy.scope():
        if values["init_checkpoint"]:
            from bert_tf.config import BertConfig
            from bert_tf.pretraining_model import build_pretrainer
            from bert_tf.training import load_model_weights
            config = BertConfig.from_json_file(config_file)
            pretrainer = build_pretrainer(config)
            load_model_weights(pretrainer, values["init_checkpoint"])
            encoder, dropout = pretrainer.encoder, config.hidden_dropout_prob
        else:  # rebuilt as Keras layers: Keras optimizers cannot train a TFSMLayer's variables
            from bert_tf.export import load_encoder_export
            encoder, _ = load_encoder_export(values["encoder_saved_model"])
            dropout = encoder.config.hidden_dropout_prob
        model = classifier.build_classifier(encoder, len(labels), dropout)
        model.compile(
            optimizer=optimization.create_optimizer(
                "adamw", values["learning_rate"], total_steps,
                int(values["warmup_proportion"] * total_steps), clip_norm=1.0,
                mixed_precision=values["mixed_precision"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"])
    preprocessor = classifier.Preprocessor(vocab, lower, values["max_seq_length"])
    padding = values["dynamic_padding"]
    # Repeated, so every epoch gets steps_per_epoch batches: grouping by length makes the number
    # of batches per pass vary, and Keras skips an epoch when a finite dataset of unknown size
    # runs out.
    train_data = classifier.make_dataset(train, train_ids, preprocessor,
                                         values["train_batch_size"], shuffle=True,
                                         seed=values["random_seed"],
                                         dynamic_padding=padding).repeat()
    eval_data = classifier.make_dataset(evaluation, eval_ids, preprocessor,
                                        values["eval_batch_size"], dynamic_padding=padding)
    best = os.path.join(output_dir, "best.weights.h5")
    callbacks = [keras.callbacks.ModelCheckpoint(best, monitor="val_accuracy", mode="max",
                                                 save_best_only=True, save_weights_only=True),
                 keras.callbacks.TensorBoard(output_dir)]
    if values["early_stopping_patience"] > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=values["early_stopping_patience"]))
    epochs = max(int(np.ceil(values["num_train_epochs"])), 1)
    # A fractional last epoch runs whole; the learning rate has reached its end by then.
    model.fit(train_data, validation_data=eval_data, epochs=epochs,
              steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=2)
    model.load_weights(best)

    predictions = np.argmax(model.predict(eval_data, verbose=0), -1)
    metrics = classifier.classification_metrics(eval_ids, predictions, len(labels))
    features.write_json_atomically(os.path.join(output_dir, "eval_results.json"), metrics)
    log("eval: " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    if values["predict_file"]:
        examples = classifier.read_examples(values["predict_file"], values["input_format"],
                                            columns, require_label=False)
        data = classifier.make_dataset(examples, None, preprocessor, values["eval_batch_size"],
                                       dynamic_padding=padding)
        probabilities = tf.nn.softmax(model.predict(data, verbose=0)).numpy()
        path = os.path.join(output_dir, "predictions.tsv")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write("\t".join(["line", "prediction"] + [f"p_{label}" for label in labels])
                    + "\n")
            for example, p in zip(examples, probabilities):
                f.write("\t".join([str(example[3]), labels[int(np.argmax(p))]]
                                  + [f"{x:.6f}" for x in p]) + "\n")
        os.replace(path + ".tmp", path)

    exported = classifier.export_classifier(
        model, vocab, lower, values["max_seq_length"], labels,
        pair=values["text_b_column"] is not None,
        model_dir=os.path.join(output_dir, "export", values["model_name"]))
    log(f"exported: {exported}")
    return {**metrics, "export": exported, "labels": labels}


def main(argv):
    del argv
    values = {name: FLAGS[name].value for name in FLAG_NAMES}
    try:
        run(values)
    except (ValueError, OSError) as e:
        sys.exit(f"run_classifier: error: {e}")


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["train_file", "eval_file", "output_dir"])
    app.run(main)
