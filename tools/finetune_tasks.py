"""The finetuning comparisons' tasks (tools/finetune_compare.py, tools/lockstep.py): a small
learnable data set per task in its public format (TSV, SQuAD v1.1 JSON, CoNLL), the bert_tf job
settings that train on it, and the transformers class of each task."""

import json
import os
import random

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "table", "house", "tree",
         "big", "small", "old", "new", "and", "then", "very", "quite", "it", "this", "that",
         "with", "is", "was"]
COLORS = ["red", "blue", "green", "yellow"]
# Short training, so that the metrics are not all at their ceiling and differences can show.
SETTINGS = {"classification": dict(max_seq_length=32, train_batch_size=32, learning_rate=1e-3,
                                   num_train_epochs=2),
            "question_answering": dict(max_seq_length=48, doc_stride=16, max_query_length=8,
                                       train_batch_size=32, learning_rate=5e-4,
                                       num_train_epochs=1),
            "tagging": dict(max_seq_length=24, train_batch_size=16, learning_rate=5e-4,
                            num_train_epochs=2)}


# === Data ===

def words(rng, n):
    return [rng.choice(WORDS) for _ in range(n)]


def write_data(directory):
    """The three tasks' files; returns {task: {file flag: path}}."""
    rng = random.Random(0)
    files = {}
    for split, n in (("train", 480), ("dev", 160)):
        rows = []
        for _ in range(n):  # the label is the colour word the sentence holds
            color = rng.choice(COLORS[:2])
            text = words(rng, rng.randint(4, 12))
            text.insert(rng.randint(0, len(text)), color)
            rows.append(f"{' '.join(text)}\t{color}")
        path = os.path.join(directory, f"classification_{split}.tsv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("text\tlabel\n" + "\n".join(rows) + "\n")
        files.setdefault("classification", {})[
            "train_file" if split == "train" else "eval_file"] = path

        paragraphs = []  # which colour is the thing? in contexts of one to three windows
        for i in range(n):
            context = words(rng, rng.randint(10, 70))
            thing, color = rng.choice(["cat", "dog", "tree"]), rng.choice(COLORS)
            place = rng.randint(0, len(context))
            context[place:place] = ["the", thing, "is", color]
            text = " ".join(context)
            start = text.index(f"the {thing} is {color}") + len(f"the {thing} is ")
            paragraphs.append({"context": text, "qas": [{
                "id": f"{split}{i}", "question": f"which color is the {thing} ?",
                "answers": [{"text": color, "answer_start": start}]}]})
        path = os.path.join(directory, f"squad_{split}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}, f)
        files.setdefault("question_answering", {})[
            "train_file" if split == "train" else "predict_file"] = path

        sentences = []  # colours are B-COL, "big red" B-QUAL I-QUAL
        for _ in range(n):
            tokens, tags = [], []
            for _ in range(rng.randint(4, 12)):
                roll = rng.random()
                if roll < 0.15:
                    tokens.append(rng.choice(COLORS))
                    tags.append("B-COL")
                elif roll < 0.25:
                    tokens += [rng.choice(["big", "small"]), rng.choice(["cat", "dog"])]
                    tags += ["B-ANI", "I-ANI"]
                else:
                    tokens.append(rng.choice(WORDS[4:]))
                    tags.append("O")
            sentences.append("\n".join(f"{w} {t}" for w, t in zip(tokens, tags)))
        path = os.path.join(directory, f"tagging_{split}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n\n".join(sentences) + "\n")
        files.setdefault("tagging", {})[
            "train_file" if split == "train" else "eval_file"] = path
    return files


def task_config(task, files, output_dir, init_checkpoint, seed, precision, dynamic_padding=True,
                **overrides):
    from bert_tf.finetuning.classification import ClassificationConfig
    from bert_tf.finetuning.question_answering import QuestionAnsweringConfig
    from bert_tf.finetuning.tagging import TaggingConfig

    common = dict(output_dir=output_dir, init_checkpoint=init_checkpoint, random_seed=seed,
                  mixed_precision=precision, log_steps=10 ** 6,
                  dynamic_padding=dynamic_padding, **{**SETTINGS[task], **overrides}, **files)
    if task == "classification":
        return ClassificationConfig(**common)
    if task == "question_answering":
        return QuestionAnsweringConfig(do_train=True, do_predict=True, **common)
    return TaggingConfig(input_format="conll", **common)


ARCHITECTURES = {"classification": "BertForSequenceClassification",
                 "question_answering": "BertForQuestionAnswering",
                 "tagging": "BertForTokenClassification"}
