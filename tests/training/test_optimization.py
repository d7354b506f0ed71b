import keras
import numpy as np
import pytest

from bert_tf.training.optimization import WarmupLinearDecay, create_optimizer
from bert_tf.modeling.pretrainer import build_pretrainer
from conftest import tiny_config


def test_schedule_warmup_peak_and_end():
    schedule = WarmupLinearDecay(1e-3, num_train_steps=100, num_warmup_steps=10,
                                 end_learning_rate=1e-5)
    values = {step: float(schedule(step)) for step in (0, 5, 10, 55, 100, 150)}
    assert values[0] == 0.0
    assert values[5] == pytest.approx(5e-4)
    assert values[10] == pytest.approx(1e-3)
    assert values[55] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)
    assert values[100] == pytest.approx(1e-5) and values[150] == pytest.approx(1e-5)
    restored = WarmupLinearDecay.from_config(schedule.get_config())
    assert float(restored(55)) == pytest.approx(values[55])


def test_weight_decay_skips_layer_norm_and_biases():
    model = build_pretrainer(tiny_config())
    optimizer = create_optimizer("adamw", 0.1, 10, 0, weight_decay_rate=0.1, clip_norm=0)
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    # Zero gradients: Adam moves nothing, so only weight decay can change a variable.
    optimizer.apply_gradients(zip([np.zeros(v.shape, "float32") for v in variables], variables))
    optimizer.apply_gradients(zip([np.zeros(v.shape, "float32") for v in variables], variables))
    for variable, old in zip(variables, before):
        changed = not np.allclose(np.array(variable), old)
        excluded = variable.name in ("gamma", "beta", "bias")
        if np.any(old != 0):  # zeros stay zeros under decay
            assert changed != excluded, variable.path


def test_optimizer_choices():
    assert isinstance(create_optimizer("lamb", 1e-3, 10), keras.optimizers.Lamb)
    assert isinstance(create_optimizer("adamw", 1e-3, 10, mixed_precision="mixed_float16"),
                      keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="--optimizer must be adamw or lamb"):
        create_optimizer("sgd", 1e-3, 10)
