"""Closed-loop replay of recorded logs (NVIDIA's PilotNet evaluation, Bojarski et al. 2016, section 6).

A virtual car starts on the recorded pose and is steered by a driver; after
every frame its offset and heading error from the recorded path follow from
the same kinematic model that reconstructed the path, and the driver sees the
next recorded frame warped to that viewpoint (``ViewWarp``). Farther than
``max_offset`` from the path is an intervention: counted, the car is put back
on the recorded pose, driving goes on. Scored with the simulator's
``autonomy`` (six seconds per intervention).

All segments of all logs drive together, so a model runs on one batch per step.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import cv2
import numpy as np

from data_tools.errors import DataError
from data_tools.frames import read_frame
from data_tools.io import atomic_path
from data_tools.log import DrivingLog
from data_tools.progress import progress as progress_bar
from data_tools.read import load_log
from e2e_drive.replay.camera import load_camera
from e2e_drive.replay.profiles import CarProfile, camera_for_size, get_profile
from e2e_drive.replay.trajectory import Trajectory, reconstruct
from e2e_drive.replay.warp import ViewWarp
from e2e_drive.sim.autonomy import autonomy
from e2e_drive.sim.car import CarState, step
from e2e_drive.sim.render import CameraRig

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]
Driver = Union[Predictor, str, float]
"""A predictor (uint8 frames ``(B, H, W, 3)`` -> steering ``(B,)``), ``"recorded"`` or a constant steering."""


@dataclass
class ReplayResult:
    """One log's (or all logs') replay score and what it is made of."""

    source: str
    autonomy: float
    interventions: int
    elapsed_seconds: float
    mean_abs_offset: float
    max_abs_offset: float
    frames: int
    segments: int = 1
    standing_frames: int = 0
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    steering: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    # Per driven step, beside ``offsets`` (after the step) and ``steering`` (the driver's command): the log's own
    # steering on the row driven from, seconds driven so far (segments one after another), whether the step ended
    # in an intervention, and the recorded position (m) of the row driven from (the map of where it happened).
    recorded: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    seconds: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    intervened: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)), repr=False)
    # The log's segment of each step (a time gap starts a new one, rebuilt from the origin: ``reconstruct``).
    segment_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def summary(self) -> dict:
        """The scalar fields, for JSON."""
        return {k: getattr(self, k) for k in ("source", "autonomy", "interventions", "elapsed_seconds",
                                              "mean_abs_offset", "max_abs_offset", "frames", "segments",
                                              "standing_frames")}


@dataclass
class ReplayReport:
    """All logs together (``total``) and each log (``logs``)."""

    total: ReplayResult
    logs: list[ReplayResult]
    max_offset: float
    camera: CameraRig | None

    def summary(self) -> dict:
        """JSON: the total's fields at the top level, and per log under ``logs`` when there are several."""
        payload = self.total.summary()
        payload.pop("source")
        payload["max_offset_threshold"] = self.max_offset
        if len(self.logs) > 1:
            payload["logs"] = [result.summary() for result in self.logs]
        else:
            payload["source"] = self.logs[0].source
        return payload


def parse_driver(text: str) -> Driver:
    """``"recorded"`` or ``"constant:X"`` as a driver; any other text is returned as is (a model path)."""
    if text == "recorded":
        return "recorded"
    if text.startswith("constant:"):
        try:
            value = float(text.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"DRIVER: constant:X needs a number in [-1, 1], got {text!r}") from None
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise ValueError(f"DRIVER: constant steering must be in [-1, 1], got {value}")
        return value
    return text


def resolve_camera(rig: CameraRig | str | os.PathLike | None, profile: CarProfile, frame_size: tuple[int, int],
                   source: str) -> CameraRig:
    """The camera for frames of ``frame_size`` (rows, columns) from ``source``: a rig, a calibration JSON (which
    must be for that frame size: a ``DataError`` naming the file otherwise), or ``None`` for the profile's camera
    scaled to the frames (with a warning)."""
    if rig is None:
        log.warning("%s: no camera calibration given: using the %s profile's camera (run e2e-drive calibrate on a "
                    "log with side cameras, or pass --camera CAMERA.json)", source, profile.name)
        return camera_for_size(profile.camera, frame_size)
    where = None
    if not isinstance(rig, CameraRig):
        where = os.fspath(rig)
        rig = load_camera(where)
    if tuple(rig.size) != tuple(frame_size):
        raise DataError(f"the camera calibration is for {rig.size[1]}x{rig.size[0]} frames, {source} has "
                        f"{frame_size[1]}x{frame_size[0]} frames", path=where or "camera")
    return rig


