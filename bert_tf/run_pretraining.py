"""CLI: pretrain BERT (masked LM + next sentence) on TFRecord shards.

    python -m bert_tf.run_pretraining --bert_config_file=configs/bert_base.json \
        --input_file='tfrecords/wiki-*' --output_dir=runs/base --train_batch_size=256 \
        --num_train_steps=1000000 --num_warmup_steps=10000 --learning_rate=1e-4

With no flags at all it runs the embedded default: a vocab and TFRecords made once from Python's
own documentation (cached in tfrecords/ of a source checkout, else in ~/.cache/bert_tf), then
bert_tiny trained for a few hundred steps on CPU into runs/bert_tiny_sample under the current
directory. Running the same command again
resumes from the latest checkpoint in --output_dir; SIGTERM saves a checkpoint and exits cleanly.
"""

import os
import sys

from absl import app, flags, logging

from bert_tf.config import configs_dir

FLAGS = flags.FLAGS


def sample_data_dir():
    """Where the embedded default caches its corpus, vocab and shards; never inside site-packages.

    $BERT_TF_CACHE_DIR if set; else tfrecords/ of the source checkout this package runs from; else
    (an installed package) $XDG_CACHE_HOME/bert_tf, by default ~/.cache/bert_tf.
    """
    if os.environ.get("BERT_TF_CACHE_DIR"):
        return os.environ["BERT_TF_CACHE_DIR"]
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(checkout, "pyproject.toml")) and os.path.isdir(
            os.path.join(checkout, "tfrecords")):
        return os.path.join(checkout, "tfrecords")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "bert_tf")


def sample_prefix():
    """The sample files' common prefix: <prefix>_corpus.txt, <prefix>_vocab.txt, shards."""
    return os.path.join(sample_data_dir(), "sample")


def define_flags():
    """The command-line flags; defined only when run as a program, so importing is free."""
    # data and model
    flags.DEFINE_string("bert_config_file", os.path.join(configs_dir(), "bert_tiny.json"),
                        "google-format bert_config.json.")
    flags.DEFINE_string("input_file", None, "Comma list of globs of training shards; empty: "
                        "the embedded sample data (made on first use).")
    flags.DEFINE_string("eval_input_file", None, "Shards for --do_eval (default: input_file).")
    flags.DEFINE_string("output_dir", os.path.join("runs", "bert_tiny_sample"),
                        "Checkpoints, TensorBoard logs and the resolved config go here.")
    flags.DEFINE_string("init_checkpoint", None, "Start from these weights (fresh optimizer).")
    flags.DEFINE_integer("max_seq_length", 128, "Must match the data.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Must match the data.")
    # batches and steps
    flags.DEFINE_integer("train_batch_size", 32, "Global batch size.")
    flags.DEFINE_integer("eval_batch_size", 32, "Global eval batch size.")
    flags.DEFINE_integer("num_train_steps", 300, "Optimizer steps.")
    flags.DEFINE_integer("num_warmup_steps", 30, "Linear warmup steps.")
    # optimizer
    flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.")
    flags.DEFINE_float("end_learning_rate", 0.0, "Learning rate at num_train_steps.")
    flags.DEFINE_enum("optimizer", "adamw", ["adamw", "lamb"], "Optimizer.")
    flags.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay (not on LayerNorm "
                       "weights and biases).")
    flags.DEFINE_float("clip_norm", 1.0, "Clip gradients to this global norm; 0 disables.")
    flags.DEFINE_integer("gradient_accumulation_steps", 1, "Split each batch into this many "
                         "sequential parts: a large global batch in small memory.")
    # execution
    flags.DEFINE_enum("distribution_strategy", "one_device",
                      ["one_device", "mirrored", "multi_worker_mirrored", "tpu"], "Strategy.")
    flags.DEFINE_string("tpu", "", "TPU name or grpc:// address; empty: a local TPU VM.")
    flags.DEFINE_integer("num_gpus", 0, "GPUs for one_device/mirrored; 0: CPU (mirrored: all).")
    flags.DEFINE_enum("mixed_precision", "float32",
                      ["float32", "mixed_float16", "mixed_bfloat16"], "Keras dtype policy.")
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward step.")
    flags.DEFINE_integer("steps_per_loop", 100, "Training steps per host call.")
    flags.DEFINE_integer("random_seed", 12345, "Seed for weights and data order.")
    # checkpoints, evaluation, logging
    flags.DEFINE_integer("save_checkpoints_steps", 100, "Checkpoint every this many steps.")
    flags.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept.")
    flags.DEFINE_bool("do_eval", True, "Evaluate at the end.")
    flags.DEFINE_integer("max_eval_steps", 20, "Eval batches.")
    flags.DEFINE_integer("log_steps", 50, "Log and write summaries every this many steps.")


