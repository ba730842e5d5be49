"""Thinning over-represented steering values (the straight-driving peak)."""

from __future__ import annotations

import numpy as np

from data_tools.log import DrivingLog


def balance(log: DrivingLog, bins: int = 21, max_per_bin: int | None = None, seed: int = 0) -> DrivingLog:
    """Keep at most ``max_per_bin`` rows per steering bin, chosen at random from ``seed``.

    Real logs are dominated by straight driving (the shared Udacity sample is
    ~70% exactly 0): a model trained on them learns to go straight. Bins split
    [-1, 1] evenly; kept rows stay in time order.

    Args:
        log: the rows.
        bins: number of steering bins over [-1, 1]. Defaults to `21` (0 sits in the middle bin).
        max_per_bin: the cap. Defaults to twice the mean count of the non-empty bins.
        seed: seed of the random choice. Defaults to `0`.
    """
    if bins < 1:
        raise ValueError(f"Expected bins >= 1. Received: bins={bins}")
    which = np.clip(((log.steering + 1.0) / 2.0 * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    if max_per_bin is None:
        max_per_bin = int(np.ceil(2 * counts[counts > 0].mean())) if len(log) else 0
    if max_per_bin < 1:
        raise ValueError(f"Expected max_per_bin >= 1. Received: max_per_bin={max_per_bin}")
    rng = np.random.default_rng(seed)
    keep = np.ones(len(log), bool)
    for b in np.flatnonzero(counts > max_per_bin):
        rows = np.flatnonzero(which == b)
        keep[rng.choice(rows, size=len(rows) - max_per_bin, replace=False)] = False
    return log[keep]
