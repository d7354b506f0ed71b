"""`tf.distribute` strategies by name, and which worker is the chief."""

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
    if name == "tpu":  # not runnable here: no TPU
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--distribution_strategy must be one of {', '.join(STRATEGIES)}; "
                     f"got {name!r}")


def is_chief(strategy):
    """Whether this worker writes checkpoints and summaries (every worker of a one-machine run)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                             and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().jobs)
