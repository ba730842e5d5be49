"""The recorded trajectory: time stamps, speed and steering integrated through the kinematic bicycle model.

Pose ``i + 1`` is pose ``i`` stepped by the simulator's ``car.step`` under the
recorded steering ``i`` for ``t[i+1] - t[i]`` seconds at the recorded speed
``i`` (the order in which ``e2e_drive.sim.record`` writes a row, then moves).

Time gaps (a paused recording, several sessions in one CSV, a backwards or
repeated time stamp) are never integrated across: the log is split into
segments there, each starting from its own origin. Frames slower than
``min_speed`` are standing still: the car neither moves nor steers on them and
they are not timed (``udacity_sim_a`` stands for its first ~125 and last ~100
rows, at 1e-4 to 0.01 mph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from data_tools.errors import DataError
from data_tools.log import DrivingLog
from e2e_drive.replay.profiles import CarProfile
from e2e_drive.sim.car import CarState, step

MIN_FRAME_INTERVAL = 0.005  # seconds: time stamps closer than this (200 fps) are not a camera's frame rate
DEFAULT_MAX_GAP = 1.0  # seconds: a longer pause splits the log (also at least 5 median frame intervals)


@dataclass(frozen=True)
class Trajectory:
    """The recorded path of one log, one pose per row.

    Attributes:
        x, y, heading: rear-axle pose per row (metres, radians; each segment starts at the origin heading east).
        wheel: steering state per row (the rate-limited wheel, in [-1, 1]).
        steering: the recorded steering command per row.
        speed: metres per second per row.
        dt: seconds to the next row of the same segment (0 on a segment's last row).
        segment: segment id per row (splits at time gaps).
        moving: whether the car drives from this row to the next (same segment, speed >= min_speed).
        source: the log's file (for messages).
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    wheel: np.ndarray
    steering: np.ndarray
    speed: np.ndarray
    dt: np.ndarray
    segment: np.ndarray
    moving: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.x)

    @property
    def segments(self) -> int:
        return int(self.segment.max()) + 1 if len(self.segment) else 0

    def late(self, seconds: float) -> "Trajectory":
        """The same path whose ``steering`` is the recorded command ``seconds`` late (by the path's own clock,
        within each segment, interpolated between commands; a segment's first ``seconds`` hold its first one):
        replayed as the ``"recorded"`` driver, a driver a little behind the recorded one (``closed_loop.strictness``)."""
        late = np.asarray(self.steering, np.float64).copy()
        for segment in np.unique(self.segment):
            rows = np.flatnonzero(self.segment == segment)
            clock = np.concatenate([[0.0], np.cumsum(self.dt[rows[:-1]])])
            late[rows] = np.interp(clock - seconds, clock, late[rows])  # any frame rate: between two commands
        return replace(self, steering=late)

    def state(self, index: np.ndarray) -> CarState:
        """The recorded car at rows ``index``, as a ``CarState`` of ``len(index)`` cars."""
        return CarState(self.x[index].copy(), self.y[index].copy(), self.heading[index].copy(),
                        self.wheel[index].copy(), self.speed[index].copy())


def log_speed(log: DrivingLog, profile: CarProfile, speed: float | None = None) -> np.ndarray:
    """Metres per second per row: the log's speed column converted from ``profile.speed_unit``, or ``speed``.

    Raises:
        DataError: the log has no usable speed and none was given.
    """
    source = str(log.source[0]) if len(log) else "LOG"
    if speed is not None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"--speed: expected a finite speed > 0 in m/s. Received: {speed}")
        return np.full(len(log), float(speed))
    values = np.asarray(log.speed, np.float64)
    if not np.all(np.isfinite(values)):
        missing = int(np.count_nonzero(~np.isfinite(values)))
        raise DataError(f"{missing} of {len(values)} rows have no speed (donkeycar tubs record none); "
                        "replay needs it to place the car: give one with --speed M/S", path=source)
    if np.any(values < 0):
        raise DataError(f"negative speed ({values.min():g}) in the speed column", path=source)
    metres = values * profile.speed_scale
    if metres.max() < profile.min_speed:
        raise DataError(f"the car never moves: top speed {values.max():g} {profile.speed_unit} is below "
                        f"{profile.min_speed / profile.speed_scale:g} {profile.speed_unit}; "
                        "wrong unit? give one with --speed M/S", path=source)
    return metres