FLAG_NAMES = (
    "bert_config_file", "input_file", "eval_input_file", "output_dir", "init_checkpoint",
    "max_seq_length", "max_predictions_per_seq", "train_batch_size", "eval_batch_size",
    "num_train_steps", "num_warmup_steps", "learning_rate", "end_learning_rate", "optimizer",
    "weight_decay_rate", "clip_norm", "gradient_accumulation_steps", "distribution_strategy",
    "tpu", "num_gpus", "mixed_precision", "jit_compile", "steps_per_loop", "random_seed",
    "save_checkpoints_steps", "keep_checkpoint_max", "do_eval", "max_eval_steps", "log_steps")


def validate(values, num_replicas):
    """Flag combinations that cannot work, each named."""
    problems = []
    for name in ("train_batch_size", "eval_batch_size", "num_train_steps", "steps_per_loop",
                 "save_checkpoints_steps", "keep_checkpoint_max", "log_steps",
                 "gradient_accumulation_steps", "max_eval_steps"):
        if values[name] < 1:
            problems.append(f"--{name} must be at least 1, got {values[name]}")
    if not 0 <= values["num_warmup_steps"] <= values["num_train_steps"]:
        problems.append(f"--num_warmup_steps={values['num_warmup_steps']} must be in "
                        f"[0, --num_train_steps={values['num_train_steps']}]")
    if values["learning_rate"] <= 0:
        problems.append(f"--learning_rate must be positive, got {values['learning_rate']}")
    parts = num_replicas * values["gradient_accumulation_steps"]
    if values["train_batch_size"] % parts:
        problems.append(f"--train_batch_size={values['train_batch_size']} does not divide into "
                        f"{num_replicas} replica(s) x --gradient_accumulation_steps="
                        f"{values['gradient_accumulation_steps']}")
    if values["eval_batch_size"] % num_replicas:
        problems.append(f"--eval_batch_size={values['eval_batch_size']} does not divide into "
                        f"{num_replicas} replica(s)")
    if problems:
        raise ValueError("; ".join(problems))


def make_sample_data(max_seq_length, max_predictions_per_seq, log=print):
    """The embedded default's data: vocab + shards from Python's docs, made once."""
    from bert_tf import features
    from bert_tf.build_vocab import learn_vocab
    from bert_tf.create_pretraining_data import create_pretraining_data
    from bert_tf.pretraining_data import InstanceOptions
    from bert_tf.sample_corpus import write_corpus
    from bert_tf.tokenization import write_vocab

    common = sample_prefix()
    prefix = f"{common}_{max_seq_length}_{max_predictions_per_seq}"
    if os.path.exists(features.manifest_path(prefix)):
        return f"{prefix}-*-of-*.tfrecord"
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    corpus = f"{common}_corpus.txt"
    log(f"Making the sample data under {os.path.dirname(prefix)} (once) ...")
    write_corpus(corpus + ".tmp", 3_000_000)
    os.replace(corpus + ".tmp", corpus)
    vocab = f"{common}_vocab.txt"
    write_vocab(learn_vocab(corpus, vocab_size=30522), vocab)
    create_pretraining_data(corpus, prefix, vocab, options=InstanceOptions(
        max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
        dupe_factor=3), num_shards=4, num_workers=min(2, os.cpu_count() or 1), overwrite=True)
    return f"{prefix}-*-of-*.tfrecord"


def write_run_files(output_dir, config, values, manifest):
    """bert_config.json, run_config.json (flags, lower-casing) and vocab.txt into output_dir."""
    import tensorflow as tf

    from bert_tf import features

    tf.io.gfile.makedirs(output_dir)
    config.to_json_file(os.path.join(output_dir, "bert_config.json"))
    run = {"flags": values}
    if manifest is not None:
        run["do_lower_case"] = manifest["vocab"]["do_lower_case"]
        run["data_manifest"] = manifest
        source = os.path.join(os.path.dirname(values["input_file"].split(",")[0]),
                              manifest["vocab"]["file"])
        target = os.path.join(output_dir, "vocab.txt")
        tf.io.gfile.copy(source, target + ".tmp", overwrite=True)
        tf.io.gfile.rename(target + ".tmp", target, overwrite=True)
    features.write_json_atomically(os.path.join(output_dir, "run_config.json"), run)


