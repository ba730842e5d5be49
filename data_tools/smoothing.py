"""Gaussian smoothing of steering labels, per recording."""

from __future__ import annotations

import numpy as np

from data_tools.log import DrivingLog


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of a 1-D series (kernel cut at 4 sigma); the ends are extended with their edge values."""
    from scipy.ndimage import gaussian_filter1d  # here, so importing data_tools stays light

    values = np.asarray(values, np.float64)
    if sigma <= 0 or len(values) < 2:
        return values.copy()
    return gaussian_filter1d(values, sigma, mode="nearest", truncate=4.0)


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
