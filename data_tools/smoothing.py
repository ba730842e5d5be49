"""Gaussian smoothing of steering labels, per recording."""

from __future__ import annotations

import numpy as np

from data_tools.log import DrivingLog


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of a 1-D series; the ends are extended with their edge values."""
    values = np.asarray(values, np.float64)
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def smooth_steering(log: DrivingLog, sigma_frames: float) -> DrivingLog:
    """The log with Gaussian-smoothed steering (``sigma_frames`` in frames).

    Keyboard and mouse steering is spiky: what a driver means is its smoothed
    trend. Each recording is smoothed on its own, in time order, so no label
    leaks across two recordings. ``sigma_frames=0`` returns the log unchanged.
    """
    if sigma_frames < 0:
        raise ValueError(f"Expected sigma_frames >= 0. Received: sigma_frames={sigma_frames}")
    if sigma_frames == 0:
        return log
    steering = log.steering.astype(np.float64).copy()
    for recording in log.recordings:
        rows = np.flatnonzero(log.recording == recording)
        steering[rows] = gaussian_smooth(steering[rows], sigma_frames)
    return log.with_steering(np.clip(steering, -1.0, 1.0))
