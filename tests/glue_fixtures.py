"""A small GLUE_DIR (and XNLI folder) in the layouts GLUE and XNLI distribute: every task's files
with its own header (or none: CoLA's train and dev), columns and label strings, filled with
sentences a tiny model can learn (the label follows whether each text says "good")."""

import random

from classification_fixtures import sentence

MNLI_TRAIN = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
              "sentence2", "label1", "gold_label")
MNLI_DEV = MNLI_TRAIN[:-1] + ("label2", "label3", "label4", "label5", "gold_label")
MNLI_TEST = MNLI_TRAIN[:10]
STSB = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
        "sentence2", "score")
XNLI_DEV = ("language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID",
            "genre", "label1", "label2", "label3", "label4", "label5", "sentence1_tokenized",
            "sentence2_tokenized", "match")
SIZES = {"train": 320, "dev": 64, "test": 24}


def _write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([header] if header else []) + [list(map(str, row)) for row in rows]
    path.write_text("".join("\t".join(line) + "\n" for line in lines), encoding="utf-8")


def _texts(rng):
    """Two sentences and how many of them say "good" (0, 1 or 2)."""
    a, b = rng.random() < 0.5, rng.random() < 0.5
    return (sentence(rng, "good" if a else "bad"), sentence(rng, "good" if b else "bad"),
            int(a) + int(b))


NLI = {0: "contradiction", 1: "neutral", 2: "entailment"}


def make_glue_dir(root, tasks=None, seed=0):
    """Writes root/<Task>/... for `tasks` (default: all, with the diagnostic set); returns root.
    The dev and test row counts are SIZES'; labels follow the texts, so a model can learn
    them and a test can recompute them."""
    rng = random.Random(seed)
    tasks = tasks or ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli", "ax")

    def rows(split, make):
        return [make(i) for i in range(SIZES[split])]

    for task in tasks:
        for split in ("train", "dev", "test"):
            test = split == "test"
            if task == "cola":
                def make(i):
                    good = rng.random() < 0.5
                    text = sentence(rng, "good" if good else "bad")
                    return (i, text) if test else ("gj04", int(good), "" if good else "*", text)
                _write(root / "CoLA" / f"{split}.tsv", ["index", "sentence"] if test else None,
                       rows(split, make))
            elif task == "sst2":
                def make(i):
                    good = rng.random() < 0.5
                    text = sentence(rng, "good" if good else "bad")
                    return (i, text) if test else (text, int(good))
                _write(root / "SST-2" / f"{split}.tsv",
                       ["index", "sentence"] if test else ["sentence", "label"], rows(split, make))
            elif task == "mrpc":
                def make(i):
                    a, b, n = _texts(rng)
                    ids = (1000 + i, 2000 + i)
                    return (i, *ids, a, b) if test else (int(n == 2), *ids, a, b)
                _write(root / "MRPC" / f"{split}.tsv",
                       [("index" if test else "Quality"), "#1 ID", "#2 ID", "#1 String",
                        "#2 String"], rows(split, make))
            elif task == "stsb":
                def make(i):
                    a, b, n = _texts(rng)
                    front = (i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none",
                             a, b)
                    return front if test else front + (f"{2.5 * n:.3f}",)
                _write(root / "STS-B" / f"{split}.tsv", list(STSB[:-1] if test else STSB),
                       rows(split, make))
            elif task == "qqp":
                def make(i):
                    a, b, n = _texts(rng)
                    return (i, a, b) if test else (i, 2 * i, 2 * i + 1, a, b, int(n == 2))
                made = rows(split, make)
                if split == "train":  # QQP's train file has rows with missing fields
                    made.append((len(made), 1, 2, "a question without its pair"))
                _write(root / "QQP" / f"{split}.tsv",
                       ["id", "question1", "question2"] if test else
                       ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], made)
            elif task == "mnli":
                def make(i, dev=False):
                    a, b, n = _texts(rng)
                    a = a.replace("the", '"the', 1)  # MNLI's texts hold bare quotes
                    front = (i, 31193, f"{31193 + i}n", "government", "( x )", "( y )",
                             "(ROOT x)", "(ROOT y)", a, b)
                    # train: label1, gold_label; dev: label1 .. label5, gold_label
                    return front if test else front + (NLI[n],) * (6 if dev else 2)
                if split == "dev":
                    for name in ("matched", "mismatched"):
                        _write(root / "MNLI" / f"dev_{name}.tsv", list(MNLI_DEV),
                               rows(split, lambda i: make(i, dev=True)))
                elif test:
                    for name in ("matched", "mismatched"):
                        _write(root / "MNLI" / f"test_{name}.tsv", list(MNLI_TEST),
                               rows(split, make))
                else:
                    _write(root / "MNLI" / "train.tsv", list(MNLI_TRAIN), rows(split, make))
            elif task in ("qnli", "rte", "wnli"):
                folder = {"qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}[task]
                columns = (["question", "sentence"] if task == "qnli"
                           else ["sentence1", "sentence2"])

                def make(i):
                    a, b, n = _texts(rng)
                    label = ((n == 2) if task == "wnli" else
                             ("entailment" if n == 2 else "not_entailment"))
                    return (i, a, b) if test else (i, a, b, int(label) if task == "wnli"
                                                   else label)
                _write(root / folder / f"{split}.tsv",
                       ["index"] + columns + ([] if test else ["label"]), rows(split, make))
            elif task == "ax" and test:
                _write(root / "diagnostic" / "diagnostic.tsv",
                       ["index", "sentence1", "sentence2"],
                       [(i, *_texts(rng)[:2]) for i in range(SIZES["test"])])
    return root


def make_xnli_dir(root, languages=("en", "de"), seed=0):
    """An XNLI folder as its two archives unpack: XNLI-1.0/xnli.{dev,test}.tsv (every language
    in one file) and XNLI-MT-1.0/multinli/multinli.train.<language>.tsv ("contradictory" for
    contradiction, as distributed)."""
    rng = random.Random(seed)
    labels = {**NLI, 0: "contradictory"}
    for language in languages:
        train = []
        for _ in range(SIZES["train"]):
            a, b, n = _texts(rng)
            train.append((a, b, labels[n]))
        _write(root / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{language}.tsv",
               ["premise", "hypo", "label"], train)
    for split in ("dev", "test"):
        made = []
        for language in languages:
            for i in range(SIZES[split]):
                a, b, n = _texts(rng)
                made.append((language, NLI[n], "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b,
                             i, f"{i}e", "facetoface", *[NLI[n]] * 5, a, b, "True"))
        _write(root / "XNLI-1.0" / f"xnli.{split}.tsv", list(XNLI_DEV), made)
    return root
