"""`tf.distribute` strategies by name, which worker is the chief, and the multi-worker
cluster of TF_CONFIG (checked, its workers named in errors).

TF_CONFIG as the launchers write it (docs/deploy/ has a manifest for each):
- Kubeflow's TFJob: `chief`, `worker` and `evaluator` replicas (and the older `master`);
- Vertex AI: worker pool 0 is `chief`, pool 1 `worker`, pool 2 `ps`, pool 3 `evaluator`; the
  evaluator is not in "cluster", and TF_CONFIG has "environment" and "job" keys besides;
- a JobSet or indexed Job: whatever its command builds from the pod's index.
`master` is the chief under an older name; an `evaluator` task does not train (run_pretraining
runs the sidecar evaluator there); `ps` (parameter servers) has no part in
MultiWorkerMirroredStrategy and is refused.
"""

import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse

import tensorflow as tf

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def make_strategy(name, tpu="", num_gpus=0, worker_wait_secs=300):
    """`one_device`, `mirrored`, `multi_worker_mirrored` (TF_CONFIG; the workers wait up to
    `worker_wait_secs` for each other, then this process ends naming those missing) or `tpu`."""
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus > 0 else "/cpu:0")
    if name == "mirrored":
        devices = [f"/gpu:{i}" for i in range(num_gpus)] if num_gpus > 0 else None
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        tf_config = read_tf_config()
        if tf_config["task"]["type"] == "evaluator":
            raise ValueError("TF_CONFIG: this process is the evaluator task, which does not "
                             "train: run it with --mode=continuous_eval")
        # TensorFlow waits for every worker inside C++ without a bound (nor a Python thread
        # running): a watchdog process ends this one if the wait outlasts worker_wait_secs.
        own = tf_config["task"]
        peers = [(describe_task(tf_config, job, index), tf_config["cluster"][job][index])
                 for job, index in other_tasks(tf_config)]
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(worker_wait_secs),
             describe_task(tf_config, own["type"], own["index"]), json.dumps(peers)],
            stdin=subprocess.PIPE)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        finally:
            watchdog.stdin.close()  # the start is over: the watchdog exits
            watchdog.wait()
    if name == "tpu":
        return tpu_strategy(tpu or "local")
    raise ValueError(f"--distribution_strategy must be one of {', '.join(STRATEGIES)}; "
                     f"got {name!r}")


class TPUUnavailableError(OSError):
    """No TPU at what --tpu names; the message says what was tried."""


def tpu_strategy(tpu):
    """TPUStrategy for `tpu`: "local" (this Cloud TPU VM), a TPU name (looked up through the GCE
    metadata server) or a grpc://host:port address (checked to answer first: TensorFlow would
    otherwise wait for it without end)."""
    if tpu.startswith("grpc://"):
        address = urllib.parse.urlsplit(tpu)
        try:
            socket.create_connection((address.hostname, address.port or 8470), timeout=10).close()
        except OSError as e:
            raise TPUUnavailableError(f"--tpu={tpu}: nothing answers at {address.hostname}:"
                                      f"{address.port or 8470} ({e})") from None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as e:
        tried = ("this machine's TPU (a Cloud TPU VM)" if tpu == "local" else
                 f"the TPU at {tpu}" if tpu.startswith("grpc://") else
                 f"the TPU named {tpu!r} through the GCE metadata server")
        reason = (str(e).strip() or type(e).__name__).splitlines()[0].split(". ")[0]
        raise TPUUnavailableError(f"--distribution_strategy=tpu: could not reach {tried}: "
                                  f"{reason[:200]}") from None
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """Whether this worker writes checkpoints and summaries (every worker of a one-machine run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().jobs)


def workers(strategy) -> int:
    """The number of worker processes (hosts) that run `strategy`'s steps together."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, ())) for job in ("chief", "worker"))


TRAINING_JOBS = ("chief", "worker")  # the tasks that train together


