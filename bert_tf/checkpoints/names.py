"""The names behind checkpoint conversion: one in-memory form and the maps to every format.

Every format is read into, and written from, one in-memory form: `Weights`, numpy arrays under
google-research/bert's variable names and shapes, e.g.

    bert/embeddings/word_embeddings                       [V, H]
    bert/encoder/layer_3/attention/self/query/kernel      [H, H]   (input, output)
    bert/encoder/layer_3/intermediate/dense/kernel        [H, I]
    bert/pooler/dense/kernel                              [H, H]
    cls/predictions/transform/dense/kernel                [H, H]
    cls/predictions/output_bias                           [V]      (the decoder is tied to the embeddings)
    cls/seq_relationship/output_weights                   [2, H]   (google stores it transposed)

and moved into our Keras `BertPretrainer`, which checks every shape. The maps to the other
formats are plain renames, reshapes ([H, H] <-> our attention's [H, N, d] / [N, d, H]) and
transposes (PyTorch's Linear weight is [output, input]); no arithmetic, so a round trip through
bert_tf gives back the same bits. Reading and writing each format: google_tf1.py,
huggingface.py, native.py; `convert()`: convert.py.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from bert_tf.config import CLASSIC, BertConfig, ConfigError
from bert_tf.tasks import SPECS, from_huggingface, spec_for

# === google-research/bert names ===

ENCODER, POOLER = "encoder", "pooler"
MASKED_LM, NEXT_SENTENCE = "masked-LM head", "next-sentence head"
# A finetuned task's head is named by its spec (bert_tf.tasks): google_head + weights / bias.


def google_shapes(config: BertConfig, task=None, num_labels=0) -> dict[str, tuple]:
    """Every variable of google's BertModel with the pretraining heads (task None), or with a
    task's head -> its shape."""
    V, H, I = config.vocab_size, config.hidden_size, config.intermediate_size  # noqa: E741
    shapes = {"bert/embeddings/word_embeddings": (V, H),
              "bert/embeddings/token_type_embeddings": (config.type_vocab_size, H),
              "bert/embeddings/position_embeddings": (config.max_position_embeddings, H),
              "bert/embeddings/LayerNorm/gamma": (H,), "bert/embeddings/LayerNorm/beta": (H,)}
    for i in range(config.num_hidden_layers):
        layer = f"bert/encoder/layer_{i}"
        for dense, (n_in, n_out) in (("attention/self/query", (H, H)),
                                     ("attention/self/key", (H, H)),
                                     ("attention/self/value", (H, H)),
                                     ("attention/output/dense", (H, H)),
                                     ("intermediate/dense", (H, I)), ("output/dense", (I, H))):
            shapes[f"{layer}/{dense}/kernel"] = (n_in, n_out)
            shapes[f"{layer}/{dense}/bias"] = (n_out,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{layer}/{norm}/gamma"] = shapes[f"{layer}/{norm}/beta"] = (H,)
    shapes.update({"bert/pooler/dense/kernel": (H, H), "bert/pooler/dense/bias": (H,),
                   "cls/predictions/transform/dense/kernel": (H, H),
                   "cls/predictions/transform/dense/bias": (H,),
                   "cls/predictions/transform/LayerNorm/gamma": (H,),
                   "cls/predictions/transform/LayerNorm/beta": (H,),
                   "cls/predictions/output_bias": (V,),
                   "cls/seq_relationship/output_weights": (2, H),
                   "cls/seq_relationship/output_bias": (2,)})
    if task is not None:
        shapes = {n: s for n, s in shapes.items() if not n.startswith("cls/")}
        spec = spec_for(task)
        outputs = spec.google_outputs or num_labels
        head = spec.google_head
        shapes.update({head + "weights": (outputs, H), head + "bias": (outputs,)})
    return shapes


def group(google_name: str) -> str:
    """Which part of the model a google variable belongs to."""
    for prefix, part in (("bert/pooler/", POOLER), ("cls/predictions/", MASKED_LM),
                         ("cls/seq_relationship/", NEXT_SENTENCE)):
        if google_name.startswith(prefix):
            return part
    for spec in SPECS.values():
        if spec.google_head and google_name in (spec.google_head + "weights",
                                                spec.google_head + "bias"):
            return spec.google_part
    return ENCODER


@dataclasses.dataclass
class Weights:
    """A checkpoint read into memory.

    Attributes:
      config: the model's hyper-parameters.
      tensors: google name -> float32 array of google's shape; the pooler and the heads may be
        absent (they are then freshly initialised).
      skipped: source variable names not used (optimizer slots, other task heads, tied copies).
      vocab_file, do_lower_case: the tokenizer, where the source has one.
      notes: what a user should know about the conversion, one line each.
      source_names: google name -> the source's own name, for error messages.
    """
    config: BertConfig
    tensors: dict
    skipped: list = dataclasses.field(default_factory=list)
    vocab_file: str | None = None
    do_lower_case: bool | None = None
    notes: list = dataclasses.field(default_factory=list)
    source_names: dict = dataclasses.field(default_factory=dict)  # google name -> source's
    task: str | None = None  # None: pretraining; else a name of bert_tf.tasks.SPECS
    labels: list = dataclasses.field(default_factory=list)  # classes or tags, in id order

    def shapes(self):
        return google_shapes(self.config, self.task, len(self.labels))


def refuse_beyond_bert(config: BertConfig, source: str) -> None:
    """The checkpoint formats hold google's BERT only: a config with options beyond it
    (BertConfig.beyond_bert) is an error naming them."""
    if config.beyond_bert():
        raise ValueError(f"{source}: its model is not google's BERT "
                         f"({', '.join(config.beyond_bert())}), which is all the checkpoint "
                         f"formats hold; use a bert_tf run directory itself (--init_checkpoint, "
                         f"python -m bert_tf.export)")


def check_tensors(tensors, expected, source, name_of=lambda name: name):
    """Shapes and completeness against `expected` (google_shapes): a wrong shape or a partial
    part is an error naming the variable; returns the parts (pooler, heads) wholly absent."""
    for name, value in tensors.items():
        if tuple(value.shape) != expected[name]:
            google = "" if name_of(name) == name else f" (google name {name})"
            raise ValueError(f"{source}: variable {name_of(name)} has shape {tuple(value.shape)}, "
                             f"but the config needs {expected[name]}{google}")
    absent = []
    for part in dict.fromkeys(group(n) for n in expected):
        names = [n for n in expected if group(n) == part]
        missing = [n for n in names if n not in tensors]
        if len(missing) == len(names) and part != ENCODER:
            absent.append(part)
        elif missing:
            raise ValueError(f"{source}: the {part} is incomplete: {len(missing)} variable(s) "
                             f"missing, such as {name_of(missing[0])}")
    return absent


# === Our Keras model ===

# google name -> our Keras weight path (first match wins).
_KERAS_PATHS = [
    (r"^bert/embeddings/word_embeddings$", "word_embeddings/embeddings"),
    (r"^bert/embeddings/position_embeddings$", "position_embedding/embeddings"),
    (r"^bert/embeddings/token_type_embeddings$", "type_embeddings/embeddings"),
    (r"^bert/embeddings/LayerNorm/", "embeddings_layer_norm/"),
    (r"^bert/encoder/layer_(\d+)/attention/self/", r"transformer_layer_\1/self_attention/"),
    (r"^bert/encoder/layer_(\d+)/attention/output/dense/",
     r"transformer_layer_\1/self_attention/attention_output/"),
    (r"^bert/encoder/layer_(\d+)/attention/output/LayerNorm/",
     r"transformer_layer_\1/self_attention_layer_norm/"),
    (r"^bert/encoder/layer_(\d+)/intermediate/dense/", r"transformer_layer_\1/intermediate/"),
    (r"^bert/encoder/layer_(\d+)/output/dense/", r"transformer_layer_\1/output/"),
    (r"^bert/encoder/layer_(\d+)/output/LayerNorm/", r"transformer_layer_\1/output_layer_norm/"),
    (r"^bert/pooler/dense/", "pooler/dense/"),
    (r"^cls/predictions/transform/dense/", "masked_lm_transform/dense/"),
    (r"^cls/predictions/transform/LayerNorm/", "masked_lm_transform/layer_norm/"),
    (r"^cls/predictions/output_bias$", "masked_lm_output_bias/bias"),
    (r"^cls/seq_relationship/output_weights$", "next_sentence/kernel"),
    (r"^cls/seq_relationship/output_bias$", "next_sentence/bias"),
    (r"^cls/squad/output_weights$", "qa_outputs/kernel"),
    (r"^cls/squad/output_bias$", "qa_outputs/bias"),
    (r"^cls/token_classification/output_weights$", "classifier/kernel"),
    (r"^cls/token_classification/output_bias$", "classifier/bias"),
    (r"^output_weights$", "logits/kernel"),
    (r"^output_bias$", "logits/bias"),
]
# google [outputs, H], ours [H, outputs]
_TRANSPOSED_IN_KERAS = {"cls/seq_relationship/output_weights", "cls/squad/output_weights",
                        "cls/token_classification/output_weights", "output_weights"}


def keras_path(google_name: str) -> str:
    for pattern, replacement in _KERAS_PATHS:
        if re.search(pattern, google_name):
            return re.sub(pattern, replacement, google_name)
    raise KeyError(google_name)


def keras_weights(model):
    """Our model's weights by their path below the model ("word_embeddings/embeddings")."""
    return {w.path.split("/", 1)[1] if w.path.startswith(model.name + "/") else w.path: w
            for w in model.weights}


def assign_to_model(model, tensors):
    """Copies google-named arrays into a built model (a `BertPretrainer` or a task model,
    reshaping the attention kernels to Keras's [H, N, d] / [N, d, H]); the rest of the model
    keeps its values."""
    weights = keras_weights(model)
    for name, value in tensors.items():
        target = weights[keras_path(name)]
        value = value.T if name in _TRANSPOSED_IN_KERAS else value
        target.assign(np.reshape(value, target.shape).astype(target.dtype))


def model_tensors(model, shapes) -> dict:
    """The model's weights named in `shapes` (google_shapes), as google-named float32 arrays."""
    weights = keras_weights(model)
    tensors = {}
    for name, shape in shapes.items():
        value = np.asarray(weights[keras_path(name)].numpy(), np.float32)
        tensors[name] = np.reshape(value.T if name in _TRANSPOSED_IN_KERAS else value, shape)
    return tensors


# === Hugging Face names ===

def huggingface_name(google_name: str, prefix: str = "bert.") -> tuple[str, bool]:
    """google name -> (Hugging Face BertForPreTraining name, whether the array is transposed).

    `prefix` is "bert." for BertForPreTraining / BertForMaskedLM / BertFor..., "" for BertModel.
    """
    special = {"cls/predictions/output_bias": "cls.predictions.bias",
               "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
               "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
               "cls/squad/output_weights": "qa_outputs.weight",
               "cls/squad/output_bias": "qa_outputs.bias",
               "cls/token_classification/output_weights": "classifier.weight",
               "cls/token_classification/output_bias": "classifier.bias",
               "output_weights": "classifier.weight", "output_bias": "classifier.bias"}
    if google_name in special:
        return special[google_name], False
    name = re.sub(r"layer_(\d+)", r"layer.\1", google_name.removeprefix("bert/"))
    name = name.replace("/", ".")
    if google_name.startswith("bert/"):
        name = prefix + name
    if name.endswith(".kernel"):
        return name.removesuffix(".kernel") + ".weight", True  # torch Linear: [out, in]
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    if name.endswith("_embeddings"):
        name += ".weight"
    return name, False


# Names that older Hugging Face / pytorch-pretrained-bert checkpoints use, and tied copies.
HF_ALIASES = [(r"LayerNorm\.gamma$", "LayerNorm.weight"), (r"LayerNorm\.beta$", "LayerNorm.bias")]
HF_TIED = {"cls.predictions.decoder.weight": "bert/embeddings/word_embeddings",
            "cls.predictions.decoder.bias": "cls/predictions/output_bias"}

# HF config.json keys that describe a model other than the BERT we build, with the value we need.
_HF_REQUIRED = {"model_type": "bert", "position_embedding_type": "absolute", "is_decoder": False,
                "add_cross_attention": False}


def config_from_huggingface(values: dict, source: str) -> BertConfig:
    """Hugging Face `config.json` -> BertConfig; `hidden_act` is kept ("gelu" is exact in both)."""
    for key, needed in _HF_REQUIRED.items():
        if key in values and values[key] != needed:
            raise ConfigError(f"{source}: {key}={values[key]!r}; bert_tf converts only "
                              f"{key}={needed!r} (a BERT encoder)")
    if values.get("tie_word_embeddings") is False:
        raise ConfigError(f"{source}: tie_word_embeddings=false; bert_tf's masked-LM decoder is "
                          f"tied to the word embeddings")
    fields = [f.name for f in dataclasses.fields(BertConfig)]
    return BertConfig.from_dict({k: values[k] for k in fields if k in values}, source)


def task_from_huggingface(values: dict):
    """(task, labels) of a Hugging Face config.json: a finetuned sequence classification,
    question-answering or token classification model, else (None, []) for the pretrained
    model."""
    # transformers' TF classes saved their own name less "TF"; strip it where they did not
    spec = from_huggingface([a.removeprefix("TF") for a in values.get("architectures") or ()])
    if spec is None:
        return None, []
    if not spec.labelled:
        return spec.name, []
    id2label = values.get("id2label") or {}
    count = values.get("num_labels") or len(id2label)
    return spec.name, [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}")))
                       for i in range(count)]


