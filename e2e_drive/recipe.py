"""The training recipe (BENCHMARKS.md "Training recipe"): the rules that make a model drive, for any log.

What ``e2e_drive.train.train`` trains with beyond the options themselves: the augmentation chain with
PilotNet's viewpoint shifts in the car profile's geometry (``recipe_augmentation``), the car profile the data
calls for (``with_car``), the camera of the shifts and checks (``training_camera``), how many samples an epoch
serves (``epoch_repeat``) and Adam's learning rate schedule (``learning_rate``). Each default was measured by
replaying models on held-out laps of real logs; BENCHMARKS.md has the tables.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from data_tools.log import DrivingLog
from e2e_drive.train_config import TrainConfig

log = logging.getLogger(__name__)

# Viewpoint shifts (PilotNet's shifts and rotations, --viewpoint-shift METRES): by default up to this fraction
# of the car profile's intervention offset to either side (1.35 m for the Udacity car), up to
# VIEWPOINT_HEADING radians turned, on VIEWPOINT_PROBABILITY of the samples.
VIEWPOINT_FRACTION = 0.5
VIEWPOINT_HEADING = 0.1
VIEWPOINT_PROBABILITY = 0.5
# An epoch serves at least this many samples (a small log repeats its rows, each time augmented afresh):
# a few hundred optimizer steps per epoch, whatever the size of the log; but at most MAX_EPOCH_REPEAT passes
# over the rows (tiny logs would be learnt by heart).
MIN_EPOCH_SAMPLES = 12000
MAX_EPOCH_REPEAT = 8

__all__ = ["MAX_EPOCH_REPEAT", "MIN_EPOCH_SAMPLES", "epoch_repeat", "learning_rate", "pursuit_speed",
           "recipe_augmentation", "training_camera", "viewpoint_metres", "with_car"]


def recipe_augmentation(config: TrainConfig, data_log: DrivingLog, camera=None):
    """The training chain: ``default_augmentation`` with the recipe's geometry for the car profile
    (``config.car``: wheelbase, wheel angle, camera) at ``config.speed``, else the log's median moving speed (a
    log without speed: the profile's nominal speed).

    - Side cameras: ``config.side_correction``, or when ``None`` the pure pursuit back from the side cameras'
      offset (``side_camera_correction``).
    - ``ViewpointShift`` after the camera choice unless ``viewpoint_metres(config)`` is 0: the frame seen from
      up to that far to either side and ``VIEWPOINT_HEADING`` radians turned (``training_camera``: the
      calibration ``config.camera`` or the profile's camera; ``e2e_drive.replay``'s warp), labelled with the
      pure pursuit back (``pursuit_correction``).

    ``camera``: the run's camera when the caller has resolved it (``training_camera``), else resolved here.
    """
    from functools import partial

    from data_tools.augment import ViewpointShift, default_augmentation, pursuit_correction
    from e2e_drive.replay import CameraWarps, get_profile

    config = with_car(config, data_log)
    profile = get_profile(config.car)
    speed = pursuit_speed(profile, data_log.speed, config.speed)
    correct = partial(pursuit_correction, speed=speed, wheelbase=profile.car.wheelbase,
                      max_steer_deg=profile.car.max_steer_deg)
    rig = camera if camera is not None else training_camera(config, data_log)
    correction = config.side_correction
    if correction is None:
        correction = correct(rig.side_offset, 0.0)
        log.info("side cameras: steering correction %.3f (the %s car's pure pursuit back from %.2f m at "
                 "%.1f m/s)", correction, profile.name, rig.side_offset, speed)
    chain = default_augmentation(correction=correction)
    shift = viewpoint_metres(config)
    if shift > 0:
        warps = CameraWarps(rig, seen_rows=partial(seen_rows, crop=config.crop, margin=row_margin(chain)))
        chain.transforms.insert(1, ViewpointShift(
            warps, correct, max_lateral=shift, max_heading=VIEWPOINT_HEADING,
            camera_offsets={"left": rig.side_offset, "right": -rig.side_offset}, p=VIEWPOINT_PROBABILITY))
        log.info("viewpoint shifts: up to %.2f m and %.2f rad, labelled with the %s car's pure pursuit at %.1f m/s",
                 shift, VIEWPOINT_HEADING, profile.name, speed)
    return chain


def pursuit_speed(profile, speeds, speed: float | None = None) -> float:
    """The speed (m/s) the recipe's pure pursuit labels corrections at: ``speed`` when given, else the median of
    the log's moving ``speeds`` in the car ``profile``'s units (``speed_scale``; standing rows, at most
    ``min_speed``, do not count), else, for a log without speed, the profile's nominal speed."""
    if speed:
        return float(speed)
    scaled = np.asarray(speeds, np.float64) * profile.speed_scale
    moving = scaled[np.isfinite(scaled) & (scaled > profile.min_speed)]
    return float(np.median(moving)) if len(moving) else float(profile.car.speed)


