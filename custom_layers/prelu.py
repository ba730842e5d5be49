"""Parametric ReLU (He et al., 2015)."""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers

from custom_layers._shapes import normalize_shared_axes, per_feature_shape


@keras.saving.register_keras_serializable(package="custom_layers")
class PReLU(keras.layers.Layer):
    """Parametric ReLU with a learned negative slope.

    ``f(x) = x`` for ``x >= 0`` and ``f(x) = alpha * x`` for ``x < 0``, with
    ``alpha`` learned per feature. As in He et al. the slope starts at 0.25
    (``keras.layers.PReLU`` starts at 0); given the same ``alpha`` the two agree.

    Args:
        alpha_initializer: initializer of the slopes. Defaults to `Constant(0.25)`.
        alpha_regularizer: regularizer of the slopes. Defaults to `None`.
        alpha_constraint: constraint of the slopes. Defaults to `None`.
        shared_axes: axes along which one slope is shared, e.g. `[1, 2]` for one
            slope per channel after a 2-D convolution. Defaults to `None`.

    Input shape: any. Output shape: same as the input.

    Example:
        >>> PReLU()(np.array([[-2.0, 3.0]]))
        [[-0.5, 3.0]]
    """

    def __init__(self, alpha_initializer=initializers.Constant(0.25), alpha_regularizer=None,
                 alpha_constraint=None, shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        self.shared_axes = normalize_shared_axes(shared_axes)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha",
            shape=per_feature_shape(input_shape, self.shared_axes),
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )

    def call(self, inputs):
        return ops.relu(inputs) - self.alpha * ops.relu(-inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        })
        return config
