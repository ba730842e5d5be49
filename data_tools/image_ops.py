"""Pure image functions behind the augmentations: uint8 RGB in, uint8 RGB out.

Every function is deterministic (all randomness is drawn by the transforms in
``data_tools.augment``) and vectorised with OpenCV/NumPy; none loops over pixels.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


def _check_frame(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"Expected an RGB uint8 frame of shape (H, W, 3). Received: shape={image.shape}, dtype={image.dtype}"
        )
    return image


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right."""
    return cv2.flip(_check_frame(image), 1)


def translate(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift the content by whole pixels: ``dx`` right and ``dy`` down (negative: left, up).

    The uncovered border repeats the edge pixels, so no black band teaches the
    model a false cue. Whole-pixel shifts are a slice and a border copy, ten
    times cheaper than a bilinear warp.
    """
    height, width = _check_frame(image).shape[:2]
    dx, dy = max(-(width - 1), min(width - 1, int(dx))), max(-(height - 1), min(height - 1, int(dy)))
    kept = image[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
    return cv2.copyMakeBorder(kept, max(0, dy), max(0, -dy), max(0, dx), max(0, -dx), cv2.BORDER_REPLICATE)


def scale_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every channel by ``factor``, rounded and saturated to [0, 255].

    Scaling R, G and B alike scales HSV's V and leaves hue and saturation alone,
    which is what the HSV-based brightness of the usual recipe does, without
    the two colour conversions. ``cv2.convertScaleAbs`` (SIMD, float32) is twice
    as fast as a lookup table; it may round an exact half the other way.
    """
    if factor < 0:
        raise ValueError(f"Expected factor >= 0. Received: factor={factor}")
    return cv2.convertScaleAbs(_check_frame(image), alpha=float(factor))


def darken_polygon(image: np.ndarray, polygon: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the pixels inside ``polygon`` ((N, 2) x, y vertices) by ``factor`` (a shadow)."""
    height, width = _check_frame(image).shape[:2]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.asarray(polygon, np.int32).reshape(-1, 1, 2)], 255)
    out = image.copy()
    cv2.copyTo(scale_brightness(image, factor), mask, out)
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel covers +-3 sigma)."""
    if sigma <= 0:
        return _check_frame(image).copy()
    ksize = 2 * int(np.ceil(3 * sigma)) + 1
    return cv2.GaussianBlur(_check_frame(image), (ksize, ksize), sigmaX=sigma, sigmaY=sigma)


def add_noise(image: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Add a noise field (same shape as ``image``; rounded to integers) with saturation to [0, 255]."""
    noise = np.asarray(noise)
    if noise.shape != _check_frame(image).shape:
        raise ValueError(f"Expected noise of shape {image.shape}. Received: shape={noise.shape}")
    if noise.dtype != np.int16:
        noise = np.rint(np.clip(noise, -255, 255)).astype(np.int16)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


@lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    from statistics import NormalDist

    return np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)


def gaussian_noise_from_bytes(random_bytes: np.ndarray, std: float) -> np.ndarray:
    """Gaussian noise (int16) from uniform random bytes by the inverse CDF at 256 equiprobable levels.

    One byte per value instead of a float64 normal draw: about five times cheaper,
    and the levels (+-2.9 std at the extremes) are finer than a grey level for std < 8.
    """
    table = np.rint(_normal_quantiles() * np.float32(std)).astype(np.int16)
    return cv2.LUT(np.ascontiguousarray(random_bytes, np.uint8), table)
