"""Frames to compare an artifact against Keras on, and the comparison itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from data_tools.log_formats import is_log_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class ParityFrames:
    """Frames (N, H, W, 3) uint8 and a note saying where they came from."""

    frames: np.ndarray
    source: str
    steering: np.ndarray | None = field(default=None, repr=False)  # recorded labels, when the source has them


def _resize_to(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def load_frames(calibration: str | os.PathLike | Sequence[str] | None, shape: Sequence[int], count: int = 64,
                seed: int = 0) -> ParityFrames:
    """Up to ``count`` real frames shaped ``shape`` (H, W, 3) for parity and int8 calibration.

    ``calibration`` is a ``DrivingLog``, a Udacity log or tub (read with ``data_tools.read_log``) or a folder
    of images; a log's frames come with their recorded steering (for the int8 RMSE change).
    Without it: simulator frames (``e2e_drive.sim.sample_frames``); without the simulator: random but
    structured frames (sky gradient over a road), with a note saying so. Frames whose size differs from
    the model's are resized (noted). Same ``seed`` -> same frames.
    """
    height, width = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    if calibration is not None and hasattr(calibration, "steering") and hasattr(calibration, "images"):
        frames, steering, source = _from_log(calibration, count, rng, "a DrivingLog")
    elif calibration is not None:
        paths = [os.fspath(calibration)] if isinstance(calibration, (str, os.PathLike)) else [os.fspath(p) for p in calibration]
        frames, steering, source = _read_calibration(paths, count, rng)
    else:
        from e2e_drive.sim import sample_frames

        frames, steering, source = sample_frames(count, seed=seed), None, f"simulator frames (sample_frames, seed {seed})"
    if frames.shape[1:3] != (height, width):
        source += f", resized from {frames.shape[2]}x{frames.shape[1]} to {width}x{height}"
        frames = _resize_to(frames, height, width)
    return ParityFrames(np.ascontiguousarray(frames, np.uint8), source, steering)


def _read_calibration(paths: list[str], count: int, rng: np.random.Generator):
    from data_tools.frames import read_frame

    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"calibration data not found: {path}")
    if len(paths) == 1 and os.path.isdir(paths[0]) and _only_images(paths[0]):
        names = sorted(n for n in os.listdir(paths[0]) if n.lower().endswith(IMAGE_SUFFIXES))
        centre = [n for n in names if n.startswith("center")]  # a Udacity IMG/ folder: the camera the model drives on
        files = [os.path.join(paths[0], n) for n in (centre or names)]
        pick = np.sort(rng.choice(len(files), size=min(count, len(files)), replace=False))
        frames = np.stack([read_frame(files[i]) for i in pick])
        return frames, None, f"{len(frames)} images from {paths[0]}"
    from data_tools import read_log

    return _from_log(read_log(paths), count, rng, ", ".join(paths))


def _from_log(log, count: int, rng: np.random.Generator, label: str):
    from data_tools.frames import read_frame

    if len(log) == 0 or not log.cameras:
        raise ValueError(f"calibration data has no usable records: {label}")
    camera = "center" if "center" in log.cameras else log.cameras[0]
    pick = np.sort(rng.choice(len(log), size=min(count, len(log)), replace=False))
    frames = np.stack([read_frame(log.images[camera][i], where=log.describe(int(i))) for i in pick])
    steering = np.asarray(log.steering, np.float32)[pick]
    return frames, steering, f"{len(frames)} {camera}-camera frames from {label}"


def _only_images(folder: str) -> bool:
    names = os.listdir(folder)
    return bool(names) and any(n.lower().endswith(IMAGE_SUFFIXES) for n in names) and not any(
        is_log_file(n) for n in names)


def as_parity_frames(frames, shape: Sequence[int]) -> ParityFrames:
    """Frames given by a caller (a uint8 array (N, H, W, 3) or ``ParityFrames``), resized to ``shape`` if needed."""
    if isinstance(frames, ParityFrames):
        data = frames
    else:
        array = np.asarray(frames)
        data = ParityFrames(array, f"{len(array) if array.ndim == 4 else 0} frames given by the caller")
    array = np.asarray(data.frames)
    if array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
        raise ValueError(f"frames: expected a non-empty uint8 array (N, H, W, 3). Received: shape={array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 RGB frames. Received: dtype={array.dtype}")
    height, width = int(shape[0]), int(shape[1])
    source = data.source
    if array.shape[1:3] != (height, width):
        source += f", resized from {array.shape[2]}x{array.shape[1]} to {width}x{height}"
        array = _resize_to(array, height, width)
    return ParityFrames(np.ascontiguousarray(array, np.uint8), source, data.steering)


@dataclass
class ParityResult:
    """Every output of an artifact vs Keras on the same frames (``max_abs_diff``: the worst output)."""

    max_abs_diff: float
    mean_abs_diff: float
    frames: int
    source: str
    tolerance: float | None
    passed: bool
    keras_rmse: float | None = None  # steering vs recorded steering, when the frames came with labels
    artifact_rmse: float | None = None
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {max_abs_diff, mean_abs_diff}

    @property
    def rmse_change(self) -> float | None:
        if self.keras_rmse is None or self.artifact_rmse is None:
            return None
        return self.artifact_rmse - self.keras_rmse

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "mean_abs_diff": self.mean_abs_diff, "frames": self.frames,
                "source": self.source, "tolerance": self.tolerance, "passed": self.passed,
                "keras_rmse": self.keras_rmse, "artifact_rmse": self.artifact_rmse, "rmse_change": self.rmse_change,
                "outputs": self.outputs}


def _as_outputs(result, batch: int) -> dict[str, np.ndarray]:
    if not isinstance(result, dict):
        result = {"steering": result}
    return {name: np.asarray(value, np.float64).reshape(batch) for name, value in result.items()}


def compare(reference: Callable[[np.ndarray], np.ndarray | dict], candidate: Callable[[np.ndarray], np.ndarray | dict],
            data: ParityFrames, tolerance: float | None, batch_size: int = 16) -> ParityResult:
    """Run both predictors on ``data.frames`` and measure how far ``candidate`` is from ``reference``.

    Each returns steering ``(B,)`` or a dict ``{output name: (B,)}`` (``Predictor.predict_outputs``); every
    output of the reference is compared, and one the candidate lacks fails the check.
    """
    ref: dict[str, list] = {}
    out: dict[str, list] = {}
    for start in range(0, len(data.frames), batch_size):
        batch = data.frames[start : start + batch_size]
        for name, value in _as_outputs(reference(batch), len(batch)).items():
            ref.setdefault(name, []).append(value)
        for name, value in _as_outputs(candidate(batch), len(batch)).items():
            out.setdefault(name, []).append(value)
    missing = sorted(set(ref) - set(out))
    if missing:
        raise ValueError(f"the artifact lacks the model's outputs {missing} (it has {sorted(out)})")
    per_output, diffs, finite = {}, [], True
    for name in ref:
        ref_all, out_all = np.concatenate(ref[name]), np.concatenate(out[name])
        diff = np.abs(ref_all - out_all)
        finite = finite and bool(np.all(np.isfinite(out_all)))
        per_output[name] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
        diffs.append(diff)
    diff = np.concatenate(diffs)
    keras_rmse = artifact_rmse = None
    steering = "steering" if "steering" in ref else next(iter(ref))
    if data.steering is not None:
        labels = np.asarray(data.steering, np.float64)
        keras_rmse = float(np.sqrt(np.mean((np.concatenate(ref[steering]) - labels) ** 2)))
        artifact_rmse = float(np.sqrt(np.mean((np.concatenate(out[steering]) - labels) ** 2)))
    passed = finite and (tolerance is None or float(diff.max()) <= tolerance)
    return ParityResult(float(diff.max()), float(diff.mean()), int(len(data.frames)), data.source, tolerance,
                        passed, keras_rmse, artifact_rmse, per_output)
