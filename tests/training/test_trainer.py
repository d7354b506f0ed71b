"""The training loop: exact gradient accumulation, the TPU-shaped (whole, XLA-compiled) replica
step, one all-reduce per step."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data.input_pipeline import PipelineOptions, make_dataset
from bert_tf.modeling import build_pretrainer
from bert_tf.training import optimization
from bert_tf.training.summaries import format_seconds
from bert_tf.training.trainer import Trainer, TrainOptions, _to_next, ramp_parts
from conftest import REPO_ROOT, tiny_config
from pretraining_fixtures import PREDICTIONS, SEQ, make_tiny_data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return tf.io.gfile.glob(make_tiny_data(str(tmp_path_factory.mktemp("data"))))


@pytest.fixture(scope="module")
def batch(files):
    return next(iter(make_dataset(files, 8, SEQ, PREDICTIONS, PipelineOptions(seed=3))))


def trainer_for(parts, tmp_path, jit_compile=False, policy="float32", ramp=0.0):
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    keras.utils.set_random_seed(5)
    keras.mixed_precision.set_global_policy(policy)
    with strategy.scope():
        model = build_pretrainer(tiny_config(vocab_size=2000, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0))
        optimizer = optimization.create_optimizer("adamw", learning_rate=1e-3, num_train_steps=10,
                                                   mixed_precision=policy)
    options = TrainOptions(output_dir=str(tmp_path / f"p{parts}{jit_compile}"),
                           num_train_steps=10, gradient_accumulation_steps=parts,
                           jit_compile=jit_compile, batch_size_ramp=ramp)
    return Trainer(strategy, model, optimizer, options)


def test_accumulated_gradient_equals_the_big_batch_gradient(batch, tmp_path):
    whole, whole_stats = trainer_for(1, tmp_path).gradients(*batch)
    split, split_stats = trainer_for(4, tmp_path).gradients(*batch)
    assert len(whole) == len(split)
    for a, b in zip(whole, split):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)
    assert float(whole_stats["masked_lm_count"]) == float(split_stats["masked_lm_count"])
    for name in ("loss", "masked_lm_loss", "next_sentence_loss"):
        assert float(whole_stats[name]) == pytest.approx(float(split_stats[name]), rel=1e-5)


def test_ramp_parts_grow_linearly_to_all_parts():
    progress = tf.constant([0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 1.0])
    assert ramp_parts(progress, 4, 0.5).numpy().tolist() == [1, 1, 1, 2, 3, 4, 4, 4]
    assert ramp_parts(progress, 8, 1.0).numpy().tolist() == [1, 1, 1, 2, 3, 4, 5, 8]
    with pytest.raises(ValueError, match="--gradient_accumulation_steps to 2 or more"):
        TrainOptions(output_dir="x", num_train_steps=10, batch_size_ramp=0.6)


@pytest.mark.slow
def test_batch_size_ramp_trains_on_the_first_parts(batch, tmp_path):
    """In the ramp a step's gradient and statistics are those of its first parts alone, and
    the batch learnt from grows 1, 1, 2, 3, 4, 4 parts (4 parts, ramp 0.5 of 10 steps), in the
    XLA-compiled step a TPU runs (the skipped parts behind a conditional)."""
    features, labels = batch  # 8 rows: 4 parts of 2
    first = [tf.nest.map_structure(lambda x: x[:2], d) for d in batch]
    alone, alone_stats = trainer_for(1, tmp_path).gradients(*first)
    ramped = trainer_for(4, tmp_path, ramp=0.5, jit_compile=True)
    assert int(ramped.included_parts()) == 1
    part_sums = ramped.objective.batch_sums(first[1])
    grads, stats = ramped.gradients(features, labels, part_sums, tf.constant(1))
    for a, b in zip(alone, grads, strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-4, atol=1e-6)
    for name in ("loss", "masked_lm_count", "next_sentence_count"):
        assert float(stats[name]) == pytest.approx(float(alone_stats[name]), rel=1e-5)

    data = iter(ramped.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat()))
    weights = np.asarray(labels["masked_lm_weights"]).reshape(4, 2, -1).sum(axis=(1, 2))
    for parts in (1, 1, 2, 3, 4, 4):
        sums = ramped.train_sums(data, 1)
        assert sums["examples"] == 2 * parts
        assert sums["masked_lm_count"] == pytest.approx(weights[:parts].sum())
        assert np.isfinite(sums["loss"])
    assert int(ramped.optimizer.iterations.numpy()) == 6


def test_batch_size_ramp_over_a_budget_of_time_reads_the_clock(tmp_path):
    from bert_tf.training.budget import Clock
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = build_pretrainer(tiny_config())
        optimizer = optimization.create_optimizer("adamw", learning_rate=1e-3,
                                                   num_train_steps=2**31 - 1)
        clock = Clock(100.0)
    options = TrainOptions(output_dir=str(tmp_path), num_train_steps=2**31 - 1,
                           gradient_accumulation_steps=4, batch_size_ramp=0.5)
    trainer = Trainer(strategy, model, optimizer, options, clock=clock)
    for seconds, parts in ((0.0, 1), (10.0, 1), (20.0, 2), (37.0, 3), (50.0, 4), (90.0, 4)):
        clock.seconds.assign(seconds)
        assert int(trainer.included_parts()) == parts, seconds


def test_to_next_boundary():
    assert _to_next(0, 100) == 100
    assert _to_next(250, 100) == 50
    assert format_seconds(3725) == "1h02m" and format_seconds(372.4) == "6m12s"


# Ops that a TPU program cannot hold: they run on the host (Python, printing, strings) or give
# shapes that depend on the data.
HOST_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "Print", "PrintV2", "StringFormat",
            "Where", "Unique", "UniqueV2", "NonMaxSuppressionV3", "RaggedGather",
            "RaggedTensorToTensor", "InfeedDequeueTuple", "OutfeedEnqueueTuple"}


def graph_ops(concrete):
    """Every op of a traced function, its nested functions' included."""
    graph = concrete.graph.as_graph_def()
    return [node for node in graph.node] + [
        node for function in graph.library.function for node in function.node_def]


