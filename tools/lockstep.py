"""Finetuning in lockstep: bert_tf and transformers from the same weights (the new head's too),
fed the same batches in the same order with dropout off, compared step by step: the loss, the
gradients' global norm before clipping, the learning rate of the step, and every weight at a
few steps. Differences at float round-off mean the two train the same model the same way.

    python tools/finetune_compare.py --mode=lockstep [--encoder=minilm] [--steps=100]

Per task (classification, question answering, tagging) it
  1. reads the task's training files with the task's own `read` (bert_tf's batches: windows,
     labels, weights, dynamic padding, shuffle) and takes the first `steps` batches;
  2. builds the task model as the job does (`build_task_model`, `compile_model`: AdamW, warmup
     and linear decay over the job's total steps, clipping at global norm 1), saves it and
     converts it to transformers' Bert*For* format, so both start from identical weights;
  3. steps bert_tf as Keras's train step does (`compute_loss`, `optimizer.apply`), and
     transformers in its own process with torch.optim.AdamW (eps 1e-6, weight decay 0.01 off
     biases and LayerNorm), `get_linear_schedule_with_warmup` and `clip_grad_norm_(1.0)`;
  4. reports the largest relative differences, and the weights' difference against the size of
     the update itself (how far training moved them), per tensor group.

Float32 only. Needs requirements-dev.txt (transformers, torch; the MiniLM package for
--encoder=minilm).
"""

import json
import os
import subprocess
import sys

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TOOLS))
sys.path.insert(0, TOOLS)
from finetune_tasks import ARCHITECTURES  # noqa: E402

# transformers' word embedding is torch's nn.Embedding(padding_idx=pad_token_id), whose [PAD]
# row never gets a gradient; bert_tf's (google-research/bert's, Keras's Embedding) does, where
# padded positions reach the loss: question answering's softmax over every position. The one
# known difference; by default the comparison lets transformers train that row too, so that
# everything else is compared (--transformers_pad_row=frozen shows transformers' own).
PAD_ROW = "the [PAD] embedding row"

TORCH_STEPPER = r"""
import json, sys
import numpy as np, torch, transformers
from safetensors.torch import save_file
job = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
model = getattr(transformers, job["architecture"]).from_pretrained(job["model"])
if job["pad_row_trains"]:  # as in bert_tf and google's BERT (see PAD_ROW)
    model.bert.embeddings.word_embeddings.padding_idx = None
model.train()  # dropout is 0 in the config: train mode changes nothing else in BERT
named = list(model.named_parameters())
no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n
optimizer = torch.optim.AdamW(
    [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": 0.01},
     {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}],
    lr=job["learning_rate"], betas=(0.9, 0.999), eps=1e-6)
schedule = transformers.get_linear_schedule_with_warmup(optimizer, job["warmup_steps"],
                                                        job["total_steps"])
batches = np.load(job["batches"])
steps = []
for step in range(job["steps"]):
    args = {name: torch.from_numpy(batches[f"{step}/{name}"]).long()
            for name in ("input_ids", "attention_mask", "token_type_ids", "labels",
                         "start_positions", "end_positions") if f"{step}/{name}" in batches}
    lr = schedule.get_last_lr()[0]  # the rate this step's update uses
    loss = model(**args).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    steps.append({"loss": float(loss), "grad_norm": float(norm), "learning_rate": lr})
    if step + 1 in job["snapshots"]:
        save_file({n: p.detach().contiguous() for n, p in model.named_parameters()},
                  f"{job['output']}/weights_{step + 1}.safetensors")
with open(f"{job['output']}/steps.json", "w") as f:
    json.dump(steps, f)
"""


# === The encoder both start from ===

def without_dropout(hf_dir, target):
    """A copy of a Hugging Face BERT directory with dropout 0 (links to its other files)."""
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(hf_dir):
        if name != "config.json" and not os.path.exists(os.path.join(target, name)):
            os.symlink(os.path.abspath(os.path.join(hf_dir, name)), os.path.join(target, name))
    with open(os.path.join(hf_dir, "config.json")) as f:
        config = json.load(f)
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  classifier_dropout=None)
    with open(os.path.join(target, "config.json"), "w") as f:
        json.dump(config, f)
    return target