def _check_fraction(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"--{name}: expected a fraction in [0, 1]. Received: {value}")


def replay(
    logs: DrivingLog | str | os.PathLike | Sequence[DrivingLog | str | os.PathLike],
    driver: Driver,
    *,
    start: float = 0.0,
    end: float = 1.0,
    camera: CameraRig | str | os.PathLike | None = None,
    profile: str | CarProfile = "udacity",
    speed: float | None = None,
    max_offset: float | None = None,
    video: str | os.PathLike | None = None,
    piece_seconds: float | None = None,
    progress: bool = False,
    trajectories: Sequence[Trajectory] | None = None,
) -> ReplayReport:
    """Drive ``driver`` through the recorded logs and score it with NVIDIA's autonomy metric.

    Args:
        logs: one log or several (``DrivingLog`` objects or paths); each is scored on its own and in the total.
        driver: a predictor on uint8 frames, ``"recorded"`` (the log's own steering: zero offset by
            construction) or a number (constant steering).
        start, end: score rows ``[start * n, end * n)`` of each log (the path before is still reconstructed).
        camera: the camera (a ``CameraRig`` or a calibration JSON); default: the profile's, with a warning.
        profile: car profile (``udacity``, ``donkey``, ``sim`` or a ``CarProfile``).
        speed: metres per second for logs without speed (tubs).
        max_offset: metres off the recorded path that make an intervention. Defaults to the profile's.
        video: write an mp4 of the driver's view with its steering and the offset (segments one after another).
        piece_seconds: cut each segment into pieces of this many seconds, each starting on the recorded pose,
            all driven together: one model batch per step instead of one frame (for a model scored every
            epoch). The start of a piece is a free re-centring, so keep pieces long (30-60 s) next to the
            time between interventions. Defaults to whole segments.
        progress: draw a progress bar on stderr.
        trajectories: the logs' paths as ``reconstruct`` rebuilt them with this profile and speed (one per log),
            for a caller that replays the same logs many times; default: rebuilt here.

    Raises:
        DataError: a log without time stamps or speed, with one row, or a calibration of another frame size.
    """
    _check_fraction("start", start)
    _check_fraction("end", end)
    if end <= start:
        raise ValueError(f"--end must be greater than --start. Received: start={start}, end={end}")
    profile = get_profile(profile)
    max_offset = profile.intervention_offset if max_offset is None else float(max_offset)
    if not (math.isfinite(max_offset) and max_offset > 0):
        raise ValueError(f"--max-offset: expected metres > 0. Received: {max_offset}")
    if piece_seconds is not None and not (math.isfinite(piece_seconds) and piece_seconds > 0):
        raise ValueError(f"piece_seconds: expected seconds > 0. Received: {piece_seconds}")
    if isinstance(driver, str) and driver != "recorded":
        raise ValueError(f"DRIVER: expected a predictor, 'recorded' or a number; got {driver!r} (the CLI loads "
                         "model files)")
    if isinstance(logs, (DrivingLog, str, os.PathLike)):
        logs = [logs]
    loaded = [load_log(item) for item in logs]
    if not loaded:
        raise DataError("no log given", path="LOG")
    steering = _steering(driver)
    sees_frames = callable(driver) or video is not None
    if trajectories is None:
        trajectories = [reconstruct(driving_log, profile, speed=speed) for driving_log in loaded]
    elif len(trajectories) != len(loaded) or any(len(p) != len(l) for p, l in zip(trajectories, loaded)):
        raise ValueError(f"trajectories: expected one path per log with one pose per row; got {len(trajectories)} "
                         f"for {len(loaded)} log(s)")
    rig = None
    if sees_frames or camera is not None:  # a calibration given is checked even where no frame is warped
        first = read_frame(loaded[0].images["center"][0], where=loaded[0].describe(0))
        rig = resolve_camera(camera, profile, first.shape[:2], trajectories[0].source)
        for driving_log in loaded[1:]:
            size = read_frame(driving_log.images["center"][0], where=driving_log.describe(0)).shape[:2]
            if size != tuple(rig.size):
                raise DataError(f"frames are {size[1]}x{size[0]}, the first log's (and the camera's) are "
                                f"{rig.size[1]}x{rig.size[0]}; replay logs of one camera together",
                                path=str(driving_log.source[0]))
    # Lanes: (log, rows driven) per segment, within each log's scored span.
    lanes: list[tuple[int, np.ndarray]] = []
    standing = [0] * len(loaded)
    for k, path in enumerate(trajectories):
        n = len(path)
        first_row, last_row = int(math.floor(start * n)), int(math.ceil(end * n))
        span = np.zeros(n, bool)
        span[first_row:last_row] = True
        if np.count_nonzero(span) < 2:
            raise DataError(f"--start {start} --end {end} leaves {np.count_nonzero(span)} of {n} rows: nothing to "
                            "drive", path=path.source)
        standing[k] = int(np.count_nonzero(span & ~path.moving & (path.dt > 0)))
        for segment in np.unique(path.segment[span]):
            # Rows the car drives from, and the row each drive ends on: the path's nodes.
            rows = np.flatnonzero(span & (path.segment == segment) & path.moving)
            rows = rows[rows + 1 < last_row]
            if not len(rows):
                continue
            nodes = np.append(rows, rows[-1] + 1)
            if piece_seconds is None:
                lanes.append((k, nodes))
                continue
            # Pieces share their boundary row: one ends on it, the next starts from it.
            clock = np.concatenate([[0.0], np.cumsum(path.dt[rows])])
            cuts = np.searchsorted(clock, np.arange(piece_seconds, clock[-1], piece_seconds))
            for first, last in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(nodes) - 1]])):
                if last > first:
                    lanes.append((k, nodes[first : last + 1]))
    if not lanes:
        raise DataError("the car stands still in the whole scored span: nothing to drive",
                        path=trajectories[0].source)
    warp = {name: ViewWarp(rig, name) for name in ("center", "left", "right")} if rig is not None else None
    runs = _drive_lanes(lanes, loaded, trajectories, steering, warp, profile.car, max_offset, video, progress)
    results = []
    for k, path in enumerate(trajectories):
        mine = [run for (owner, _), run in zip(lanes, runs) if owner == k]
        results.append(_result(path.source, mine, standing[k]))
    total = _result("all", runs, sum(standing))
    total.segments = len(lanes)
    return ReplayReport(total, results, max_offset, rig)


