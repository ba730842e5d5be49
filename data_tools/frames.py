"""Reading camera frames from disk: RGB uint8, never a silent ``None``, never a runaway allocation.

``read_frame`` reads an image's size from its header (``image_size``) before decoding it and refuses
frames larger than ``MAX_FRAME_SIDE`` on either side: a 20000x20000 PNG of a few hundred bytes would
otherwise make the decoder allocate 1.2 GB (and a frame cache hundreds of times that).
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

from data_tools.errors import DataError

MAX_FRAME_SIDE = 4096
"""The largest width or height ``read_frame`` decodes (4096: 4K camera frames pass; driving frames are ~320x160)."""

FORMATS = "JPEG, PNG, BMP or WebP"

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT (C4), JPG (C8), DAC (CC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI: markers without a length field


def _jpeg_size(data: bytes) -> tuple[int, int]:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in _JPEG_SOF:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            if height == 0 or width == 0:
                raise ValueError(f"JPEG frame header gives a {width}x{height} image")
            return width, height
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            raise ValueError("JPEG without a frame header before its image data")
        if length < 2:
            raise ValueError(f"JPEG segment length {length} at byte {position}")
        position += 2 + length
    raise ValueError("JPEG ends before its frame header (truncated?)")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("WebP without a VP8, VP8L or VP8X header")


def _header_bytes(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, (str, os.PathLike)):
        with open(path_or_bytes, "rb") as handle:
            head = handle.read(1 << 16)
            if head[:2] == b"\xff\xd8" and len(head) == 1 << 16:
                head += handle.read()  # a JPEG's frame header may follow large EXIF/ICC segments
            return head
    if isinstance(path_or_bytes, np.ndarray):
        return path_or_bytes.tobytes()
    return bytes(path_or_bytes)


def image_size(path_or_bytes: str | os.PathLike | bytes | bytearray | memoryview | np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of a JPEG, PNG, BMP or WebP image, from its header alone (nothing is decoded).

    Args:
        path_or_bytes: an image file, or its encoded bytes (``bytes``, ``memoryview``, a uint8 array).

    Raises:
        ValueError: not one of these formats, or a header that is cut short or makes no sense.
        OSError: the file cannot be read.
    """
    data = _header_bytes(path_or_bytes)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("PNG without its IHDR header")
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        (header_size,) = struct.unpack("<I", data[14:18])
        if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            return struct.unpack("<HH", data[18:22])
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)  # a negative height means rows stored top-down
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    raise ValueError(f"not a {FORMATS} image")


def read_frame(path: str | os.PathLike, *, where: str | None = None) -> np.ndarray:
    """Decode one image file to an RGB uint8 array ``(H, W, 3)``.

    The size is read from the file's header first: frames wider or taller than ``MAX_FRAME_SIDE`` are
    refused before anything is allocated for them.

    Args:
        path: the image file (JPEG, PNG, BMP, WebP; any path, non-ASCII included).
        where: what refers to this file (``"log.csv, row 12"``), for the error message.

    Raises:
        DataError: naming the file (and ``where``) when it is missing, a directory, empty, larger than
            ``MAX_FRAME_SIDE``, or not a decodable image.
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
    try:
        width, height = image_size(data)
    except ValueError as error:
        raise DataError(f"{prefix}not a decodable image (corrupt or wrong format: {error}): {path}") from None
    if max(width, height) > MAX_FRAME_SIDE:
        raise DataError(f"{prefix}image is {width}x{height}, larger than the {MAX_FRAME_SIDE}x{MAX_FRAME_SIDE} "
                        f"a camera frame may be (data_tools.frames.MAX_FRAME_SIDE): {path}")
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
