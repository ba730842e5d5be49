"""Maxout, PReLU, ELU, RReLU, APL (and ReferenceConv2D in models): oracles, serialization, fit, mixed precision.

Each test draws from its own seeded generator (the ``rng`` fixture); the conventions every layer keeps are checked
layer by layer in ``test_layer_conventions``."""

from __future__ import annotations

import numpy as np
import pytest
import keras
import tensorflow as tf

from custom_layers import APL, ELU, Maxout, PReLU, ReferenceConv2D, RReLU
from tests.builders import every_layer_model

def test_maxout_after_dense_matches_numpy_reshape_max(rng):
    x = rng.normal(size=(5, 12)).astype("float32")
    y = Maxout(4)(x)
    np.testing.assert_array_equal(y, x.reshape(5, 4, 3).max(axis=-1))
    assert Maxout(4).compute_output_shape((None, 12)) == (None, 4)


def test_maxout_after_conv2d_takes_channel_group_max(rng):
    inputs = keras.Input((6, 7, 3))
    features = keras.layers.Conv2D(8, 3)(inputs)
    model = keras.Model(inputs, [features, Maxout(2)(features)])
    conv_out, maxout_out = model.predict(rng.normal(size=(2, 6, 7, 3)).astype("float32"), verbose=0)
    np.testing.assert_array_equal(maxout_out, conv_out.reshape(2, 4, 5, 2, 4).max(axis=-1))


def test_maxout_on_a_middle_axis(rng):
    x = rng.normal(size=(2, 6, 5)).astype("float32")
    np.testing.assert_array_equal(Maxout(3, axis=1)(x), x.reshape(2, 3, 2, 5).max(axis=2))


def test_maxout_bad_arguments_name_the_numbers():
    with pytest.raises(ValueError, match=r"\(10\) is not a multiple of num_units \(4\)"):
        Maxout(4)(np.zeros((1, 10), "float32"))
    with pytest.raises(ValueError, match="axis=5"):
        Maxout(2, axis=5)(np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="num_units=0"):
        Maxout(0)


def test_prelu_matches_keras_builtin_given_the_same_alpha(rng):
    x = rng.normal(size=(3, 4, 5, 6)).astype("float32")
    ours, builtin = PReLU(shared_axes=[1, 2]), keras.layers.PReLU(shared_axes=[1, 2])
    ours.build(x.shape), builtin.build(x.shape)
    np.testing.assert_allclose(ours.get_weights()[0], 0.25)  # He et al.'s initial slope
    alpha = rng.uniform(0, 1, size=(1, 1, 6)).astype("float32")
    ours.set_weights([alpha]), builtin.set_weights([alpha])
    np.testing.assert_allclose(ours(x), builtin(x), atol=1e-7)
    np.testing.assert_allclose(ours(x), np.where(x > 0, x, alpha * x), atol=1e-7)


def test_elu_matches_keras_builtin_and_learns_alpha(rng):
    x = rng.normal(size=(4, 7)).astype("float32") * 3
    np.testing.assert_allclose(ELU(alpha=0.7)(x), keras.layers.ELU(alpha=0.7)(x), atol=1e-6)
    layer = ELU(alpha=0.7, trainable_alpha=True)
    np.testing.assert_allclose(layer(x), keras.layers.ELU(alpha=0.7)(x), atol=1e-6)
    assert layer.trainable_weights[0].shape == (7,)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(xt))
    grad = tape.gradient(loss, layer.alpha_weight)
    np.testing.assert_allclose(grad, np.where(x > 0, 0, np.exp(np.minimum(x, 0)) - 1).sum(axis=0), rtol=1e-5)
    conv_alpha = ELU(trainable_alpha=True, shared_axes=[1, 2])
    conv_alpha.build((None, 5, 5, 3))
    assert conv_alpha.alpha_weight.shape == (1, 1, 3)


def test_rrelu_random_slopes_in_training_and_mean_slope_at_inference():
    x = -np.ones((1000,), "float32").reshape(10, 100)
    layer = RReLU(lower=0.1, upper=0.3, seed=7)
    inference = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(inference, -0.2)
    train = np.asarray(layer(x, training=True))
    slopes = -train
    assert slopes.min() >= 0.1 - 1e-6 and slopes.max() <= 0.3 + 1e-6
    assert slopes.std() > 0.04  # uniform on [0.1, 0.3] has std 0.058
    assert abs(slopes.mean() - 0.2) < 0.01
    positive = np.abs(x)
    np.testing.assert_array_equal(layer(positive, training=True), positive)
    with pytest.raises(ValueError, match="lower=0.5, upper=0.2"):
        RReLU(lower=0.5, upper=0.2)


def test_apl_matches_numpy_formula(rng):
    x = rng.normal(size=(6, 4)).astype("float32") * 2
    layer = APL(num_hinges=3)
    layer.build(x.shape)
    a, b = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 4)).astype("float32")
    layer.set_weights([a, b])
    expected = np.maximum(0, x) + sum(a[s] * np.maximum(0, -x + b[s]) for s in range(3))
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="num_hinges=0"):
        APL(num_hinges=0)


def test_keras_file_round_trip_without_custom_objects(tmp_path, rng):
    keras.utils.set_random_seed(0)
    model = every_layer_model()
    x = rng.uniform(size=(4, 12, 12, 3)).astype("float32")
    before = model.predict(x, verbose=0)
    path = tmp_path / "every_layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    for layer in model.layers:
        rebuilt = type(layer).from_config(layer.get_config())
        assert rebuilt.get_config() == layer.get_config()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_reduces_loss_with_every_layer(jit_compile, rng):
    keras.utils.set_random_seed(1)
    model = every_layer_model()
    x = rng.uniform(size=(64, 12, 12, 3)).astype("float32")
    y = x[:, :6, :, 0].mean(axis=(1, 2)) - x[:, 6:, :, 0].mean(axis=(1, 2))  # a learnable target
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse", jit_compile=jit_compile)
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy, rng):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = every_layer_model()
        model.compile(optimizer="adam", loss="mse")
        x = rng.uniform(size=(8, 12, 12, 3)).astype("float32")
        model.fit(x, np.zeros(8, "float32"), epochs=1, batch_size=4, verbose=0)
        assert all(w.dtype == "float32" for w in model.weights)
        compute = {layer.compute_dtype for layer in model.layers[1:-1]}
        assert compute == {policy.split("_")[1]}
        assert np.isfinite(model.predict(x, verbose=0)).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")
