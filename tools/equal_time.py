"""Two pretraining recipes at equal training time on this machine, measured: BERT's against a
crammed one of the same parameter count (Cramming, Geiping & Goldstein 2022; 24hBERT, Izsak et
al. 2021).

    python tools/equal_time.py [--budget=15m] [--seeds=0,1,2] [--work=DIR] [--output=F.json]

Both train with `run_pretraining --train_budget` on the embedded default's sample data (Python's
documentation, sentence pairs masked as they are read: 3 shards trained on, the 4th held out),
batch 32 of seq 128, one after the other on the same machine:

  classic   bert_mini (L4/H256/A4, post-norm), masked LM + next-sentence prediction, 15%
            masked, learning rate 1e-4 (google-research/bert's), 1% warmup, linear decay over
            the budget
  crammed   the same width and depth, pre-norm with a final norm, no biases in the attention
            and feed-forward layers, GeGLU with its width cut so the parameter count matches,
            masked LM only at 25%, learning rate 1e-3, 6% warmup, trapezoidal (the last 20%
            decaying)

Then, for each: masked-LM accuracy on the held-out shard at 15% with the same masks for both
(--eval_batches batches of 32), and the dev accuracy of `run_classifier` on reference-or-library
(tools/real_weights.py: is a sentence from Python's language reference or from a docstring?
1,000 training and 400 dev sentences; seq 64, batch 32, 5e-5, 3 epochs) for each seed. Printed
and written as JSON.
"""

import json
import os
import statistics
import sys

from absl import app, flags

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, REPO)
sys.path.insert(0, TOOLS)

from bench_common import command, finetune_accuracy, run_in_work_dir  # noqa: E402

FLAGS = flags.FLAGS
SEQ, PREDICTIONS, BATCH = 128, 20, 32


def define_flags():
    flags.DEFINE_string("budget", "15m", "Training time of each recipe (--train_budget).")
    flags.DEFINE_integer("eval_batches", 100, "Held-out batches of 32 for the MLM accuracy.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Finetuning seeds.")
    flags.DEFINE_integer("epochs", 3, "Finetuning epochs.")
    flags.DEFINE_string("work", None, "Working directory (default: a temporary one).")
    flags.DEFINE_string("output", None, "Write the figures as JSON here.")


def crammed_config(path):
    """bert_mini's shape with the crammed options; the GeGLU width that gives (within a few
    hundred) bert_mini's parameter count: per block, BERT's feed-forward has 2 H I + I + H
    weights and the norms' biases stay, a bias-free GeGLU has 3 H I'."""
    from bert_tf.config import BertConfig

    mini = BertConfig.from_json_file(os.path.join(REPO, "configs", "bert_mini.json"))
    H, I = mini.hidden_size, mini.intermediate_size  # noqa: E741, N806
    attention_biases = 4 * H
    width = round((2 * H * I + I + H + attention_biases) / (3 * H))
    config = BertConfig(**{**mini.to_dict(), "layer_norm": "pre", "use_bias": False,
                           "hidden_act": "geglu", "intermediate_size": width})
    config.to_json_file(path)
    return path


RECIPES = {
    "classic": ["--learning_rate=1e-4", "--warmup_fraction=0.01", "--lr_schedule=linear"],
    "crammed": ["--next_sentence=false", "--masked_lm_prob=0.25", "--learning_rate=1e-3",
                "--warmup_fraction=0.06", "--lr_schedule=trapezoidal", "--decay_fraction=0.2"],
}


def pretrain(name, config_file, train, held_out, output):
    """One recipe's run_pretraining; 0 s when an earlier run in --work finished it (a killed
    one resumes: the budget's clock is in its checkpoints)."""
    if _finished(output):
        return 0.0
    return command(
        "bert_tf.run_pretraining", f"--bert_config_file={config_file}",
        f"--input_file={train}", f"--eval_input_file={held_out}", f"--output_dir={output}",
        f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
        f"--train_batch_size={BATCH}", f"--train_budget={FLAGS.budget}",
        "--save_checkpoints_steps=1000", "--random_seed=0", *RECIPES[name])


def _finished(output):
    path = os.path.join(output, "run_config.json")
    return os.path.exists(path) and "last_step" in json.load(open(path, encoding="utf-8"))


def held_out_accuracy(run, held_out):
    """Masked-LM accuracy of a run's last checkpoint on the held-out shard, 15% masked with the
    data's own rules and seed 1: the same masks for every run."""
    import numpy as np

    from bert_tf import io, run_dir
    from bert_tf.data import input_pipeline
    from bert_tf.data.pretraining_data import masking_rules

    files = io.expand_file_patterns(held_out)
    rules = masking_rules(files, input_pipeline.check_data(files, SEQ, PREDICTIONS))
    dataset = input_pipeline.make_dataset(files, 32, SEQ, PREDICTIONS,
                                          input_pipeline.PipelineOptions(
                                              is_training=False, seed=1,
                                              masking_rules=rules))
    pretrainer, _ = run_dir.load_pretrainer(run_dir.resolve(directory=run))
    right = total = 0.0
    for features, labels in dataset.take(FLAGS.eval_batches):
        logits = pretrainer(features, training=False)["masked_lm_logits"].numpy()
        weights = labels["masked_lm_weights"].numpy()
        right += float((weights * (logits.argmax(-1) == labels["masked_lm_ids"].numpy())).sum())
        total += float(weights.sum())
    return right / total, int(total)


def run(work):
    from bert_tf import io, run_dir
    from bert_tf.data.sample_data import make_sample_data
    from real_weights import reference_or_library, write_tsv

    shards = io.expand_file_patterns(make_sample_data(SEQ, PREDICTIONS, dynamic_masking=True))
    train, held_out = ",".join(shards[:-1]), shards[-1]
    configs = {"classic": os.path.join(REPO, "configs", "bert_mini.json"),
               "crammed": crammed_config(os.path.join(work, "crammed_mini.json"))}
    rows = reference_or_library()
    files = {"train": write_tsv(os.path.join(work, "train.tsv"), rows[:1000]),
             "dev": write_tsv(os.path.join(work, "dev.tsv"), rows[1000:1400])}
    figures = {"budget": FLAGS.budget, "batch": BATCH, "seq": SEQ}
    for name, config_file in configs.items():
        output = os.path.join(work, name)
        wall = pretrain(name, config_file, train, held_out, output)
        record = run_dir.read_record(output)
        accuracy, masked = held_out_accuracy(output, held_out)
        scores = [finetune_accuracy(output, files, os.path.join(work, f"{name}_cls_{seed}"),
                                    int(seed), FLAGS.epochs) for seed in FLAGS.seeds]
        figures[name] = {
            "parameters": _parameters(config_file), "steps": record["last_step"],
            "pretraining_wall_seconds": round(wall, 1),
            "held_out_masked_lm_accuracy": accuracy, "held_out_masked_tokens": masked,
            "dev_accuracy": scores, "dev_mean": statistics.mean(scores),
            "dev_stdev": statistics.stdev(scores) if len(scores) > 1 else 0.0}
        print(name, json.dumps(figures[name]), flush=True)
    print(json.dumps(figures, indent=1))
    return figures


def _parameters(config_file):
    from bert_tf.config import BertConfig
    from bert_tf.modeling import BertEncoder

    return BertEncoder(BertConfig.from_json_file(config_file)).count_params()


def main(argv):
    del argv
    run_in_work_dir(run, FLAGS.work, FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
