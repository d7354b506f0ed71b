"""Hugging Face transformers (PyTorch, CPU) as the reference, run in its own process.

    python tests/hf_reference.py JOBS.json

JOBS.json is a list of jobs, done in order:
  {"op": "create", "dir": D, "config": {...}, "seed": 0, "model": "BertForPreTraining"}
      a randomly initialised model (BertForPreTraining unless "model" names another, such as
      BertForQuestionAnswering or BertForTokenClassification) saved with save_pretrained
  {"op": "run", "dir": D, "model": "BertForPreTraining"|"BertModel", "inputs": X.npz, "outputs": Y.npz}
      inputs: input_word_ids, input_mask, input_type_ids [B, T], masked_lm_positions [B, P];
      outputs: sequence_output, encoder_outputs_<i>, pooled_output (when the model has a
      pooler) and, for BertForPreTraining, masked_lm_logits [B, P, V] and next_sentence_logits
      [B, 2]; for BertForQuestionAnswering start_logits, end_logits [B, T]; for
      BertForTokenClassification logits [B, T, labels], for BertForSequenceClassification
      logits [B, labels]
  {"op": "create", "dir": D, "config": {...}, "model": "ModernBertForMaskedLM", "perturb": 0.1}
      a ModernBERT (ModernBertConfig), its norm weights and decoder bias moved off their
      initial 1 and 0 by N(0, perturb) so that a misplaced one shows
  {"op": "run", "dir": D, "model": "ModernBertForMaskedLM"|"ModernBertModel", ...}
      outputs sequence_output and, for ModernBertForMaskedLM, masked_lm_logits [B, P, V]
  {"op": "tokenize", "dir": D, "texts": [...], "output": Y.json}
      ids from AutoTokenizer.from_pretrained(D), no special tokens

Kept out of the test process: torch and TensorFlow need not share one.
"""

import json
import sys

import numpy as np
import torch
import transformers


def create(job):
    torch.manual_seed(job.get("seed", 0))
    name = job.get("model", "BertForPreTraining")
    config_class = transformers.ModernBertConfig if name.startswith("ModernBert") else \
        transformers.BertConfig
    model = getattr(transformers, name)(config_class(**job["config"]))
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" in param_name or param_name == "decoder.bias":
                param.add_(torch.randn_like(param) * job.get("perturb", 0.0))
    model.save_pretrained(job["dir"])


def gathered(logits, positions):
    """logits [B, T, V] at positions [B, P] -> [B, P, V]."""
    positions = torch.from_numpy(positions).long()
    return torch.gather(logits, 1, positions[:, :, None].expand(-1, -1, logits.shape[-1]))


def run_modernbert(job, inputs):
    model = getattr(transformers, job["model"]).from_pretrained(job["dir"]).eval()
    args = dict(input_ids=torch.from_numpy(inputs["input_word_ids"]).long(),
                attention_mask=torch.from_numpy(inputs["input_mask"]).long())
    encoder = model if job["model"] == "ModernBertModel" else model.model
    with torch.no_grad():
        outputs = {"sequence_output": encoder(**args).last_hidden_state.numpy()}
        if job["model"] == "ModernBertForMaskedLM":
            outputs["masked_lm_logits"] = gathered(
                model(**args).logits, inputs["masked_lm_positions"]).numpy()
    np.savez(job["outputs"], **outputs)


def run(job):
    inputs = dict(np.load(job["inputs"]))
    if job["model"].startswith("ModernBert"):
        return run_modernbert(job, inputs)
    model_class = getattr(transformers, job["model"])
    model = model_class.from_pretrained(job["dir"]).eval()
    bert = model if job["model"] == "BertModel" else model.bert
    args = dict(input_ids=torch.from_numpy(inputs["input_word_ids"]).long(),
                attention_mask=torch.from_numpy(inputs["input_mask"]).long(),
                token_type_ids=torch.from_numpy(inputs["input_type_ids"]).long())
    outputs = {}
    with torch.no_grad():
        encoded = bert(**args, output_hidden_states=True)
        outputs["sequence_output"] = encoded.last_hidden_state.numpy()
        if encoded.pooler_output is not None:
            outputs["pooled_output"] = encoded.pooler_output.numpy()
        for i, hidden in enumerate(encoded.hidden_states[1:]):
            outputs[f"encoder_outputs_{i}"] = hidden.numpy()
        if job["model"] == "BertForPreTraining":
            heads = model(**args)
            outputs["masked_lm_logits"] = gathered(heads.prediction_logits,
                                                   inputs["masked_lm_positions"]).numpy()
            outputs["next_sentence_logits"] = heads.seq_relationship_logits.numpy()
        if job["model"] == "BertForQuestionAnswering":
            heads = model(**args)
            outputs["start_logits"] = heads.start_logits.numpy()
            outputs["end_logits"] = heads.end_logits.numpy()
        if job["model"] in ("BertForTokenClassification", "BertForSequenceClassification"):
            outputs["logits"] = model(**args).logits.numpy()
    np.savez(job["outputs"], **outputs)


def tokenize(job):
    tokenizer = transformers.AutoTokenizer.from_pretrained(job["dir"])
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in job["texts"]]
    with open(job["output"], "w", encoding="utf-8") as f:
        json.dump({"ids": ids, "class": type(tokenizer).__name__}, f)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        for job in json.load(f):
            {"create": create, "run": run, "tokenize": tokenize}[job["op"]](job)
