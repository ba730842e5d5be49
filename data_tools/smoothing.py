"""Gaussian smoothing of steering labels, per recording (in frames, or in seconds of the time stamps), and
the detection of keyboard-style steering that needs it."""

from __future__ import annotations

import logging

import numpy as np

from data_tools.log import DrivingLog

log = logging.getLogger(__name__)


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
    return _per_recording(log, lambda rows: gaussian_smooth(log.steering[rows].astype(np.float64), sigma_frames))


# Keyboard steering (the Udacity simulator's arrow keys) returns to exactly 0 whenever no key is held, so a
# keyboard driver's labels are mostly exact zeros between short pulses; a wheel, a gamepad stick, a mouse or
# an autopilot rests on exact 0.0 only inside a dead zone on straights. Half the moving frames is the line:
# a round number between the two kinds, not fit to any log.
KEYBOARD_ZERO_SHARE = 0.5
# What a keyboard driver means is the trend of the pulses: a tap-and-release lasts ~0.1-0.3 s, the steering a
# curve needs changes over ~1 s. A Gaussian of sigma 0.4 s (full width at half maximum ~0.95 s) merges one
# tap cycle without blurring a curve. Seconds, not frames: logs run at 10-20 frames per second.
KEYBOARD_SMOOTH_SECONDS = 0.4


def is_keyboard_steering(driving_log: DrivingLog, min_zero_share: float = KEYBOARD_ZERO_SHARE) -> bool:
    """Whether ``driving_log``'s steering looks keyboard-driven: at least ``min_zero_share`` of the frames where the
    car moves (all frames when the log has no speed) are exactly 0."""
    steering = np.asarray(driving_log.steering, np.float64)
    speed = np.asarray(driving_log.speed, np.float64)
    moving = np.isfinite(speed) & (speed > 0.1 * np.nanmax(speed)) if np.isfinite(speed).any() else \
        np.ones(len(steering), bool)
    if not moving.any():
        return False
    return bool(np.mean(steering[moving] == 0.0) >= min_zero_share)


def time_gaussian_smooth(values: np.ndarray, times: np.ndarray, sigma_seconds: float) -> np.ndarray:
    """Gaussian filter of a series sampled at ``times`` (seconds), weights by time difference (cut at 4 sigma),
    so an uneven frame rate or a pause in the log does not stretch the kernel."""
    values = np.asarray(values, np.float64)
    times = np.asarray(times, np.float64)
    if sigma_seconds <= 0 or len(values) < 2:
        return values.copy()
    order = np.argsort(times, kind="stable")
    t, v = times[order], values[order]
    first = np.searchsorted(t, t - 4 * sigma_seconds, "left")
    last = np.searchsorted(t, t + 4 * sigma_seconds, "right")
    smoothed = np.empty_like(v)
    for i, (a, b) in enumerate(zip(first, last)):
        weights = np.exp(-0.5 * ((t[a:b] - t[i]) / sigma_seconds) ** 2)
        smoothed[i] = weights @ v[a:b] / weights.sum()
    out = np.empty_like(smoothed)
    out[order] = smoothed
    return out


def smooth_steering_seconds(driving_log: DrivingLog, sigma_seconds: float) -> DrivingLog:
    """The log with steering Gaussian-smoothed over ``sigma_seconds`` of its time stamps, each recording on
    its own. A recording without time stamps is left as it is, with a warning (its frame rate is unknown)."""
    if not (np.isfinite(sigma_seconds) and sigma_seconds >= 0):
        raise ValueError(f"Expected sigma_seconds >= 0. Received: sigma_seconds={sigma_seconds}")
    if sigma_seconds == 0:
        return driving_log

    def smooth(rows: np.ndarray) -> np.ndarray | None:
        times = driving_log.timestamp[rows]
        if not np.all(np.isfinite(times)):
            log.warning("%s: no time stamps: steering labels not smoothed (smoothing is in seconds)",
                        driving_log.describe(rows[0]))
            return None
        return time_gaussian_smooth(driving_log.steering[rows].astype(np.float64), times, sigma_seconds)

    return _per_recording(driving_log, smooth)


def _per_recording(driving_log: DrivingLog, smooth) -> DrivingLog:
    """``driving_log`` with each recording's steering replaced by ``smooth(rows)`` (``None``: left as it is),
    clipped to [-1, 1]: no label ever mixes two recordings."""
    steering = driving_log.steering.astype(np.float64).copy()
    for recording in driving_log.recordings:
        rows = np.flatnonzero(driving_log.recording == recording)
        smoothed = smooth(rows)
        if smoothed is not None:
            steering[rows] = smoothed
    return driving_log.with_steering(np.clip(steering, -1.0, 1.0))


def keyboard_smoothing(driving_log: DrivingLog, sigma_seconds: float = KEYBOARD_SMOOTH_SECONDS) -> DrivingLog:
    """Smooth (``smooth_steering_seconds``) the recordings whose steering ``is_keyboard_steering``; others stay."""
    steering = driving_log.steering.astype(np.float64).copy()
    for recording in driving_log.recordings:
        rows = np.flatnonzero(driving_log.recording == recording)
        part = driving_log[rows]
        if is_keyboard_steering(part):
            log.info("%s: keyboard-style steering (%.0f%% exact zeros): smoothing labels over %g s",
                     driving_log.describe(rows[0]), 100 * np.mean(part.steering == 0), sigma_seconds)
            steering[rows] = smooth_steering_seconds(part, sigma_seconds).steering
    return driving_log.with_steering(steering)
