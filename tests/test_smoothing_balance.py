"""smooth_steering (per recording) and balance (thins the straight-driving peak)."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools import DrivingLog, balance, read_udacity, smooth_steering
from data_tools.smoothing import gaussian_smooth


def series_log(values, recording=0) -> DrivingLog:
    n = len(values)
    return DrivingLog.from_columns(center=[f"/x/{i}.jpg" for i in range(n)], steering=values, source="s.csv",
                                   row=range(1, n + 1), recording=recording)


def test_gaussian_smooth_matches_the_gaussian_kernel_on_an_impulse():
    impulse = np.zeros(41)
    impulse[20] = 1.0
    smoothed = gaussian_smooth(impulse, 3.0)
    offsets = np.arange(-12, 13)
    kernel = np.exp(-0.5 * (offsets / 3.0) ** 2)
    np.testing.assert_allclose(smoothed[8:33], kernel / kernel.sum(), atol=1e-12)
    assert smoothed.sum() == pytest.approx(1.0)


def test_recordings_are_smoothed_independently():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 30)
    joined = DrivingLog.concat([series_log(a), series_log(b)])
    smoothed = smooth_steering(joined, 4.0).steering
    np.testing.assert_allclose(smoothed[:50], smooth_steering(series_log(a), 4.0).steering, atol=1e-6)
    np.testing.assert_allclose(smoothed[50:], smooth_steering(series_log(b), 4.0).steering, atol=1e-6)
    assert smooth_steering(joined, 0) is joined


def test_real_log_smoothing_removes_about_half_a_std(udacity_sim_a):
    log = read_udacity(udacity_sim_a)
    smoothed = smooth_steering(log, 4.0).steering
    difference = np.std(smoothed - log.steering) / np.std(log.steering)
    assert 0.3 < difference < 0.8  # the issue measured ~0.5: keyboard steering is spiky


def test_balance_caps_bins_and_keeps_time_order():
    steering = np.r_[np.zeros(700), np.linspace(-0.9, 0.9, 300)]
    log = series_log(steering)
    balanced = balance(log, bins=21, max_per_bin=50, seed=1)
    counts = np.bincount(np.clip(((balanced.steering + 1) / 2 * 21).astype(int), 0, 20), minlength=21)
    assert counts.max() <= 50
    assert np.sum(balanced.steering == 0) <= 50
    assert (np.diff(balanced.row) > 0).all()
    assert np.array_equal(balance(log, 21, 50, seed=1).row, balanced.row)
    assert not np.array_equal(balance(log, 21, 50, seed=2).row, balanced.row)
    assert len(balance(log, bins=21)) < len(log)  # default cap thins the peak


def test_balance_thins_the_zero_peak_of_the_real_log(udacity_sim_a):
    log = read_udacity(udacity_sim_a)
    balanced = balance(log, seed=0)
    counts = np.bincount(np.clip(((log.steering + 1) / 2 * 21).astype(int), 0, 20), minlength=21)
    cap = int(np.ceil(2 * counts[counts > 0].mean()))  # the documented default
    assert np.sum(np.abs(balanced.steering) < 1 / 21) == cap
    assert len(balanced) == len(log) - (counts[10] - cap)  # only the straight-driving bin was over the cap
    assert np.mean(balanced.steering == 0) < 0.5 < np.mean(log.steering == 0)