def log_times(log: DrivingLog) -> np.ndarray:
    """The rows' time stamps (seconds), checked: present and at a plausible frame rate.

    Raises:
        DataError: no time stamps, or stamps too close to be camera frames.
    """
    source = str(log.source[0]) if len(log) else "LOG"
    times = np.asarray(log.timestamp, np.float64)
    if not np.all(np.isfinite(times)):
        missing = int(np.count_nonzero(~np.isfinite(times)))
        raise DataError(f"{missing} of {len(times)} rows have no time stamp (Udacity image names like "
                        "center_2016_12_01_13_30_48_287.jpg carry one, tubs _timestamp_ms); replay needs the time "
                        "of every frame", path=source)
    steps = np.diff(times)
    forward = steps[steps > 0]
    if len(forward) and np.median(forward) < MIN_FRAME_INTERVAL:
        raise DataError(f"time stamps are {np.median(forward) * 1000:.1f} ms apart (median): not a camera's frame "
                        "rate; were they written after the drive?", path=source)
    return times


def segment_gap(steps: np.ndarray) -> float:
    """Seconds between two rows beyond which a log is split into segments: the larger of ``DEFAULT_MAX_GAP``
    and five median frame intervals of the forward ``steps``."""
    forward = steps[np.isfinite(steps) & (steps > 0)]
    return max(DEFAULT_MAX_GAP, 5.0 * float(np.median(forward)) if len(forward) else DEFAULT_MAX_GAP)


def reconstruct(
    log: DrivingLog, profile: CarProfile, *, speed: float | None = None, max_gap: float | None = None
) -> Trajectory:
    """Integrate one log's recorded steering into its path.

    Args:
        log: one recording (rows in time order).
        profile: wheelbase, wheel angle, speed unit (see ``profiles``).
        speed: metres per second for logs without a speed column (tubs); overrides the column when given.
        max_gap: seconds between rows that split the log. Defaults to the larger of 1 s and 5 median frame
            intervals.

    Raises:
        DataError: fewer than two rows, no time stamps or speed (the message names the file).
    """
    source = str(log.source[0]) if len(log) else "LOG"
    if len(log) < 2:
        raise DataError(f"only {len(log)} row; replay needs at least two frames to drive between", path=source)
    times = log_times(log)
    metres = log_speed(log, profile, speed)
    steps = np.diff(times)
    if max_gap is None:
        max_gap = segment_gap(steps)
    breaks = (steps <= 0) | (steps > max_gap) | (np.diff(np.asarray(log.recording)) != 0)
    segment = np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)
    n = len(log)
    dt = np.zeros(n)
    dt[:-1] = np.where(breaks, 0.0, steps)
    moving = (dt > 0) & (metres >= profile.min_speed)
    steering = np.asarray(log.steering, np.float64)
    x, y, heading, wheel = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    state = CarState.at(0.0, 0.0, 0.0, 0.0)
    for i in range(n):
        if i > 0 and breaks[i - 1]:
            state = CarState.at(0.0, 0.0, 0.0, 0.0)
        x[i], y[i], heading[i], wheel[i] = state.x[0], state.y[0], state.heading[0], state.steering[0]
        if moving[i]:
            state.speed[:] = metres[i]
            state = step(state, steering[i : i + 1], dt[i], profile.car)
    return Trajectory(x, y, heading, wheel, steering, metres, dt, segment, moving, source)
