"""Camera calibration from a log's left/centre/right frames and its own motion, and its JSON file.

A camera moved sideways by ``b`` over flat ground shears the ground image:
pixel ``(u, v)`` moves by ``(b / h) cos(pitch) (v - v_horizon)`` columns. The
side frames of a three-camera log therefore fix the horizon row and ``b / h``,
and nothing else. Moving forward by ``dx`` (known from the log's speed and time
stamps) changes ``1 / (v - v_horizon)`` by about ``dx / (h f)``: consecutive
frames fix ``h * f``. The height ``h`` itself (the metric scale) is not
observable from images; it comes from the car profile. ``calibrate`` fits the
horizon and side offset by maximising the correlation of the warped centre
frame with each side frame over the road pixels the centre camera saw, at
the model's input scale (a coarse grid, then Nelder-Mead), then the focal length by matching each of the straightest frame
pairs to its successor warped by the recorded motion (a scan, then a bounded
search), keeping the horizon row and the side shear.
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
from data_tools.preprocess import MODEL_HEIGHT, MODEL_WIDTH, default_crop
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
        side_match: correlation of the warped centre frame with each side frame over the road rows the centre
            camera saw, at PilotNet's input scale (what the model is fed).
        unwarped_match: the same correlation, over the same pixels, of the centre frame as it is (the baseline).
        frames: frame triples used.
        source: the log.
        motion_match: correlation of frame ``i`` warped by the recorded motion with frame ``i + 1`` at the
            fitted focal length (None when the focal length was not fitted).
        side_match_full_resolution: ``side_match`` at the frames' own resolution (fine texture included).
    """

    camera: CameraRig
    side_match: dict[str, float]
    unwarped_match: dict[str, float]
    frames: int
    source: str
    motion_match: float | None = None
    side_match_full_resolution: dict[str, float] | None = None

    def to_json(self) -> dict:
        fitted = ["pitch_deg", "side_offset"] + (["focal"] if self.motion_match is not None else [])
        return {"camera": rig_to_json(self.camera), "side_match": self.side_match,
                "unwarped_match": self.unwarped_match,
                "side_match_full_resolution": self.side_match_full_resolution,
                "motion_match": self.motion_match, "frames": self.frames,
                "source": self.source, "fitted": fitted,
                "note": "side frames fix the horizon row and side_offset / height, forward motion height x focal; "
                        "the height (the metric scale) comes from the car profile"}


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


