"""Finetuning quality side by side: bert_tf against Hugging Face transformers (PyTorch), from the
same weights, on the same rows, with the same optimizer settings; several seeds, each precision.

    python tools/finetune_compare.py [--tasks=classification,question_answering,tagging] \
        [--seeds=0,1,2] [--precisions=float32,auto] [--output=compare.json]
    python tools/finetune_compare.py --mode=lockstep [--encoder=minilm] [--steps=100]

--mode=lockstep compares the two step by step from real weights instead (tools/lockstep.py).

For each task a small learnable data set is written in its public format (TSV, SQuAD v1.1 JSON,
CoNLL) and an encoder (bert_tiny's shape, random weights, one seed for all runs) is saved as a
bert_tf run directory and converted to transformers' format. Then, per seed and precision:

  bert_tf       the task's own job (run_classifier / run_squad / run_tagging as a library call),
                whose eval metric is reported;
  transformers  BertForSequenceClassification / BertForQuestionAnswering /
                BertForTokenClassification from the converted weights, trained in PyTorch on the
                same rows (bert_tf's features: the same windows, labels and weights) with AdamW
                (eps 1e-6, weight decay 0.01 off biases and LayerNorm), linear warmup and decay,
                global-norm clipping at 1, the same batch size, epochs and learning rate; "auto"
                is torch.autocast's bfloat16. The trained model is converted back and evaluated
                by bert_tf's evaluation of the task, so only training differs.

Needs requirements-dev.txt (transformers, torch). The transformers side runs in its own process.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from finetune_tasks import ARCHITECTURES, COLORS, WORDS, task_config, write_data  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The command line (defined when run as a script: tools/lockstep.py imports this module)."""
    flags.DEFINE_list("tasks", ["classification", "question_answering", "tagging"], "Tasks.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the finetuning runs.")
    flags.DEFINE_list("precisions", ["float32", "auto"], "bert_tf's --mixed_precision; auto is "
                      "bfloat16 where the CPU has it (torch.autocast's bfloat16 on the other "
                      "side).")
    flags.DEFINE_string("output", None, "Write the figures as JSON here.")
    flags.DEFINE_bool("dynamic_padding", True, "bert_tf's --dynamic_padding (batches by length).")
    flags.DEFINE_enum("mode", "quality", ["quality", "lockstep"],
                      "quality: train both, compare the metrics over seeds; lockstep: same "
                      "weights, same batches, dropout off, step by step (tools/lockstep.py).")
    flags.DEFINE_string("encoder", "minilm", "lockstep: the encoder both start from: minilm "
                        "(all-MiniLM-L6-v2), minilm:N (its first N layers) or a Hugging Face "
                        "BERT directory.")
    flags.DEFINE_integer("steps", 100, "lockstep: steps compared.")
    flags.DEFINE_float("learning_rate", 5e-5, "lockstep: the peak learning rate.")
    flags.DEFINE_enum("transformers_pad_row", "trains", ["trains", "frozen"],
                      "lockstep: transformers' [PAD] embedding row trains (as bert_tf's) or stays "
                      "frozen (its own nn.Embedding padding_idx; tools/lockstep.py PAD_ROW).")




def write_encoder(directory):
    """A bert_tf run directory with random weights (bert_tiny's shape, a small vocab)."""
    import keras
    import tensorflow as tf

    from bert_tf import run_dir
    from bert_tf.config import BertConfig, configs_dir
    from bert_tf.modeling import build_pretrainer
    from bert_tf.text.tokenization import SPECIAL_TOKENS, write_vocab

    vocab = os.path.join(directory, "vocab.txt")
    write_vocab(list(SPECIAL_TOKENS) + WORDS + COLORS + ["which", "color", "?", "."], vocab)
    config = BertConfig.from_dict({**BertConfig.from_json_file(
        os.path.join(configs_dir(), "bert_tiny.json")).to_dict(), "vocab_size": 64,
        "max_position_embeddings": 128})
    keras.utils.set_random_seed(0)
    encoder_dir = os.path.join(directory, "encoder")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=build_pretrainer(config)), encoder_dir,
                               1).save(checkpoint_number=1)
    run_dir.write(encoder_dir, config, vocab, do_lower_case=True)
    return encoder_dir


