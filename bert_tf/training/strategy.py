"""`tf.distribute` strategies by name (`auto`, the default, picks one for the hardware and the
launcher: `choose`), which worker is the chief, and the multi-worker cluster of TF_CONFIG
(checked, its workers named in errors).

TF_CONFIG as the launchers write it (docs/deploy/ has a manifest for each):
- Kubeflow's TFJob: `chief`, `worker` and `evaluator` replicas (and the older `master`);
- Vertex AI: worker pool 0 is `chief`, pool 1 `worker`, pool 2 `ps`, pool 3 `evaluator`; the
  evaluator is not in "cluster", and TF_CONFIG has "environment" and "job" keys besides;
- a JobSet or indexed Job: whatever its command builds from the pod's index.
`master` is the chief under an older name; an `evaluator` task does not train (run_pretraining
runs the sidecar evaluator there); `ps` (parameter servers) has no part in
MultiWorkerMirroredStrategy and is refused.
"""

import contextlib
import dataclasses
import glob
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse

import tensorflow as tf

from bert_tf.settings import Settings, setting
from bert_tf.training.precision import POLICIES as PRECISION_POLICIES

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
# The flags' help, for every job that takes them.
HELP = ("auto: a TPU when one is configured (--tpu, $TPU_NAME, TPU chips on this machine), "
        "multi_worker_mirrored when TF_CONFIG names several workers, mirrored over several "
        "GPUs, else one_device (the GPU, or the CPU); the choice is logged and recorded. "
        "CUDA_VISIBLE_DEVICES picks the GPUs.")
TPU_HELP = ("The TPU: local (this Cloud TPU VM's), a TPU name (needs the tpu extra), or "
            "grpc://IP:8470; empty: $TPU_NAME, else local.")

# Where TensorFlow's Cloud TPU client looks for a TPU's name when none is given
# (tensorflow/python/tpu/client/client.py, `_get_tpu_name`): GKE's, then Cloud TPU's.
TPU_NAME_VARIABLES = ("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_NAME")
# TPU chips on the PCI bus, as JAX finds them (jax/_src/hardware_utils.py): Google's vendor id
# and the device ids of TPU v3 ... TPU7x.
_GOOGLE_PCI_VENDOR = "0x1ae0"
_TPU_PCI_DEVICES = {"0x0027": "v3", "0x005e": "v4", "0x0062": "v5p", "0x0063": "v5e",
                    "0x006f": "v6e", "0x0076": "tpu7x"}


def local_tpu_chips(pci_root="/sys/bus/pci/devices"):
    """{TPU generation: chips} attached to this machine's PCI bus (a Cloud TPU VM's host, a
    GKE TPU node); {} elsewhere."""
    chips = {}
    for vendor_file in glob.glob(os.path.join(pci_root, "*", "vendor")):
        try:
            with open(vendor_file) as f:  # sysfs, local by nature
                vendor = f.read().strip()
            if vendor != _GOOGLE_PCI_VENDOR:
                continue
            with open(os.path.join(os.path.dirname(vendor_file), "device")) as f:
                device = f.read().strip()
        except OSError:
            continue
        if device in _TPU_PCI_DEVICES:
            chips[_TPU_PCI_DEVICES[device]] = chips.get(_TPU_PCI_DEVICES[device], 0) + 1
    return chips


def tpu_variable(environ=None):
    """(variable, value) of the TPU that TensorFlow's Cloud TPU client would resolve without a
    name (a GKE TPU endpoint or $TPU_NAME), or (None, "") when none is set."""
    environ = os.environ if environ is None else environ
    return next(((name, environ[name]) for name in TPU_NAME_VARIABLES if environ.get(name)),
                (None, ""))


@dataclasses.dataclass(frozen=True)
class DeviceSettings(Settings):
    """Where and in what precision a job trains: the flags pretraining and finetuning share."""
    distribution_strategy: str = setting("auto", HELP, choices=STRATEGIES)
    tpu: str = setting("", TPU_HELP)
    worker_wait_secs: int = setting(300, "multi_worker_mirrored: how long each worker waits "
                                         "for the others to start before it exits, naming "
                                         "those missing.", minimum=1)
    mixed_precision: str = setting("auto", "Keras dtype policy; auto: mixed_bfloat16 where the "
                                           "hardware multiplies bfloat16 natively (TPU, GPUs of "
                                           "compute capability 8.0+, CPUs with AMX or "
                                           "AVX512_BF16), else float32.",
                                   choices=PRECISION_POLICIES)