def _steering(driver: Driver) -> Callable[[list["_Lane"], np.ndarray | None], np.ndarray]:
    """The driver as one function of the live lanes (and their views) -> their steering commands, chosen once."""
    if callable(driver):
        def predicted(live: list[_Lane], views: np.ndarray | None) -> np.ndarray:
            command = np.asarray(driver(views), np.float64).reshape(-1)
            if command.shape != (len(live),) or not np.all(np.isfinite(command)):
                raise ValueError(f"the driver returned {command.shape} steering values for {len(live)} frames "
                                 "(or non-finite ones); expected one finite value per frame")
            return command

        return predicted
    if driver == "recorded":
        return lambda live, views: np.array([lane.path.steering[lane.row] for lane in live])
    value = float(driver)
    return lambda live, views: np.full(len(live), value)


def _nearest_camera(driving_log: DrivingLog, row: int, lateral: float, side_offset: float) -> str:
    """The recorded camera nearest the virtual one: a side camera once the car is past half its offset.

    Warping from the nearer viewpoint reveals less of the world the centre camera never saw.
    """
    if side_offset > 0 and abs(lateral) > side_offset / 2:
        side = "left" if lateral > 0 else "right"  # lateral is positive to the left
        column = driving_log.images.get(side)
        if column is not None and column[row]:
            return side
    return "center"


@dataclass
class _Run:
    rows: np.ndarray
    offsets: np.ndarray
    steering: np.ndarray
    recorded: np.ndarray
    step_seconds: np.ndarray
    intervened: np.ndarray
    positions: np.ndarray
    segment_ids: np.ndarray


