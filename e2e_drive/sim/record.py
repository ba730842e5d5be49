"""Recording the expert's driving as a Udacity-simulator log or a donkeycar tub v2.

``format="udacity"``: the output folder is what the Udacity simulator writes: ``driving_log.csv``
(no header; center, left, right image paths, steering, throttle, brake, speed
in mph) and ``IMG/`` with one JPEG per camera and time step, so every reader
of real logs reads it too. The steering column is the expert's corrective
label (see ``expert.py``); left/right frames share it, as in Udacity logs.

``format="tub"``: the centre camera as a donkeycar tub v2, laid out byte for byte as
``donkeycar.parts.tub_v2.Tub`` writes one (donkeycar 5.3.0): ``manifest.json`` (5 JSON lines: inputs, types,
metadata, manifest metadata with the session, catalog metadata), ``catalog_N.catalog`` (one JSON record per
line, keys sorted, at most 1000 per catalog) with its ``catalog_N.catalog_manifest`` (line lengths), and
``images/{index}_cam_image_array_.jpg``; so donkeycar's own ``Tub`` (and ``data_tools.read_tub``) read it and
simulator data trains donkeycar models too.

Both formats also get ``recording.json`` (``RECORDING_FILE``): the track seed, frame rate, car and camera
the expert drove with, so that training can let the simulator drive that track itself when it selects a
model by autonomy (``read_recording``). Readers of Udacity logs and tubs ignore it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from data_tools.frames import write_frame
from data_tools.io import atomic_directory, write_json, write_text
from data_tools.progress import progress as progress_bar
from e2e_drive.sim.car import CarParams, CarState, step
from e2e_drive.sim.driver_style import DriverStyle, StyledDriver, get_style
from e2e_drive.sim.expert import Expert
from e2e_drive.sim.render import CAMERAS, Camera, CameraRig
from e2e_drive.sim.track import Track, make_track

MPH_PER_MPS = 2.2369363
_EPOCH = dt.datetime(2020, 1, 1)
FORMATS = ("udacity", "tub")
THROTTLE = 0.3  # the throttle column: the expert drives at a constant speed
# donkeycar's tub v2 (donkeycar.parts.tub_v2 / datastore_v2, 5.3.0): what a donkeycar records.
TUB_INPUTS = ["cam/image_array", "user/angle", "user/throttle", "user/mode"]
TUB_TYPES = ["image_array", "float", "float", "str"]
TUB_CATALOG_LENGTH = 1000
RECORDING_FILE = "recording.json"
RECORDING_KIND = "e2e-drive simulator recording"


@dataclass(frozen=True)
class SimRecording:
    """What ``recording.json`` says about a folder ``record`` wrote: enough to drive its track again."""

    track: int
    fps: float
    car: CarParams
    rig: CameraRig
    laps: float
    seed: int
    driver: str = "expert"

    def to_json(self) -> dict:
        rig = asdict(self.rig)
        rig["size"] = list(rig["size"])
        return {"kind": RECORDING_KIND, "version": 1, "track": self.track, "fps": self.fps, "laps": self.laps,
                "seed": self.seed, "driver": self.driver, "car": asdict(self.car), "camera": rig}


def read_recording(folder: str | os.PathLike) -> SimRecording | None:
    """The simulator recording behind ``folder`` (a Udacity log folder or a tub), or ``None`` when the folder has
    no readable ``recording.json`` of ours (any log not written by ``record``)."""
    path = Path(folder) / RECORDING_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("kind") != RECORDING_KIND:
            return None
        camera = dict(payload["camera"])
        camera["size"] = tuple(camera["size"])
        return SimRecording(int(payload["track"]), float(payload["fps"]), CarParams(**payload["car"]),
                            CameraRig(**camera), float(payload["laps"]), int(payload["seed"]),
                            str(payload.get("driver", "expert")))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class RecordResult:
    """What ``record`` wrote: the folder, its CSV (``None`` for a tub), rows and distance driven."""

    out: Path
    csv_path: Path | None
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
    format: str = "udacity",
    driver: str | DriverStyle = "expert",
) -> RecordResult:
    """Drive ``laps`` laps of ``track`` with the expert and write a Udacity log (or a donkeycar tub) into ``out``.

    Args:
        track: a ``Track`` or the seed of one.
        out: output folder (created; an existing ``driving_log.csv`` there is replaced; for a tub, an
            existing tub there is replaced as a whole, atomically, and any other non-empty folder refused).
        laps: laps to drive (fractions allowed).
        seed: seed of the expert's drifts and noise.
        fps: frames per second (the Udacity simulator records ~10-15).
        params: car limits and speed.
        rig: camera geometry.
        quality: JPEG quality.
        progress: draw a progress bar on stderr.
        format: ``"udacity"`` (three cameras, ``driving_log.csv`` + ``IMG/``) or ``"tub"`` (the centre camera
            as a donkeycar tub v2). Defaults to `"udacity"`.
        driver: the driving style (``e2e_drive.sim.driver_style.STYLES``): ``"expert"`` labels every frame with
            the corrective steering; ``"analog"``, ``"keyboard"``, ``"joystick"``, ``"late"`` record what a human
            with that input device steered. Defaults to `"expert"`.

    Example:
        >>> record(7, "runs/rec7", laps=1).rows
        441
    """
    if laps <= 0:
        raise ValueError(f"Expected laps > 0. Received: laps={laps}")
    if format not in FORMATS:
        raise ValueError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if not 0 < float(fps) <= 120.0:
        raise ValueError(f"--fps: expected frames per second in (0, 120]. Received: {fps!r}")
    style = get_style(driver)
    track = make_track(track) if isinstance(track, (int, np.integer)) else track
    recording = SimRecording(int(track.seed), fps, params, rig, laps, seed, style.name).to_json()
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder for "
                         + ("driving_log.csv and IMG/" if format == "udacity" else "a donkeycar tub"))
    if format == "tub":
        if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
            raise ValueError(f"--out {out}: a non-empty folder that is not a donkeycar tub (no manifest.json); "
                             "choose a new folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(out) as tmp:
            rows, offsets, seconds = _drive(track, Path(tmp), laps, seed, fps, params, rig, quality, progress,
                                            "tub", style)
            write_json(Path(tmp) / RECORDING_FILE, recording)
        return RecordResult(out, None, rows, rows * seconds * params.speed / track.length, rows * seconds,
                            float(np.mean(np.abs(offsets))))
    out.mkdir(parents=True, exist_ok=True)
    steps, offsets, step_seconds = _drive(track, out, laps, seed, fps, params, rig, quality, progress, "udacity",
                                              style)
    write_json(out / RECORDING_FILE, recording)
    return RecordResult(out, out / "driving_log.csv", steps, steps * step_seconds * params.speed / track.length,
                        steps * step_seconds, float(np.mean(np.abs(offsets))))


def _drive(track: Track, out: Path, laps: float, seed: int, fps: float, params: CarParams, rig: CameraRig,
           quality: int, progress: bool, format: str, style: DriverStyle) -> tuple[int, np.ndarray, float]:
    """Drive the expert and write each step's frames and labels; ``(steps, offsets, seconds per step)``."""
    images = out / ("IMG" if format == "udacity" else "images")
    images.mkdir(parents=True, exist_ok=True)
    camera = Camera(track, rig)
    rng = np.random.default_rng([int(seed), int(track.seed)])
    driver = StyledDriver(Expert(track, rng, params, noise=style.noise), style, rng)
    step_seconds = 1.0 / fps
    steps = int(np.ceil(laps * track.length / (params.speed * step_seconds)))
    state = CarState.at(*track.centre[0], track.heading[0], params.speed)
    rows: list[list[str]] = []
    records: list[dict] = []
    offsets = np.zeros(steps)
    base = _EPOCH + dt.timedelta(hours=int(track.seed) % 10000)
    for i in progress_bar(range(steps), total=steps, label=f"record track {track.seed}", enabled=progress):
        command, label = driver.act(state, step_seconds)
        moment = base + dt.timedelta(seconds=i * step_seconds)
        if format == "udacity":
            stamp = moment.strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
            paths = []
            for name in CAMERAS:
                path = images / f"{name}_{stamp}.jpg"
                write_frame(path, camera.render(state.x[0], state.y[0], state.heading[0], name), quality=quality)
                paths.append(str(path))
            speed_mph = float(state.speed[0]) * MPH_PER_MPS
            rows.append(paths + [f"{float(label[0]):.6f}", f"{THROTTLE}", "0", f"{speed_mph:.4f}"])
        else:
            # donkeycar's Tub._image_file_name: "{index}_{key with / as _}_.jpg"
            name = f"{i}_cam_image_array_.jpg"
            write_frame(images / name, camera.render(state.x[0], state.y[0], state.heading[0], "center"),
                        quality=quality)
            records.append({"cam/image_array": name, "user/angle": round(float(label[0]), 6),
                            "user/throttle": THROTTLE, "user/mode": "user", "_index": i, "_session_id": None,
                            "_timestamp_ms": int(round(moment.replace(tzinfo=dt.timezone.utc).timestamp() * 1000))})
        offsets[i] = track.locate(state.xy)[2][0]
        state = step(state, command, step_seconds, params)
    if format == "udacity":
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        write_text(out / "driving_log.csv", text.getvalue())  # atomic: a reader never sees a half-written log
    else:
        _write_tub_files(out, records, base)
    return steps, offsets, step_seconds


