"""The launchers of docs/deploy/: each manifest parses, names flags that exist, gives the platform
more time than bert_tf's grace period, and the TF_CONFIG each launcher sets works when fed to
local processes: the chief and workers train, the evaluator evaluates every checkpoint and exits
when training ends. A parameter server is refused in one line; `master` is the chief."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

import pytest
import tensorflow as tf
import yaml

from bert_tf.training import strategy as strategies
from bert_tf.training.pretraining import PretrainingConfig
from conftest import REPO_ROOT
from pretraining_fixtures import free_ports, launch_tasks, make_tiny_data, tiny_config_file

DEPLOY = os.path.join(REPO_ROOT, "docs", "deploy")
FLAGS = {field.name for field in dataclasses.fields(PretrainingConfig)}


def manifest(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return yaml.safe_load(f)


def flags_of(words):
    """{name: value} of the --name=value words of a command (a list, or one shell script)."""
    if isinstance(words, str):
        words = re.findall(r"--\w+=\S+", words)
    return dict(re.fullmatch(r"--(\w+)=(.*)", w).groups() for w in words if w.startswith("--"))


def tfjob_commands():
    specs = manifest("tfjob.yaml")["spec"]["tfReplicaSpecs"]
    return {kind: spec for kind, spec in specs.items()}


def jobset_script():
    jobs = {job["name"]: job for job in manifest("jobset.yaml")["spec"]["replicatedJobs"]}
    container = jobs["workers"]["template"]["spec"]["template"]["spec"]["containers"][0]
    return container["command"][2], jobs


def test_each_manifest_names_flags_that_exist_and_outlasts_the_grace_period():
    specs = tfjob_commands()
    assert set(specs) == {"Chief", "Worker", "Evaluator"}
    for kind, spec in specs.items():
        assert spec["restartPolicy"] == "ExitCode"
        pod = spec["template"]["spec"]
        command = pod["containers"][0]["command"]
        assert command[:3] == ["python", "-m", "bert_tf.run_pretraining"]
        flags = flags_of(command)
        assert set(flags) <= FLAGS, set(flags) - FLAGS
        assert pod["terminationGracePeriodSeconds"] > float(flags["preemption_grace_secs"])

    script, jobs = jobset_script()
    flags = flags_of(script)
    assert set(flags) <= FLAGS and flags["distribution_strategy"] == "multi_worker_mirrored"
    for job in jobs.values():
        spec = job["template"]["spec"]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"  # what podFailurePolicy requires
        assert pod["terminationGracePeriodSeconds"] > float(flags["preemption_grace_secs"])
        rules = {rule["action"]: rule for rule in spec["podFailurePolicy"]["rules"]}
        assert rules["FailJob"]["onExitCodes"]["values"] == [1]  # bad data or flags
        assert any(rule.get("onExitCodes", {}).get("values") == [143]
                   for rule in spec["podFailurePolicy"]["rules"] if rule["action"] == "Ignore")

    pools = manifest("vertex-ai-custom-job.yaml")["workerPoolSpecs"]
    assert len(pools) == 4 and pools[2] == {}  # chief, workers, no ps, evaluator
    for pool in (pools[0], pools[1], pools[3]):
        assert pool["containerSpec"]["command"] == ["python", "-m", "bert_tf.run_pretraining"]
        assert set(flags_of(pool["containerSpec"]["args"])) <= FLAGS


def jobset_tf_config(task, index, hosts):
    """The TF_CONFIG the JobSet's script builds in pod `index` of `task`, its host names
    replaced by `hosts` (local addresses)."""
    script, _ = jobset_script()
    prologue = script.split("exec python")[0] + 'echo "$TF_CONFIG"\n'
    out = subprocess.run(["bash", "-c", prologue], check=True, capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "TASK": task, "WORKERS": "2",
                              **({"JOB_COMPLETION_INDEX": str(index)} if index is not None
                                 else {})}).stdout
    config = json.loads(out)
    names = config["cluster"]["worker"]
    assert names == [f"bert-base-workers-0-{i}.bert-base:2222" for i in range(2)]
    config["cluster"]["worker"] = hosts
    return config


def launcher_tf_configs(launcher):
    """{process name: the TF_CONFIG the launcher sets there}, on local ports."""
    chief, worker, evaluator = (f"127.0.0.1:{port}" for port in free_ports(3))
    if launcher == "tfjob":  # the Kubeflow operator: every replica type in "cluster"
        cluster = {"chief": [chief], "worker": [worker], "evaluator": [evaluator]}
        return {name: {"cluster": cluster, "task": {"type": kind, "index": 0}}
                for name, kind in (("chief", "chief"), ("worker", "worker"),
                                   ("evaluator", "evaluator"))}
    if launcher == "vertex":  # pools 0, 1, 3: no evaluator in "cluster"; keys besides
        cluster = {"chief": [chief], "worker": [worker]}
        job = manifest("vertex-ai-custom-job.yaml")
        return {name: {"cluster": cluster, "task": {"type": kind, "index": 0, "trial": ""},
                       "environment": "cloud", "job": job}
                for name, kind in (("chief", "chief"), ("worker", "worker"),
                                   ("evaluator", "evaluator"))}
    hosts = [chief, worker]  # the JobSet's indexed pods; worker 0 is the chief
    return {"worker0": jobset_tf_config("worker", 0, hosts),
            "worker1": jobset_tf_config("worker", 1, hosts),
            "evaluator": jobset_tf_config("evaluator", None, hosts)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    return {"glob": make_tiny_data(str(directory)), "config": tiny_config_file(str(directory))}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["tfjob", "vertex", "jobset"])
def test_the_launchers_tf_config_trains_and_evaluates_every_checkpoint(data, tmp_path,
                                                                       launcher):
    output_dir = tmp_path / "run"
    processes = launch_tasks(data, output_dir, launcher_tf_configs(launcher), [
        "--num_train_steps=20", "--save_checkpoints_steps=10", "--log_steps=10",
        "--do_eval=false", "--max_eval_steps=2", "--eval_timeout_secs=240"])
    deadline = time.monotonic() + 300
    results = {}
    for name, process in processes.items():
        try:
            results[name] = (process.communicate(timeout=max(1, deadline - time.monotonic()))[0],
                             process.returncode)
        except subprocess.TimeoutExpired:
            for p in processes.values():
                p.kill()
            pytest.fail(f"{name} still running: {[p.communicate()[0][-1500:] for p in processes.values()]}")
    for name, (out, code) in results.items():
        assert code == 0, (name, out[-3000:])
    out = results["evaluator"][0]
    assert "this process is the evaluator task" in out
    assert "eval at step 10:" in out and "eval at step 20:" in out, out[-3000:]
    assert "the run's last step (20) is evaluated; exiting" in out
    state = json.loads((output_dir / "continuous_eval.json").read_text())
    assert state["evaluated"] == [10, 20]
    assert tf.train.latest_checkpoint(str(output_dir)).endswith("ckpt-20")
    assert (output_dir / "eval").is_dir()


def test_parameter_servers_are_refused_in_one_line(tmp_path):
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]}
    for task in ({"type": "ps", "index": 0}, {"type": "worker", "index": 0}):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}
        if task["type"] == "worker":  # the library call, for the second message
            os.environ["TF_CONFIG"] = env["TF_CONFIG"]
            try:
                with pytest.raises(ValueError, match="the cluster has 1 ps task"):
                    strategies.read_tf_config()
            finally:
                del os.environ["TF_CONFIG"]
            continue
        finished = subprocess.run(
            [sys.executable, "-m", "bert_tf.run_pretraining", f"--output_dir={tmp_path}/run",
             "--distribution_strategy=multi_worker_mirrored"], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=120)
        assert finished.returncode == 1  # a mistake in the job, not worth a retry
        lines = [line for line in finished.stderr.splitlines()
                 if line.startswith("run_pretraining:")]
        assert lines == ["run_pretraining: error: TF_CONFIG: this process is task ps 0: bert_tf "
                         "trains with multi_worker_mirrored (chief and workers) and has no use "
                         "for parameter servers; start the job without ps replicas"], \
            finished.stderr[-2000:]
        assert "Traceback" not in finished.stderr
        assert not (tmp_path / "run").exists()


def test_master_is_the_chief_and_the_evaluator_is_no_trainer(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"master": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222"]},
        "task": {"type": "master", "index": 0}, "environment": "cloud"}))
    config = strategies.read_tf_config()
    assert config["cluster"] == {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222"]}
    assert json.loads(os.environ["TF_CONFIG"])["task"]["type"] == "chief"  # for TensorFlow
    assert strategies.task_type() == "chief"
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["10.0.0.1:2222"], "evaluator": ["10.0.0.3:2222"]},
        "task": {"type": "evaluator", "index": 0}}))
    assert strategies.task_type() == "evaluator"
    assert strategies.read_tf_config()["cluster"] == {"chief": ["10.0.0.1:2222"]}
    from bert_tf.training.pretraining import for_this_task
    config = for_this_task(PretrainingConfig(distribution_strategy="multi_worker_mirrored"),
                           log=lambda _: None)
    assert (config.mode, config.distribution_strategy) == ("continuous_eval", "one_device")
    with pytest.raises(ValueError, match="the evaluator task, which does not train"):
        strategies.make_strategy("multi_worker_mirrored")


# TF Serving's BatchingParameters (tensorflow_serving/servables/tensorflow/
# session_bundle_config.proto; the pip package tensorflow-serving-api does not ship it): the
# fields the batching files may set, with their proto types.
BATCHING_FIELDS = {"max_batch_size": "Int64Value", "batch_timeout_micros": "Int64Value",
                   "max_enqueued_batches": "Int64Value", "num_batch_threads": "Int64Value",
                   "thread_pool_name": "StringValue", "allowed_batch_sizes": "repeated int64",
                   "pad_variable_length_inputs": "bool"}


def batching_parameters():
    """The BatchingParameters message class, built from the fields above."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(name="batching.proto", package="tensorflow.serving",
                                              dependency=[wrappers.name], syntax="proto3")
    message = file.message_type.add(name="BatchingParameters")
    types = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate(BATCHING_FIELDS.items(), 1):
        field = message.field.add(name=name, number=number)
        if kind.endswith("Value"):
            field.type, field.type_name = types.TYPE_MESSAGE, f".google.protobuf.{kind}"
            field.label = types.LABEL_OPTIONAL
        elif kind == "bool":
            field.type, field.label = types.TYPE_BOOL, types.LABEL_OPTIONAL
        else:
            field.type, field.label = types.TYPE_INT64, types.LABEL_REPEATED
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


@pytest.mark.parametrize("name", ["tf_serving_batching_cpu.config",
                                  "tf_serving_batching_gpu.config"])
def test_batching_files_parse_as_tf_servings_batching_parameters(name):
    from google.protobuf import text_format

    with open(os.path.join(DEPLOY, name)) as f:
        parameters = text_format.Parse(f.read(), batching_parameters()())
    assert parameters.num_batch_threads.value >= 1
    assert parameters.max_batch_size.value >= 1
    sizes = list(parameters.allowed_batch_sizes)
    if sizes:  # TF Serving's rule: increasing, the last equal to max_batch_size
        assert sizes == sorted(set(sizes)) and sizes[-1] == parameters.max_batch_size.value
    with pytest.raises(text_format.ParseError):  # a misspelt field is refused, as the server
        text_format.Parse("max_batch_sise { value: 1 }", batching_parameters()())
