"""Maxout (Goodfellow et al., 2013)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="custom_layers")
class Maxout(keras.layers.Layer):
    """Maxout: the max over groups of features.

    The ``axis`` of size ``C`` is split into ``num_units`` consecutive groups of
    ``C // num_units`` features, and each group is replaced by its maximum:
    ``y[..., i] = max_j x[..., i * k + j]`` with ``k = C // num_units``
    (TensorFlow Addons' semantics). ``Dense(k * units)`` followed by
    ``Maxout(units)`` is Goodfellow's maxout unit; after ``Conv2D`` it takes the
    max over channel groups.

    Args:
        num_units: number of outputs along ``axis``; must divide its size.
        axis: the axis to reduce. Defaults to `-1`.

    Input shape: any, with a known size along ``axis``.
    Output shape: the input shape with ``num_units`` along ``axis``.

    Example:
        >>> x = np.arange(8, dtype="float32").reshape(1, 8)
        >>> Maxout(2)(x)  # groups [0..3], [4..7]
        [[3., 7.]]
    """

    def __init__(self, num_units: int, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if int(num_units) < 1:
            raise ValueError(f"Expected num_units >= 1. Received: num_units={num_units}")
        self.num_units = int(num_units)
        self.axis = int(axis)

    def _axis_and_size(self, input_shape) -> tuple[int, int]:
        rank = len(input_shape)
        axis = self.axis if self.axis >= 0 else rank + self.axis
        if not 0 < axis < rank:
            raise ValueError(f"Expected an axis within the input's rank {rank} (not the batch axis). Received: axis={self.axis}")
        size = input_shape[axis]
        if size is None:
            raise ValueError(f"Maxout needs a known size along axis {self.axis}. Received: input_shape={tuple(input_shape)}")
        if size % self.num_units:
            raise ValueError(
                f"The size along axis {self.axis} ({size}) is not a multiple of num_units ({self.num_units}). "
                f"Received: input_shape={tuple(input_shape)}, num_units={self.num_units}"
            )
        return axis, size

    def build(self, input_shape):
        self._axis_and_size(input_shape)

    def call(self, inputs):
        axis, size = self._axis_and_size(inputs.shape)
        shape = ops.shape(inputs)
        grouped = [-1 if i == 0 else shape[i] for i in range(axis)]
        grouped += [self.num_units, size // self.num_units]
        grouped += [shape[i] for i in range(axis + 1, len(shape))]
        return ops.max(ops.reshape(inputs, grouped), axis=axis + 1)

    def compute_output_shape(self, input_shape):
        axis, _ = self._axis_and_size(input_shape)
        shape = list(input_shape)
        shape[axis] = self.num_units
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_units": self.num_units, "axis": self.axis})
        return config
