"""The one definition of frame preprocessing: crop -> resize to 66x200 -> RGB to YUV -> scaling.

Two implementations of the same constants:

* ``FramePreprocess`` (``data_tools.frame_preprocess``), a Keras layer
  (``keras.ops`` only) that PilotNet puts inside the model, so an exported artifact takes the raw camera frame and no
  Python preprocessing can drift between training and serving;
* ``preprocess``, its OpenCV/NumPy twin for code that works on frames outside a
  model (previews, checks, the tests that hold the two equal).

Colour conversion follows OpenCV's ``COLOR_RGB2YUV`` (BT.601, analogue YUV):
``Y = 0.299 R + 0.587 G + 0.114 B``, ``U = 0.492 (B - Y) + 128``,
``V = 0.877 (R - Y) + 128``; the result is scaled from [0, 255] to about [-1, 1].
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

MODEL_HEIGHT = 66
MODEL_WIDTH = 200
MODEL_INPUT_SHAPE = (MODEL_HEIGHT, MODEL_WIDTH, 3)

_Y = np.array([0.299, 0.587, 0.114])
# Rows: Y, U, V as linear functions of (R, G, B); offsets centre U and V at 128.
RGB_TO_YUV = np.stack([_Y, 0.492 * (np.array([0.0, 0.0, 1.0]) - _Y), 0.877 * (np.array([1.0, 0.0, 0.0]) - _Y)])
YUV_OFFSET = np.array([0.0, 128.0, 128.0])
SCALE = 1.0 / 127.5
SHIFT = -1.0

# Fractions of the frame height cut from the top (sky) and bottom (bonnet).
# (60, 25) on the Udacity simulator's 160-row frames.
DEFAULT_CROP_FRACTIONS = (0.375, 0.15625)


def default_crop(height: int) -> tuple[int, int]:
    """Rows to cut (top, bottom) for a frame of ``height`` rows: sky and bonnet.

    Udacity's 320x160 frames give (60, 25); donkeycar's 160x120 give (45, 19).
    """
    top = int(round(height * DEFAULT_CROP_FRACTIONS[0]))
    bottom = int(round(height * DEFAULT_CROP_FRACTIONS[1]))
    return top, bottom


def parse_crop(crop: Sequence[int] | str | None) -> tuple[int, int] | None:
    """``"TOP,BOTTOM"`` (the ``--crop`` flag), a pair of ints, or ``None`` (the default crop) as a tuple or None.

    Raises:
        ValueError: when the text is not two integers separated by a comma.
    """
    if crop is None or (isinstance(crop, (tuple, list)) and not crop):
        return None
    if isinstance(crop, str):
        try:
            top, bottom = (int(value) for value in crop.split(","))
        except ValueError:
            raise ValueError(f"--crop: expected TOP,BOTTOM (two integers, e.g. 60,25). Received: {crop!r}") from None
        return top, bottom
    if len(crop) != 2:
        raise ValueError(f"Expected crop=(top, bottom). Received: crop={tuple(crop)}")
    return int(crop[0]), int(crop[1])


def check_crop(height: int, crop: Sequence[int]) -> tuple[int, int]:
    """Validate ``crop`` for frames of ``height`` rows; return it as a tuple.

    Raises:
        ValueError: when the crop is negative or leaves fewer than 2 rows.
    """
    if len(crop) != 2:
        raise ValueError(f"Expected crop=(top, bottom). Received: crop={tuple(crop)}")
    top, bottom = int(crop[0]), int(crop[1])
    if top < 0 or bottom < 0:
        raise ValueError(f"Expected crop rows >= 0. Received: crop=({top}, {bottom})")
    if height - top - bottom < 2:
        raise ValueError(
            f"--crop {top},{bottom}: leaves {max(height - top - bottom, 0)} rows of a {height}-row frame; "
            f"it must leave at least 2{_crop_hint(height, (top, bottom))}"
        )
    return top, bottom


def _crop_hint(height: int, failing: tuple[int, int]) -> str:
    suggestion = default_crop(height)
    if suggestion == failing or height - sum(suggestion) < 2:
        return ""  # never suggest the crop that just failed
    return f" (try --crop {suggestion[0]},{suggestion[1]})"


def preprocess(
    image: np.ndarray,
    crop: Sequence[int] | None = None,
    size: tuple[int, int] = (MODEL_HEIGHT, MODEL_WIDTH),
) -> np.ndarray:
    """Preprocess RGB frames with OpenCV: the twin of ``FramePreprocess``.

    Args:
        image: uint8 or float RGB frame ``(H, W, 3)`` or batch ``(N, H, W, 3)``.
        crop: rows cut from the top and bottom. Defaults to ``default_crop(H)``.
        size: output ``(height, width)``. Defaults to `(66, 200)`.

    Returns:
        float32 array ``(..., 66, 200, 3)``: YUV scaled to about [-1, 1].
    """
    image = np.asarray(image)
    if image.ndim == 4:
        return np.stack([preprocess(frame, crop, size) for frame in image])
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"Expected an RGB frame of shape (H, W, 3). Received: shape={image.shape}")
    top, bottom = check_crop(image.shape[0], default_crop(image.shape[0]) if crop is None else crop)
    cropped = image[top : image.shape[0] - bottom].astype(np.float32)
    resized = cv2.resize(cropped, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    yuv = resized @ RGB_TO_YUV.T.astype(np.float32) + YUV_OFFSET.astype(np.float32)
    return (yuv * SCALE + SHIFT).astype(np.float32)
