"""Driven paths over the simulator's track maps, as a PNG (the demo's ``paths.png``, a training run's
closed-loop check on simulator recordings)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from data_tools.io import save_figure
from e2e_drive.sim.drive import DriveResult
from e2e_drive.sim.track import make_track


def plot_paths(results: Sequence[DriveResult], path: str | os.PathLike) -> None:
    """Plot each driven path over its track map (road edges, interventions) as a PNG."""
    import matplotlib  # heavy: only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 5), squeeze=False)
    for axis, result in zip(axes[0], results):
        track = make_track(result.track_seed)
        for edge in track.edges():
            closed = np.vstack([edge, edge[:1]])
            axis.plot(closed[:, 0], closed[:, 1], color="0.4", linewidth=0.8)
        axis.plot(result.path[:, 0], result.path[:, 1], color="tab:blue", linewidth=1.2, label="network")
        if len(result.intervention_points):
            axis.scatter(*result.intervention_points.T, color="tab:red", marker="x", label="intervention", zorder=3)
        axis.set_title(f"track {result.track_seed}: autonomy {result.autonomy:.1f}%")
        axis.set_aspect("equal")
        axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=80)
