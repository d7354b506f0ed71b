"""`tf.distribute` strategies by name, and which worker is the chief."""

import socket
import urllib.parse

import tensorflow as tf

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def make_strategy(name, tpu="", num_gpus=0):
    """`one_device`, `mirrored`, `multi_worker_mirrored` (TF_CONFIG) or `tpu`."""
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus > 0 else "/cpu:0")
    if name == "mirrored":
        devices = [f"/gpu:{i}" for i in range(num_gpus)] if num_gpus > 0 else None
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
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
