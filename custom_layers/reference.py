"""A NumPy float64 oracle for convolution and pooling: readable first, the ground truth of the tests.

Layouts: ``x`` is NHWC, ``w`` is HWIO (as ``keras.layers.Conv2D``). Padding is
``"valid"``, ``"same"`` (TensorFlow's rule: the extra row/column of an odd total
goes to the bottom/right), an int, or a ``(pad_h, pad_w)`` pair.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Padding = "int | tuple[int, int] | str"


def conv_output_size(n: int, f: int, p: int, s: int) -> int:
    """Output length of a convolution: ``floor((n - f + 2p) / s) + 1``.

    Raises:
        ValueError: when the (padded) input is smaller than the filter.
    """
    if s < 1:
        raise ValueError(f"Expected stride >= 1. Received: s={s}")
    if n + 2 * p < f:
        raise ValueError(f"Filter of size {f} is larger than the padded input of size {n + 2 * p} (n={n}, p={p})")
    return (n - f + 2 * p) // s + 1


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    return int(value[0]), int(value[1])


def same_padding(n: int, f_eff: int, s: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's ``"same"``: output ``ceil(n / s)``."""
    out = -(-n // s)
    total = max((out - 1) * s + f_eff - n, 0)
    return total // 2, total - total // 2


def _pads(x_shape, kernel_hw, stride, padding, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    fh = dh * (kernel_hw[0] - 1) + 1
    fw = dw * (kernel_hw[1] - 1) + 1
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return same_padding(x_shape[1], fh, sh), same_padding(x_shape[2], fw, sw)
        raise ValueError(f"Expected padding 'valid', 'same' or an int. Received: padding={padding!r}")
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1) -> np.ndarray:
    """2-D cross-correlation (what deep-learning frameworks call convolution), by im2col.

    Args:
        x: input ``(N, H, W, C)``.
        w: kernel ``(FH, FW, C, K)``.
        b: optional bias ``(K,)``.
        stride: int or ``(sh, sw)``.
        padding: ``"valid"``, ``"same"``, int or ``(ph, pw)`` zero padding.
        dilation: int or ``(dh, dw)``.

    Returns:
        ``(N, OH, OW, K)`` in float64, ``OH = floor((H - F + 2P) / S) + 1``.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    fh, fw, c, k = w.shape
    if x.shape[3] != c:
        raise ValueError(f"input has {x.shape[3]} channels, kernel expects {c}")
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    (pt, pb), (pl, pr) = _pads(x.shape, (fh, fw), stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = conv_output_size(xp.shape[1], dh * (fh - 1) + 1, 0, sh)
    ow = conv_output_size(xp.shape[2], dw * (fw - 1) + 1, 0, sw)
    # cols[n, i, j, u, v, c] = xp[n, i*sh + u*dh, j*sw + v*dw, c]
    cols = np.empty((x.shape[0], oh, ow, fh, fw, c))
    for u in range(fh):
        for v in range(fw):
            cols[:, :, :, u, v, :] = xp[:, u * dh : u * dh + sh * (oh - 1) + 1 : sh, v * dw : v * dw + sw * (ow - 1) + 1 : sw, :]
    y = cols.reshape(x.shape[0], oh, ow, -1) @ w.reshape(-1, k)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return y


def conv2d_backward(x, w, dy, stride=1, padding=0, dilation=1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(conv2d(x, w, b) * dy)`` with respect to ``x``, ``w`` and ``b``.

    Written as the plain scatter of each output position back onto the input
    window that produced it.

    Returns:
        ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and ``(K,)``.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    fh, fw, c, k = w.shape
    sh, sw = _pair(stride)
    dh, dwl = _pair(dilation)
    (pt, pb), (pl, pr) = _pads(x.shape, (fh, fw), stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    n, oh, ow, _ = dy.shape
    for u in range(fh):
        for v in range(fw):
            rows = slice(u * dh, u * dh + sh * (oh - 1) + 1, sh)
            cols = slice(v * dwl, v * dwl + sw * (ow - 1) + 1, sw)
            window = xp[:, rows, cols, :]  # (N, OH, OW, C)
            dw[u, v] = np.einsum("nijc,nijk->ck", window, dy)
            dxp[:, rows, cols, :] += np.einsum("nijk,ck->nijc", dy, w[u, v])
    dx = dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2], :]
    db = dy.sum(axis=(0, 1, 2))
    return dx, dw, db


def max_pool2d(x, pool=2, stride=2, padding="valid") -> np.ndarray:
    """Max pooling over ``pool`` windows; ``"same"`` pads with -inf (TensorFlow's rule)."""
    x = np.asarray(x, np.float64)
    ph_, pw_ = _pair(pool)
    sh, sw = _pair(stride)
    if padding == "same":
        (pt, pb), (pl, pr) = same_padding(x.shape[1], ph_, sh), same_padding(x.shape[2], pw_, sw)
    elif padding == "valid":
        pt = pb = pl = pr = 0
    else:
        raise ValueError(f"Expected padding 'valid' or 'same'. Received: padding={padding!r}")
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-np.inf)
    oh = conv_output_size(xp.shape[1], ph_, 0, sh)
    ow = conv_output_size(xp.shape[2], pw_, 0, sw)
    out = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf)
    for u in range(ph_):
        for v in range(pw_):
            out = np.maximum(out, xp[:, u : u + sh * (oh - 1) + 1 : sh, v : v + sw * (ow - 1) + 1 : sw, :])
    return out
