"""A training run's closed-loop driving: the model steered through its validation span, before a car is.

``closed_loop_check`` drives ``best.keras`` when a run ends; ``autonomy_callback`` scores every epoch for
``select_by="autonomy"``. Logs are replayed through their recorded frames (``e2e_drive.replay``, as
``e2e-drive replay LOG --start 0.8`` scores them); the simulator's own recordings (``recording.json``) are driven
by the simulator on their tracks instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

import numpy as np

from data_tools.log import DrivingLog
from e2e_drive.recipe import training_camera
from e2e_drive.train_config import TrainConfig, flag

log = logging.getLogger(__name__)

# The history key of each epoch's validation autonomy (``select_by="autonomy"``).
AUTONOMY = "val_autonomy"
# Replay pieces of the validation span (each starts on the recorded pose): one model batch per step. 30 s
# holds several times the 6 s an intervention costs, so a piece's free start rarely hides one.
AUTONOMY_PIECE_SECONDS = 30.0
# Laps the simulator drives each epoch when the validation recordings are its own (``simulator_recordings``).
SIMULATED_LAPS = 1.0

__all__ = ["AUTONOMY", "autonomy_callback", "autonomy_parts", "closed_loop_check", "replayable_parts"]


def replayable_parts(config: TrainConfig, val_log: DrivingLog) -> tuple[list[DrivingLog], str | None]:
    """The validation span's recordings, each on its own, when replay can drive them; else ``([], why not)``
    (no validation rows, no time stamps or speed, or multiworker: each worker holds a share of the rows)."""
    from data_tools.errors import DataError
    from e2e_drive.replay import get_profile, reconstruct

    if not len(val_log):
        return [], "no validation rows"
    if config.strategy == "multiworker":
        return [], "not with --strategy multiworker (each worker holds a share of the validation rows, replay " \
                   "needs whole recordings)"
    parts = [val_log[val_log.recording == r] for r in val_log.recordings]
    if simulator_recordings(parts) is not None:
        return parts, None  # the simulator drives their tracks: no path to rebuild (a tub of them has no speed)
    try:
        for part in parts:
            reconstruct(part, get_profile(config.car), speed=config.speed)
    except DataError as error:
        return [], f"cannot replay the validation rows ({error})"
    return parts, None


def autonomy_parts(config: TrainConfig, val_log: DrivingLog) -> list[DrivingLog]:
    """The validation span's recordings for ``select_by="autonomy"``, or none (with a warning: selection falls
    back to the validation loss) when replay cannot drive them."""
    if config.select_by != "autonomy" or not len(val_log):
        return []
    parts, why = replayable_parts(config, val_log)
    if why:
        log.warning("%s autonomy: %s: selecting by val_loss", flag("select_by"), why)
    return parts


def simulator_recordings(parts: list[DrivingLog]):
    """The ``SimRecording`` of each validation recording when every one was written by ``e2e-drive sim record``
    with one car, camera and frame rate (the simulator can then drive their tracks itself), else ``None``."""
    from e2e_drive.sim import read_recording

    recordings = []
    for part in parts:
        recording = read_recording(os.path.dirname(str(part.source[0])))
        if recording is None:
            return None
        recordings.append(recording)
    if len({(r.car, r.rig, r.fps) for r in recordings}) != 1:
        return None
    return recordings


def closed_loop_scorer(config: TrainConfig, parts: list[DrivingLog], frame_shape: tuple[int, ...]):
    """``score(model, piece_seconds)``: the model driven closed loop on the validation recordings, as a dict
    (``autonomy``, ``interventions``, ``elapsed_seconds``, ``mean_abs_offset``, ``max_abs_offset``, ``by``):
    replayed through the recorded frames (``e2e_drive.replay``, the profile's car, ``config.camera`` or the
    profile's camera, ``config.speed`` for logs without a speed column), or, when every
    recording was written by ``e2e-drive sim record``, the simulator driving their tracks."""
    from e2e_drive.models import steering_function
    from e2e_drive.replay import camera_for_size, get_profile, replay
    from e2e_drive.sim import drive

    profile = get_profile(config.car)
    camera = (camera_for_size(profile.camera, frame_shape[:2]) if config.camera is None
              else training_camera(config, parts[0]))
    simulated = simulator_recordings(parts)
    tracks = sorted({r.track for r in simulated}) if simulated is not None else []

    def score(model, piece_seconds: float | None = None, plot: str | os.PathLike | None = None,
              progress: bool = False) -> dict[str, Any]:
        if simulated is None:
            report = replay(parts, steering_function(model), camera=camera, profile=profile, speed=config.speed,
                            piece_seconds=piece_seconds, progress=progress)
            result = {"by": "replay", **{k: v for k, v in report.total.summary().items() if k != "source"}}
            if plot is not None:
                from e2e_drive.replay.plot import plot_replay

                _plotted(result, plot, lambda: plot_replay(report, plot, title="closed loop on the validation span"))
            return result
        first = simulated[0]
        results = drive(steering_function(model), tracks, laps=SIMULATED_LAPS, params=first.car, rig=first.rig,
                        fps=first.fps, progress=progress)
        result = {"by": "simulator", "tracks": tracks, "autonomy": float(np.mean([r.autonomy for r in results])),
                  "interventions": int(sum(r.interventions for r in results)),
                  "elapsed_seconds": float(sum(r.elapsed_seconds for r in results)),
                  "mean_abs_offset": float(np.mean([r.mean_abs_offset for r in results])),
                  "max_abs_offset": float(max(r.max_abs_offset for r in results))}
        if plot is not None:
            from e2e_drive.sim.plot import plot_paths

            _plotted(result, plot, lambda: plot_paths(results, plot))
        return result

    score.simulated = simulated is not None
    score.tracks = tracks
    return score


def _plotted(result: dict[str, Any], path: str | os.PathLike, draw: Callable[[], None]) -> None:
    """Draw a closed-loop plot and name it in ``result``; a plot that cannot be written costs a warning, never the
    check's figures."""
    try:
        draw()
    except OSError as error:
        log.warning("closed-loop plot not written: %s", error)
        return
    result["plot"] = os.fspath(path)


def autonomy_callback(config: TrainConfig, parts: list[DrivingLog], frame_shape: tuple[int, ...]):
    import keras

    score = closed_loop_scorer(config, parts, frame_shape)
    if score.simulated:
        log.info("%s autonomy: the simulator drives track(s) %s closed loop (%g lap each), as recorded",
                 flag("select_by"), ", ".join(map(str, score.tracks)), SIMULATED_LAPS)

    class ValidationAutonomy(keras.callbacks.Callback):
        """Adds ``val_autonomy`` (and ``val_interventions``) to each epoch's logs, before the checkpoint reads
        them: the model replayed through the validation span (``e2e_drive.replay``, the profile's car and
        camera), or, for simulator recordings, driving their tracks in the simulator."""

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            result = score(self.model, AUTONOMY_PIECE_SECONDS)
            if logs is not None:
                logs[AUTONOMY] = float(result["autonomy"])
                logs["val_interventions"] = float(result["interventions"])

    return ValidationAutonomy()


def closed_loop_check(config: TrainConfig, val_log: DrivingLog, model_path: str | os.PathLike,
                      frame_shape: tuple[int, ...], plot: str | os.PathLike | None = None) -> dict[str, Any]:
    """``best.keras`` driven closed loop through the whole validation span (rows it never trained on, with
    their recorded labels, not the smoothed ones it trained on) as ``e2e-drive replay`` scores it (whole
    segments, ``--camera`` or the car profile's camera); for the simulator's own recordings the simulator drives
    their tracks one lap (the whole track: the model trained on most of it). How the model drives, before a car
    does; ``{"skipped": why}`` when it cannot be driven (a run's result is never lost to its check). ``plot``:
    also draw where it strayed there (``e2e_drive.replay.plot.plot_replay``, or the simulator's track maps).
    """
    from data_tools.errors import DataError
    from e2e_drive.models import load_model

    parts, why = replayable_parts(config, val_log)
    if why:
        log.debug("no closed-loop check of the validation span: %s", why)
        return {"skipped": why}
    log.info("closed-loop check: driving %s through the validation span (%d rows)", os.path.basename(model_path),
             sum(len(part) for part in parts))
    try:
        result = closed_loop_scorer(config, parts, frame_shape)(load_model(model_path), plot=plot,
                                                                 progress=config.verbose > 0)
    except (DataError, ValueError) as error:
        log.warning("no closed-loop check of the validation span: %s", error)
        return {"skipped": str(error)}
    log.debug("closed loop on the validation span (%s): %.1f%% autonomy, %d interventions in %.0f s, mean "
             "|offset| %.2f m", result["by"], result["autonomy"], result["interventions"],
             result["elapsed_seconds"], result["mean_abs_offset"])
    return result