def task_type():
    """This process's task type in TF_CONFIG ("chief", "worker", "evaluator", ...; "master" is
    "chief"), or None without TF_CONFIG (or with one that names none)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
    except (ValueError, AttributeError):
        return None  # read_tf_config says what is wrong, where it matters
    kind = task.get("type") if isinstance(task, dict) else None
    return "chief" if kind == "master" else kind


def read_tf_config() -> dict:
    """The TF_CONFIG environment variable of a multi-worker run, checked: {"cluster": {job:
    [host:port, ...]}, "task": {"type": job, "index": i}}. An older launcher's `master` is
    renamed `chief`, and the evaluator is taken out of "cluster" (it does not train), in the
    environment too, where TensorFlow reads it; a cluster with `ps` tasks is refused."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("--distribution_strategy=multi_worker_mirrored needs the TF_CONFIG "
                         "environment variable (the cluster and this worker's task); it is unset")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if (not isinstance(cluster, dict) or not cluster
            or not all(isinstance(v, list) and all(isinstance(a, str) for a in v)
                       for v in cluster.values())):
        raise ValueError(f'TF_CONFIG needs "cluster": {{"worker": ["host:port", ...]}}; got '
                         f"{text[:200]!r}")
    is_ps = isinstance(task, dict) and task.get("type") == "ps"
    if is_ps or "ps" in cluster:
        who = (f"this process is task ps {task.get('index')}" if is_ps
               else f"the cluster has {len(cluster['ps'])} ps task(s)")
        raise ValueError(f"TF_CONFIG: {who}: bert_tf trains with multi_worker_mirrored (chief "
                         f"and workers) and has no use for parameter servers; start the job "
                         f"without ps replicas")
    if "master" in cluster:
        cluster["chief"] = cluster.pop("master")
    if isinstance(task, dict) and task.get("type") == "master":
        task["type"] = "chief"
    evaluator = isinstance(task, dict) and task.get("type") == "evaluator"
    cluster.pop("evaluator", None)
    if not any(job in cluster for job in TRAINING_JOBS):
        raise ValueError(f'TF_CONFIG needs "cluster": {{"worker": ["host:port", ...]}}; got '
                         f"{text[:200]!r}")
    if not evaluator and (not isinstance(task, dict) or task.get("type") not in cluster
                          or not isinstance(task.get("index"), int)
                          or not 0 <= task["index"] < len(cluster[task["type"]])):
        raise ValueError(f'TF_CONFIG needs "task": {{"type": one of {sorted(cluster)}, "index": '
                         f"0..n-1 of that job's addresses}}; got {text[:200]!r}")
    os.environ["TF_CONFIG"] = json.dumps(config)
    return config


def other_tasks(config) -> list:
    """The (job, index) of every task that trains in TF_CONFIG's cluster but this one."""
    own = (config["task"]["type"], config["task"]["index"])
    return [(job, index) for job, addresses in config["cluster"].items() if job in TRAINING_JOBS
            for index in range(len(addresses)) if (job, index) != own]


def describe_task(config, job, index) -> str:
    """"worker 1 (10.0.0.2:2222)" from TF_CONFIG."""
    addresses = config["cluster"].get(job, [])
    return f"{job} {index}" + (f" ({addresses[index]})" if index < len(addresses) else "")


def lost_worker(config, message) -> str:
    """Which worker a multi-worker error is about, for messages: the one it names (TensorFlow's
    /job:worker/task:N, or its address), else the only other worker; "a worker" when unknown."""
    others = other_tasks(config)
    named = [(job, int(index)) for job, index in
             re.findall(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)", message or "")]
    named += [(job, index) for job, index in others
              if re.search(rf"(?<![\d.]){re.escape(config['cluster'][job][index])}(?!\d)",
                           message or "")]
    for task in named + (others if len(others) == 1 else []):
        if task in others:
            return describe_task(config, *task)
    return "a worker"


# The watchdog of a multi-worker start (plain Python, no TensorFlow): when its stdin stays open
# for `seconds`, it names the peers that do not answer and ends the waiting process.
_WATCHDOG = """
import json, os, select, signal, socket, sys
pid, seconds, me, peers = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
if not select.select([sys.stdin], [], [], seconds)[0]:
    missing = []
    for name, address in peers:
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
        except (OSError, ValueError):
            missing.append(name)
    print(f"multi_worker_mirrored: error: {me} waited {seconds} s (--worker_wait_secs) for the "
          f"other workers to start; " + (f"not started: {', '.join(missing)}" if missing else
                                         "they answer but did not join") +
          ". Start every worker with the same TF_CONFIG cluster", file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""
