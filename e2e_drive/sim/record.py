"""Recording the expert's driving as a Udacity-simulator log.

The output folder is what the Udacity simulator writes: ``driving_log.csv``
(no header; center, left, right image paths, steering, throttle, brake, speed
in mph) and ``IMG/`` with one JPEG per camera and time step, so every reader
of real logs reads it too. The steering column is the expert's corrective
label (see ``expert.py``); left/right frames share it, as in Udacity logs.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.frames import write_frame
from data_tools.progress import progress as progress_bar
from e2e_drive.sim.car import CarParams, CarState, step
from e2e_drive.sim.expert import Expert
from e2e_drive.sim.render import CAMERAS, Camera, CameraRig
from e2e_drive.sim.track import Track, make_track

MPH_PER_MPS = 2.2369363
_EPOCH = dt.datetime(2020, 1, 1)


@dataclass(frozen=True)
class RecordResult:
    """What ``record`` wrote: the folder, its CSV, rows and distance driven."""

    out: Path
    csv_path: Path
    rows: int
    laps: float
    seconds: float
    mean_abs_offset: float


def record(
    track: Track | int,
    out: str | os.PathLike,
    *,
    laps: float = 1.0,
    seed: int = 0,
    fps: float = 10.0,
    params: CarParams = CarParams(),
    rig: CameraRig = CameraRig(),
    quality: int = 90,
    progress: bool = True,
) -> RecordResult:
    """Drive ``laps`` laps of ``track`` with the expert and write a Udacity log into ``out``.

    Args:
        track: a ``Track`` or the seed of one.
        out: output folder (created; an existing ``driving_log.csv`` there is replaced).
        laps: laps to drive (fractions allowed).
        seed: seed of the expert's drifts and noise.
        fps: frames per second (the Udacity simulator records ~10-15).
        params: car limits and speed.
        rig: camera geometry.
        quality: JPEG quality.
        progress: draw a progress bar on stderr.

    Example:
        >>> record(7, "runs/rec7", laps=1).rows
        441
    """
    if laps <= 0:
        raise ValueError(f"Expected laps > 0. Received: laps={laps}")
    track = make_track(track) if isinstance(track, (int, np.integer)) else track
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder for driving_log.csv and IMG/")
    images = out / "IMG"
    images.mkdir(parents=True, exist_ok=True)
    camera = Camera(track, rig)
    expert = Expert(track, np.random.default_rng([int(seed), int(track.seed)]), params)
    step_seconds = 1.0 / fps
    steps = int(np.ceil(laps * track.length / (params.speed * step_seconds)))
    state = CarState.at(*track.centre[0], track.heading[0], params.speed)
    rows: list[list[str]] = []
    offsets = np.zeros(steps)
    base = _EPOCH + dt.timedelta(hours=int(track.seed) % 10000)
    for i in progress_bar(range(steps), total=steps, label=f"record track {track.seed}", enabled=progress):
        command, label = expert.act(state, step_seconds)
        stamp = (base + dt.timedelta(seconds=i * step_seconds)).strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        paths = []
        for name in CAMERAS:
            path = images / f"{name}_{stamp}.jpg"
            write_frame(path, camera.render(state.x[0], state.y[0], state.heading[0], name), quality=quality)
            paths.append(str(path))
        speed_mph = float(state.speed[0]) * MPH_PER_MPS
        rows.append(paths + [f"{float(label[0]):.6f}", "0.3", "0", f"{speed_mph:.4f}"])
        offsets[i] = track.locate(state.xy)[2][0]
        state = step(state, command, step_seconds, params)
    csv_path = out / "driving_log.csv"
    # Atomic: a reader never sees a half-written log.
    handle = tempfile.NamedTemporaryFile("w", newline="", dir=out, suffix=".csv.tmp", delete=False)
    with handle:
        csv.writer(handle).writerows(rows)
    os.replace(handle.name, csv_path)
    return RecordResult(out, csv_path, steps, steps * step_seconds * params.speed / track.length,
                        steps * step_seconds, float(np.mean(np.abs(offsets))))