def _write_tub_files(out: Path, records: list[dict], created: dt.datetime) -> None:
    """manifest.json, the catalogs and their manifests, as donkeycar's Manifest/Catalog write them on close."""
    created_at = created.replace(tzinfo=dt.timezone.utc).timestamp()
    session = f"{created.strftime('%y-%m-%d')}_0"  # Manifest.create_new_session_id: "%y-%m-%d_<n>"
    catalogs = []
    for number, first in enumerate(range(0, max(len(records), 1), TUB_CATALOG_LENGTH)):
        name = f"catalog_{number}.catalog"
        catalogs.append(name)
        lines = []
        for record in records[first : first + TUB_CATALOG_LENGTH]:
            record = dict(record, _session_id=session)
            lines.append(json.dumps(record, allow_nan=False, sort_keys=True) + "\n")  # Catalog.write_record
        write_text(out / name, "".join(lines))
        catalog_manifest = {"path": f"catalog_{number}.catalog_manifest", "created_at": created_at,
                            "start_index": first, "line_lengths": [len(line) for line in lines]}
        write_text(out / f"catalog_{number}.catalog_manifest",
                   json.dumps(catalog_manifest, allow_nan=False, sort_keys=True) + "\n")
    manifest = [TUB_INPUTS, TUB_TYPES, {},
                {"created_at": created_at,
                 "sessions": {"all_full_ids": [session], "last_id": 0, "last_full_id": session}},
                {"paths": catalogs, "current_index": len(records), "max_len": TUB_CATALOG_LENGTH,
                 "deleted_indexes": []}]
    write_text(out / "manifest.json", "".join(json.dumps(line) + "\n" for line in manifest))