def choose(name="auto", tpu="", gpus=None, tpu_chips=None, environ=None):
    """(strategy, why) for --distribution_strategy=`name`: a name other than auto is kept; auto
    picks, in this order, a TPU when one is configured (--tpu, $TPU_NAME or GKE's TPU endpoint
    variable, or TPU chips on this machine), multi_worker_mirrored when TF_CONFIG names several
    tasks that train, mirrored over this machine's GPUs when it has several, else one_device
    (the GPU when there is one, else the CPU). `gpus` (the count) and `tpu_chips` default to
    what this machine has."""
    if name != "auto":
        return name, f"--distribution_strategy={name}"
    environ = os.environ if environ is None else environ
    if tpu:
        return "tpu", f"--tpu={tpu}"
    variable, value = tpu_variable(environ)
    if variable:
        return "tpu", f"${variable}={value}"
    chips = local_tpu_chips() if tpu_chips is None else tpu_chips
    if chips:
        return "tpu", "this machine's TPU chips: " + ", ".join(
            f"{count} x TPU {generation}" for generation, count in sorted(chips.items()))
    tasks = training_tasks(environ.get("TF_CONFIG"))
    if tasks > 1:
        return "multi_worker_mirrored", f"TF_CONFIG names {tasks} tasks that train"
    if gpus is None:
        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus > 1:
        return "mirrored", f"{gpus} GPUs on this machine"
    return "one_device", "1 GPU on this machine" if gpus == 1 else "no GPU or TPU: the CPU"


def training_tasks(text) -> int:
    """How many tasks that train (chief, master, worker) a TF_CONFIG's text names; 0 for none
    or for text that is not a TF_CONFIG."""
    cluster = _tf_config_part(text, "cluster")
    try:
        return sum(len(cluster.get(job) or ()) for job in (*TRAINING_JOBS, "master"))
    except TypeError:  # not lists of addresses
        return 0


def _tf_config_part(text, key) -> dict:
    """TF_CONFIG's `key` ("cluster", "task") as a dict, {} where the text is not that JSON:
    for the guesses made before TF_CONFIG matters (read_tf_config says what is wrong, where it
    does)."""
    try:
        part = json.loads(text or "{}").get(key)
    except (ValueError, AttributeError):
        return {}
    return part if isinstance(part, dict) else {}


