"""Steering-aware augmentations in the albumentations style.

A transform is called as ``transform(sample, rng) -> sample``. A ``Sample``
holds the frame being augmented, its steering label and its throttle label,
plus the row's camera views (arrays or lazy loaders) so that ``ChooseCamera``
can pick one. Augmentations change the frame and the steering only: the
throttle of a sample passes through every transform unchanged (a mirrored,
shifted or side-camera view of the road asks for the same speed). Each
transform draws its random values in one place, ``get_params(rng, shape)``,
and ``apply`` / ``apply_to_steering`` are pure; ``Compose`` passes the same
``numpy.random.Generator`` down, so one seed fixes the whole chain.

Steering convention (as in the Udacity logs): positive steers right.
Transforms that change the geometry say how the label changes.

Example:
    >>> aug = default_augmentation()
    >>> out = aug(Sample(frame, 0.1), np.random.default_rng(0))
    >>> out.image.shape == frame.shape, -1.0 <= out.steering <= 1.0
    (True, True)
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from data_tools import image_ops


class Sample:
    """One training example on its way through the augmentations.

    Args:
        image: the RGB uint8 frame, or ``None`` to take it from ``views[camera]``.
        steering: the steering label in [-1, 1].
        views: camera name -> frame or zero-argument loader, for ``ChooseCamera``.
        throttle: the throttle label; every transform passes it through unchanged. Defaults to `0.0`.
        camera: the camera ``image`` comes from. Defaults to `"center"`.
        applied: names of the transforms applied so far (for previews and debugging).
    """

    __slots__ = ("_image", "steering", "throttle", "views", "camera", "applied")

    def __init__(
        self,
        image: np.ndarray | None = None,
        steering: float = 0.0,
        *,
        views: Mapping[str, Any] | None = None,
        camera: str = "center",
        applied: tuple[str, ...] = (),
        throttle: float = 0.0,
    ):
        if image is None and not views:
            raise ValueError("Sample needs an image or camera views")
        self._image = image
        self.steering = float(steering)
        self.throttle = float(throttle)
        self.views = dict(views or {})
        self.camera = camera
        self.applied = applied

    @property
    def image(self) -> np.ndarray:
        """The frame; loaded from ``views[camera]`` on first use."""
        if self._image is None:
            view = self.views[self.camera]
            self._image = view() if callable(view) else view
        return self._image

    def replace(
        self,
        *,
        image: np.ndarray | None = None,
        steering: float | None = None,
        camera: str | None = None,
        applied: str | None = None,
    ) -> "Sample":
        """A copy with some fields changed (a new camera drops the current image); ``applied`` is appended.

        The throttle is always carried over: no transform changes it."""
        new_camera = self.camera if camera is None else camera
        keep = self._image if new_camera == self.camera else None
        return Sample(
            keep if image is None else image,
            self.steering if steering is None else steering,
            views=self.views,
            camera=new_camera,
            applied=self.applied if applied is None else (*self.applied, applied),
            throttle=self.throttle,
        )


def _clip_steering(value: float) -> float:
    return float(min(1.0, max(-1.0, value)))


def _check_range(name: str, value: Sequence[float], low: float = -np.inf, high: float = np.inf) -> tuple[float, float]:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"Expected {name} = (min, max) with {low} <= min <= max <= {high}. Received: {name}={value}")
    return float(value[0]), float(value[1])


class Transform:
    """Base class: applied with probability ``p``; parameters from ``get_params``.

    Args:
        p: probability of applying the transform. Defaults to `0.5`.
    """

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Expected 0 <= p <= 1. Received: p={p}")
        self.p = float(p)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        """Draw this call's random parameters (the only place randomness is used)."""
        return {}

    def apply(self, image: np.ndarray, **params: Any) -> np.ndarray:
        return image

    def apply_to_steering(self, steering: float, **params: Any) -> float:
        return steering

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        # The coin is always drawn so every transform consumes the stream the same way.
        if rng.random() >= self.p:
            return sample
        params = self.get_params(rng, sample.image.shape)
        return sample.replace(
            image=self.apply(sample.image, **params),
            steering=_clip_steering(self.apply_to_steering(sample.steering, **params)),
            applied=type(self).__name__,
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order with one generator.

    Args:
        transforms: the transforms.
        p: probability of applying the whole chain. Defaults to `1.0`.
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0):
        super().__init__(p)
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    @property
    def chooses_camera(self) -> bool:
        """Whether the chain may use the left and right cameras."""
        return any(isinstance(t, ChooseCamera) or getattr(t, "chooses_camera", False) for t in self.transforms)


