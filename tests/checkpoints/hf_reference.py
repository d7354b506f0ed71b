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
    model_class = getattr(transformers, job.get("model", "BertForPreTraining"))
    model = model_class(transformers.BertConfig(**job["config"]))
    model.save_pretrained(job["dir"])


def run(job):
    inputs = dict(np.load(job["inputs"]))
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
            positions = torch.from_numpy(inputs["masked_lm_positions"]).long()
            logits = heads.prediction_logits  # [B, T, V]
            outputs["masked_lm_logits"] = torch.gather(
                logits, 1, positions[:, :, None].expand(-1, -1, logits.shape[-1])).numpy()
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
