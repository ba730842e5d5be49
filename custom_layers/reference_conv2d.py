"""A 2-D convolution written from scratch: im2col (strided patch indices, one gather), then one matmul.

Its input gradient is the gather's transpose written out (col2im by stride phases), not a scatter."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import activations, constraints, initializers, ops, regularizers

from custom_layers.reference import conv_output_size, same_padding


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"Expected {name} to be a positive int or a pair of them. Received: {name}={value}")
    return pair


@keras.saving.register_keras_serializable(package="custom_layers")
class ReferenceConv2D(keras.layers.Layer):
    """2-D convolution without any convolution op: gather patches, then matmul.

    im2col: output position ``(i, j)`` and kernel tap ``(u, v)`` read the
    (zero-padded) input at row ``i*SH + u*DH`` and column ``j*SW + v*DW``. These
    strided indices are computed once; one gather collects the patches
    ``(N, OH, OW, FH*FW*C)`` and one matmul with the kernel reshaped to
    ``(FH*FW*C, K)`` gives the output. The gradient with respect to the input
    adds each tap's patch gradient back into place, one stride phase at a time.
    Arguments, weights (``kernel`` HWIO, ``bias``) and outputs are those of
    ``keras.layers.Conv2D`` (channels_last), so weights copy across both ways.
    Output size: ``OH = floor((H - F_eff + 2P) / S) + 1`` with
    ``F_eff = dilation * (F - 1) + 1``.

    Args:
        filters: number of output channels.
        kernel_size: int or ``(FH, FW)``.
        strides: int or ``(SH, SW)``. Defaults to `1`.
        padding: ``"valid"``, ``"same"`` (TensorFlow's rule), an int or ``(PH, PW)``
            of zero padding on each side. Defaults to `"valid"`.
        dilation_rate: int or pair. Defaults to `1`.
        activation: activation applied to the output. Defaults to `None`.
        use_bias: add a bias. Defaults to `True`.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint: as in `Conv2D`.

    Input shape: ``(batch, H, W, C)`` with known ``H``, ``W``, ``C``.
    Output shape: ``(batch, OH, OW, filters)``.

    Example:
        >>> conv = ReferenceConv2D(24, 5, strides=2)
        >>> conv(np.zeros((1, 66, 200, 3), "float32")).shape
        (1, 31, 98, 24)
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", dilation_rate=1, activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if int(filters) < 1:
            raise ValueError(f"Expected filters >= 1. Received: filters={filters}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if isinstance(padding, str):
            padding = padding.lower()
            if padding not in ("valid", "same"):
                raise ValueError(f"Expected padding 'valid', 'same' or an int. Received: padding={padding!r}")
            self.padding = padding
        else:
            pads = (int(padding), int(padding)) if isinstance(padding, int) else tuple(int(p) for p in padding)
            if len(pads) != 2 or min(pads) < 0:
                raise ValueError(f"Expected padding >= 0. Received: padding={padding}")
            self.padding = pads
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def _effective_kernel(self) -> tuple[int, int]:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation_rate, self.kernel_size))

    def _geometry(self, height: int, width: int):
        """((pad_top, pad_bottom), (pad_left, pad_right)), (OH, OW) for an input of this size."""
        fh, fw = self._effective_kernel()
        if self.padding == "valid":
            pads = ((0, 0), (0, 0))
        elif self.padding == "same":
            pads = (same_padding(height, fh, self.strides[0]), same_padding(width, fw, self.strides[1]))
        else:
            pads = ((self.padding[0],) * 2, (self.padding[1],) * 2)
        out = []
        for n, f, (p0, p1), s, axis in zip((height, width), (fh, fw), pads, self.strides, ("height", "width")):
            if n + p0 + p1 < f:
                raise ValueError(
                    f"Kernel of effective {axis} {f} is larger than the padded input {axis} {n + p0 + p1} "
                    f"(input {n}, padding {p0}+{p1}). Received: kernel_size={self.kernel_size}, "
                    f"dilation_rate={self.dilation_rate}, padding={self.padding!r}"
                )
            out.append(conv_output_size(n + p0 + p1, f, 0, s))
        return pads, tuple(out)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"Expected a 4-D input (batch, H, W, C). Received: input_shape={tuple(input_shape)}")
        height, width, channels = input_shape[1:]
        if None in (height, width, channels):
            raise ValueError(f"ReferenceConv2D needs known H, W and C. Received: input_shape={tuple(input_shape)}")
        self._geometry(height, width)
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (int(channels), self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def _patch_index(self, height: int, width: int) -> np.ndarray:
        """Flat index into the padded input of every (output row, output column, tap).

        Row ``i * SH + u * DH`` and column ``j * SW + v * DW``: the strided ranges
        of im2col, computed once per input size.
        """
        ((pt, pb), (pl, pr)), (oh, ow) = self._geometry(height, width)
        (sh, sw), (dh, dw) = self.strides, self.dilation_rate
        fh, fw = self.kernel_size
        rows = np.arange(oh)[:, None, None, None] * sh + np.arange(fh)[None, None, :, None] * dh
        cols = np.arange(ow)[None, :, None, None] * sw + np.arange(fw)[None, None, None, :] * dw
        return (rows * (width + pl + pr) + cols).reshape(-1).astype("int32")

    def _scatter_patches(self, patch_grads, padded_size: tuple[int, int], out_size: tuple[int, int], channels: int):
        """The gather's transpose (col2im): every tap's patch gradient added back where the tap read the input.

        Row ``i*SH + u*DH`` lies in row phase ``(u*DH) % SH`` of the strided grid, at phase row
        ``i + (u*DH) // SH`` (columns alike), so each phase is a plain sum of the taps shifted into place: FH*FW
        pads and adds. TensorFlow's own gradient of the gather is a transpose, an unsorted segment sum and a
        transpose back: a train step a fifth slower with glibc's default malloc settings (BENCHMARKS.md, "Layers").
        """
        (hp, wp), (oh, ow) = padded_size, out_size
        (sh, sw), (dh, dw), (fh, fw) = self.strides, self.dilation_rate, self.kernel_size
        taps = ops.reshape(patch_grads, (-1, oh, ow, fh * fw, channels))
        phase_h, phase_w = -(-hp // sh), -(-wp // sw)
        phases = {}
        for u in range(fh):
            row_shift, row_phase = divmod(u * dh, sh)
            for v in range(fw):
                col_shift, col_phase = divmod(v * dw, sw)
                shifted = ops.pad(taps[:, :, :, u * fw + v], [
                    [0, 0], [row_shift, phase_h - oh - row_shift], [col_shift, phase_w - ow - col_shift], [0, 0]])
                key = (row_phase, col_phase)
                phases[key] = phases[key] + shifted if key in phases else shifted
        if (sh, sw) == (1, 1):
            return phases[0, 0]
        empty = ops.zeros_like(phases[0, 0])  # a phase no tap reads (dilation a multiple of the stride)
        grid = ops.stack([ops.stack([phases.get((a, b), empty) for b in range(sw)], axis=3) for a in range(sh)],
                         axis=2)  # (N, phase row, SH, phase column, SW, C)
        grid = ops.reshape(grid, (-1, phase_h * sh, phase_w * sw, channels))
        return grid[:, :hp, :wp, :]

    def call(self, inputs):
        height, width, channels = inputs.shape[1:]
        ((pt, pb), (pl, pr)), (oh, ow) = self._geometry(height, width)
        x = inputs
        if pt or pb or pl or pr:
            x = ops.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]])
        padded_size = (height + pt + pb, width + pl + pr)
        patch_index = self._patch_index(height, width)
        taps = self.kernel_size[0] * self.kernel_size[1]

        @ops.custom_gradient
        def gather_patches(padded):
            # One gather instead of FH*FW strided slices: TensorFlow's strided slice copies a 3-channel tensor
            # element by element.
            pixels = ops.reshape(padded, (-1, padded_size[0] * padded_size[1], channels))
            # Tap order (u, v, c) is the row-major order of the HWIO kernel's first three axes.
            patches = ops.reshape(ops.take(pixels, patch_index, axis=1), (-1, oh, ow, taps * channels))

            def grad(*args, upstream=None):
                upstream = args[0] if upstream is None else upstream
                return self._scatter_patches(upstream, padded_size, (oh, ow), channels)

            return patches, grad

        outputs = ops.matmul(gather_patches(x), ops.reshape(self.kernel, (-1, self.filters)))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        _, (oh, ow) = self._geometry(input_shape[1], input_shape[2])
        return (input_shape[0], oh, ow, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        })
        return config