def truncated_minilm(work, layers):
    """all-MiniLM-L6-v2's first `layers` layers (its real weights, at a test's cost)."""
    from safetensors.numpy import load_file, save_file

    from real_weights import extract_minilm

    source = extract_minilm(os.path.join(work, "minilm"))
    if layers is None:
        return source
    target = os.path.join(work, f"minilm_{layers}_layers")
    os.makedirs(target, exist_ok=True)
    keep = {name: array for name, array in load_file(os.path.join(source, "model.safetensors"))
            .items() if not name.startswith("encoder.layer.")
            or int(name.split(".")[2]) < layers}
    save_file(keep, os.path.join(target, "model.safetensors"))
    with open(os.path.join(source, "config.json")) as f:
        config = json.load(f)
    config["num_hidden_layers"] = layers
    with open(os.path.join(target, "config.json"), "w") as f:
        json.dump(config, f)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(source, name), "rb") as f, open(os.path.join(target, name),
                                                               "wb") as g:
            g.write(f.read())
    return target


# === bert_tf's side ===

def _task(task, config):
    from bert_tf.finetuning import classification, question_answering, tagging

    return {"classification": classification.Classification,
            "question_answering": question_answering.QuestionAnswering,
            "tagging": tagging.Tagging}[task](config)


def torch_batch(task, element):
    """One of bert_tf's training batches as transformers' keyword arguments (numpy)."""
    x, y = element[0], element[1]
    batch = {"input_ids": x["input_word_ids"], "attention_mask": x["input_mask"],
             "token_type_ids": x["input_type_ids"]}
    if task == "question_answering":
        batch.update(start_positions=y["start_logits"], end_positions=y["end_logits"])
    elif task == "tagging":  # unlabelled positions (weight 0) are transformers' -100
        batch["labels"] = np.where(element[2] > 0, y, -100)
    else:
        batch["labels"] = y
    return {name: np.asarray(value) for name, value in batch.items()}


def save_as_huggingface(model, task, labels, config, work, name):
    """The bert_tf task model as a Hugging Face directory (through a bert_tf run)."""
    import tensorflow as tf

    from bert_tf import run_dir
    from bert_tf.checkpoints.convert import convert
    from bert_tf.modeling import task_encoder

    run = os.path.join(work, f"{name}_bert_tf")
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), run, 1).save(0)
    source = config.init_checkpoint
    files = run_dir.resolve(directory=source)
    run_dir.write(run, task_encoder(model).config, files.vocab_file,
                  do_lower_case=files.do_lower_case, task=task, labels=labels)
    target = os.path.join(work, f"{name}_hf")
    convert("bert_tf", run, "huggingface", target, log=lambda line: None)
    return target


def step_ours(model, batches, snapshots, save):
    """Keras's train step, one batch at a time: returns the per-step figures; `save(step)` is
    called after the snapshot steps."""
    import tensorflow as tf

    from bert_tf.training.optimization import global_norm

    variables = model.trainable_variables
    model.optimizer.build(variables)

    @tf.function
    def step(element):
        x, y = element[0], element[1]
        weights = element[2] if len(element) > 2 else None
        learning_rate = model.optimizer.learning_rate  # the schedule at this step
        with tf.GradientTape() as tape:
            predicted = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=predicted, sample_weight=weights,
                                      training=True)
        gradients = tape.gradient(loss, variables)
        norm = global_norm(gradients)  # the optimizer's (Keras's own is another, see there)
        model.optimizer.apply(gradients, variables)
        return loss, norm, learning_rate

    figures = []
    for index, element in enumerate(batches):
        loss, norm, rate = step(element)
        figures.append({"loss": float(loss), "grad_norm": float(norm),
                        "learning_rate": float(rate)})
        if index + 1 in snapshots:
            save(index + 1)
    return figures