def row_margin(chain) -> int:
    """Rows beyond the crop that the transforms of ``chain`` can bring into the model's view: a vertical
    ``Translate`` moves rows by up to ``max_y``, a ``GaussianBlur`` mixes in rows up to 3 sigma away."""
    from data_tools.augment import GaussianBlur, Translate

    margin = 0
    for transform in chain.transforms:
        if isinstance(transform, Translate):
            margin += int(np.ceil(transform.max_y))
        elif isinstance(transform, GaussianBlur):
            margin += int(np.ceil(3 * transform.sigma_range[1]))
    return margin


def seen_rows(height: int, crop: tuple[int, int] | None, margin: int) -> tuple[int, int]:
    """The rows ``[first, end)`` of a frame of ``height`` rows the model sees through ``crop`` (``None``: the
    default crop for that height), widened by ``margin``: the only rows a viewpoint shift has to warp."""
    from data_tools.preprocess import default_crop

    top, bottom = default_crop(height) if crop is None else crop
    return max(0, top - margin), min(height, height - bottom + margin)


def with_car(config: TrainConfig, data_log: DrivingLog) -> TrainConfig:
    """``config`` with its car profile resolved: ``config.car``, or when ``None`` the one the data calls for
    (``e2e_drive.replay.car_for_log``)."""
    if config.car is not None:
        return config
    from e2e_drive.replay import car_for_log

    return config.replace(car=car_for_log(data_log))


def training_camera(config: TrainConfig, data_log: DrivingLog):
    """The camera of the run's viewpoint shifts, side correction and closed-loop checks: the calibration
    ``config.camera`` (``e2e-drive calibrate``; refused, naming the file, when it is for another frame size than
    the log's) or the car profile's."""
    from e2e_drive.replay import get_profile, resolve_camera

    profile = get_profile(config.car or "udacity")  # an unresolved car (train resolves it first): the default
    if config.camera is None:
        return profile.camera
    from data_tools.frames import image_size

    width, height = image_size(data_log.images["center"][0])
    return resolve_camera(config.camera, profile, (height, width), data_log.describe(0))


def camera_crop(camera, height: int) -> tuple[int, int] | None:
    """The default crop for ``camera`` where it differs from ``data_tools.preprocess.default_crop``, else None.

    The default cuts the sky and, as a share of the height taken from Udacity's frames, the bonnet. A camera
    without a bonnet in view (``bonnet_rows`` 0: the donkey car's, as donkeycar's ``ROI_CROP_BOTTOM = 0``) sees the
    nearest lane lines there; on donkey_tub_real keeping them cut the held-out replay's interventions from 47 and
    43 to 38 and 38 on two seeds (BENCHMARKS.md, the recipe section).
    """
    from data_tools.preprocess import default_crop

    if camera is None or int(camera.bonnet_rows) > 0:
        return None
    return default_crop(height)[0], 0


def viewpoint_metres(config: TrainConfig) -> float:
    """The largest sideways viewpoint shift of the run: ``config.viewpoint_shift``, or when ``None``
    ``VIEWPOINT_FRACTION`` of the car profile's intervention offset."""
    if config.viewpoint_shift is not None:
        return float(config.viewpoint_shift)
    from e2e_drive.replay import get_profile

    return VIEWPOINT_FRACTION * get_profile(config.car or "udacity").intervention_offset


def epoch_repeat(config: TrainConfig, rows: int) -> int:
    """How many times an epoch serves each training row: enough for ``config.epoch_samples`` samples
    (``0``: once); by default (``None``) enough for ``MIN_EPOCH_SAMPLES``, at most ``MAX_EPOCH_REPEAT`` times."""
    if config.epoch_samples is None:
        return max(1, min(MAX_EPOCH_REPEAT, math.ceil(MIN_EPOCH_SAMPLES / max(rows, 1))))
    return max(1, math.ceil(config.epoch_samples / max(rows, 1)))


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """Adam's learning rate: ``config.learning_rate``, or for ``lr_schedule="cosine"`` Keras' ``CosineDecay`` from it
    to 0 over ``config.epochs`` epochs of ``steps_per_epoch`` steps (read at the optimizer's step count, so a
    resumed run goes on where it stopped; with more epochs, along the stretched curve)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.epochs * steps_per_epoch)
