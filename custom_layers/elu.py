"""Exponential Linear Unit (Clevert et al., 2016), optionally with a learned alpha."""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers

from custom_layers._shapes import normalize_shared_axes, per_feature_shape


@keras.saving.register_keras_serializable(package="custom_layers")
class ELU(keras.layers.Layer):
    """Exponential Linear Unit.

    ``f(x) = x`` for ``x > 0`` and ``f(x) = alpha * (exp(x) - 1)`` otherwise.
    With ``trainable_alpha=False`` this is ``keras.layers.ELU``; with
    ``trainable_alpha=True`` alpha is a weight, learned per feature (per channel
    with ``shared_axes=[1, 2]`` after a convolution), starting at ``alpha``.

    Args:
        alpha: the (initial) scale of the negative part. Defaults to `1.0`.
        trainable_alpha: learn alpha. Defaults to `False`.
        shared_axes: axes sharing one alpha when trainable. Defaults to `None`.
        alpha_regularizer: regularizer of a trainable alpha. Defaults to `None`.
        alpha_constraint: constraint of a trainable alpha. Defaults to `None`.

    Input shape: any. Output shape: same as the input.

    Example:
        >>> ELU()(np.array([[-1.0, 2.0]]))
        [[-0.6321, 2.0]]
    """

    def __init__(self, alpha: float = 1.0, trainable_alpha: bool = False, shared_axes=None,
                 alpha_regularizer=None, alpha_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.alpha = float(alpha)
        self.trainable_alpha = bool(trainable_alpha)
        self.shared_axes = normalize_shared_axes(shared_axes)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)

    def build(self, input_shape):
        if self.trainable_alpha:
            self.alpha_weight = self.add_weight(
                name="alpha",
                shape=per_feature_shape(input_shape, self.shared_axes),
                initializer=initializers.Constant(self.alpha),
                regularizer=self.alpha_regularizer,
                constraint=self.alpha_constraint,
            )

    def call(self, inputs):
        if not self.trainable_alpha:
            return ops.elu(inputs, alpha=self.alpha)
        # exp of the clipped input: the unused branch of `where` must not overflow.
        negative = self.alpha_weight * (ops.exp(ops.minimum(inputs, 0.0)) - 1.0)
        return ops.where(inputs > 0, inputs, negative)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "alpha": self.alpha,
            "trainable_alpha": self.trainable_alpha,
            "shared_axes": self.shared_axes,
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
        })
        return config
