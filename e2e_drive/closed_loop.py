"""Closed-loop driving of a model on recorded data: how it drives, before a car does.

``ClosedLoopSpec`` says what is driven (recordings, car profile, camera, speed, the recorded paths rebuilt once)
and ``score`` drives a model through it: the recorded frames replayed (``e2e_drive.replay``, as ``e2e-drive
replay`` scores them) or, for the simulator's own recordings, the simulator on their tracks. A training run
builds one spec of its validation span (``validation_spec``) and uses it every epoch for ``select_by="autonomy"``
(``autonomy_callback``) and once more when it ends (``closed_loop_check``); ``e2e-drive evaluate`` builds one of
the log it is given (``log_spec``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from data_tools.log import DrivingLog
from e2e_drive.train_config import TrainConfig, flag

log = logging.getLogger(__name__)

# The history key of each epoch's validation autonomy (``select_by="autonomy"``).
AUTONOMY = "val_autonomy"
# Replay pieces of the validation span scored every epoch (each starts on the recorded pose): one model batch
# per step. 30 s holds several times the 6 s an intervention costs, so a piece's free start rarely hides one.
# The end-of-run check and ``evaluate`` drive whole segments.
AUTONOMY_PIECE_SECONDS = 30.0
# Laps the simulator drives when the recordings are its own.
SIMULATED_LAPS = 1.0
# Above this many autonomy points per intervention (a 30 s span) a closed-loop figure is too coarse to tell.
COARSE_POINTS = 20.0
# How strictly a replayed span judges: the recorded steering this many seconds late, driven blind (a driver a
# human reaction's fraction behind the recorded one). Below STRICT_AUTONOMY it fails the span too: the car's
# geometry (speed, wheelbase, wheel angle, intervention offset) leaves no room for any model's small errors.
LATE_SECONDS = 0.1
STRICT_AUTONOMY = 50.0

__all__ = ["AUTONOMY", "ClosedLoopSpec", "autonomy_callback", "closed_loop_check", "log_spec", "strictness",
           "validation_spec"]


@dataclass(frozen=True)
class ClosedLoopSpec:
    """What a model is driven through: ``parts`` (recordings, each driven on its own) with the car ``profile``,
    the ``camera`` its frames were taken with, ``speed`` (m/s) for logs without a speed column, and either the
    recorded ``paths`` (rebuilt once, replayed every time) or ``simulated``: the simulator's own recordings,
    whose tracks it drives itself."""

    parts: tuple[DrivingLog, ...]
    profile: Any  # CarProfile
    camera: Any = None  # CameraRig; None when the simulator drives
    speed: float | None = None
    paths: tuple = ()  # Trajectory per part (replay)
    simulated: tuple = ()  # SimRecording per part (simulator)

    @property
    def by(self) -> str:
        return "simulator" if self.simulated else "replay"

    @property
    def tracks(self) -> list[int]:
        return sorted({recording.track for recording in self.simulated})

    @property
    def rows(self) -> int:
        return sum(len(part) for part in self.parts)

    def replay(self, driver, piece_seconds: float | None = None, progress: bool = False):
        """The ``ReplayReport`` of ``driver`` (a predictor, ``"recorded"`` or a constant) on the recorded paths."""
        from e2e_drive.replay import replay

        if self.simulated:
            raise ValueError("the simulator drives these recordings' tracks; replay needs a spec built with "
                             "simulate=False")
        return replay(list(self.parts), driver, camera=self.camera, profile=self.profile, speed=self.speed,
                      piece_seconds=piece_seconds, progress=progress, trajectories=list(self.paths))

    def score(self, model, piece_seconds: float | None = None, plot: str | os.PathLike | None = None,
              progress: bool = False) -> dict[str, Any]:
        """``model`` (a Keras model or a predictor on uint8 frames) driven closed loop, as a dict: ``by``,
        ``autonomy``, ``interventions``, ``elapsed_seconds``, ``mean_abs_offset``, ``max_abs_offset`` and
        ``points_per_intervention`` (what one intervention more or less changes ``autonomy`` by on this span)
        and, for replay, how strictly the span judges (``strictness``: ``late_autonomy``, ``late_interventions``,
        ``strict``).
        ``piece_seconds``: replay pieces of this length together (faster, each piece starts on the recorded
        pose); default whole segments. ``plot``: also draw where it strayed (a plot that cannot be written
        costs a warning, never the figures)."""
        driver = _predictor(model)
        if not self.simulated:
            report = self.replay(driver, piece_seconds, progress)
            result = {"by": "replay", **{k: v for k, v in report.total.summary().items() if k != "source"}}
            draw = None
            if plot is not None:
                from e2e_drive.replay.plot import plot_replay

                def draw():
                    plot_replay(report, plot, title="closed loop on the validation span")
        else:
            from e2e_drive.sim import drive

            first = self.simulated[0]
            results = drive(driver, self.tracks, laps=SIMULATED_LAPS, params=first.car, rig=first.rig,
                            fps=first.fps, progress=progress)
            result = {"by": "simulator", "tracks": self.tracks,
                      "autonomy": float(np.mean([r.autonomy for r in results])),
                      "interventions": int(sum(r.interventions for r in results)),
                      "elapsed_seconds": float(sum(r.elapsed_seconds for r in results)),
                      "mean_abs_offset": float(np.mean([r.mean_abs_offset for r in results])),
                      "max_abs_offset": float(max(r.max_abs_offset for r in results))}
            draw = None
            if plot is not None:
                from e2e_drive.sim.plot import plot_paths

                def draw():
                    plot_paths(results, plot)
        result.update(uncertainty(result["elapsed_seconds"]))
        if not self.simulated:
            result.update(strictness(self))
        if draw is not None:
            _plotted(result, plot, draw)
        return result


def uncertainty(elapsed_seconds: float) -> dict[str, Any]:
    """How much a closed-loop figure on ``elapsed_seconds`` of driving can tell: ``points_per_intervention``
    (autonomy points one intervention costs), and ``too_short`` when that is more than ``COARSE_POINTS``."""
    from e2e_drive.sim.autonomy import INTERVENTION_SECONDS

    points = 100.0 * INTERVENTION_SECONDS / elapsed_seconds if elapsed_seconds > 0 else float("inf")
    return {"points_per_intervention": float(points), "too_short": bool(points > COARSE_POINTS)}


def strictness(spec: ClosedLoopSpec, seconds: float = LATE_SECONDS) -> dict[str, Any]:
    """How strictly ``spec``'s replay judges a model: ``late_autonomy`` and ``late_interventions`` of the recorded
    steering ``seconds`` late driven blind through the same paths (``Trajectory.late``; no frames), and
    ``strict`` when that autonomy is below ``STRICT_AUTONOMY``: a span (or a guessed ``--speed`` or car profile)
    on which even the driver a tenth of a second behind fails cannot tell a model that drives from one that
    does not."""
    from e2e_drive.replay import replay

    late = replay(list(spec.parts), "recorded", profile=spec.profile, speed=spec.speed,
                  trajectories=[path.late(seconds) for path in spec.paths]).total
    return {"late_seconds": float(seconds), "late_autonomy": float(late.autonomy),
            "late_interventions": int(late.interventions), "strict": bool(late.autonomy < STRICT_AUTONOMY)}


def strict_warning(result: dict[str, Any]) -> str:
    """One line saying that ``result``'s span judges more strictly than a model can be judged (empty if not)."""
    if not result.get("strict"):
        return ""
    return (f"a strict span: the recorded steering {result['late_seconds']:g} s late scores "
            f"{result['late_autonomy']:.1f}% ({result['late_interventions']} interventions) here, so autonomy cannot "
            "tell models apart (check --speed and --car: a faster or tighter-steering car than the real one fails "
            "everything)")