class ChooseCamera(Transform):
    """Pick one of the row's cameras uniformly; correct the steering for its offset.

    The left camera sees the road as if the car were left of where it is, so
    recovering means steering right: ``steering + correction``; the right
    camera gives ``steering - correction``; the centre camera leaves it.

    Args:
        correction: steering added for the left camera, subtracted for the right. Defaults to `0.2`.
        p: probability of choosing at random (otherwise the centre camera). Defaults to `1.0`.
    """

    OFFSETS = {"left": 1.0, "center": 0.0, "right": -1.0}

    def __init__(self, correction: float = 0.2, p: float = 1.0):
        super().__init__(p)
        if not 0.0 <= correction <= 1.0:
            raise ValueError(f"Expected 0 <= correction <= 1. Received: correction={correction}")
        self.correction = float(correction)

    def get_params(self, rng: np.random.Generator, cameras: Sequence[str]) -> dict[str, Any]:  # type: ignore[override]
        return {"camera": cameras[int(rng.integers(len(cameras)))]}

    def apply_to_steering(self, steering: float, camera: str = "center") -> float:
        return steering + self.OFFSETS[camera] * self.correction

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        cameras = [c for c in ("center", "left", "right") if c in sample.views]
        if not cameras:
            return sample
        camera = self.get_params(rng, cameras)["camera"]
        return sample.replace(camera=camera, steering=_clip_steering(self.apply_to_steering(sample.steering, camera)))


class HorizontalFlip(Transform):
    """Mirror the frame left-right; the steering changes sign (``-steering``).

    Args:
        p: probability. Defaults to `0.5`.
    """

    def apply(self, image: np.ndarray, **params: Any) -> np.ndarray:
        return image_ops.hflip(image)

    def apply_to_steering(self, steering: float, **params: Any) -> float:
        return -steering


class Translate(Transform):
    """Shift the frame by ``dx`` (right positive) and ``dy`` (down positive) whole pixels.

    Steering: ``steering + dx * steering_per_px``. Content shifted right by
    ``dx > 0`` shows the road further right, i.e. the car left of where it was,
    so the label steers more to the right. ``dy`` (a slope) leaves it.

    Args:
        max_x: largest horizontal shift in pixels. Defaults to `50`.
        max_y: largest vertical shift in pixels. Defaults to `10`.
        steering_per_px: steering change per pixel of ``dx``. Defaults to `0.002`.
        p: probability. Defaults to `0.5`.
    """

    def __init__(self, max_x: float = 50.0, max_y: float = 10.0, steering_per_px: float = 0.002, p: float = 0.5):
        super().__init__(p)
        if max_x < 0 or max_y < 0:
            raise ValueError(f"Expected max_x >= 0 and max_y >= 0. Received: max_x={max_x}, max_y={max_y}")
        self.max_x, self.max_y, self.steering_per_px = float(max_x), float(max_y), float(steering_per_px)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        dx, dy = np.rint(rng.uniform(-1.0, 1.0, size=2) * (self.max_x, self.max_y))
        return {"dx": int(dx), "dy": int(dy)}

    def apply(self, image: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
        return image_ops.translate(image, dx, dy)

    def apply_to_steering(self, steering: float, dx: int = 0, dy: int = 0) -> float:
        return steering + dx * self.steering_per_px


class Shadow(Transform):
    """Darken the part of the frame on one side of a random line from top to bottom edge.

    Args:
        darkness_range: brightness factor inside the shadow. Defaults to `(0.4, 0.8)`.
        p: probability. Defaults to `0.5`.
    """

    def __init__(self, darkness_range: Sequence[float] = (0.4, 0.8), p: float = 0.5):
        super().__init__(p)
        self.darkness_range = _check_range("darkness_range", darkness_range, 0.0, 1.0)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        height, width = shape[:2]
        top_x, bottom_x = rng.uniform(0, width, size=2)
        edge = 0 if rng.random() < 0.5 else width  # shadow on the left or the right of the line
        polygon = np.array([[top_x, 0], [bottom_x, height], [edge, height], [edge, 0]])
        return {"polygon": np.rint(polygon).astype(np.int32), "factor": float(rng.uniform(*self.darkness_range))}

    def apply(self, image: np.ndarray, polygon: np.ndarray | None = None, factor: float = 1.0) -> np.ndarray:
        return image_ops.darken_polygon(image, polygon, factor)


class Brightness(Transform):
    """Scale the brightness of the whole frame.

    Args:
        factor_range: multiplier range. Defaults to `(0.5, 1.3)`.
        p: probability. Defaults to `0.5`.
    """

    def __init__(self, factor_range: Sequence[float] = (0.5, 1.3), p: float = 0.5):
        super().__init__(p)
        self.factor_range = _check_range("factor_range", factor_range, 0.0)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"factor": float(rng.uniform(*self.factor_range))}

    def apply(self, image: np.ndarray, factor: float = 1.0) -> np.ndarray:
        return image_ops.scale_brightness(image, factor)


