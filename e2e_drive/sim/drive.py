"""Closed-loop driving by a steering network, several cars (tracks) stepped together.

Every step renders each car's centre camera, runs the predictor once on the
whole batch, and moves the cars. A car farther than ``track.intervention_offset``
from the centre line counts an intervention and is put back on the centre line
(heading along the road), as NVIDIA's safety driver would; driving goes on.

Speed: a steering-only predictor drives at the cruising speed ``params.speed`` (the speed controller of the
simulator, which holds it constant). A predictor with a throttle output (``predictor.output_names`` holds
``"throttle"`` and ``predictor.predict_outputs(frames)`` returns it, as ``deploy.load_predictor`` gives for a
two-head model) drives the speed itself through a first-order throttle model:

    dv/dt = THROTTLE_ACCEL * throttle - DRAG * v,    DRAG = THROTTLE_ACCEL * CRUISE_THROTTLE / params.speed

with the throttle clipped to [-1, 1] and held over each control step (so ``v`` moves exactly, exponentially,
toward ``params.speed * throttle / CRUISE_THROTTLE``), and the car never reversing (``v >= 0``; a negative
throttle brakes). ``CRUISE_THROTTLE`` is the throttle the simulator's recordings log (``record.THROTTLE``), so a
model that learned it holds the cruising speed.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from data_tools.io import atomic_path
from data_tools.progress import progress as progress_bar
from e2e_drive.sim.autonomy import autonomy
from e2e_drive.sim.car import CarParams, CarState, step
from e2e_drive.sim.record import THROTTLE as CRUISE_THROTTLE
from e2e_drive.sim.render import Camera, CameraRig
from e2e_drive.sim.track import Track, make_track

Predictor = Callable[[np.ndarray], np.ndarray]

# Acceleration (m/s^2) at full throttle from standstill: 0-100 km/h in about 7 s, a small car's.
THROTTLE_ACCEL = 4.0


def throttle_speed(speed: np.ndarray, throttle: np.ndarray, dt: float, params: CarParams = CarParams()) -> np.ndarray:
    """The speed after ``dt`` seconds at ``throttle`` (held constant) under the throttle model above: the exact
    solution of ``dv/dt = THROTTLE_ACCEL * throttle - DRAG * v``, floored at 0 (no reversing)."""
    throttle = np.clip(np.asarray(throttle, np.float64), -1.0, 1.0)
    drag = THROTTLE_ACCEL * CRUISE_THROTTLE / params.speed
    terminal = THROTTLE_ACCEL * throttle / drag
    return np.maximum(terminal + (np.asarray(speed, np.float64) - terminal) * np.exp(-drag * dt), 0.0)


def predicts_throttle(predictor) -> bool:
    """Whether ``predictor`` has a throttle output (``output_names`` holds it, and ``predict_outputs`` exists)."""
    return "throttle" in tuple(getattr(predictor, "output_names", ())) and callable(
        getattr(predictor, "predict_outputs", None))


@dataclass
class DriveResult:
    """One car's run: the autonomy metric and what it is made of, and the driven path."""

    track_seed: int
    autonomy: float
    interventions: int
    elapsed_seconds: float
    laps_completed: float
    mean_abs_offset: float
    max_abs_offset: float
    path: np.ndarray = field(repr=False)
    steering: np.ndarray = field(repr=False)
    intervention_points: np.ndarray = field(repr=False)
    # Speed (m/s) after each step, and the throttle commanded at each step (empty without a throttle output).
    speed: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    throttle: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def mean_speed(self) -> float:
        return float(np.mean(self.speed)) if len(self.speed) else float("nan")

    def summary(self) -> dict:
        """The scalar fields, for JSON."""
        return {**{k: getattr(self, k) for k in ("track_seed", "autonomy", "interventions", "elapsed_seconds",
                                                 "laps_completed", "mean_abs_offset", "max_abs_offset")},
                "mean_speed": self.mean_speed}


