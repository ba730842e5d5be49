"""What replay must know about the car that made a log: kinematics, speed units, road width, camera.

A log holds frames, steering, time stamps and (Udacity) speed, but not the
geometry that turns them into a path and a warp. ``CarProfile`` carries it, with
one preset per kind of log:

``udacity``  The Udacity self-driving-car simulator (Unity). Steering in [-1, 1]
    maps to +-25 degrees of wheel angle (the simulator's ``CarController``
    maximum steer angle, the value its ``drive.py`` examples assume), applied
    without a rate limit; speed in the CSV is in mph (top speed 30.19 mph in
    ``udacity_sim_a/b``). Wheelbase 3.8 m is *effective*, measured: the
    far-field image rotation between consecutive frames (phase correlation of
    the rows above the horizon, ``f * d_heading``) in ``udacity_sim_a`` and
    ``_b`` is 0.66 of what a 2.5 m sedan wheelbase predicts (tyre slip and
    steering smoothing in Unity); 3.8 m makes them agree (slopes 1.12 and 1.03).
    Road: about 9 m between the lake track's edge lines, measured on a top-down
    warp of ``udacity_sim_b`` frames with its calibrated camera; NVIDIA's 1 m
    off-centre on a 3.6 m lane scaled to it gives a 2.7 m intervention
    threshold. Camera: what ``e2e-drive calibrate`` fits on ``udacity_sim_a``
    and ``_b`` (focal 112 / 117 px, pitch 10.1 / 9.5 degrees, side cameras
    1.02 / 1.05 m off centre) for a camera 1.6 m above the road (assumed: the
    metric scale is not observable from images); bonnet in the bottom ~23 rows.
``donkey``  A donkeycar (1/16 to 1/10 hobby car). Wheelbase 0.21 m (typical of
    the Exceed Magnet / 1/10 chassis the donkeycar docs list, 0.17-0.26 m),
    +-25 degrees of wheel angle (a common servo throw); tubs carry no speed, so
    pass one (``speed=`` / ``--speed``, metres per second; 1-3 m/s is typical).
    Road: ~1 m lanes, 0.3 m intervention threshold. Camera: 0.2 m above the
    ground, pitched 20 degrees down, 120 degree wide-angle lens (160 px wide:
    focal 46 px) -- rough figures; a single camera cannot be calibrated here,
    so pass a measured calibration (``camera=``/``--camera``) when you have one.
``sim``  The embedded simulator (``e2e_drive.sim``): exactly ``CarParams()`` and
    ``CameraRig()``, speed in mph as ``record`` writes it, threshold 0.3 x the
    mean road width of generated tracks (about 2.2 m).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from e2e_drive.sim.car import CarParams
from e2e_drive.sim.render import CameraRig
from e2e_drive.sim.track import INTERVENTION_FRACTION

MPH = 0.44704  # metres per second in one mile per hour
SPEED_UNITS = {"mph": MPH, "m/s": 1.0, "km/h": 1.0 / 3.6}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CarProfile:
    """The car and camera behind a log.

    Args:
        name: preset name (for messages).
        car: wheelbase, maximum wheel angle and steering rate limit (``speed`` is unused: the log's speed drives).
        speed_unit: unit of the log's speed column (``"mph"``, ``"m/s"``, ``"km/h"``).
        road_width: metres; the intervention threshold defaults to ``INTERVENTION_FRACTION`` of it.
        camera: camera geometry for the preset's nominal frame size (scaled to the log's frames by
            ``camera_for_size``).
        min_speed: metres per second below which the car counts as standing (frames skipped, not timed).
    """

    name: str
    car: CarParams
    speed_unit: str
    road_width: float
    camera: CameraRig = field(default_factory=CameraRig)
    min_speed: float = 0.5

    @property
    def intervention_offset(self) -> float:
        """Metres off the recorded path at which a safety driver takes over (NVIDIA's 1 m, scaled to the road)."""
        return INTERVENTION_FRACTION * self.road_width

    @property
    def speed_scale(self) -> float:
        """Metres per second per unit of the log's speed column."""
        return SPEED_UNITS[self.speed_unit]

    def with_car(self, **changes) -> "CarProfile":
        """The profile with some ``CarParams`` fields changed (``wheelbase=``, ``max_steer_deg=``...)."""
        return replace(self, car=replace(self.car, **changes))


PROFILES: dict[str, CarProfile] = {
    "udacity": CarProfile("udacity", CarParams(wheelbase=3.8, max_steer_deg=25.0, steer_rate=math.inf), "mph", 9.0,
                          CameraRig(height=1.6, pitch_deg=9.8, focal=114.0, side_offset=1.03)),
    "donkey": CarProfile(
        "donkey", CarParams(wheelbase=0.21, max_steer_deg=25.0, steer_rate=math.inf, speed=2.0), "m/s", 1.0,
        CameraRig(height=0.2, pitch_deg=20.0, focal=46.0, forward=0.15, side_offset=0.0, bonnet_rows=0,
                  size=(120, 160)),
        min_speed=0.05,
    ),
    "sim": CarProfile("sim", CarParams(), "mph", 7.25),
}


def car_for_log(driving_log) -> str:
    """The profile that fits a ``DrivingLog``'s recordings: ``sim`` when every one was written by
    ``e2e-drive sim record`` (its ``recording.json``), ``donkey`` when every one is a donkeycar tub, else
    ``udacity`` (with a warning when the recordings are of different kinds)."""
    from data_tools.log_formats import format_of_source
    from e2e_drive.sim.record import read_recording  # the simulator's file format; profiles only need the car

    kinds = set()
    for recording in driving_log.recordings:
        source = str(driving_log.source[int(np.flatnonzero(driving_log.recording == recording)[0])])
        if read_recording(os.path.dirname(source)) is not None:
            kinds.add("sim")
        else:
            log_format = format_of_source(source)
            kinds.add(log_format.car if log_format else "udacity")
    if len(kinds) == 1:
        return kinds.pop()
    if kinds:
        log.warning("the log mixes %s recordings: using the udacity car profile (choose one with --car)",
                    " and ".join(sorted(kinds)))
    return "udacity"


def get_profile(name: str | CarProfile) -> CarProfile:
    """A preset by name (``udacity``, ``donkey``, ``sim``), or the profile itself."""
    if isinstance(name, CarProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"--car: unknown car profile {name!r}; expected one of {sorted(PROFILES)}") from None


def camera_for_size(rig: CameraRig, size: tuple[int, int]) -> CameraRig:
    """``rig`` for frames of ``size`` (rows, cols): focal scaled with the width, bonnet rows with the height."""
    rows, cols = int(size[0]), int(size[1])
    if (rows, cols) == tuple(rig.size):
        return rig
    return replace(rig, focal=rig.focal * cols / rig.size[1],
                   bonnet_rows=int(round(rig.bonnet_rows * rows / rig.size[0])), size=(rows, cols))