class GaussianBlur(Transform):
    """Blur with a random standard deviation (motion, focus).

    Args:
        sigma_range: standard deviation in pixels. Defaults to `(0.3, 1.5)`.
        p: probability. Defaults to `0.2`.
    """

    def __init__(self, sigma_range: Sequence[float] = (0.3, 1.5), p: float = 0.2):
        super().__init__(p)
        self.sigma_range = _check_range("sigma_range", sigma_range, 0.0)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"sigma": float(rng.uniform(*self.sigma_range))}

    def apply(self, image: np.ndarray, sigma: float = 0.0) -> np.ndarray:
        return image_ops.gaussian_blur(image, sigma)


class Noise(Transform):
    """Add Gaussian pixel noise (sensor noise), drawn by inverse CDF from random bytes.

    Args:
        std_range: noise standard deviation in grey levels. Defaults to `(2.0, 8.0)`.
        p: probability. Defaults to `0.2`.
    """

    def __init__(self, std_range: Sequence[float] = (2.0, 8.0), p: float = 0.2):
        super().__init__(p)
        self.std_range = _check_range("std_range", std_range, 0.0)

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        std = rng.uniform(*self.std_range)
        random_bytes = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
        return {"noise": image_ops.gaussian_noise_from_bytes(random_bytes, std)}

    def apply(self, image: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        return image_ops.add_noise(image, noise)


def pursuit_lookahead(speed: float) -> float:
    """Metres ahead a pure-pursuit driver aims at, at ``speed`` m/s: ``4 + 0.5 * speed`` (the speed-scaled rule
    of the embedded simulator's expert; about 0.8 s of travel at highway speed)."""
    return 4.0 + 0.5 * float(speed)


def pursuit_correction(lateral: float, heading: float, speed: float, wheelbase: float, max_steer_deg: float) -> float:
    """The steering (fraction of full lock, positive right) that brings a car ``lateral`` metres left of its path
    and turned ``heading`` radians left of it back onto the path: pure pursuit toward the path point
    ``pursuit_lookahead(speed)`` metres ahead, wheel angle ``atan(2 * wheelbase * sin(alpha) / distance)``.
    Negative offsets (right of the path, turned right) give left (negative) steering."""
    lookahead = pursuit_lookahead(speed)
    # The aim point (lookahead, 0) on the path, seen from the displaced car (x forward, y left).
    ahead = lookahead * math.cos(heading) - lateral * math.sin(heading)
    left = -lookahead * math.sin(heading) - lateral * math.cos(heading)
    alpha = math.atan2(left, ahead)
    wheel = math.atan2(2.0 * wheelbase * math.sin(alpha), math.hypot(lookahead, lateral))
    return float(np.clip(-wheel / math.radians(max_steer_deg), -1.0, 1.0))


def side_camera_correction(side_offset: float, speed: float, wheelbase: float, max_steer_deg: float) -> float:
    """The steering that brings a car ``side_offset`` metres off its path back onto it (``pursuit_correction``
    with no heading error). This is what a side camera's frame should be labelled with on top of the centre
    label, for the car and camera that made the log (instead of a fixed 0.2)."""
    return pursuit_correction(side_offset, 0.0, speed, wheelbase, max_steer_deg)


class ViewpointShift(Transform):
    """The camera moved sideways and turned, as PilotNet's training shifts and rotations (Bojarski et al. 2016).

    The frame is warped to the view of a car ``lateral`` metres left of where it was and turned ``heading``
    radians left (both uniform in ``[-max, max]``); the label gains the steering that brings such a car back:
    ``correction(base + lateral, heading) - correction(base, 0)``, where ``base`` is the sample camera's own
    offset (``camera_offsets``), so a side camera keeps the correction ``ChooseCamera`` gave it. Unlike
    ``Translate``, the road ahead moves as ground seen from a moved camera does (near rows more than far rows)
    and heading errors are taught too.

    Args:
        warp: ``warp(image, lateral, heading, camera) -> image``, the camera geometry's view synthesis
            (``e2e_drive.replay.CameraWarps``).
        correction: ``correction(lateral, heading) -> steering`` for the car (``pursuit_correction`` bound to
            its speed, wheelbase and wheel angle).
        max_lateral: largest sideways move, metres. Defaults to `1.0`.
        max_heading: largest turn, radians. Defaults to `0.1`.
        camera_offsets: each camera's metres left of the car's centre line (``{"left": b, "right": -b}``).
        p: probability. Defaults to `0.5`.
    """

    def __init__(self, warp, correction, max_lateral: float = 1.0, max_heading: float = 0.1,
                 camera_offsets: Mapping[str, float] | None = None, p: float = 0.5):
        super().__init__(p)
        if not (max_lateral >= 0 and max_heading >= 0):
            raise ValueError(f"Expected max_lateral >= 0 and max_heading >= 0. Received: "
                             f"max_lateral={max_lateral}, max_heading={max_heading}")
        self.warp, self.correction = warp, correction
        self.max_lateral, self.max_heading = float(max_lateral), float(max_heading)
        self.camera_offsets = dict(camera_offsets or {})

    def get_params(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        lateral, heading = rng.uniform(-1.0, 1.0, size=2) * (self.max_lateral, self.max_heading)
        return {"lateral": float(lateral), "heading": float(heading)}

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        params = self.get_params(rng, sample.image.shape)
        base = self.camera_offsets.get(sample.camera, 0.0)
        change = self.correction(base + params["lateral"], params["heading"]) - self.correction(base, 0.0)
        return sample.replace(image=self.warp(sample.image, params["lateral"], params["heading"], sample.camera),
                              steering=_clip_steering(sample.steering + change), applied=type(self).__name__)


def default_augmentation(correction: float = 0.2) -> Compose:
    """The augmentation chain used by training (and by ``e2e-drive data preview``).

    ``correction``: the side cameras' steering correction; training derives it from the car and camera
    (``side_camera_correction``); the default is the classic hand-set 0.2.
    """
    return Compose(
        [
            ChooseCamera(correction=correction),
            HorizontalFlip(p=0.5),
            Translate(max_x=50, max_y=10, steering_per_px=0.002, p=0.5),
            Shadow(p=0.3),
            Brightness(p=0.5),
            GaussianBlur(p=0.1),
            Noise(p=0.1),
        ]
    )


__all__ = [
    "Sample", "Transform", "Compose", "ChooseCamera", "HorizontalFlip", "Translate",
    "Shadow", "Brightness", "GaussianBlur", "Noise", "default_augmentation", "pursuit_lookahead",
    "side_camera_correction", "pursuit_correction", "ViewpointShift",
]
