"""The NumPy oracle against a direct loop and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from custom_layers import reference


def direct_conv2d(x, w, b, stride, pad):
    """The textbook quadruple loop over (n, i, j, k), zero padding ``pad`` on each side."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    fh, fw, _, k = w.shape
    oh = (xp.shape[1] - fh) // stride + 1
    ow = (xp.shape[2] - fw) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, k))
    for n in range(x.shape[0]):
        for i in range(oh):
            for j in range(ow):
                for kk in range(k):
                    window = xp[n, i * stride : i * stride + fh, j * stride : j * stride + fw, :]
                    y[n, i, j, kk] = np.sum(window * w[:, :, :, kk]) + b[kk]
    return y


@pytest.mark.parametrize("stride,pad,size,ksize", [(1, 0, 7, 3), (2, 1, 8, 3), (3, 2, 9, 5), (2, 0, 6, 2)])
def test_conv2d_matches_direct_loop(stride, pad, size, ksize):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, size, size + 1, 3))
    w = rng.normal(size=(ksize, ksize, 3, 4))
    b = rng.normal(size=4)
    np.testing.assert_allclose(reference.conv2d(x, w, b, stride, pad), direct_conv2d(x, w, b, stride, pad), atol=1e-12)


def test_conv2d_same_padding_keeps_ceil_size_and_puts_extra_pad_bottom_right():
    x = np.zeros((1, 5, 5, 1))
    x[0, 4, 4, 0] = 1.0  # bottom-right pixel
    w = np.ones((2, 2, 1, 1))
    y = reference.conv2d(x, w, stride=1, padding="same")
    assert y.shape == (1, 5, 5, 1)
    # total pad 1 goes bottom/right: output (4,4) sees rows 4..5 -> includes the pixel.
    assert y[0, 4, 4, 0] == 1.0 and y[0, 3, 3, 0] == 1.0


def test_conv_output_size_formula():
    assert reference.conv_output_size(200, 5, 0, 2) == 98  # PilotNet's first layer
    assert reference.conv_output_size(7, 3, 1, 2) == 4
    assert reference.conv_output_size(5, 5, 0, 1) == 1
    with pytest.raises(ValueError, match="larger than the padded input"):
        reference.conv_output_size(3, 5, 0, 1)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (2, "same", 1), (1, "valid", 2)])
def test_conv2d_backward_matches_finite_differences(stride, padding, dilation):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 7, 2))
    w = rng.normal(size=(3, 3, 2, 3))
    b = rng.normal(size=3)
    dy = rng.normal(size=reference.conv2d(x, w, b, stride, padding, dilation).shape)
    dx, dw, db = reference.conv2d_backward(x, w, dy, stride, padding, dilation)

    def loss(x_, w_, b_):
        return np.sum(reference.conv2d(x_, w_, b_, stride, padding, dilation) * dy)

    eps = 1e-6
    for array, grad in ((x, dx), (w, dw), (b, db)):
        flat = array.reshape(-1)
        for index in rng.choice(flat.size, size=min(12, flat.size), replace=False):
            old = flat[index]
            flat[index] = old + eps
            up = loss(x, w, b)
            flat[index] = old - eps
            down = loss(x, w, b)
            flat[index] = old
            assert grad.reshape(-1)[index] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-6)


def test_max_pool2d_known_values():
    x = np.arange(16, dtype=float).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(reference.max_pool2d(x)[0, :, :, 0], [[5, 7], [13, 15]])
    y = reference.max_pool2d(np.arange(9, dtype=float).reshape(1, 3, 3, 1), padding="same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 5], [7, 8]])