def _result(source: str, runs: list[_Run], standing: int) -> ReplayResult:
    joined = {name: np.concatenate([getattr(r, name) for r in runs]) if runs else np.zeros(0)
              for name in ("offsets", "steering", "rows", "recorded", "step_seconds", "intervened", "positions",
                           "segment_ids")}
    offsets = joined["offsets"]
    elapsed = float(np.sum(joined["step_seconds"]))
    interventions = int(np.count_nonzero(joined["intervened"]))
    if elapsed <= 0:
        raise DataError("no time driven in the scored span", path=source)
    return ReplayResult(
        source=source, autonomy=autonomy(interventions, elapsed), interventions=interventions,
        elapsed_seconds=elapsed, mean_abs_offset=float(np.mean(np.abs(offsets))),
        max_abs_offset=float(np.max(np.abs(offsets))), frames=int(len(offsets)), segments=len(runs),
        standing_frames=standing, offsets=offsets, steering=joined["steering"], rows=joined["rows"],
        recorded=joined["recorded"], seconds=np.cumsum(joined["step_seconds"]), intervened=joined["intervened"],
        positions=joined["positions"], segment_ids=joined["segment_ids"],
    )


def _drive_lanes(lanes, logs, paths, steering, warp, car_params, max_offset, video, progress) -> list[_Run]:
    """Step every lane (or one lane at a time when writing a video) to its end."""
    if video is None:
        return _drive_batch(lanes, logs, paths, steering, warp, car_params, max_offset, None, progress)
    with atomic_path(video) as tmp:
        writer = _VideoWriter(tmp)
        try:
            runs = [_drive_batch([lane], logs, paths, steering, warp, car_params, max_offset, writer, progress)[0]
                    for lane in lanes]
        finally:
            writer.release()
    return runs


class _Lane:
    """One segment's recorded path as a polyline, and the virtual car driving along it."""

    def __init__(self, path: Trajectory, nodes: np.ndarray, owner: int):
        self.path, self.nodes, self.owner = path, nodes, owner  # owner: the index of its log
        self.x, self.y, self.heading = path.x[nodes], path.y[nodes], path.heading[nodes]
        step_lengths = np.hypot(np.diff(self.x), np.diff(self.y))
        self.arc = np.concatenate([[0.0], np.cumsum(step_lengths)])
        self.node = 0  # the recorded row behind the car (its frame is the one warped)
        self.car = path.state(nodes[:1])
        self.offsets: list[float] = []
        self.commands: list[float] = []
        self.rows: list[int] = []
        self.step_seconds: list[float] = []
        self.intervened: list[bool] = []
        self.done = len(nodes) < 2

    @property
    def row(self) -> int:
        return int(self.nodes[self.node])

    def relative(self) -> tuple[float, float, float]:
        """The car's pose in the frame of the current node's recorded pose: (forward, lateral, heading error)."""
        h = self.heading[self.node]
        dx, dy = self.car.x[0] - self.x[self.node], self.car.y[0] - self.y[self.node]
        error = float(np.mod(self.car.heading[0] - h + np.pi, 2 * np.pi) - np.pi)
        return float(np.cos(h) * dx + np.sin(h) * dy), float(-np.sin(h) * dx + np.cos(h) * dy), error

    def locate(self) -> tuple[int, float]:
        """Project the car on the path near the current node: (segment index, signed offset, left positive)."""
        first = max(self.node - 1, 0)
        last = min(self.node + 8, len(self.nodes) - 1)
        ax, ay = self.x[first:last], self.y[first:last]
        bx, by = self.x[first + 1 : last + 1], self.y[first + 1 : last + 1]
        px, py = self.car.x[0], self.car.y[0]
        ux, uy = bx - ax, by - ay
        length2 = np.maximum(ux * ux + uy * uy, 1e-12)
        t = np.clip(((px - ax) * ux + (py - ay) * uy) / length2, 0.0, 1.0)
        distance = np.hypot(ax + t * ux - px, ay + t * uy - py)
        k = int(np.argmin(distance))
        side = ux[k] * (py - ay[k]) - uy[k] * (px - ax[k])
        return first + k, float(t[k]), float(np.copysign(distance[k], side))


