"""The docs stay true: every command names a real tool and real flags, every relative link and
anchor resolves, every `python` block runs, the README's tour runs as written on tiny data, and
every REST body goes through the signature it names. See docs/development.md#the-docs-are-tested.
"""

import argparse
import ast
import functools
import glob
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  the ops TF Serving links in
import yaml

from conftest import REPO_ROOT, TF_ERROR_LINE

DOCS = ["README.md", "CHANGELOG.md"] + sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
PAGES = ["data", "pretraining", "cloud-tpu", "multi-gpu-and-multi-worker", "finetuning",
         "feature-extraction",
         "export-and-serving", "checkpoints", "jax-and-gpu", "performance", "failure-behaviour",
         "development", "from-google-research-bert", "from-model-garden",
         "from-transformers-tf", "from-keras-hub", "from-tf-hub"]

INVOCATION = re.compile(r"(?:\S*/)?python[\d.]*\s+(?:-m\s+(bert_tf(?:\.\w+)+)|(tools/\w+\.py))")
FLAG = re.compile(r"(?:^|[\s\[])--([A-Za-z][\w-]*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def read(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        return f.read()


# === Command lines ===

def logical_lines(text):
    """(line number, line) of every code line of a markdown text: fenced blocks, indented
    blocks and inline code spans; a line ending in a backslash continues on the next."""
    code, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            code.append((number, line))
        else:
            code.extend((number, span) for span in re.findall(r"`([^`]+)`", line))
    joined, pending = [], None
    for number, line in code:
        if pending:
            pending = (pending[0], pending[1][:-1] + " " + line.strip())
        else:
            pending = (number, line.strip())
        if not pending[1].endswith("\\"):
            joined.append(pending)
            pending = None
    return joined + ([pending] if pending else [])


def invocations(text):
    """(line number, tool, its flags) of every `python -m bert_tf.X` or `python tools/X.py`:
    a tool's arguments end at a shell separator, a closing quote or a comment."""
    found = []
    for number, line in logical_lines(text):
        for match in INVOCATION.finditer(line):
            arguments = re.split(r"&&|\|\||;|\||\"|`|\s#", line[match.end():])[0]
            found.append((number, match.group(1) or match.group(2), FLAG.findall(arguments)))
    return found


def tool_source(tool):
    """The file of a tool, or None if there is none."""
    if tool.startswith("tools/"):
        candidates = [tool]
    else:
        path = tool.replace(".", "/")
        candidates = [path + ".py", path + "/__main__.py"]
    return next((c for c in candidates if os.path.isfile(os.path.join(REPO_ROOT, c))), None)


@functools.cache
def beam_options():
    """The option names Apache Beam's pipeline options define."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(conflict_handler="resolve")

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in set(subclasses(PipelineOptions)):
        cls._add_argparse_args(parser)
    return {s[2:] for action in parser._actions for s in action.option_strings}


def defined_flags(tool):
    """The flags a tool defines: a bert_tf command's from its SETTINGS (the typed settings it
    starts with) and absl's own; a script's from its own help (absl's --helpfull, argparse's
    --help). A boolean `--name` also gives `--noname`."""
    if not tool.startswith("tools/"):
        return command_flags(tool)
    source = tool_source(tool)
    argparse_tool = "argparse" in read(source)
    command = ([sys.executable, source] if tool.startswith("tools/") else
               [sys.executable, "-m", tool]) + (["--help"] if argparse_tool else ["--helpfull"])
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    # absl's --helpfull exits with status 1 after printing the flags
    assert result.returncode in (0, 1), f"{' '.join(command)}: {result.stderr[-2000:]}"
    names = set()
    for negatable, name in re.findall(r"^\s+(?:-\w, )?--(\[no\])?([\w-]+)", result.stdout,
                                      re.M):
        names.add(name)
        if negatable:
            names.add("no" + name)
    assert len(names) > 1, f"{tool}: no flags found in its help"
    return names


def command_flags(tool):
    """What `python -m <tool> --helpfull` lists, without starting it: the fields of its
    SETTINGS and the flags of the libraries it loads (absl's --verbosity, --helpfull, ...)."""
    import dataclasses

    from absl import flags as absl_flags

    from bert_tf.settings import _fields

    module = importlib.import_module(tool + (".__main__" if tool == "bert_tf.export" else ""))
    names = set()

    def add(config_class):
        for field, kind in _fields(config_class):
            if dataclasses.is_dataclass(kind):
                add(kind)
                continue
            names.add(field.name)
            if kind is bool:
                names.add("no" + field.name)
    for config_class in module.SETTINGS:
        add(config_class)
    for module_name, module_flags in absl_flags.FLAGS.flags_by_module_dict().items():
        if not module_name.startswith(("bert_tf", "tests", "test_")):
            for flag in module_flags:
                names.update([flag.name, "no" + flag.name] if flag.boolean else [flag.name])
    special = {"help", "helpfull", "helpshort", "helpxml"}  # absl's, not in flags_by_module_dict
    return names | special | {"no" + name for name in special} | {"flagfile", "undefok"}


def test_a_commands_flags_are_what_its_help_lists():
    """The in-process reading of a command's flags against its real --helpfull, for one."""
    assert command_flags("bert_tf.run_squad") >= defined_flags_from_help("bert_tf.run_squad")


def defined_flags_from_help(tool):
    result = subprocess.run([sys.executable, "-m", tool, "--helpfull"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    names = set()
    for negatable, name in re.findall(r"^\s+(?:-\w, ?)?--(\[no\])?([\w-]+)", result.stdout,
                                      re.M):
        names.update([name, "no" + name] if negatable else [name])
    assert "do_train" in names and "verbosity" in names, result.stdout[-2000:]
    return names


def problems_in(name, text, flags_of):
    """What is wrong with the command lines of one doc: unknown tools and unknown flags."""
    problems = []
    for number, tool, flags in invocations(text):
        if not tool_source(tool):
            problems.append(f"{name}:{number}: no tool {tool}")
            continue
        known = flags_of(tool)
        if tool == "bert_tf.create_pretraining_data" and "runner" in flags:
            known = known | beam_options()
        problems += [f"{name}:{number}: {tool} has no flag --{flag}" for flag in flags
                     if flag not in known]
    return problems


@pytest.fixture(scope="module")
def tool_flags():
    """{tool: its flags} for every tool the docs call, read in parallel."""
    tools = sorted({tool for name in DOCS for _, tool, _ in invocations(read(name))
                    if tool_source(tool)})
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(tools, pool.map(defined_flags, tools)))


@pytest.mark.slow
def test_every_command_names_a_tool_and_flags_that_exist(tool_flags):
    checked = sum(len(invocations(read(name))) for name in DOCS)
    assert checked > 45, "the docs' commands are found"
    problems = [p for name in DOCS for p in problems_in(name, read(name), tool_flags.get)]
    assert not problems, "\n".join(problems)
    misspelled = read("README.md").replace("--pack_sequences", "--pack_sequence")
    assert [p.split(": ", 1)[1] for p in problems_in("README.md", misspelled, tool_flags.get)] \
        == ["bert_tf.run_pretraining has no flag --pack_sequence"], "the README, one flag wrong"


def test_a_misspelled_flag_or_tool_is_caught():
    flags = {"bert_tf.run_pretraining": {"input_file", "output_dir", "pack_sequences",
                                         "nopack_sequences"}}
    doc = """
```
python -m bert_tf.run_pretraining --input_file='data/*' \\
    --output_dir=runs/x --pack_sequence
python -m bert_tf.run_pretrain --input_file=x
```
A span: `python3 -m bert_tf.run_pretraining --inputfile=x && ls --color`, and
`.venv/bin/python -m bert_tf.run_pretraining [--nopack_sequences]` is fine.
"""
    problems = problems_in("doc.md", doc, flags.get)
    assert problems == ["doc.md:3: bert_tf.run_pretraining has no flag --pack_sequence",
                        "doc.md:5: no tool bert_tf.run_pretrain",
                        "doc.md:7: bert_tf.run_pretraining has no flag --inputfile"]


# === Links and blocks ===

def anchors(text):
    """GitHub's anchors of a page's headings."""
    seen, result = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(FENCE, "", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def link_problems(name, text):
    problems = []
    for target in LINK.findall(re.sub(FENCE, "", text)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(os.path.dirname(name), path)) if path else name
        if path and not os.path.exists(os.path.join(REPO_ROOT, file)):
            problems.append(f"{name}: {target}: no such file")
        elif anchor and (not file.endswith(".md") or
                         anchor not in anchors(read(file) if path else text)):
            problems.append(f"{name}: {target}: no such heading")
    return problems


def test_every_relative_link_and_anchor_resolves():
    problems = [p for name in DOCS for p in link_problems(name, read(name))]
    assert not problems, "\n".join(problems)
    assert link_problems("docs/x.md", "[a](data.md#nope) [b](gone.md) [c](#the-top)\n# The top") \
        == ["docs/x.md: data.md#nope: no such heading", "docs/x.md: gone.md: no such file"]


def test_the_readme_is_short_and_reaches_every_page():
    readme = read("README.md")
    assert len(readme.splitlines()) <= 150
    for page in PAGES + ["model"]:
        assert f"(docs/{page}.md)" in readme, page
    assert "(CHANGELOG.md)" in readme
    everything = "\n".join(read(name) for name in DOCS)
    assert not re.search(r"\bissues? #?\d+\b|\bsessions?\b", everything, re.I), \
        "the docs speak of the product, not of how its work was organised"


def test_python_blocks_run_and_py_blocks_compile(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    ran = 0
    for name in DOCS:
        for language, block in FENCE.findall(read(name)):
            if language == "python":
                namespace = {}
                exec(compile(block, name, "exec"), namespace)
                ran += 1
                if "pretrainer" in namespace:  # docs/model.md's example
                    assert tuple(namespace["outputs"]["sequence_output"].shape) == (1, 6, 128)
                    assert tuple(namespace["logits"]["masked_lm_logits"].shape) == (1, 2, 30522)
            elif language == "py":
                ast.parse(block, name)
            elif language == "yaml":
                assert list(yaml.safe_load_all(block)), name
    assert ran >= 1


# === The tour ===

# The one switch: appended to each tour command, these replace its sizes (absl takes the last
# value of a flag given twice) and nothing else.
TOUR_SIZES = {
    "bert_tf.build_vocab": ["--vocab_size=2000"],
    "bert_tf.create_pretraining_data": ["--max_seq_length=32", "--max_predictions_per_seq=5"],
    "bert_tf.run_pretraining": [
        "--bert_config_file=tiny_bert_config.json", "--max_seq_length=32",
        "--max_predictions_per_seq=5", "--train_batch_size=8", "--num_train_steps=4",
        "--num_warmup_steps=1", "--steps_per_loop=2", "--save_checkpoints_steps=4",
        "--log_steps=2", "--eval_batch_size=8", "--max_eval_steps=2"],
    "bert_tf.run_classifier": ["--max_seq_length=32", "--train_batch_size=8",
                               "--eval_batch_size=8", "--num_train_epochs=1"],
    "bert_tf.export": ["--max_seq_length=32"],
    "bert_tf.convert_checkpoint": [],
}
TINY_CONFIG = {"vocab_size": 2000, "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02}
PREDICT_URL = re.compile(r"https?://[\w.]+:8501/v1/models/(\w+)(?:/versions/\d+)?:predict")


def tour_lines():
    readme = read("README.md")
    section = readme[readme.index("## A tour"):]
    block = FENCE.search(section).group(2)
    return [line for _, line in logical_lines("```\n" + block + "```\n")
            if line and not line.startswith("#")]


def write_tour_inputs(directory):
    """What a user brings: text, labelled files; and the tiny config of the size switch."""
    from bert_tf.data.sample_corpus import write_corpus

    os.makedirs(directory / "corpus")
    write_corpus(str(directory / "corpus" / "all.txt"))
    with open(directory / "corpus" / "all.txt", encoding="utf-8") as f:
        documents = f.read().split("\n\n")
    for i in range(2):  # two files of at most ~150 KB
        with open(directory / "corpus" / f"part-{i}.txt", "w", encoding="utf-8") as f:
            f.write("\n\n".join(documents[i::2])[:150_000].rsplit("\n\n", 1)[0] + "\n")
    os.remove(directory / "corpus" / "all.txt")
    rows = ["sentence\tlabel"] + [f"a {word} film , {extra} .\t{label}" for i in range(40)
                                  for word, label, extra in [("great", "pos", f"scene {i}"),
                                                             ("dull", "neg", f"part {i}")]]
    for split in ("train", "dev"):
        (directory / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    (directory / "tiny_bert_config.json").write_text(json.dumps(TINY_CONFIG))
    os.symlink(os.path.join(REPO_ROOT, "configs"), directory / "configs")


def run_tool(directory, arguments):
    """A command in the user's environment (none of the tests' log settings); (stdout, stderr)."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = REPO_ROOT
    result = subprocess.run([sys.executable, *arguments], cwd=directory, env=environment,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(arguments)}:\n{result.stderr[-3000:]}"
    return result.stdout, result.stderr


def rest_request(body):
    """A TF Serving REST predict body as the server decodes it: (signature name, {input: values},
    number of rows)."""
    signature = body.get("signature_name", "serving_default")
    if "instances" in body:
        rows = body["instances"]
        if isinstance(rows[0], dict):
            return signature, {key: [row[key] for row in rows] for key in rows[0]}, len(rows)
        return signature, {None: rows}, len(rows)
    inputs = body["inputs"]
    if isinstance(inputs, dict):
        return signature, inputs, len(next(iter(inputs.values())))
    return signature, {None: inputs}, len(inputs)


def predict(saved_model, body):
    """The body through the signature, as TF Serving would run it; returns the outputs."""
    signature_name, inputs, rows = rest_request(body)
    function = tf.saved_model.load(saved_model).signatures[signature_name]
    specs = function.structured_input_signature[1]
    if None in inputs:
        (only,) = specs
        inputs = {only: inputs[None]}
    assert set(inputs) == set(specs), f"{signature_name} takes {sorted(specs)}"
    outputs = function(**{key: tf.constant(value, specs[key].dtype)
                          for key, value in inputs.items()})
    for key, value in outputs.items():
        assert value.shape[0] == rows, key
        if value.dtype.is_floating:
            assert np.isfinite(value.numpy()).all(), key
    return outputs


def latest_version(model_dir):
    versions = [int(v) for v in os.listdir(model_dir) if v.isdigit()]
    assert versions, f"{model_dir}: no version"
    path = os.path.join(model_dir, str(max(versions)))
    assert os.path.exists(os.path.join(path, "saved_model.pb")), path
    return path


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """The README's tour, run as written in an empty directory (sizes from TOUR_SIZES); returns
    the directory and {served model name: its SavedModel}."""
    directory = tmp_path_factory.mktemp("tour")
    write_tour_inputs(directory)
    served, outputs = {}, {}
    for line in tour_lines():
        words = shlex.split(line.replace("$PWD", str(directory)))
        if words[0].startswith("python"):
            tool = words[2]
            if "--input_format=google_tf1" in words:  # google's release, made from our run
                run_tool(directory, ["-m", "bert_tf.convert_checkpoint", "--input_format=bert_tf",
                                     "--input=runs/base", "--output_format=google_tf1",
                                     "--output=" + os.path.dirname(
                                         next(w for w in words if w.startswith("--input="))[8:])])
            outputs[tool] = run_tool(directory, words[1:] + TOUR_SIZES[tool])
        elif words[0] == "docker":
            volume = words[words.index("-v") + 1]
            source, target = volume.rsplit(":", 1)
            name = next(w for w in words if w.startswith("MODEL_NAME=")).split("=", 1)[1]
            assert target == f"/models/{name}"
            image = words[-1]
            assert image.startswith("tensorflow/serving:") and tuple(
                map(int, image.split(":")[1].split("-")[0].split(".")[:2])) >= (2, 20), \
                "a TF Serving with tensorflow-text 2.20's ops"
            served[name] = latest_version(source)
        elif words[0] == "curl":
            name = PREDICT_URL.search(line).group(1)
            assert name in served, f"curl asks for {name}, the docker line serves {list(served)}"
            predict(served[name], json.loads(words[words.index("-d") + 1]))
        else:
            raise AssertionError(f"the tour has a line the test cannot run: {line}")
    assert set(outputs) == set(TOUR_SIZES), "every tool of the tour ran"
    for name in ("bert", "bert_encoder", "bert_preprocessor"):
        served[name] = latest_version(directory / "exports" / name)
    return {"dir": directory, "served": served, "outputs": outputs}


@pytest.mark.slow
def test_the_readme_tour_runs_as_written(tour):
    directory, outputs = tour["dir"], tour["outputs"]
    assert "step 4/4" in outputs["bert_tf.run_pretraining"][0]
    if not os.path.exists("/proc/driver/nvidia"):  # a CPU-only machine: quiet consoles
        for tool, (_, stderr) in outputs.items():
            noise = re.findall(TF_ERROR_LINE + r"|^.*Warning: .*$", stderr, re.M)
            assert not noise, f"{tool}: {noise}"
    assert json.loads((directory / "runs" / "sst2" / "eval_results.json").read_text())
    assert tf.train.latest_checkpoint(str(directory / "runs" / "google_base"))
    assert set(os.listdir(directory / "exports")) >= {"bert", "bert_encoder", "bert_preprocessor"}


def squad_export(tour):
    """A question-answering export of the tour's encoder, as run_squad writes one (untrained
    head: the request's shape is what is checked)."""
    from bert_tf import run_dir
    from bert_tf.export.question_answering import export_question_answerer
    from bert_tf.export.serving import ExportRequest
    from bert_tf.modeling import build_question_answerer

    files = run_dir.resolve(directory=str(tour["dir"] / "runs" / "base"))
    pretrainer, vocab = run_dir.load_pretrainer(files)
    windowing = {"doc_stride": 16, "max_query_length": 16, "max_answer_length": 10,
                 "version_2_with_negative": False, "null_score_diff_threshold": 0.0}
    return export_question_answerer(
        ExportRequest("question_answering", build_question_answerer(pretrainer.encoder), vocab,
                      files.do_lower_case, 64, {"flags": windowing}), str(tour["dir"] / "squad"))


@pytest.mark.slow
def test_every_rest_body_in_the_docs_runs_through_its_signature(tour):
    served = {**tour["served"], "squad": squad_export(tour)}
    checked = []
    for name in DOCS:
        for number, line in logical_lines(read(name)):
            url = PREDICT_URL.search(line)
            if line.startswith("curl") and url:
                assert url.group(1) in served, f"{name}:{number}: no export named {url.group(1)}"
                words = shlex.split(line)
                predict(served[url.group(1)], json.loads(words[words.index("-d") + 1]))
                checked.append(f"{name}: {url.group(1)}")
    assert len(checked) >= 7, checked
