"""A picture grid of augmented samples: what the model is trained on, with labels and the model crop.

Each cell shows an augmented frame (the camera it came from, its row and the
resulting steering written above it), the crop ``FramePreprocess`` applies
drawn as two yellow lines, and optionally the 66x200 preprocessed view the
network sees (converted back from YUV for display).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from data_tools.augment import Sample, Transform, default_augmentation
from data_tools.frames import read_frame
from data_tools.io import save_figure
from data_tools.log import DrivingLog
from data_tools.preprocess import RGB_TO_YUV, SCALE, SHIFT, YUV_OFFSET, check_crop, default_crop, preprocess

CROP_COLOUR = (255, 220, 0)
_SHORT = {"HorizontalFlip": "flip", "Translate": "shift", "Shadow": "shadow", "Brightness": "bright",
          "GaussianBlur": "blur", "Noise": "noise"}


@dataclass(frozen=True)
class PreviewSample:
    """One augmented sample of the preview: the frame, its label and where it came from."""

    image: np.ndarray
    steering: float
    original_steering: float
    row: int
    camera: str
    where: str
    applied: tuple[str, ...] = ()


def preview_samples(
    log: DrivingLog,
    n: int = 16,
    *,
    seed: int = 0,
    augment: Transform | Callable[[Sample, np.random.Generator], Sample] | None = None,
) -> list[PreviewSample]:
    """Draw ``n`` rows (without replacement while the log has enough) and augment them with one generator.

    Args:
        log: the driving log.
        n: number of samples. Defaults to `16`.
        seed: the seed of the row choice and of the augmentation. Defaults to `0`.
        augment: the augmentation. Defaults to `default_augmentation()`.
    """
    if n < 1:
        raise ValueError(f"Expected n >= 1. Received: n={n}")
    if len(log) == 0:
        raise ValueError("cannot preview an empty log")
    augment = default_augmentation() if augment is None else augment
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(log), size=n, replace=n > len(log))
    samples = []
    for row in map(int, rows):
        views = {
            camera: (lambda path=log.images[camera][row], where=f"{log.describe(row)} ({camera} camera)":
                     read_frame(path, where=where))
            for camera in log.cameras
            if log.images[camera][row]
        }
        sample = augment(Sample(steering=float(log.steering[row]), views=views), rng)
        where = f"{os.path.basename(str(log.source[row]))}:{int(log.row[row])}"
        samples.append(PreviewSample(sample.image, sample.steering, float(log.steering[row]), row, sample.camera,
                                     where, tuple(sample.applied)))
    return samples


def draw_crop(image: np.ndarray, crop: Sequence[int]) -> np.ndarray:
    """A copy of ``image`` with the first and last kept rows of ``crop`` drawn as lines."""
    top, bottom = check_crop(image.shape[0], crop)
    out = image.copy()
    out[top] = CROP_COLOUR
    out[image.shape[0] - bottom - 1] = CROP_COLOUR
    return out


def model_view(image: np.ndarray, crop: Sequence[int]) -> np.ndarray:
    """The preprocessed 66x200 input, mapped back from scaled YUV to displayable RGB uint8."""
    yuv = (preprocess(image, crop).astype(np.float64) - SHIFT) / SCALE - YUV_OFFSET
    rgb = yuv @ np.linalg.inv(RGB_TO_YUV).T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def save_preview(
    samples: Sequence[PreviewSample],
    out: str | os.PathLike,
    *,
    crop: Sequence[int] | None = None,
    show_model_view: bool = True,
    columns: int = 4,
) -> str:
    """Render ``samples`` as a PNG grid at ``out`` (written atomically); returns the path."""
    import matplotlib  # heavy: only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        raise ValueError("no samples to preview")
    out = os.fspath(out)
    height = samples[0].image.shape[0]
    crop = check_crop(height, default_crop(height) if crop is None else crop)
    columns = max(1, min(columns, len(samples)))
    grid_rows = -(-len(samples) // columns)
    panels = 2 if show_model_view else 1
    fig, axes = plt.subplots(
        grid_rows * panels, columns, figsize=(3.2 * columns, (2.1 + 1.0 * (panels - 1)) * grid_rows),
        gridspec_kw={"height_ratios": ([1.7, 1.0] if show_model_view else [1.0]) * grid_rows}, squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for k, sample in enumerate(samples):
        r, c = divmod(k, columns)
        ax = axes[r * panels, c]
        ax.imshow(draw_crop(sample.image, crop))
        # Adding 0.0 turns -0.0 into 0.0 so a zero label never prints as "-0.000".
        steps = ", ".join([sample.camera] + [_SHORT.get(a, a) for a in sample.applied])
        ax.set_title(
            f"steer {sample.steering + 0.0:+.3f} (log {sample.original_steering + 0.0:+.3f})\n{sample.where}\n{steps}",
            fontsize=7,
        )
        if show_model_view:
            axes[r * panels + 1, c].imshow(model_view(sample.image, crop))
            axes[r * panels + 1, c].set_title("model input 66x200", fontsize=7)
    fig.suptitle(f"augmented samples; yellow lines: model crop {crop[0]} top, {crop[1]} bottom", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_figure(fig, out, dpi=100)
    return out


def preview(
    log: DrivingLog,
    out: str | os.PathLike,
    *,
    n: int = 16,
    seed: int = 0,
    crop: Sequence[int] | None = None,
    augment: Transform | None = None,
    show_model_view: bool = True,
) -> str:
    """Augment ``n`` random rows of ``log`` and save the grid as a PNG at ``out``.

    Example:
        >>> preview(read_log(["../shared/data/udacity_sim_a"]), "grid.png", n=8, seed=1)
        'grid.png'
    """
    samples = preview_samples(log, n, seed=seed, augment=augment)
    return save_preview(samples, out, crop=crop, show_model_view=show_model_view)