def run(values, log=print):
    """The whole job from a dict of flag values; returns the final metrics."""
    import keras
    import tensorflow as tf

    from bert_tf import features, input_pipeline, optimization, training
    from bert_tf.config import BertConfig
    from bert_tf.pretraining_model import build_pretrainer

    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF op.
    strategy = training.make_strategy(values["distribution_strategy"], values["tpu"],
                                      values["num_gpus"])
    validate(values, strategy.num_replicas_in_sync)
    if not values["input_file"]:
        values["input_file"] = make_sample_data(values["max_seq_length"],
                                                values["max_predictions_per_seq"], log)
    config = BertConfig.from_json_file(values["bert_config_file"])
    files = features.expand_file_patterns(values["input_file"])
    manifest = input_pipeline.check_data(files, values["max_seq_length"],
                                         values["max_predictions_per_seq"])
    if manifest is not None and manifest["vocab"]["size"] > config.vocab_size:
        raise ValueError(f"--input_file: the data's vocab has {manifest['vocab']['size']} tokens, "
                         f"more than vocab_size={config.vocab_size} of "
                         f"{values['bert_config_file']}")
    if values["max_seq_length"] > config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={values['max_seq_length']} exceeds "
                         f"max_position_embeddings={config.max_position_embeddings}")
    output_dir = values["output_dir"]
    try:
        if training.is_chief(strategy):
            write_run_files(output_dir, config, values, manifest)
        else:
            tf.io.gfile.makedirs(output_dir)
    except (OSError, tf.errors.OpError) as e:
        raise OSError(f"--output_dir {output_dir} is not writable: {e}") from None

    keras.utils.set_random_seed(values["random_seed"])
    keras.mixed_precision.set_global_policy(values["mixed_precision"])
    with strategy.scope():
        pretrainer = build_pretrainer(config)
        optimizer = optimization.create_optimizer(
            values["optimizer"], values["learning_rate"], values["num_train_steps"],
            values["num_warmup_steps"], values["end_learning_rate"],
            values["weight_decay_rate"], 0.0, values["mixed_precision"])
    options = training.TrainOptions(
        output_dir=output_dir, num_train_steps=values["num_train_steps"],
        steps_per_loop=values["steps_per_loop"],
        save_checkpoints_steps=values["save_checkpoints_steps"],
        keep_checkpoint_max=values["keep_checkpoint_max"], log_steps=values["log_steps"],
        gradient_accumulation_steps=values["gradient_accumulation_steps"],
        clip_norm=values["clip_norm"], jit_compile=values["jit_compile"],
        max_eval_steps=values["max_eval_steps"])
    trainer = training.Trainer(strategy, pretrainer, optimizer, options)
    log(trainer.restore(values["init_checkpoint"]))

    def dataset_fn(input_files, batch_size, is_training):
        def fn(context):
            return input_pipeline.make_dataset(
                input_files, context.get_per_replica_batch_size(batch_size),
                values["max_seq_length"], values["max_predictions_per_seq"], is_training,
                context, seed=values["random_seed"])
        return strategy.distribute_datasets_from_function(fn)

    train_data = dataset_fn(files, values["train_batch_size"], True)
    try:
        metrics = trainer.train(train_data, summary_dir=output_dir, log=log)
    except tf.errors.DataLossError as e:
        bad = input_pipeline.find_corrupt_shard(files)
        raise input_pipeline.DataMismatchError(
            f"--input_file: corrupt shard {bad or '(not found by re-reading)'}: {e.message}"
        ) from None
    if trainer.preempted:
        return {"preempted": True, "step": trainer.step, **metrics}
    if values["do_eval"]:
        eval_files = features.expand_file_patterns(values["eval_input_file"]
                                                   or values["input_file"], "--eval_input_file")
        input_pipeline.check_data(eval_files, values["max_seq_length"],
                                  values["max_predictions_per_seq"], "--eval_input_file")
        eval_data = dataset_fn(eval_files, values["eval_batch_size"], True)
        eval_metrics = trainer.evaluate(eval_data, values["max_eval_steps"], output_dir)
        log("eval: " + "  ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items()))
        metrics = {**metrics, **{f"eval_{k}": v for k, v in eval_metrics.items()}}
    return {"step": trainer.step, **metrics}


def main(argv):
    del argv
    values = {name: FLAGS[name].value for name in FLAG_NAMES}
    try:
        metrics = run(values)
    except (ValueError, OSError, FloatingPointError) as e:
        sys.exit(f"run_pretraining: error: {e}")
    if metrics.get("preempted"):
        return
    source = "eval_" if "eval_loss" in metrics else ""
    print(f"\nDone at step {metrics['step']}: masked_lm_accuracy "
          f"{metrics.get(source + 'masked_lm_accuracy', float('nan')):.4f}, next_sentence_accuracy "
          f"{metrics.get(source + 'next_sentence_accuracy', float('nan')):.4f}"
          f"{' (eval)' if source else ''}")
    print(f"TensorBoard: tensorboard --logdir {values['output_dir']}")


if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
