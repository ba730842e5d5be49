"""Where a replayed driver strayed: a PNG with one row per log (the map, the offset, the steering).

The map shows the recorded path coloured by how far the virtual car was from it, with the interventions; the
offset over the seconds driven, with the intervention threshold; the driver's steering next to the log's own.
A user looks here first to see which bend the model cannot take.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from data_tools.io import save_figure
from e2e_drive.replay.drive import ReplayReport, ReplayResult

log = logging.getLogger(__name__)

# More rows than this would make an unreadable figure; the rest are named in the log, not drawn.
MAX_PLOTTED_LOGS = 6


def plot_replay(report: ReplayReport, path: str | os.PathLike, title: str | None = None) -> None:
    """Write the replay of each log in ``report`` as a PNG at ``path`` (atomically)."""
    import matplotlib  # heavy: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.logs[:MAX_PLOTTED_LOGS]
    if len(report.logs) > MAX_PLOTTED_LOGS:
        log.warning("%s: plotting the first %d of %d logs", os.fspath(path), MAX_PLOTTED_LOGS, len(report.logs))
    figure, axes = plt.subplots(len(results), 3, figsize=(16, 3.8 * len(results)), squeeze=False,
                                gridspec_kw={"width_ratios": [1, 1.6, 1.6]})
    for row, result in zip(axes, results):
        _plot_one(row, result, report.max_offset)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path, dpi=80)


def _plot_one(axes, result: ReplayResult, max_offset: float) -> None:
    where, offset_axis, steering_axis = axes
    stray = result.intervened
    name = os.path.basename(result.source if os.path.isdir(result.source) else os.path.dirname(result.source))
    positions = _side_by_side(result.positions, result.segment_ids)
    points = where.scatter(positions[:, 0], positions[:, 1], c=np.abs(result.offsets), s=4, cmap="viridis",
                           vmin=0.0, vmax=max_offset)
    where.scatter(*positions[stray].T, color="tab:red", marker="x", s=40, label="intervention", zorder=3)
    segments = np.unique(result.segment_ids)
    if len(segments) > 1:
        for number, segment in enumerate(segments, 1):
            start = positions[np.flatnonzero(result.segment_ids == segment)[0]]
            where.annotate(f"segment {number}", start, fontsize=7, color="0.3")
    where.set_aspect("equal", adjustable="datalim")
    where.set_title(f"{name}: autonomy {result.autonomy:.1f}%", fontsize=10)
    where.set_xlabel("x (m)")
    where.set_ylabel("y (m)")
    where.figure.colorbar(points, ax=where, label="|offset| (m)", shrink=0.8)
    if stray.any():
        where.legend(loc="best", fontsize=8)

    offset_axis.plot(result.seconds, result.offsets, color="tab:blue", linewidth=0.9)
    for bound in (-max_offset, max_offset):
        offset_axis.axhline(bound, color="tab:red", linestyle="--", linewidth=0.8)
    offset_axis.scatter(result.seconds[stray], result.offsets[stray], color="tab:red", marker="x", s=40, zorder=3)
    offset_axis.set_title(f"{result.interventions} interventions in {result.elapsed_seconds:.0f} s, mean |offset| "
                          f"{result.mean_abs_offset:.2f} m (left +)", fontsize=10)
    offset_axis.set_xlabel("seconds driven")
    offset_axis.set_ylabel("offset from the recorded path (m)")
    offset_axis.grid(alpha=0.3)

    steering_axis.plot(result.seconds, result.recorded, color="0.6", linewidth=0.9, label="recorded")
    steering_axis.plot(result.seconds, result.steering, color="tab:orange", linewidth=0.9, label="driver")
    steering_axis.set_ylim(-1.05, 1.05)
    steering_axis.set_xlabel("seconds driven")
    steering_axis.set_ylabel("steering")
    steering_axis.grid(alpha=0.3)
    steering_axis.legend(loc="upper right", fontsize=8)


def _side_by_side(positions: np.ndarray, segment_ids: np.ndarray, gap: float = 20.0) -> np.ndarray:
    """Each segment's path was rebuilt from the origin (nothing links the pose across a time gap): lay them out
    left to right, ``gap`` metres apart, instead of on top of each other."""
    placed = positions.astype(np.float64, copy=True)
    right = None
    for segment in np.unique(segment_ids):
        mine = segment_ids == segment
        if right is not None:
            placed[mine, 0] += right + gap - placed[mine, 0].min()
        right = placed[mine, 0].max()
    return placed