class _SideMatch:
    """Correlation of warped centre frames with side frames over a fixed band of road rows.

    Only pixels the centre camera saw count (the warp fills the rest by replicating its border, which no
    geometry can get right), and the comparison is made at PilotNet's input scale (the band resized by the
    model's 200 / width horizontally and 66 / crop-height vertically): replay and viewpoint shifts exist to feed
    the model its view, and texture finer than its pixels (JPEG blocks, asphalt grain, resampling) is noise
    there. ``score(rig, full_resolution=True)`` gives the same correlation at the frames' own resolution.
    """

    def __init__(self, base: CameraRig, centre: list[np.ndarray], sides: dict[str, list[np.ndarray]]):
        self.base = base
        rows, cols = base.size
        self.top = int(round(0.4 * rows))
        self.bottom = int(rows - max(base.bonnet_rows, 0) - max(2, rows // 40))
        self.margin = max(4, cols // 40)
        crop_top, crop_bottom = default_crop(rows)
        band_rows, band_cols = self.bottom - self.top, cols - 2 * self.margin
        self.model_size = (max(2, round(band_cols * MODEL_WIDTH / cols)),
                           max(2, round(band_rows * MODEL_HEIGHT / max(rows - crop_top - crop_bottom, 1))))
        self.centre = [_gray(f) for f in centre]
        self.sides = {name: [self._band(_gray(f)) for f in frames] for name, frames in sides.items()}
        self.sides_model = {name: [self._small(band) for band in bands] for name, bands in self.sides.items()}

    def _band(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.bottom, self.margin : image.shape[1] - self.margin]

    def _small(self, band: np.ndarray) -> np.ndarray:
        return cv2.resize(band, self.model_size, interpolation=cv2.INTER_AREA)

    def seen(self, warp: ViewWarp, side: str) -> np.ndarray:
        """Band pixels of the warped view whose ground point the centre camera saw (above its bonnet)."""
        rows, cols = self.base.size
        ground = warp.homographies(0.0, 0.0, side)[0]
        v, u = np.mgrid[self.top : self.bottom, self.margin : cols - self.margin].astype(np.float64)
        source = np.linalg.inv(ground) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
        with np.errstate(divide="ignore", invalid="ignore"):
            su, sv = source[0] / source[2], source[1] / source[2]
            inside = (source[2] > 0) & (su >= 0) & (su <= cols - 1) & (sv >= 0)
            inside &= sv <= rows - 1 - max(int(self.base.bonnet_rows), 0)
        return inside.reshape(u.shape)

    def rig(self, horizon: float, ratio: float) -> CameraRig:
        """The rig with this horizon row and side_offset / height ratio."""
        rows = self.base.size[0]
        pitch = math.degrees(math.atan(((rows - 1) / 2 - horizon) / self.base.focal))
        side = ratio * self.base.height / math.cos(math.radians(pitch))
        return replace(self.base, pitch_deg=pitch, side_offset=side)

    def score(self, rig: CameraRig, full_resolution: bool = False, warped: bool = True) -> dict[str, float]:
        """Mean correlation per side over the pixels ``rig`` says the centre camera saw (``warped=False``: the
        centre frames as they are over the same pixels, the baseline)."""
        warp = ViewWarp(rig)
        result = {}
        for name in self.sides:
            targets = self.sides[name] if full_resolution else self.sides_model[name]
            seen = self.seen(warp, name)
            if not full_resolution:
                # A model pixel counts when all the frame pixels it averages were seen.
                seen = self._small(seen.astype(np.float32)) > 0.999
            values = []
            if seen.sum() > 16:
                for centre, target in zip(self.centre, targets):
                    view = self._band(warp(centre, target=name) if warped else centre)
                    a = (view if full_resolution else self._small(view))[seen]
                    b = target[seen]
                    if a.std() > 1e-6 and b.std() > 1e-6:
                        values.append(float(np.corrcoef(a, b)[0, 1]))
            result[name] = float(np.mean(values)) if values else float("nan")
        return result

    def loss(self, params: np.ndarray) -> float:
        horizon, ratio = params
        if not (-self.base.size[0] < horizon < self.top - 2) or not (0.01 < ratio < 5.0):
            return 2.0
        values = list(self.score(self.rig(horizon, ratio)).values())
        return 2.0 if any(math.isnan(v) for v in values) else -float(np.mean(values))


def calibrate(
    data: DrivingLog | str | os.PathLike,
    *,
    profile: str | CarProfile = "udacity",
    frames: int = 24,
    fit_focal: bool = True,
) -> Calibration:
    """Fit the camera of a three-camera log (pitch and side offset; see the module docstring).

    Args:
        data: a log with left, centre and right frames (or its path).
        profile: car profile giving height, focal length (scaled to the frame width) and forward position.
        frames: frame triples used (evenly spread over the log), and frame pairs for the focal length.
        fit_focal: fit the focal length from the forward motion between frames (needs time stamps and
            speed); otherwise keep the profile's.

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
    motion_match = None
    if fit_focal:
        rig, motion_match = _fit_focal(driving_log, get_profile(profile), rig, frames)
    side_match = match.score(rig)
    unwarped = match.score(rig, warped=False)
    full = match.score(rig, full_resolution=True)
    log.debug("calibrated %s: pitch %.2f deg, focal %.1f, side offset %.3f m, match %s (unwarped %s, full "
              "resolution %s)", source, rig.pitch_deg, rig.focal, rig.side_offset, side_match, unwarped, full)
    return Calibration(rig, side_match, unwarped, len(chosen), source, motion_match, full)


def _with_focal(rig: CameraRig, focal: float) -> CameraRig:
    """``rig`` with another focal length, keeping its horizon row and its side-camera shear."""
    rows = rig.size[0]
    shear = rig.side_offset / rig.height * math.cos(math.radians(rig.pitch_deg))
    pitch = math.degrees(math.atan(((rows - 1) / 2 - rig.horizon_row) / focal))
    return replace(rig, focal=float(focal), pitch_deg=pitch,
                   side_offset=shear * rig.height / math.cos(math.radians(pitch)))


def _fit_focal(driving_log: DrivingLog, profile: CarProfile, rig: CameraRig, pairs: int) -> tuple[CameraRig, float | None]:
    """Fit the focal length from the car's own motion between consecutive centre frames.

    Moving ``dx`` metres forward (known from speed and time) scales the ground image by an amount set by
    ``height * focal``: with the height fixed, the focal length is the one that makes frame ``i`` warped by
    the recorded motion match frame ``i + 1``. The straightest pairs are used, so that the yaw model
    (wheelbase, wheel angle) hardly matters. Logs without time or speed keep the profile's focal length.
    """
    from scipy.optimize import minimize_scalar  # scipy is heavy to import; only calibration needs it

    from e2e_drive.replay.trajectory import reconstruct  # trajectory imports profiles, not camera: no cycle

    try:
        path = reconstruct(driving_log, profile)
    except DataError as error:
        log.warning("%s; keeping the %s profile's focal length (%g px)", error, profile.name, rig.focal)
        return rig, None
    candidates = np.flatnonzero(path.moving[:-1] & (path.speed[:-1] > 2.0 * profile.min_speed))
    if len(candidates) < 3:
        log.warning("%s: too few moving frames to fit the focal length; keeping %g px", path.source, rig.focal)
        return rig, None
    turn = np.abs(np.angle(np.exp(1j * (path.heading[candidates + 1] - path.heading[candidates]))))
    chosen = np.sort(candidates[np.argsort(turn, kind="stable")[:pairs]])
    frames = [(_gray(read_frame(driving_log.images["center"][i], where=driving_log.describe(i))),
               _gray(read_frame(driving_log.images["center"][i + 1], where=driving_log.describe(i + 1))))
              for i in chosen]
    motion = []
    for i in chosen:
        h = path.heading[i]
        dx, dy = path.x[i + 1] - path.x[i], path.y[i + 1] - path.y[i]
        motion.append((math.cos(h) * dx + math.sin(h) * dy, -math.sin(h) * dx + math.cos(h) * dy,
                       float(np.angle(np.exp(1j * (path.heading[i + 1] - h))))))
    rows, cols = rig.size
    top = int(max(rig.horizon_row, 0)) + max(4, rows // 10)
    bottom = int(rows - max(rig.bonnet_rows, 0) - max(2, rows // 40))
    margin = max(4, cols // 8)

    def score(focal: float) -> float:
        warp = ViewWarp(_with_focal(rig, focal))
        values = []
        for (first, second), (forward, lateral, turn_) in zip(frames, motion):
            view = warp(first, lateral, turn_, forward=forward)[top:bottom, margin:-margin].ravel()
            target = second[top:bottom, margin:-margin].ravel()
            if view.std() > 1e-6 and target.std() > 1e-6:
                values.append(float(np.corrcoef(view, target)[0, 1]))
        return float(np.mean(values)) if values else 0.0

    # Coarse scan of horizontal fields of view 40-140 degrees, then a bounded refinement around the best.
    grid = (cols / 2) / np.tan(np.radians(np.linspace(20, 70, 11)))
    scores = [score(f) for f in grid]
    k = int(np.argmax(scores))
    low, high = grid[min(k + 1, len(grid) - 1)], grid[max(k - 1, 0)]
    best = minimize_scalar(lambda f: -score(f), bounds=(low, high), method="bounded", options={"xatol": 0.5})
    focal = float(best.x) if -best.fun >= scores[k] else float(grid[k])
    return _with_focal(rig, focal), max(-float(best.fun), scores[k])


__all__ = ["Calibration", "calibrate", "load_camera", "rig_to_json"]
