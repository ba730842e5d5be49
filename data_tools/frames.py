"""Reading camera frames from disk: RGB uint8, never a silent ``None``."""

from __future__ import annotations

import os

import cv2
import numpy as np

from data_tools.errors import DataError


def read_frame(path: str | os.PathLike, *, where: str | None = None) -> np.ndarray:
    """Decode one image file to an RGB uint8 array ``(H, W, 3)``.

    Args:
        path: the image file (JPEG, PNG; any path, non-ASCII included).
        where: what refers to this file (``"log.csv, row 12"``), for the error message.

    Raises:
        DataError: naming the file (and ``where``) when it is missing, a
            directory, empty, or not a decodable image.
    """
    path = os.fspath(path)
    prefix = f"{where}: " if where else ""
    if os.path.isdir(path):
        raise DataError(f"{prefix}image path is a directory: {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot open non-ASCII paths on every OS
    except FileNotFoundError:
        raise DataError(f"{prefix}image not found: {path}") from None
    except OSError as error:
        raise DataError(f"{prefix}cannot read image {path}: {error.strerror or error}") from None
    if data.size == 0:
        raise DataError(f"{prefix}image file is empty (0 bytes): {path}")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{prefix}not a decodable image (corrupt or wrong format): {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_frame(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Encode an RGB uint8 frame as JPEG/PNG (by suffix), non-ASCII paths included."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1] or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"cannot encode image as {suffix}: {path}")
    encoded.tofile(path)