@pytest.mark.parametrize("parts,policy", [(1, "float32"), (2, "float32"),
                                          (2, "mixed_bfloat16")])
def test_the_whole_replica_step_compiles_as_one_xla_program(files, tmp_path, parts, policy):
    """On one device, --jit_compile compiles what a TPU compiles: forward, backward, the
    all-reduce, clipping, the optimizer update and the sums, as one XLA program; it trains as the
    uncompiled step does."""
    def dataset(trainer):
        data = trainer.strategy.distribute_datasets_from_function(
            lambda context: make_dataset(files, 8, SEQ, PREDICTIONS, PipelineOptions(seed=3)))
        spec = data.element_spec  # static shapes, int32 ids: what a TPU needs
        assert all(s.shape.is_fully_defined() for s in tf.nest.flatten(spec))
        assert spec[0]["input_word_ids"].dtype == tf.int32
        return iter(data)

    compiled = trainer_for(parts, tmp_path, jit_compile=True, policy=policy)
    plain = trainer_for(parts, tmp_path, jit_compile=False, policy=policy)
    losses = [float(trainer.train_steps(dataset(trainer), 3)) for trainer in (compiled, plain)]
    tolerance = 2e-2 if policy == "mixed_bfloat16" else 1e-4
    assert losses[0] == pytest.approx(losses[1], rel=tolerance)
    for a, b in zip(compiled.model.trainable_variables, plain.model.trainable_variables,
                    strict=True):
        close = np.isclose(a.numpy(), b.numpy(), rtol=tolerance, atol=tolerance / 10)
        # In bfloat16 a gradient near zero may round to the other sign in one program, and Adam
        # moves such a weight by up to the learning rate either way: allow a few such weights
        # (one in 1,000, at least 2) per variable; a wrong program differs almost everywhere.
        allowed = max(2, 1e-3 * close.size) if policy == "mixed_bfloat16" else 0
        assert (~close).sum() <= allowed, (a.path, int((~close).sum()), close.size)
        if (~close).any():  # and those by no more than 3 steps of the learning rate (1e-3) each
            assert np.abs(a.numpy() - b.numpy())[~close].max() <= 2 * 3 * 1e-3, a.path
    assert int(compiled.optimizer.iterations.numpy()) == 3

    features, labels = next(iter(make_dataset(files, 8, SEQ, PREDICTIONS, PipelineOptions(seed=3))))
    concrete = compiled.replica_step.get_concrete_function(features, labels)
    assert concrete.function_def.attr["_XlaMustCompile"].b, "compiled with XLA as a whole"
    nodes = graph_ops(concrete)
    ops = {node.op for node in nodes}
    assert {"ResourceApplyAdam", "AssignSubVariableOp", "AssignAddVariableOp"} & ops or any(
        "Assign" in op for op in ops), "the optimizer update is inside the program"
    assert not ops & HOST_OPS, ops & HOST_OPS
    strings = [node.name for node in nodes
               if any(v.type == tf.string.as_datatype_enum for v in node.attr.values())]
    assert not strings, f"string tensors in the step: {strings[:5]}"