def run_task(task, files, encoder_dir, steps, snapshots, work, learning_rate,
             pad_row_trains=True):
    """Both sides of one task; returns the report's dict."""
    import keras
    import tensorflow as tf
    from safetensors.numpy import load_file

    from bert_tf.finetuning.encoder_source import encoder_source, load_encoder, source_vocab
    from bert_tf.finetuning.fitting import compile_model
    from bert_tf.modeling import build_task_model

    from finetune_tasks import task_config

    out = os.path.join(work, task)
    os.makedirs(out, exist_ok=True)
    config = task_config(task, files, out, encoder_dir, 0, "float32",
                         learning_rate=learning_rate)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32")
    source = encoder_source(config)
    instance = _task(task, config)
    vocab = source_vocab(source, False)
    data = instance.read(source, vocab, lambda line: None)
    # the job's schedule, stretched when the comparison runs longer than the job would
    total = max(int(data.steps_per_epoch * config.num_train_epochs), steps)
    batches = [tf.nest.map_structure(lambda t: t.numpy(), element)
               for element in data.train.take(steps)]
    model = build_task_model(task, load_encoder(source), data.labels)
    compile_model(model, config, total, **instance.compile_args())
    start = save_as_huggingface(model, task, data.labels, config, out, "start")
    arrays = {}
    for index, element in enumerate(batches):
        arrays.update({f"{index}/{k}": v for k, v in torch_batch(task, element).items()})
    np.savez(os.path.join(out, "batches.npz"), **arrays)
    theirs_dir = os.path.join(out, "theirs")
    os.makedirs(theirs_dir, exist_ok=True)
    job = {"architecture": ARCHITECTURES[task], "model": start, "batches":
           os.path.join(out, "batches.npz"), "steps": len(batches), "snapshots": snapshots,
           "learning_rate": config.learning_rate, "total_steps": total,
           "warmup_steps": int(config.warmup_proportion * total), "output": theirs_dir,
           "pad_row_trains": pad_row_trains}
    process = subprocess.Popen([sys.executable, "-c", TORCH_STEPPER, json.dumps(job)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    ours = step_ours(model, [tuple(e) for e in batches], set(snapshots),
                     lambda step: save_as_huggingface(model, task, data.labels, config, out,
                                                      f"ours_{step}"))
    _, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"transformers' side failed:\n{stderr[-3000:]}")
    with open(os.path.join(theirs_dir, "steps.json")) as f:
        theirs = json.load(f)
    initial = load_file(os.path.join(start, "model.safetensors"))
    weights = {}
    for step in snapshots:
        if step > len(batches):
            continue
        our_weights = load_file(os.path.join(out, f"ours_{step}_hf", "model.safetensors"))
        their_weights = load_file(os.path.join(theirs_dir, f"weights_{step}.safetensors"))
        weights[step] = weight_differences(initial, our_weights, their_weights,
                                           vocab.pad_id)
    return {"task": task, "steps": len(batches), "total_steps": total,
            "warmup_steps": job["warmup_steps"], "ours": ours, "theirs": theirs,
            "weights": weights}


def group_of(name):
    """A weight's group for the report: embeddings, attention, feed-forward, LayerNorm,
    pooler, head."""
    if "LayerNorm" in name:
        return "layer_norm"
    for part, group in (("embeddings", "embeddings"), ("attention", "attention"),
                        ("intermediate", "feed_forward"), ("output", "feed_forward"),
                        ("pooler", "pooler")):
        if part in name:
            return group
    return "head"


def weight_differences(initial, ours, theirs, pad_id):
    """Per group: the largest |ours - theirs| over the largest |theirs - initial| (how far
    the two apart against how far training moved the weights); the word embeddings' [PAD] row
    is a group of its own (PAD_ROW)."""
    groups = {}
    for name, value in theirs.items():
        if name not in ours or name not in initial:
            continue
        parts = {group_of(name): (ours[name], value, initial[name])}
        if name.endswith("word_embeddings.weight"):
            rows = np.arange(len(value)) != pad_id
            parts = {"embeddings": (ours[name][rows], value[rows], initial[name][rows]),
                     "pad_row": (ours[name][pad_id], value[pad_id], initial[name][pad_id])}
        for key, (our, their, start) in parts.items():
            group = groups.setdefault(key, {"apart": 0.0, "moved": 0.0})
            group["apart"] = max(group["apart"], float(np.max(np.abs(our - their))))
            group["moved"] = max(group["moved"], float(np.max(np.abs(their - start))))
    for group in groups.values():
        group["ratio"] = (group["apart"] / group["moved"] if group["moved"]
                          else 0.0 if group["apart"] == 0 else float("inf"))
    return groups


def summarize(report):
    """The largest relative differences of the per-step figures, over all steps and over the
    first ten."""
    summary = {}
    for field in ("loss", "grad_norm", "learning_rate"):
        ours = np.array([s[field] for s in report["ours"]])
        theirs = np.array([s[field] for s in report["theirs"]])
        relative = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)
        relative[(ours == 0) & (theirs == 0)] = 0
        summary[field] = {"max_relative": float(relative.max()),
                          "first_10_max_relative": float(relative[:10].max()),
                          "worst_step": int(relative.argmax()) + 1}
    summary["weights"] = {step: {g: round(v["ratio"], 6) for g, v in groups.items()}
                          for step, groups in report["weights"].items()}
    return summary


