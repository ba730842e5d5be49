"""The one preprocessing definition: OpenCV twin == Keras layer, YUV == OpenCV's, crop errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_tools.preprocess import (
    MODEL_INPUT_SHAPE, RGB_TO_YUV, YUV_OFFSET, check_crop, default_crop, preprocess,
)


@pytest.fixture(scope="module")
def layer_cls():
    from data_tools.frame_preprocess import FramePreprocess

    return FramePreprocess


def test_yuv_matrix_matches_opencv():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    ours = rgb.astype(np.float64) @ RGB_TO_YUV.T + YUV_OFFSET
    theirs = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.float64)
    # OpenCV rounds (and saturates) to uint8.
    assert np.abs(np.clip(ours, 0, 255) - theirs).max() <= 1.0


def test_default_crop_for_known_cameras():
    assert default_crop(160) == (60, 25)
    assert default_crop(120) == (45, 19)


@pytest.mark.parametrize("crop", [(60, 25), (0, 0), (10, 70)])
def test_layer_equals_opencv_twin_on_random_frames(layer_cls, crop):
    frames = np.random.default_rng(1).integers(0, 256, (3, 160, 320, 3), dtype=np.uint8)
    layer = layer_cls(crop=crop)
    ours = np.asarray(layer(frames))
    twin = preprocess(frames, crop)
    assert ours.shape == (3, *MODEL_INPUT_SHAPE) == twin.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, twin, atol=2e-3)


def test_layer_equals_opencv_twin_on_real_frames(layer_cls, udacity_sim_a, donkey_tub_a):
    from data_tools.frames import read_frame

    udacity = sorted((udacity_sim_a / "IMG").glob("*.jpg"))[:4]
    tub = sorted((donkey_tub_a / "images").glob("*.jpg"))[:2]
    for files in (udacity, tub):
        frames = np.stack([read_frame(p) for p in files])
        crop = default_crop(frames.shape[1])
        np.testing.assert_allclose(np.asarray(layer_cls(crop=crop)(frames)), preprocess(frames), atol=2e-3)


def test_output_range_and_known_colours():
    white = np.full((160, 320, 3), 255, np.uint8)
    black = np.zeros((160, 320, 3), np.uint8)
    np.testing.assert_allclose(preprocess(white)[0, 0], [1.0, 128 / 127.5 - 1, 128 / 127.5 - 1], atol=1e-5)
    np.testing.assert_allclose(preprocess(black)[0, 0], [-1.0, 128 / 127.5 - 1, 128 / 127.5 - 1], atol=1e-5)


def test_layer_config_round_trip(layer_cls):
    layer = layer_cls(crop=(50, 20))
    clone = layer_cls.from_config(layer.get_config())
    assert clone.crop == (50, 20) and clone.size == (66, 200)
    assert layer.compute_output_shape((None, 160, 320, 3)) == (None, 66, 200, 3)


def test_crop_errors():
    with pytest.raises(ValueError, match="leaves 0 rows of a 160-row frame.*--crop 60,25"):
        check_crop(160, (100, 60))
    with pytest.raises(ValueError, match=">= 0"):
        check_crop(160, (-1, 10))
    with pytest.raises(ValueError, match="top, bottom"):
        check_crop(160, (1, 2, 3))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        preprocess(np.zeros((160, 320), np.uint8))


def test_layer_rejects_bad_crop_and_channels(layer_cls):
    import keras

    with pytest.raises(ValueError, match="leaves"):
        keras.Sequential([keras.Input((160, 320, 3)), layer_cls(crop=(100, 70))])
    with pytest.raises(ValueError, match="3 channels"):
        keras.Sequential([keras.Input((160, 320, 1)), layer_cls()])
    with pytest.raises(ValueError, match=">= 0"):
        layer_cls(crop=(-5, 0))
