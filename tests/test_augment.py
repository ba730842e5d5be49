"""Augmentations: each against an independent NumPy oracle, steering signs, p, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools import image_ops
from data_tools.augment import (
    Brightness, ChooseCamera, Compose, GaussianBlur, HorizontalFlip, Noise, Sample, Shadow, Translate,
    default_augmentation,
)

FRAME = np.random.default_rng(0).integers(0, 256, (40, 64, 3), dtype=np.uint8)


def always(transform_cls, **kwargs):
    return transform_cls(p=1.0, **kwargs)


def test_horizontal_flip_mirrors_and_negates_steering():
    out = always(HorizontalFlip)(Sample(FRAME, 0.3), np.random.default_rng(1))
    np.testing.assert_array_equal(out.image, FRAME[:, ::-1])
    assert out.steering == pytest.approx(-0.3) and out.applied == ("HorizontalFlip",)


def test_translate_moves_content_and_steers_toward_the_shift():
    # A road marking at column 30: shifted 10 px right means the car is left of where it was -> steer right (+).
    frame = np.zeros((20, 64, 3), np.uint8)
    frame[:, 30] = 255
    t = Translate(max_x=20, max_y=0, steering_per_px=0.002, p=1.0)
    moved = t.apply(frame, dx=10.0, dy=0.0)
    assert np.flatnonzero(moved[10, :, 0] == 255).tolist() == [40]
    assert t.apply_to_steering(0.1, dx=10.0) == pytest.approx(0.12)
    moved_left = t.apply(frame, dx=-5.0, dy=3.0)
    assert np.flatnonzero(moved_left[10, :, 0] == 255).tolist() == [25]
    assert t.apply_to_steering(0.1, dx=-5.0) == pytest.approx(0.09)
    # Through __call__: the drawn dx moves the line and the label by the same amount.
    out = t(Sample(frame, 0.0), np.random.default_rng(4))
    column = np.flatnonzero(out.image[10, :, 0] > 127)
    assert column.size and out.steering == pytest.approx((column.mean() - 30) * 0.002, abs=0.002)


def test_translate_fills_uncovered_border_with_edge_pixels():
    frame = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (8, 1, 3))
    moved = image_ops.translate(frame, 5, 0)
    np.testing.assert_array_equal(moved[:, :5], 0)
    np.testing.assert_array_equal(moved[:, 5:], frame[:, :-5])


def test_choose_camera_offsets_and_only_available_cameras():
    views = {"center": FRAME, "left": FRAME[::-1], "right": FRAME[:, ::-1]}
    t = ChooseCamera(correction=0.25)
    seen = {}
    rng = np.random.default_rng(0)
    for _ in range(60):
        out = t(Sample(steering=0.1, views=views), rng)
        seen[out.camera] = out.steering
        np.testing.assert_array_equal(out.image, views[out.camera])
    assert seen == pytest.approx({"center": 0.1, "left": 0.35, "right": -0.15})
    only_center = t(Sample(steering=0.1, views={"center": FRAME}), rng)
    assert only_center.camera == "center" and only_center.steering == pytest.approx(0.1)
    assert t(Sample(steering=0.9, views={"left": FRAME}), rng).steering == 1.0  # clipped


def test_lazy_views_are_loaded_only_when_chosen():
    loaded = []

    def loader(name):
        def load():
            loaded.append(name)
            return FRAME
        return load

    sample = Sample(steering=0.0, views={c: loader(c) for c in ("center", "left", "right")})
    out = ChooseCamera()(sample, np.random.default_rng(2))
    out.image
    assert loaded == [out.camera]


def test_shadow_darkens_one_side_of_the_line():
    t = always(Shadow, darkness_range=(0.5, 0.5))
    params = t.get_params(np.random.default_rng(3), FRAME.shape)
    out = t.apply(FRAME, **params)
    (x_top, _), (x_bottom, height), (edge, _), _ = params["polygon"]
    ys, xs = np.mgrid[: FRAME.shape[0], : FRAME.shape[1]]
    line_x = x_top + (x_bottom - x_top) * ys / height
    inside = (xs < line_x - 1) if edge == 0 else (xs > line_x + 1)
    outside = (xs > line_x + 1) if edge == 0 else (xs < line_x - 1)
    assert_scaled(out[inside], FRAME[inside], 0.5)
    np.testing.assert_array_equal(out[outside], FRAME[outside])
    assert inside.sum() > 0


def assert_scaled(out: np.ndarray, image: np.ndarray, factor: float) -> None:
    """``out == clip(round(image * factor))``, except that an exact half may round either way."""
    exact = image.astype(np.float64) * factor
    expected = np.clip(np.round(exact), 0, 255)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-4
    np.testing.assert_array_equal(out[~tie], expected[~tie])
    assert np.abs(out[tie].astype(int) - expected[tie]).max(initial=0) <= 1


@pytest.mark.parametrize("factor", [0.0, 0.37, 0.5, 1.0, 1.3, 2.5])
def test_brightness_matches_numpy(factor):
    frame = np.concatenate([FRAME, np.arange(256, dtype=np.uint8).repeat(3).reshape(4, 64, 3)])  # every grey level
    out = Brightness(p=1.0).apply(frame, factor=factor)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert_scaled(out, frame, factor)


def numpy_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable float64 Gaussian, radius ceil(3 sigma), mirrored border (OpenCV's BORDER_REFLECT_101)."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(w * padded[radius + o : radius + o + image.shape[0]] for o, w in zip(offsets, kernel))
    return sum(w * rows[:, radius + o : radius + o + image.shape[1]] for o, w in zip(offsets, kernel))


def test_gaussian_blur_matches_numpy():
    out = GaussianBlur(p=1.0).apply(FRAME, sigma=1.2)
    expected = numpy_gaussian_blur(FRAME, 1.2)
    error = np.abs(out.astype(float) - expected)
    # OpenCV blurs uint8 in fixed point: within 1.5 grey levels of the float64 result, 0.5 on average.
    assert error.max() <= 1.5 and error.mean() < 0.5


def test_noise_has_the_drawn_standard_deviation():
    grey = np.full((100, 100, 3), 128, np.uint8)
    t = Noise(std_range=(6.0, 6.0), p=1.0)
    out = t(Sample(grey, 0.2), np.random.default_rng(5))
    diff = out.image.astype(float) - 128
    assert abs(diff.mean()) < 0.2 and diff.std() == pytest.approx(6.0, rel=0.05)
    assert out.steering == 0.2


def test_same_seed_same_output_other_seed_differs():
    views = {"center": FRAME, "left": FRAME[::-1], "right": FRAME[:, ::-1]}
    aug = default_augmentation()

    def run(seed):
        rng = np.random.default_rng(seed)
        return [aug(Sample(steering=0.05 * i, views=views), rng) for i in range(10)]

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.steering == y.steering
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c))
    for s in a:
        assert s.image.dtype == np.uint8 and s.image.shape == FRAME.shape and -1 <= s.steering <= 1


def test_probability_p_is_respected():
    rng = np.random.default_rng(0)
    flips = sum(HorizontalFlip(p=0.3)(Sample(FRAME, 0.5), rng).steering < 0 for _ in range(2000))
    assert 500 < flips < 700
    assert HorizontalFlip(p=0.0)(Sample(FRAME, 0.5), rng).steering == 0.5
    assert Compose([HorizontalFlip(p=1.0)], p=0.0)(Sample(FRAME, 0.5), rng).steering == 0.5


def test_steering_is_clipped():
    out = Translate(max_x=50, steering_per_px=0.1, p=1.0)(Sample(FRAME, 0.99), np.random.default_rng(0))
    assert -1.0 <= out.steering <= 1.0 and abs(out.steering) == 1.0


@pytest.mark.parametrize(
    "make",
    [
        lambda: HorizontalFlip(p=1.5),
        lambda: Noise(p=-0.1),
        lambda: Brightness(factor_range=(1.2, 0.5)),
        lambda: Shadow(darkness_range=(0.2, 1.5)),
        lambda: GaussianBlur(sigma_range=(-1, 1)),
        lambda: Translate(max_x=-1),
        lambda: ChooseCamera(correction=2.0),
    ],
)
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError, match="Expected"):
        make()


def test_image_ops_reject_non_uint8_frames():
    with pytest.raises(ValueError, match="uint8"):
        image_ops.hflip(FRAME.astype(np.float32))
    with pytest.raises(ValueError, match="noise of shape"):
        image_ops.add_noise(FRAME, np.zeros((2, 2, 3)))


@pytest.mark.parametrize("transform", [
    ChooseCamera(correction=0.3), HorizontalFlip(p=1.0), Translate(p=1.0), Shadow(p=1.0), Brightness(p=1.0),
    GaussianBlur(p=1.0), Noise(p=1.0), default_augmentation(),
], ids=lambda t: type(t).__name__)
def test_every_transform_passes_the_throttle_through_unchanged(transform):
    views = {"center": FRAME, "left": FRAME[::-1], "right": FRAME[:, ::-1]}
    for seed in range(8):
        out = transform(Sample(steering=0.2, views=views, throttle=0.3125), np.random.default_rng(seed))
        assert out.throttle == 0.3125
    assert Sample(FRAME, 0.1).throttle == 0.0  # a sample without one: 0
