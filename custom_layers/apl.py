"""Adaptive piecewise linear unit (Agostinelli et al., 2015)."""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers


@keras.saving.register_keras_serializable(package="custom_layers")
class APL(keras.layers.Layer):
    """Adaptive piecewise linear activation, learned per channel.

    ``f(x) = max(0, x) + sum_s a_s * max(0, -x + b_s)`` for ``s = 1..num_hinges``,
    with slopes ``a`` and hinge positions ``b`` learned for each feature of the
    last axis (each channel of a convolution).

    Args:
        num_hinges: number of hinges ``S``. Defaults to `2`.
        a_initializer: initializer of the slopes. Defaults to `RandomUniform(-0.1, 0.1)`.
        b_initializer: initializer of the hinges. Defaults to `RandomUniform(-1, 1)`.
        a_regularizer: regularizer of the slopes (the paper uses L2). Defaults to `None`.
        b_regularizer: regularizer of the hinges. Defaults to `None`.
        a_constraint: constraint of the slopes. Defaults to `None`.
        b_constraint: constraint of the hinges. Defaults to `None`.

    Input shape: any, with a known last axis. Output shape: same as the input.

    Example:
        >>> layer = APL(num_hinges=1, a_initializer="ones", b_initializer="zeros")
        >>> layer(np.array([[-2.0, 3.0]]))  # max(0, x) + max(0, -x) = |x|
        [[2.0, 3.0]]
    """

    def __init__(self, num_hinges: int = 2,
                 a_initializer=initializers.RandomUniform(-0.1, 0.1),
                 b_initializer=initializers.RandomUniform(-1.0, 1.0),
                 a_regularizer=None, b_regularizer=None, a_constraint=None, b_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_hinges) < 1:
            raise ValueError(f"Expected num_hinges >= 1. Received: num_hinges={num_hinges}")
        self.num_hinges = int(num_hinges)
        self.a_initializer = initializers.get(a_initializer)
        self.b_initializer = initializers.get(b_initializer)
        self.a_regularizer = regularizers.get(a_regularizer)
        self.b_regularizer = regularizers.get(b_regularizer)
        self.a_constraint = constraints.get(a_constraint)
        self.b_constraint = constraints.get(b_constraint)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"APL needs a known last axis. Received: input_shape={tuple(input_shape)}")
        shape = (self.num_hinges, int(channels))
        self.a = self.add_weight(name="a", shape=shape, initializer=self.a_initializer,
                                 regularizer=self.a_regularizer, constraint=self.a_constraint)
        self.b = self.add_weight(name="b", shape=shape, initializer=self.b_initializer,
                                 regularizer=self.b_regularizer, constraint=self.b_constraint)

    def call(self, inputs):
        outputs = ops.relu(inputs)
        for s in range(self.num_hinges):
            outputs = outputs + self.a[s] * ops.relu(self.b[s] - inputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_hinges": self.num_hinges,
            "a_initializer": initializers.serialize(self.a_initializer),
            "b_initializer": initializers.serialize(self.b_initializer),
            "a_regularizer": regularizers.serialize(self.a_regularizer),
            "b_regularizer": regularizers.serialize(self.b_regularizer),
            "a_constraint": constraints.serialize(self.a_constraint),
            "b_constraint": constraints.serialize(self.b_constraint),
        })
        return config
