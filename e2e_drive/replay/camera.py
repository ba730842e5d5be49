"""Camera calibration from a log's left/centre/right frames, and its JSON file.

A camera moved sideways by ``b`` over flat ground shears the ground image:
pixel ``(u, v)`` moves by ``(b / h) cos(pitch) (v - v_horizon)`` columns. The
side frames of a three-camera log therefore fix the horizon row and ``b / h``,
and nothing else: focal length and height are not observable from them (the
height sets the metric scale, the focal length only matters for rotations).
``calibrate`` fits the horizon (reported as pitch, for the profile's focal
length, scaled to the frame width) and the side offset (for the profile's
height) by maximising the correlation of the warped centre frame with each
side frame over the road rows, a coarse grid then Nelder-Mead.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, replace

import cv2
import numpy as np

from data_tools.errors import DataError
from data_tools.frames import read_frame
from data_tools.log import DrivingLog
from data_tools.read import load_log
from e2e_drive.replay.profiles import CarProfile, camera_for_size, get_profile
from e2e_drive.replay.warp import ViewWarp
from e2e_drive.sim.render import CameraRig

log = logging.getLogger(__name__)

CAMERA_FIELDS = ("height", "pitch_deg", "focal", "forward", "side_offset", "bonnet_rows")


def rig_to_json(rig: CameraRig) -> dict:
    """The camera fields replay uses, plus the frame size and the horizon row (for reading)."""
    payload = {name: float(getattr(rig, name)) for name in CAMERA_FIELDS}
    payload["bonnet_rows"] = int(rig.bonnet_rows)
    payload["size"] = [int(rig.size[0]), int(rig.size[1])]
    payload["horizon_row"] = float(rig.horizon_row)
    return payload


def load_camera(path: str | os.PathLike) -> CameraRig:
    """Read a calibration written by ``e2e-drive calibrate`` (or a bare ``camera`` object).

    Raises:
        DataError: naming the file, when it is not JSON or lacks a field.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except FileNotFoundError:
        raise DataError("no such camera calibration file", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"not a camera calibration JSON file ({error})", path=path) from None
    camera = payload.get("camera", payload) if isinstance(payload, dict) else None
    if not isinstance(camera, dict):
        raise DataError("expected a JSON object with a \"camera\" object", path=path)
    missing = [name for name in (*CAMERA_FIELDS, "size") if name not in camera]
    if missing:
        raise DataError(f"camera calibration lacks {', '.join(missing)}", path=path)
    try:
        values = {name: float(camera[name]) for name in CAMERA_FIELDS if name != "bonnet_rows"}
        size = (int(camera["size"][0]), int(camera["size"][1]))
        bonnet = int(camera["bonnet_rows"])
    except (TypeError, ValueError, IndexError) as error:
        raise DataError(f"bad value in camera calibration ({error})", path=path) from None
    if not all(math.isfinite(v) for v in values.values()) or values["height"] <= 0 or values["focal"] <= 0:
        raise DataError(f"camera calibration has impossible values: {values}", path=path)
    if min(size) <= 0 or not 0 <= bonnet < size[0]:
        raise DataError(f"camera calibration has impossible size {size} or bonnet_rows {bonnet}", path=path)
    return CameraRig(**values, bonnet_rows=bonnet, size=size)


@dataclass(frozen=True)
class Calibration:
    """A fitted camera and how well it explains the side frames.

    Attributes:
        camera: the fitted rig (pitch and side offset fitted; height, focal, forward from the profile).
        side_match: correlation of the warped centre frame with each side frame (road rows).
        unwarped_match: the same correlation without warping (the baseline).
        frames: frame triples used.
        source: the log.
    """

    camera: CameraRig
    side_match: dict[str, float]
    unwarped_match: dict[str, float]
    frames: int
    source: str

    def to_json(self) -> dict:
        return {"camera": rig_to_json(self.camera), "side_match": self.side_match,
                "unwarped_match": self.unwarped_match, "frames": self.frames, "source": self.source,
                "fitted": ["pitch_deg", "side_offset"],
                "note": "side frames fix only the horizon row and side_offset / height; height and focal "
                        "come from the car profile"}


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