def lockstep(tasks, encoder, steps, work, learning_rate=5e-5, pad_row_trains=True, log=print):
    """The comparison for `tasks` from `encoder` ("minilm", "minilm:2" for its first two
    layers, or a Hugging Face BERT directory); returns {task: report with its summary}."""
    from bert_tf.checkpoints.convert import convert
    from finetune_tasks import write_data

    if encoder.startswith("minilm"):
        layers = int(encoder.split(":")[1]) if ":" in encoder else None
        hf = truncated_minilm(work, layers)
    else:
        hf = encoder
    hf = without_dropout(hf, os.path.join(work, "encoder_hf"))
    encoder_dir = os.path.join(work, "encoder")
    if not os.path.exists(encoder_dir):
        convert("huggingface", hf, "bert_tf", encoder_dir, log=lambda line: None)
    files = write_data(work)
    snapshots = sorted({1, min(10, steps), steps})
    results = {}
    for task in tasks:
        report = run_task(task, files[task], encoder_dir, steps, snapshots, work,
                          learning_rate, pad_row_trains)
        report["summary"] = summarize(report)
        results[task] = report
        log(f"{task}: {json.dumps(report['summary'])}")
    return results


def write_report(results, output=None, log=print):
    """Prints each task's per-step table (every tenth step) and summary; `output`: the whole
    report as JSON."""
    for task, report in results.items():
        log(f"== {task}: {report['steps']} steps of {report['total_steps']} "
            f"({report['warmup_steps']} warmup)")
        log("step  loss bert_tf / transformers   grad norm bert_tf / transformers   lr")
        for index, (ours, theirs) in enumerate(zip(report["ours"], report["theirs"])):
            if index == 0 or (index + 1) % 10 == 0:
                log(f"{index + 1:4d}  {ours['loss']:.7f} / {theirs['loss']:.7f}   "
                    f"{ours['grad_norm']:.6g} / {theirs['grad_norm']:.6g}   "
                    f"{ours['learning_rate']:.4g}")
        summary = report["summary"]
        log("largest relative difference: " + ", ".join(
            f"{field} {summary[field]['max_relative']:.2g} (step {summary[field]['worst_step']})"
            for field in ("loss", "grad_norm", "learning_rate")))
        for step, groups in summary["weights"].items():
            log(f"weights after step {step}, apart / moved: " + ", ".join(
                f"{group} {ratio:.2g}" for group, ratio in groups.items()))
    if output:
        with open(output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