def _predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as a predictor on uint8 frames; any other callable is one already."""
    import keras

    if isinstance(model, keras.Model):
        from e2e_drive.models import steering_function

        return steering_function(model)
    return model


def simulator_recordings(parts: Sequence[DrivingLog]):
    """The ``SimRecording`` of each recording when every one was written by ``e2e-drive sim record`` with one
    car, camera and frame rate (the simulator can then drive their tracks itself), else ``None``."""
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


def log_spec(driving_log: DrivingLog, profile, camera=None, speed: float | None = None,
             simulate: bool = False) -> ClosedLoopSpec:
    """The spec of ``driving_log``'s recordings, each driven on its own, with car ``profile`` (a name or a
    ``CarProfile``), ``camera`` (a ``CameraRig``, a calibration JSON, or ``None``: the profile's, scaled to the
    frames, with a warning) and ``speed``. ``simulate``: the simulator drives the tracks of its own recordings.

    Raises:
        DataError: no rows, a recording that cannot be replayed (no time stamps or speed), a calibration of
            another frame size, or recordings of different frame sizes.
    """
    from data_tools.errors import DataError
    from data_tools.frames import read_frame
    from e2e_drive.replay import get_profile, reconstruct, resolve_camera

    if not len(driving_log):
        raise DataError("no rows to drive", path="LOG")
    profile = get_profile(profile)
    parts = tuple(driving_log[driving_log.recording == r] for r in driving_log.recordings)
    simulated = simulator_recordings(parts) if simulate else None
    if simulated is not None:
        # The simulator drives their tracks: no path to rebuild (a tub of them has no speed).
        return ClosedLoopSpec(parts, profile, speed=speed, simulated=tuple(simulated))
    paths = tuple(reconstruct(part, profile, speed=speed) for part in parts)
    first = read_frame(parts[0].images["center"][0], where=parts[0].describe(0))
    camera = resolve_camera(camera, profile, first.shape[:2], paths[0].source)
    return ClosedLoopSpec(parts, profile, camera, speed, paths=paths)


def validation_spec(config: TrainConfig, val_log: DrivingLog, camera,
                    frame_shape: tuple[int, ...]) -> tuple[ClosedLoopSpec | None, str | None]:
    """A training run's validation span as a spec (the recordings with their recorded labels, the run's car and
    speed, the camera ``--camera`` calibrated or the profile's scaled to ``frame_shape``), or ``(None, why not)``
    (no validation rows, no time stamps or speed, or multiworker: each worker holds a share of the rows)."""
    from data_tools.errors import DataError
    from e2e_drive.replay import camera_for_size, get_profile

    if not len(val_log):
        return None, "no validation rows"
    if config.strategy == "multiworker":
        return None, ("not with --strategy multiworker (each worker holds a share of the validation rows, replay "
                      "needs whole recordings)")
    profile = get_profile(config.car)
    if config.camera is None:
        camera = camera_for_size(profile.camera, frame_shape[:2])
    try:
        return log_spec(val_log, profile, camera, config.speed, simulate=True), None
    except DataError as error:
        return None, f"cannot replay the validation rows ({error})"


def _plotted(result: dict[str, Any], path: str | os.PathLike, draw: Callable[[], None]) -> None:
    """Draw a closed-loop plot and name it in ``result``; a plot that cannot be written costs a warning, never the
    check's figures."""
    try:
        draw()
    except OSError as error:
        log.warning("closed-loop plot not written: %s", error)
        return
    result["plot"] = os.fspath(path)