class _SideMatch:
    """Correlation of warped centre frames with side frames over a fixed band of road rows."""

    def __init__(self, base: CameraRig, centre: list[np.ndarray], sides: dict[str, list[np.ndarray]]):
        self.base = base
        rows, cols = base.size
        self.top = int(round(0.4 * rows))
        self.bottom = int(rows - max(base.bonnet_rows, 0) - max(2, rows // 40))
        self.centre = [_gray(f) for f in centre]
        self.sides = {name: [_gray(f)[self.top : self.bottom] for f in frames] for name, frames in sides.items()}
        self.margin = max(4, cols // 40)

    def rig(self, horizon: float, ratio: float) -> CameraRig:
        """The rig with this horizon row and side_offset / height ratio."""
        rows = self.base.size[0]
        pitch = math.degrees(math.atan(((rows - 1) / 2 - horizon) / self.base.focal))
        side = ratio * self.base.height / math.cos(math.radians(pitch))
        return replace(self.base, pitch_deg=pitch, side_offset=side)

    def score(self, rig: CameraRig | None) -> dict[str, float]:
        """Mean correlation per side (``rig=None``: unwarped)."""
        warp = None if rig is None else ViewWarp(rig)
        result = {}
        for name, targets in self.sides.items():
            values = []
            for centre, target in zip(self.centre, targets):
                view = centre if warp is None else warp(centre, target=name)
                a = view[self.top : self.bottom, self.margin : -self.margin].ravel()
                b = target[:, self.margin : -self.margin].ravel()
                if a.std() > 1e-6 and b.std() > 1e-6:
                    values.append(float(np.corrcoef(a, b)[0, 1]))
            result[name] = float(np.mean(values)) if values else float("nan")
        return result

    def loss(self, params: np.ndarray) -> float:
        horizon, ratio = params
        if not (-self.base.size[0] < horizon < self.top - 2) or not (0.01 < ratio < 5.0):
            return 2.0
        return -float(np.mean(list(self.score(self.rig(horizon, ratio)).values())))


def calibrate(
    data: DrivingLog | str | os.PathLike,
    *,
    profile: str | CarProfile = "udacity",
    frames: int = 24,
) -> Calibration:
    """Fit the camera of a three-camera log (pitch and side offset; see the module docstring).

    Args:
        data: a log with left, centre and right frames (or its path).
        profile: car profile giving height, focal length (scaled to the frame width) and forward position.
        frames: frame triples used (evenly spread over the log).

    Raises:
        DataError: the log has no left and right frames (naming it).
    """
    from scipy.optimize import minimize  # scipy is heavy to import; only calibration needs it

    driving_log = load_log(data)
    source = str(driving_log.source[0])
    missing = [c for c in ("left", "right") if c not in driving_log.cameras]
    if missing:
        raise DataError(f"no {' or '.join(missing)} camera frames: calibration needs a log with left, centre and "
                        "right cameras (Udacity); give single-camera logs a calibration file with --camera",
                        path=source)
    rows = np.flatnonzero([bool(driving_log.images["left"][i]) and bool(driving_log.images["right"][i])
                           for i in range(len(driving_log))])
    chosen = rows[np.unique(np.linspace(0, len(rows) - 1, min(frames, len(rows))).round().astype(int))]
    centre = [read_frame(driving_log.images["center"][i], where=driving_log.describe(i)) for i in chosen]
    sides = {name: [read_frame(driving_log.images[name][i], where=driving_log.describe(i)) for i in chosen]
             for name in ("left", "right")}
    base = camera_for_size(get_profile(profile).camera, centre[0].shape[:2])
    match = _SideMatch(base, centre, sides)
    # Coarse grid over horizon rows and side/height ratios, then a local refinement from the best cell.
    rows_count = base.size[0]
    grid = [(horizon, ratio) for horizon in np.linspace(0.05 * rows_count, 0.38 * rows_count, 12)
            for ratio in np.geomspace(0.1, 2.5, 12)]
    losses = [match.loss(np.array(p)) for p in grid]
    start = np.array(grid[int(np.argmin(losses))])
    best = minimize(match.loss, start, method="Nelder-Mead",
                    options={"xatol": 0.05, "fatol": 1e-4, "maxiter": 200,
                             "initial_simplex": [start, start + [rows_count * 0.03, 0], start * [1, 1.25]]})
    horizon, ratio = best.x if best.fun <= min(losses) else start
    rig = match.rig(float(horizon), float(ratio))
    side_match = match.score(rig)
    unwarped = match.score(None)
    log.debug("calibrated %s: pitch %.2f deg, side offset %.3f m, match %s (unwarped %s)", source, rig.pitch_deg,
             rig.side_offset, side_match, unwarped)
    return Calibration(rig, side_match, unwarped, len(chosen), source)


__all__ = ["Calibration", "calibrate", "load_camera", "rig_to_json"]
