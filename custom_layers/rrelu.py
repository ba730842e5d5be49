"""Randomized leaky ReLU (Xu et al., 2015)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="custom_layers")
class RReLU(keras.layers.Layer):
    """Randomized leaky ReLU.

    ``f(x) = x`` for ``x >= 0`` and ``f(x) = a * x`` for ``x < 0``. In training
    ``a ~ U(lower, upper)`` is drawn per element and per step; at inference the
    slope is the mean ``(lower + upper) / 2``, a plain leaky ReLU.

    Args:
        lower: lowest slope. Defaults to `1/8`.
        upper: highest slope. Defaults to `1/3`.
        seed: seed of the slope draws. Defaults to `None`.

    Input shape: any. Output shape: same as the input.

    Example:
        >>> RReLU()(np.array([[-1.0, 2.0]]), training=False)
        [[-0.2292, 2.0]]
    """

    def __init__(self, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.lower = float(lower)
        self.upper = float(upper)
        if not 0.0 <= self.lower <= self.upper:
            raise ValueError(f"Expected 0 <= lower <= upper. Received: lower={self.lower}, upper={self.upper}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return ops.leaky_relu(inputs, negative_slope=(self.lower + self.upper) / 2.0)
        slope = keras.random.uniform(ops.shape(inputs), minval=self.lower, maxval=self.upper,
                                     dtype=inputs.dtype, seed=self.seed_generator)
        return ops.where(inputs >= 0, inputs, slope * inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"lower": self.lower, "upper": self.upper, "seed": self.seed})
        return config
