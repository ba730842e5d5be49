"""VisualBackProp: shape, range, and that the mask follows what the first conv layer sees."""

from __future__ import annotations

import numpy as np
import pytest

FRAME = (40, 80, 3)
CROP = (4, 4)


def _patch_detector():
    """A ReLU PilotNet whose first conv fires only on bright (Y > 0) pixels; deeper layers pass everything on."""
    from e2e_drive.models import pilotnet

    model = pilotnet(FRAME, activation="relu", crop=CROP, seed=0)
    for i in range(1, 6):
        conv = model.get_layer(f"conv{i}")
        kernel, bias = conv.get_weights()
        if i == 1:
            kernel = np.zeros_like(kernel)
            kernel[:, :, 0, :] = 1.0 / 25  # mean of Y (scaled to [-1, 1]) over the 5x5 window
            bias = np.full_like(bias, -0.2)
        else:
            kernel = np.full_like(kernel, 1.0 / kernel[..., 0].size)
            bias = np.full_like(bias, 0.05)  # positive everywhere: the mask is shaped by conv1 alone
        conv.set_weights([kernel, bias])
    return model


def _frame_with_patch(top: int, left: int, size: int = 10) -> np.ndarray:
    frame = np.full(FRAME, 10, np.uint8)
    frame[top : top + size, left : left + size] = 250
    return frame


def test_mask_shape_and_range():
    from e2e_drive.models import pilotnet
    from e2e_drive.saliency import visual_backprop

    frames = np.random.default_rng(0).integers(0, 256, (3, *FRAME)).astype(np.uint8)
    for activation in ("elu", "maxout"):
        masks = visual_backprop(pilotnet(FRAME, activation=activation, crop=CROP, seed=0), frames)
        assert masks.shape == (3, 40, 80) and masks.dtype == np.float32
        assert masks.min() >= 0.0 and masks.max() <= 1.0 and masks.max() > 0.5
        assert np.all(masks[:, : CROP[0]] == 0) and np.all(masks[:, 40 - CROP[1] :] == 0)  # outside the crop
    inner = visual_backprop(pilotnet(FRAME, crop=CROP, seed=0), frames, on_frame=False)
    assert inner.shape == (3, 66, 200)


def test_mask_concentrates_on_what_the_first_conv_sees_and_follows_it():
    from e2e_drive.saliency import visual_backprop

    model = _patch_detector()
    frames = np.stack([_frame_with_patch(12, 10), _frame_with_patch(20, 60)])
    masks = visual_backprop(model, frames)
    for mask, (top, left) in zip(masks, [(12, 10), (20, 60)]):
        region = np.zeros(mask.shape, bool)
        region[max(0, top - 3) : top + 13, max(0, left - 3) : left + 13] = True  # patch + resize blur margin
        assert mask[region].sum() / mask.sum() > 0.95
        rows, cols = np.nonzero(mask > 0.5)
        assert abs(rows.mean() - (top + 5)) < 3 and abs(cols.mean() - (left + 5)) < 3
    assert not np.allclose(masks[0], masks[1])


def test_wrong_frame_shape_is_a_clear_error():
    from e2e_drive.saliency import visual_backprop

    with pytest.raises(ValueError, match=r"takes frames of shape \(40, 80, 3\)"):
        visual_backprop(_patch_detector(), np.zeros((1, 50, 80, 3), np.uint8))


def test_cli_saliency_writes_png(tmp_path):
    from data_tools.frames import write_frame
    from e2e_drive.cli import main

    _patch_detector().save(tmp_path / "m.keras")
    write_frame(tmp_path / "f.png", _frame_with_patch(12, 30))
    assert main(["saliency", str(tmp_path / "m.keras"), str(tmp_path / "f.png"), "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["saliency", str(tmp_path / "m.keras"), str(tmp_path / "missing.png"), "--out",
                 str(tmp_path / "t.png")]) == 2
    assert not (tmp_path / "t.png").exists()