def make_strategy(name, tpu="", worker_wait_secs=300):
    """`one_device` (the first GPU, else the CPU), `mirrored` (every GPU of this machine),
    `multi_worker_mirrored` (TF_CONFIG; the workers wait up to `worker_wait_secs` for each
    other, then this process ends naming those missing) or `tpu` (`tpu` as --tpu says). `auto`
    is resolved by `choose` first."""
    name, _ = choose(name, tpu)
    if name == "one_device":
        gpu = tf.config.list_physical_devices("GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpu else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
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
        return tpu_strategy(tpu or tpu_variable()[1] or "local")
    raise ValueError(f"--distribution_strategy must be one of {', '.join(STRATEGIES)}; "
                     f"got {name!r}")


def record(strategy, name, why) -> dict:
    """What a run records (run_config.json's "strategy") and logs (`describe`) of its strategy."""
    return {"name": name, "why": why, "replicas": strategy.num_replicas_in_sync,
            "workers": workers(strategy)}


def describe(chosen: dict) -> str:
    """The one line a job logs about its strategy (a `record`): "strategy: mirrored, 2 replicas
    (2 GPUs on this machine)"."""
    replicas, hosts = chosen["replicas"], chosen["workers"]
    return (f"strategy: {chosen['name']}, {replicas} replica{'s' * (replicas != 1)}"
            + (f" on {hosts} workers" if hosts > 1 else "") + f" ({chosen['why']})")


def start(name, tpu="", worker_wait_secs=300, log=print):
    """The strategy for --distribution_strategy=`name` (auto resolved by `choose`), made and
    described in one logged line; returns (strategy, its `record`)."""
    name, why = choose(name, tpu)
    strategy = make_strategy(name, tpu, worker_wait_secs)
    chosen = record(strategy, name, why)
    log(describe(chosen))
    return strategy, chosen


class TPUUnavailableError(OSError):
    """No TPU at what --tpu names; the message says what was tried."""


def grpc_address(url, default_port=None):
    """(host, port) of a grpc://HOST:PORT address, or None when `url` is not one."""
    if not str(url).startswith("grpc://"):
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or default_port
    except ValueError:  # not a number, or out of range
        return None
    return (parts.hostname, port) if parts.hostname and port else None


def unanswered(host, port, timeout=10) -> str | None:
    """Why nothing answers at host:port (a TCP connection), or None when something does:
    TensorFlow's gRPC clients (a TPU's, a tf.data service's) retry an address that never
    answers without end or a word."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"nothing answers at {host}:{port} ({e})"
    return None


def tpu_strategy(tpu):
    """TPUStrategy for `tpu`: "local" (this Cloud TPU VM), a TPU name (looked up through the GCE
    metadata server) or a grpc://host:port address (checked to answer first: TensorFlow would
    otherwise wait for it without end)."""
    if tpu != "local" and not tpu.startswith("grpc://") and not api_client_installed():
        raise TPUUnavailableError(
            f"--distribution_strategy=tpu: the TPU named {tpu!r} is looked up through the Cloud "
            f"TPU API, which needs the Google API client (googleapiclient, oauth2client): "
            f"pip install 'bert-tf[tpu]' (or -r requirements-tpu.txt); on the TPU VM itself, "
            f"--tpu=local needs neither")
    if tpu.startswith("grpc://") and "," not in tpu:
        address = grpc_address(tpu, default_port=8470)
        problem = (unanswered(*address) if address
                   else "expected grpc://HOST:PORT, the TPU's address")
        if problem:
            raise TPUUnavailableError(f"--tpu={tpu}: {problem}")
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


def api_client_installed() -> bool:
    """Whether the modules TensorFlow's Cloud TPU client imports to resolve a TPU by name
    (tensorflow/python/tpu/client/client.py) are installed: the `tpu` extra."""
    return all(importlib.util.find_spec(module) is not None
               for module in ("googleapiclient", "oauth2client"))


def is_chief(strategy):
    """Whether this worker writes checkpoints and summaries (every worker of a one-machine run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().jobs)


def worker_dir(directory, strategy, what="tmp"):
    """Where this worker writes what the chief writes in `directory`: `directory` itself on the
    chief, else its own `directory/.worker_N_<what>` (the files every worker of
    MultiWorkerMirroredStrategy must write, which only the chief's are kept of). A directory
    that is already a worker's is kept."""
    if is_chief(strategy) or "/.worker_" in directory.replace(os.sep, "/"):
        return directory
    return os.path.join(directory, f".worker_{strategy.cluster_resolver.task_id}_{what}")


@contextlib.contextmanager
def own_output_dir(directory, strategy):
    """`worker_dir(directory, strategy)` for the body of the `with`; a worker's own folder (not
    the chief's) is removed once the body has finished, and kept when it raises (a worker that
    resumes needs its backup)."""
    own = worker_dir(directory, strategy)
    yield own
    if own != directory:
        tf.io.gfile.rmtree(own)


def workers(strategy) -> int:
    """The number of worker processes (hosts) that run `strategy`'s steps together."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, ())) for job in ("chief", "worker"))


def wait_for_all(strategy):
    """Returns once every worker of `strategy` has called it (a no-op on one machine and on a
    TPU, whose hosts run one program): a worker whose part is done waits for the chief's,
    instead of ending while the chief still writes (which TensorFlow's coordination service
    reports as a crashed task)."""
    if is_multi_worker(strategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM,
                        strategy.run(lambda: tf.constant(1.0)), axis=None)


def is_multi_worker(strategy) -> bool:
    """Whether `strategy` is MultiWorkerMirroredStrategy over several processes (a TPU pod is
    one program: not this)."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and workers(strategy) > 1)


TRAINING_JOBS = ("chief", "worker")  # the tasks that train together


def task_type():
    """This process's task type in TF_CONFIG ("chief", "worker", "evaluator", ...; "master" is
    "chief"), or None without TF_CONFIG (or with one that names none)."""
    kind = _tf_config_part(os.environ.get("TF_CONFIG"), "task").get("type")
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