# === bert_tf ===


def run_ours(task, config):
    from bert_tf.finetuning import classification, question_answering, tagging

    module = {"classification": classification, "question_answering": question_answering,
              "tagging": tagging}[task]
    return module.run(config, log=lambda line: None)


METRIC = {"classification": "accuracy", "question_answering": "exact_match", "tagging": "f1"}


# === transformers, on bert_tf's rows ===

def training_rows(task, config, work):
    """bert_tf's training rows of the task, as .npz for the PyTorch process; and the labels."""
    import numpy as np
    import tensorflow as tf

    from bert_tf.finetuning import encoder_source, squad
    from bert_tf.finetuning.labelled_files import Columns, label_ids, read_examples
    from bert_tf.finetuning.tagged_files import read_tagged
    from bert_tf.finetuning.tagging import make_features
    from bert_tf.text.preprocessing import Preprocessor
    from bert_tf.text.tokenization import WordpieceTokenizer, load_vocab

    source = encoder_source.encoder_source(config)
    vocab = load_vocab(source.vocab_file)
    tokenizer = WordpieceTokenizer(vocab, True)
    path = os.path.join(work, f"{task}_rows.npz")
    if task == "classification":
        examples = read_examples(config.train_file, "tsv", Columns("text", "label"))
        labels = sorted({e.label for e in examples})
        examples, ids = label_ids(examples, labels, config.train_file)
        preprocessor = Preprocessor(vocab, True, config.max_seq_length)  # kept: a tf.function
        inputs = preprocessor.single(tf.constant([e.text_a for e in examples]))  # method
        np.savez(path, **{k: v.numpy() for k, v in inputs.items()}, labels=ids)
    elif task == "question_answering":
        labels = []
        examples = squad.read_squad(config.train_file, True)
        f = squad.make_features(examples, tokenizer, config.max_seq_length, config.doc_stride,
                                config.max_query_length, True)
        np.savez(path, **f.inputs(), start_positions=f.start_positions,
                 end_positions=f.end_positions)
    else:
        sentences = read_tagged(config.train_file, "conll", "BIO")
        labels = ["O"] + sorted({t for s in sentences for t in s.tags} - {"O"})
        f = make_features(sentences, tokenizer, labels, config.max_seq_length)
        np.savez(path, **f.inputs(), labels=np.where(f.weights > 0, f.labels, -100))
    return path, labels


TORCH_TRAINER = r"""
import json, math, sys
import numpy as np, torch, transformers
job = json.loads(sys.argv[1])
torch.manual_seed(job["seed"])
rows = dict(np.load(job["rows"]))
model_class = getattr(transformers, job["architecture"])
extra = {"num_labels": len(job["labels"]), "id2label": dict(enumerate(job["labels"])),
         "label2id": {l: i for i, l in enumerate(job["labels"])}} if job["labels"] else {}
model = model_class.from_pretrained(job["encoder"], **extra)
model.train()
no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=job["learning_rate"], betas=(0.9, 0.999), eps=1e-6)
n, batch = len(rows["input_word_ids"]), job["batch_size"]
steps_per_epoch = max(n // batch, 1)
total = int(steps_per_epoch * job["epochs"])
schedule = transformers.get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
generator = np.random.default_rng(job["seed"])
step = 0
for epoch in range(math.ceil(job["epochs"])):
    order = generator.permutation(n)
    for b in range(steps_per_epoch):
        index = order[b * batch:(b + 1) * batch]
        args = dict(input_ids=torch.from_numpy(rows["input_word_ids"][index]).long(),
                    attention_mask=torch.from_numpy(rows["input_mask"][index]).long(),
                    token_type_ids=torch.from_numpy(rows["input_type_ids"][index]).long())
        for name in ("labels", "start_positions", "end_positions"):
            if name in rows:
                args[name] = torch.from_numpy(rows[name][index]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=job["bfloat16"]):
            loss = model(**args).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        step += 1
model.save_pretrained(job["output"])
"""