def _drive_batch(lanes, logs, paths, steering, warp, car_params, max_offset, writer, progress) -> list[_Run]:
    state = [_Lane(paths[k], nodes, k) for k, nodes in lanes]
    # A car on the inside of bends passes the nodes faster than the recording; 3x the rows bounds any run.
    budget = 3 * max(len(nodes) for _, nodes in lanes)
    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) if warp is not None else None
    try:
        # No total: a car can take more steps than the recording has rows (see budget).
        for _ in progress_bar(iter(range(budget)), total=None, label="replay", enabled=progress):
            live = [lane for lane in state if not lane.done]
            if not live:
                break
            poses = [lane.relative() for lane in live]
            views = None
            if warp is not None:
                def view(j: int) -> np.ndarray:
                    lane, (forward, lateral, error) = live[j], poses[j]
                    k = lane.owner
                    source = _nearest_camera(logs[k], lane.row, lateral, warp["center"].rig.side_offset)
                    frame = read_frame(logs[k].images[source][lane.row], where=logs[k].describe(lane.row))
                    return warp[source](frame, lateral, error, forward=forward)
                # Decoding and warping release the GIL: several lanes use several cores.
                views = np.stack(list(pool.map(view, range(len(live)))) if len(live) > 1 else [view(0)])
            command = steering(live, views)
            command = np.clip(command, -1.0, 1.0)
            # All cars step together, at the recorded speed and frame interval of the row behind them.
            rows = np.array([lane.row for lane in live])
            car = CarState(*(np.concatenate([getattr(lane.car, name) for lane in live])
                             for name in ("x", "y", "heading", "steering")),
                           np.array([lane.path.speed[lane.row] for lane in live]))
            dt = np.array([lane.path.dt[lane.row] for lane in live])
            car = step(car, command, dt, car_params)
            for j, lane in enumerate(live):
                if writer is not None:
                    writer.write(views[j], command[j], poses[j][1], lane.path.steering[rows[j]])
                lane.car = CarState(car.x[j : j + 1], car.y[j : j + 1], car.heading[j : j + 1],
                                    car.steering[j : j + 1], car.speed[j : j + 1])
                lane.step_seconds.append(float(dt[j]))
                lane.commands.append(float(command[j]))
                lane.rows.append(int(rows[j]))
                segment, t, offset = lane.locate()
                lane.offsets.append(offset)
                lane.intervened.append(abs(offset) > max_offset)
                # The node behind the car; t == 1 (up to rounding) is the next node itself.
                lane.node = segment + 1 if t > 1.0 - 1e-9 else segment
                if abs(offset) > max_offset:
                    # The safety driver puts the car back on the recorded path, at the next recorded pose.
                    lane.node = min(segment + 1, len(lane.nodes) - 1)
                    lane.car = lane.path.state(lane.nodes[lane.node : lane.node + 1])
                lane.done = lane.node >= len(lane.nodes) - 1
    finally:
        if pool is not None:
            pool.shutdown()
    unfinished = [lane.path.source for lane in state if not lane.done]
    if unfinished:
        log.warning("%s: the car did not reach the end of the recorded path in %d steps", unfinished[0], budget)
    runs = []
    for lane in state:
        rows = np.asarray(lane.rows, np.int64)
        runs.append(_Run(rows, np.asarray(lane.offsets, np.float64), np.asarray(lane.commands, np.float64),
                         np.asarray(lane.path.steering[rows], np.float64), np.asarray(lane.step_seconds, np.float64),
                         np.asarray(lane.intervened, bool), np.stack([lane.path.x[rows], lane.path.y[rows]], axis=1),
                         np.asarray(lane.path.segment[rows], np.int64)))
    return runs


class _VideoWriter:
    """mp4 of the driver's view: steering bar (driver yellow, recorded grey) and the offset from the path."""

    def __init__(self, path: str, fps: float = 10.0):
        self.path, self.fps, self.writer = path, fps, None

    def write(self, view: np.ndarray, command: float, lateral: float, recorded: float) -> None:
        height, width = view.shape[:2]
        if self.writer is None:
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                raise ValueError(f"--video: cannot open a video writer for {self.path}")
        canvas = np.ascontiguousarray(view).copy()
        centre = width // 2
        for value, colour, row in ((recorded, (160, 160, 160), height - 20), (command, (255, 255, 0), height - 10)):
            cv2.line(canvas, (centre, row), (int(centre + value * (width // 2 - 10)), row), colour, 4)
        cv2.putText(canvas, f"steer {command:+.2f}  offset {lateral:+.2f} m", (6, 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 255, 255), 1, cv2.LINE_AA)
        self.writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        if self.writer is not None:
            self.writer.release()
