"""--tf_data_service: a dispatcher and two workers started in this process on localhost; the
batches come through them with the local path's examples, and a pretraining run trains on them."""

import collections
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import io
from bert_tf.data import input_pipeline
from bert_tf.training.pretraining import run
from pretraining_fixtures import (PREDICTIONS, SEQ, flag_values, make_tiny_data,
                                  tiny_config_file)


@pytest.fixture(scope="module")
def service():
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address))
               for _ in range(2)]
    yield dispatcher.target
    for server in workers + [dispatcher]:
        server.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("data"))
    return {"glob": make_tiny_data(directory, num_shards=4, dynamic_masking=True),
            "config": tiny_config_file(directory)}


def examples(dataset):
    counts = collections.Counter()
    for features, _ in dataset:
        for row in features["input_word_ids"].numpy():
            counts[row.tobytes()] += 1
    return counts


def test_the_service_serves_each_example_of_a_pass_once(service, data):
    files = io.expand_file_patterns(data["glob"])
    one_pass = input_pipeline.PipelineOptions(is_training=False)
    local = examples(input_pipeline.make_dataset(files, 1, SEQ, PREDICTIONS, one_pass))
    served = examples(input_pipeline.make_dataset(files, 1, SEQ, PREDICTIONS, dataclasses.replace(
        one_pass, data_service=service, job_name="one_pass")))
    assert sum(local.values()) > 500
    assert served == local  # the same examples, each once, though the two workers split them


def test_pretraining_trains_through_the_service(service, data, tmp_path):
    lines = []
    metrics = run(flag_values(data["glob"], data["config"], tmp_path, num_train_steps=20,
                              pack_sequences=True, tf_data_service=service, do_eval=True),
                  log=lines.append)
    assert metrics["step"] == 20 and np.isfinite(metrics["loss"])
    assert any(line.startswith(f"input: training batches from the tf.data service at {service}")
               for line in lines)
    assert 0 <= metrics["eval_masked_lm_accuracy"] <= 1


def test_the_service_address_is_checked(data, tmp_path):
    for address in ("localhost:5050", "grpc://", "grpc://:5050", "grpc://host:port"):
        with pytest.raises(ValueError, match=f"--tf_data_service={address}: expected grpc://"):
            flag_values(data["glob"], data["config"], tmp_path, tf_data_service=address)
    # nothing answers there: an error before the run directory is written, not a silent wait
    for address in ("grpc://127.0.0.1:1", "grpc://no-such-host.invalid:5050"):
        with pytest.raises(ValueError, match=f"--tf_data_service={address}: nothing answers"):
            run(flag_values(data["glob"], data["config"], tmp_path / "run",
                            tf_data_service=address), log=lambda _: None)
        assert not (tmp_path / "run").exists()