def config_to_huggingface(config: BertConfig, pad_token_id: int, task=None, labels=()) -> dict:
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in CLASSIC}
    spec = spec_for(task)
    values.update(architectures=[spec.huggingface], model_type="bert", dtype="float32",
                  pad_token_id=pad_token_id, position_embedding_type="absolute",
                  is_decoder=False, add_cross_attention=False, tie_word_embeddings=True,
                  classifier_dropout=None, use_cache=True)
    if spec.labelled:
        values.update(id2label={str(i): label for i, label in enumerate(labels)},
                      label2id={label: i for i, label in enumerate(labels)})
    return values


# === Vocab helpers ===

def vocab_is_cased(vocab_file) -> bool:
    """A cased vocab has upper-case tokens; an uncased one (built from lower-cased text) has
    none besides bracketed specials such as [CLS]."""
    from bert_tf.text.tokenization import load_vocab, vocab_casing

    return vocab_casing(load_vocab(vocab_file)) == "cased"


def vocab_and_case(vocab_file, do_lower_case, notes, source):
    """The vocab path (must exist) and lower-casing, inferred from the vocab when not given."""
    import tensorflow as tf

    if not vocab_file or not tf.io.gfile.exists(vocab_file):
        raise ValueError(f"{source}: no vocab file at {vocab_file}; give --vocab_file")
    if do_lower_case is None:
        do_lower_case = not vocab_is_cased(vocab_file)
        notes.append(f"do_lower_case={do_lower_case}, inferred from {vocab_file} (it has "
                     f"{'' if do_lower_case else 'upper-case '}tokens"
                     f"{' in lower case only' if do_lower_case else ''}); "
                     f"pass --do_lower_case to override")
    return vocab_file, bool(do_lower_case)