def run_theirs(task, config, rows, labels, hf_encoder, seed, bfloat16, work):
    """Trains the transformers model on `rows`, converts it back, and evaluates it with
    bert_tf's evaluation of the task; returns the metrics."""
    import shutil

    from bert_tf import run_dir
    from bert_tf.checkpoints.convert import convert
    from bert_tf.finetuning import classification, encoder_source, question_answering, tagging
    from bert_tf.text.tokenization import load_vocab

    trained = os.path.join(work, f"hf_{task}_{seed}_{'bfloat16' if bfloat16 else 'float32'}")
    job = {"seed": seed, "rows": rows, "architecture": ARCHITECTURES[task], "labels": labels,
           "encoder": hf_encoder, "learning_rate": config.learning_rate,
           "batch_size": config.train_batch_size, "epochs": config.num_train_epochs,
           "bfloat16": bfloat16, "output": trained}
    result = subprocess.run([sys.executable, "-c", TORCH_TRAINER, json.dumps(job)],
                            capture_output=True, text=True, env={**os.environ,
                                                                 "CUDA_VISIBLE_DEVICES": ""})
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    shutil.copy(os.path.join(hf_encoder, "vocab.txt"), trained)
    with open(os.path.join(trained, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    converted = trained + "_bert_tf"
    convert("huggingface", trained, "bert_tf", converted, log=lambda line: None)
    files = run_dir.resolve(directory=converted)
    model, vocab = run_dir.load_model(files)
    task_class = {"classification": classification.Classification,
                  "question_answering": question_answering.QuestionAnswering,
                  "tagging": tagging.Tagging}[task]
    instance = task_class(config)
    source = encoder_source.encoder_source(config)
    data = instance.read(source, load_vocab(source.vocab_file), lambda line: None)
    return instance.evaluate(model, data, lambda line: None)


def main(argv):
    del argv
    import keras
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from bert_tf.checkpoints.convert import convert

    if FLAGS.mode == "lockstep":
        from lockstep import lockstep, write_report

        with tempfile.TemporaryDirectory() as work:
            results = lockstep(FLAGS.tasks, FLAGS.encoder, FLAGS.steps, work,
                               FLAGS.learning_rate, FLAGS.transformers_pad_row == "trains")
        write_report(results, FLAGS.output)
        return

    figures = {}
    with tempfile.TemporaryDirectory() as work:
        files = write_data(work)
        encoder = write_encoder(work)
        hf_encoder = os.path.join(work, "hf_encoder")
        convert("bert_tf", encoder, "huggingface", hf_encoder, log=lambda line: None)
        for task in FLAGS.tasks:
            for precision in FLAGS.precisions:
                ours, theirs = [], []
                for seed in map(int, FLAGS.seeds):
                    keras.mixed_precision.set_global_policy("float32")
                    output = os.path.join(work, f"ours_{task}_{precision}_{seed}")
                    config = task_config(task, files[task], output, encoder, seed, precision,
                                         FLAGS.dynamic_padding)
                    result = run_ours(task, config)
                    ours.append(result[METRIC[task]])
                    resolved = keras.mixed_precision.global_policy().name  # the job's
                    keras.mixed_precision.set_global_policy("float32")
                    rows, labels = training_rows(task, config, work)
                    metrics = run_theirs(task, config, rows, labels, hf_encoder, seed,
                                         resolved == "mixed_bfloat16", work)
                    theirs.append(metrics[METRIC[task]])
                    print(f"{task} {precision} ({resolved}) seed {seed}: {METRIC[task]} "
                          f"bert_tf {ours[-1]:.4g}, transformers {theirs[-1]:.4g}", flush=True)
                summary = {"bert_tf": ours, "transformers": theirs,
                           "bert_tf_mean": statistics.mean(ours),
                           "transformers_mean": statistics.mean(theirs)}
                figures[f"{task}_{precision}"] = summary
                print(f"{task} {precision}: {METRIC[task]} mean bert_tf "
                      f"{summary['bert_tf_mean']:.4g}, transformers "
                      f"{summary['transformers_mean']:.4g} over {len(ours)} seeds", flush=True)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
