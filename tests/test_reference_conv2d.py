"""ReferenceConv2D against keras.layers.Conv2D (copied weights) and the float64 oracle."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import keras

from custom_layers import ReferenceConv2D, reference

CASES = [
    # (size (H, W), channels, filters, kernel, strides, padding, dilation)
    ((9, 9), 1, 2, 3, 1, "valid", 1),
    ((8, 10), 3, 4, 3, 2, "same", 1),
    ((11, 8), 4, 3, 5, 3, "same", 1),
    ((10, 9), 2, 5, 3, 2, 1, 1),
    ((7, 7), 3, 2, 2, 1, "same", 1),
    ((12, 12), 2, 3, 3, 1, "valid", 2),
    ((12, 11), 2, 3, 3, 1, "same", 2),
    ((9, 12), 6, 8, (3, 5), (2, 3), "valid", 1),
]


def _pair_of_layers(size, channels, filters, kernel, strides, padding, dilation):
    ours = ReferenceConv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation)
    ours.build((None, *size, channels))
    if isinstance(padding, int):
        builtin_padding, pad_input = "valid", padding
    else:
        builtin_padding, pad_input = padding, 0
    builtin = keras.layers.Conv2D(filters, kernel, strides=strides, padding=builtin_padding, dilation_rate=dilation)
    builtin.build((None, size[0] + 2 * pad_input, size[1] + 2 * pad_input, channels))
    rng = np.random.default_rng(0)
    ours.set_weights([rng.normal(size=w.shape).astype("float32") for w in ours.get_weights()])
    builtin.set_weights(ours.get_weights())  # same layout: weights copy across
    return ours, builtin, pad_input


def _builtin_call(builtin, x, pad_input):
    if pad_input:
        x = tf.pad(x, [[0, 0], [pad_input, pad_input], [pad_input, pad_input], [0, 0]])
    return builtin(x)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-c{c[1]}-f{c[2]}-k{c[3]}-s{c[4]}-{c[5]}-d{c[6]}")
def test_forward_and_gradients_match_keras_conv2d(case):
    ours, builtin, pad_input = _pair_of_layers(*case)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, *case[0], case[1])).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ours = ours(x)
        y_builtin = _builtin_call(builtin, x, pad_input)
        upstream = tf.constant(np.random.default_rng(2).normal(size=y_ours.shape).astype("float32"))
        loss_ours = tf.reduce_sum(y_ours * upstream)
        loss_builtin = tf.reduce_sum(y_builtin * upstream)
    assert tuple(y_ours.shape) == tuple(y_builtin.shape) == ours.compute_output_shape((2, *case[0], case[1]))
    np.testing.assert_allclose(y_ours, y_builtin, atol=1e-4, rtol=1e-4)
    grads_ours = tape.gradient(loss_ours, [x, ours.kernel, ours.bias])
    grads_builtin = tape.gradient(loss_builtin, [x, builtin.kernel, builtin.bias])
    for g_ours, g_builtin in zip(grads_ours, grads_builtin):
        np.testing.assert_allclose(g_ours, g_builtin, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("strides,padding", [(1, "valid"), (2, "same"), (3, 2)])
def test_matches_float64_oracle(strides, padding):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 10, 9, 3))
    layer = ReferenceConv2D(4, 3, strides=strides, padding=padding, dtype="float64")
    layer.build(x.shape)
    kernel, bias = rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    layer.set_weights([kernel, bias])
    np.testing.assert_allclose(layer(x), reference.conv2d(x, kernel, bias, strides, padding), atol=1e-10)


@pytest.mark.parametrize("kernel,strides,padding,dilation", [
    (3, 1, "valid", 1),
    (5, 2, "valid", 1),       # PilotNet's first layers: four phases of 9, 6, 6 and 4 taps
    (3, 2, "same", 2),        # dilation a multiple of the stride: three phases that no tap reads
    ((3, 5), (2, 3), 1, (1, 2)),
    (2, 3, "same", 1),        # stride above the kernel: phases without taps, rows no tap reaches
    (4, 3, (2, 1), 1),        # a padded size that is not a multiple of the stride
])
def test_gradients_match_float64_oracle(kernel, strides, padding, dilation):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 11, 13, 3))
    layer = ReferenceConv2D(4, kernel, strides=strides, padding=padding, dilation_rate=dilation, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        y = layer(x_tensor)
        upstream = rng.normal(size=y.shape)
        loss = tf.reduce_sum(y * upstream)
    dx, dw, db = tape.gradient(loss, [x_tensor, layer.kernel, layer.bias])
    oracle_dx, oracle_dw, oracle_db = reference.conv2d_backward(x, layer.kernel.numpy(), upstream, strides, padding,
                                                                dilation)
    np.testing.assert_allclose(dx, oracle_dx, atol=1e-10)
    np.testing.assert_allclose(dw, oracle_dw, atol=1e-10)
    np.testing.assert_allclose(db, oracle_db, atol=1e-10)


def test_input_gradient_has_a_gradient():
    """The written-out col2im is made of differentiable ops: a gradient penalty trains through it."""
    x = tf.constant(np.random.default_rng(6).normal(size=(1, 9, 9, 2)))
    ours = ReferenceConv2D(3, 3, strides=2, dtype="float64")
    builtin = keras.layers.Conv2D(3, 3, strides=2, dtype="float64")
    ours.build(x.shape), builtin.build(x.shape)
    builtin.set_weights(ours.get_weights())
    penalties = []
    for layer in (ours, builtin):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(tf.tanh(layer(x)))
            penalty = tf.reduce_sum(tf.square(inner.gradient(y, x)))
        penalties.append(outer.gradient(penalty, layer.kernel).numpy())
    np.testing.assert_allclose(penalties[0], penalties[1], atol=1e-10)


def test_weights_copy_from_builtin_in_a_model():
    inputs = keras.Input((16, 16, 3))
    builtin = keras.Model(inputs, keras.layers.Conv2D(6, 5, strides=2, padding="same", activation="relu")(inputs))
    ours = keras.Model(inputs, ReferenceConv2D(6, 5, strides=2, padding="same", activation="relu")(inputs))
    ours.set_weights(builtin.get_weights())
    x = np.random.default_rng(4).uniform(size=(3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), builtin.predict(x, verbose=0), atol=1e-5)


def test_output_size_follows_floor_formula():
    layer = ReferenceConv2D(24, 5, strides=2)
    assert layer.compute_output_shape((None, 66, 200, 3)) == (None, 31, 98, 24)  # (66-5)//2+1, (200-5)//2+1
    assert ReferenceConv2D(1, 3, strides=2, padding=1).compute_output_shape((None, 8, 7, 1)) == (None, 4, 4, 1)


@pytest.mark.parametrize(
    "kwargs,shape,message",
    [
        (dict(filters=2, kernel_size=7), (None, 5, 9, 1), "larger than the padded input height 5"),
        (dict(filters=2, kernel_size=3, dilation_rate=3), (None, 6, 6, 1), "effective height 7"),
        (dict(filters=0, kernel_size=3), None, "filters >= 1. Received: filters=0"),
        (dict(filters=2, kernel_size=3, padding="full"), None, "padding='full'"),
        (dict(filters=2, kernel_size=0), None, "kernel_size=0"),
    ],
)
def test_bad_arguments_give_clear_errors(kwargs, shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer = ReferenceConv2D(**kwargs)
        layer.build(shape)