ALL_REDUCE_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import keras
sys.path.insert(0, "tests")
from bert_tf.data.input_pipeline import PipelineOptions, make_dataset
from bert_tf.modeling import build_pretrainer
from bert_tf.training.trainer import Trainer, TrainOptions
from conftest import tiny_config

class Counting(tf.distribute.ReductionToOneDevice):
    # The sizes of the all-reduces a traced step asks the strategy for.
    reduced = []
    def batch_reduce_implementation(self, reduce_op, value_destination_pairs, options):
        self.reduced.append(len(value_destination_pairs))
        return super().batch_reduce_implementation(reduce_op, value_destination_pairs, options)

files, out = json.loads(sys.argv[1]), sys.argv[2]
results = {}
for name, strategy in [("mirrored", tf.distribute.MirroredStrategy(
                            ["/cpu:0", "/cpu:1"], cross_device_ops=Counting())),
                       ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0"))]:
    keras.utils.set_random_seed(5)
    with strategy.scope():
        model = build_pretrainer(tiny_config(vocab_size=2000, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0))
        # Plain SGD: a gradient summed twice would show in the weights, where Adam would hide
        # it (and Adam turns float noise in near-zero gradients into steps of up to its rate).
        optimizer = keras.optimizers.SGD(0.5)
    trainer = Trainer(strategy, model, optimizer, TrainOptions(output_dir=f"{out}/{name}",
                                                               num_train_steps=10))
    data = strategy.distribute_datasets_from_function(lambda context: make_dataset(
        files, context.get_per_replica_batch_size(16), 32, 5, PipelineOptions(is_training=False)))
    trainer.train_steps(iter(data), 2)
    results[name] = [v.numpy().tolist() for v in model.trainable_variables]
    if name == "mirrored":
        results["variables"] = len(model.trainable_variables)
        results["reduced"] = Counting.reduced
print(json.dumps(results))
"""


@pytest.mark.slow
def test_one_all_reduce_per_step_under_mirrored(files, tmp_path):
    """Two replicas on two logical CPUs: the step asks for exactly one all-reduce of the
    gradients (Keras's optimizer does not sum them again) besides the two scalars of the global
    loss denominators, and two SGD steps give the weights that one device gives on the same
    global batches (each replica's loss is its exact share of the global mean)."""
    result = subprocess.run([sys.executable, "-c", ALL_REDUCE_SCRIPT, json.dumps(files),
                             str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    batched = [n for n in results["reduced"] if n > 1]  # the step's, not the loop's scalars
    assert batched == [2, results["variables"]], "the two loss denominators, then the gradients"
    for mirrored, one in zip(results["mirrored"], results["one_device"], strict=True):
        np.testing.assert_allclose(mirrored, one, rtol=1e-4, atol=1e-6)
