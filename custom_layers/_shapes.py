"""Small shape helpers shared by the layers."""

from __future__ import annotations

from typing import Sequence


def per_feature_shape(input_shape: Sequence[int | None], shared_axes: Sequence[int] | None) -> tuple[int, ...]:
    """Shape of a learned per-feature parameter: ``input_shape[1:]`` with ``shared_axes`` set to 1.

    The same rule as ``keras.layers.PReLU``: axes count from 1 (0 is the batch),
    negative axes count from the end.
    """
    shape = list(input_shape[1:])
    rank = len(input_shape)
    for axis in shared_axes or ():
        index = axis if axis > 0 else rank + axis
        if not 1 <= index < rank:
            raise ValueError(f"Expected shared_axes within 1..{rank - 1}. Received: shared_axes={list(shared_axes)}")
        shape[index - 1] = 1
    for i, dim in enumerate(shape):
        if dim is None:
            raise ValueError(
                f"Axis {i + 1} of the input has unknown size; list it in shared_axes. Received: input_shape={tuple(input_shape)}"
            )
    return tuple(int(d) for d in shape)


def normalize_shared_axes(shared_axes: int | Sequence[int] | None) -> list[int] | None:
    if shared_axes is None:
        return None
    if isinstance(shared_axes, int):
        return [shared_axes]
    return [int(a) for a in shared_axes]