def drive(
    predictor: Predictor,
    tracks: Sequence[Track | int],
    *,
    laps: float = 1.0,
    params: CarParams = CarParams(),
    rig: CameraRig = CameraRig(),
    fps: float = 10.0,
    max_seconds: float | None = None,
    video: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[DriveResult]:
    """Drive one car per track with ``predictor`` until each has done ``laps`` laps.

    Args:
        predictor: callable on uint8 frames ``(B, 160, 320, 3)`` returning steering ``(B,)``
            in [-1, 1] (positive = right); for a model file, ``deploy.load_predictor(path)`` makes one
            (deploy sits above the simulator, so the simulator never imports it). When it has a throttle
            output (``output_names`` and ``predict_outputs``, see the module's docstring) the predicted
            throttle drives the speed; otherwise the car cruises at ``params.speed``.
        tracks: tracks (or their seeds); all cars step together so the network runs batched.
        laps: laps each car drives.
        params: car limits and speed.
        rig: camera geometry.
        fps: control rate (the recordings' frame rate).
        max_seconds: stop a car after this much simulated time. Defaults to 3x the time of its laps.
        video: write an mp4 of the run (cars side by side, steering overlaid).
        progress: draw a progress bar on stderr.

    Returns:
        One ``DriveResult`` per track, in order.
    """
    if laps <= 0:
        raise ValueError(f"Expected laps > 0. Received: laps={laps}")
    tracks = [make_track(t) if isinstance(t, (int, np.integer)) else t for t in tracks]
    if not tracks:
        raise ValueError("Expected at least one track to drive on")
    cameras = [Camera(t, rig) for t in tracks]
    count = len(tracks)
    dt = 1.0 / fps
    state = CarState.at([t.centre[0, 0] for t in tracks], [t.centre[0, 1] for t in tracks],
                        [t.heading[0] for t in tracks], params.speed)
    goal = np.array([laps * t.length for t in tracks])
    limit = goal / params.speed * 3.0 if max_seconds is None else np.full(count, float(max_seconds))
    travelled = np.zeros(count)
    steps_driven = np.zeros(count, int)
    station = np.zeros(count)
    interventions = np.zeros(count, int)
    active = np.ones(count, bool)
    paths: list[list[np.ndarray]] = [[] for _ in tracks]
    steering_log: list[list[float]] = [[] for _ in tracks]
    speed_log: list[list[float]] = [[] for _ in tracks]
    throttle_log: list[list[float]] = [[] for _ in tracks]
    with_throttle = predicts_throttle(predictor)
    offsets: list[list[float]] = [[] for _ in tracks]
    stops: list[list[np.ndarray]] = [[] for _ in tracks]
    writer = None
    max_steps = int(np.ceil(limit.max() / dt))
    with contextlib.ExitStack() as cleanup:
        # The video is written under a temporary name and moved into place only when complete.
        partial = None
        if video is not None:
            Path(video).parent.mkdir(parents=True, exist_ok=True)
            partial = cleanup.enter_context(atomic_path(video))
        try:
            for _ in progress_bar(range(max_steps), total=max_steps, label="drive", enabled=progress):
                live = np.nonzero(active)[0]
                if len(live) == 0:
                    break
                frames = np.stack([cameras[i].render(state.x[i], state.y[i], state.heading[i]) for i in live])
                command = np.zeros(count)
                if with_throttle:
                    outputs = predictor.predict_outputs(frames)
                    predicted = _one_per_frame(outputs["steering"], len(live), "steering")
                    throttle = np.zeros(count)
                    throttle[live] = np.clip(_one_per_frame(outputs["throttle"], len(live), "throttle"), -1.0, 1.0)
                else:
                    predicted = _one_per_frame(predictor(frames), len(live), "steering")
                command[live] = np.clip(predicted, -1.0, 1.0)
                if video is not None:
                    writer = _write_video_frame(writer, partial, frames, live, command, count, fps)
                moved = step(state, command, dt, params)
                for name in ("x", "y", "heading", "steering"):
                    getattr(moved, name)[~active] = getattr(state, name)[~active]
                if with_throttle:
                    # The step moved the cars at the speed they had; the throttle sets the speed of the next one.
                    moved.speed[live] = throttle_speed(state.speed[live], throttle[live], dt, params)
                state = moved
                for i in live:
                    track = tracks[i]
                    index, new_station, offset = track.locate(state.xy[i : i + 1])
                    delta = (new_station[0] - station[i] + track.length / 2) % track.length - track.length / 2
                    travelled[i] += delta
                    station[i] = new_station[0]
                    steps_driven[i] += 1
                    paths[i].append(state.xy[i].copy())
                    steering_log[i].append(command[i])
                    speed_log[i].append(state.speed[i])
                    if with_throttle:
                        throttle_log[i].append(throttle[i])
                    offsets[i].append(abs(offset[0]))
                    if abs(offset[0]) > track.intervention_offset[index[0]]:
                        interventions[i] += 1
                        stops[i].append(state.xy[i].copy())
                        back = track.point_at(new_station)[0]
                        state.x[i], state.y[i] = back
                        state.heading[i] = track.heading[index[0]]
                        state.steering[i] = 0.0
                    if travelled[i] >= goal[i] or steps_driven[i] * dt >= limit[i] - 1e-9:
                        active[i] = False
        finally:
            if writer is not None:
                writer.release()
    elapsed = steps_driven * dt
    return [
        DriveResult(
            track_seed=int(t.seed),
            autonomy=autonomy(int(interventions[i]), float(elapsed[i])),
            interventions=int(interventions[i]),
            elapsed_seconds=float(elapsed[i]),
            laps_completed=float(max(travelled[i], 0.0) / t.length),
            mean_abs_offset=float(np.mean(offsets[i])),
            max_abs_offset=float(np.max(offsets[i])),
            path=np.asarray(paths[i]).reshape(-1, 2),
            steering=np.asarray(steering_log[i]),
            intervention_points=np.asarray(stops[i]).reshape(-1, 2),
            speed=np.asarray(speed_log[i], np.float64),
            throttle=np.asarray(throttle_log[i], np.float64),
        )
        for i, t in enumerate(tracks)
    ]


def _one_per_frame(values, count: int, what: str) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        finite = bool(np.all(np.isfinite(values)))
        raise ValueError(f"predictor returned {values.shape} {what} values (all finite: {finite}) for a batch "
                         f"of {count} frames; expected one finite {what} per frame")
    return values


def _write_video_frame(writer, video, frames, live, command, count, fps):
    height, width = frames.shape[1:3]
    canvas = np.zeros((height, width * count, 3), np.uint8)
    for k, i in enumerate(live):
        tile = canvas[:, i * width : (i + 1) * width]
        tile[:] = frames[k]
        centre = width // 2
        tip = int(centre + command[i] * (width // 2 - 10))
        cv2.line(tile, (centre, height - 12), (tip, height - 12), (255, 255, 0), 4)
        cv2.putText(tile, f"steer {command[i]:+.2f}", (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    if writer is None:
        writer = cv2.VideoWriter(os.fspath(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width * count, height))
        if not writer.isOpened():
            raise ValueError(f"cannot open video file for writing: {video}")
    writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return writer