def autonomy_callback(spec: ClosedLoopSpec):
    """A callback adding ``val_autonomy`` (and ``val_interventions``) to each epoch's logs, before the checkpoint
    reads them: the model driven through ``spec`` in pieces of ``AUTONOMY_PIECE_SECONDS``."""
    import keras

    if spec.simulated:
        log.info("%s autonomy: the simulator drives track(s) %s closed loop (%g lap each), as recorded",
                 flag("select_by"), ", ".join(map(str, spec.tracks)), SIMULATED_LAPS)

    class ValidationAutonomy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs=None) -> None:
            result = spec.score(self.model, AUTONOMY_PIECE_SECONDS)
            if logs is not None:
                logs[AUTONOMY] = float(result["autonomy"])
                logs["val_interventions"] = float(result["interventions"])

    return ValidationAutonomy()


def closed_loop_check(spec: ClosedLoopSpec, model_path: str | os.PathLike, plot: str | os.PathLike | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """``best.keras`` driven closed loop through the whole validation span (rows it never trained on, with their
    recorded labels, not the smoothed ones it trained on) as ``e2e-drive replay`` scores it (whole segments); for
    the simulator's own recordings the simulator drives their tracks one lap. ``{"skipped": why}`` when it cannot
    be driven: a run's result is never lost to its check. A span too short to tell costs a warning."""
    from data_tools.errors import DataError
    from e2e_drive.models import load_model

    log.info("closed-loop check: driving %s through the validation span (%d rows)", os.path.basename(model_path),
             spec.rows)
    try:
        result = spec.score(load_model(model_path), plot=plot, progress=progress)
    except (DataError, ValueError) as error:
        log.warning("no closed-loop check of the validation span: %s", error)
        return {"skipped": str(error)}
    if result.get("strict"):
        log.warning("%s", strict_warning(result))
    if result["too_short"]:
        log.info("the closed-loop check drove %.0f s: one intervention costs %.0f points of autonomy there, too "
                    "short to tell (a larger --val-fraction or more data drives longer)", result["elapsed_seconds"],
                    result["points_per_intervention"])
    log.debug("closed loop on the validation span (%s): %.1f%% autonomy, %d interventions in %.0f s, mean "
              "|offset| %.2f m", result["by"], result["autonomy"], result["interventions"],
              result["elapsed_seconds"], result["mean_abs_offset"])
    return result
