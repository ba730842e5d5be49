"""Closed-loop evaluation on recorded logs, as NVIDIA evaluated PilotNet (Bojarski et al. 2016).

``reconstruct`` integrates a log's time stamps, speed and steering into its path
through the simulator's kinematic bicycle model; ``replay`` lets a driver (a
predictor, the log's own steering, or a constant) steer a virtual car that
sees the recorded frames warped to its viewpoint (``ViewWarp``), counts
interventions beyond ``max_offset`` and scores the simulator's ``autonomy``;
``calibrate`` fits the camera from a log's side cameras; ``plot_replay`` draws where a driver strayed. ``CarProfile``
presets (``udacity``, ``donkey``, ``sim``) hold the car and camera numbers.

Example:
    >>> from e2e_drive.replay import replay, calibrate
    >>> calibrate("data/run1").side_match
    {'left': 0.80, 'right': 0.79}
    >>> replay(["data/run1"], predictor, camera="camera.json").total.autonomy
"""

from __future__ import annotations

from e2e_drive.replay.camera import Calibration, calibrate, load_camera, rig_to_json
from e2e_drive.replay.drive import (Driver, Predictor, ReplayReport, ReplayResult, parse_driver, replay,
                                    resolve_camera)
from e2e_drive.replay.plot import plot_replay
from e2e_drive.replay.profiles import PROFILES, CarProfile, camera_for_size, car_for_log, get_profile
from e2e_drive.replay.trajectory import Trajectory, reconstruct
from e2e_drive.replay.warp import CameraWarps, ViewWarp

__all__ = [
    "PROFILES", "Calibration", "CarProfile", "Driver", "Predictor", "ReplayReport", "ReplayResult", "Trajectory",
    "CameraWarps", "ViewWarp", "calibrate", "camera_for_size", "car_for_log", "get_profile", "load_camera",
    "parse_driver", "plot_replay", "reconstruct", "replay", "resolve_camera", "rig_to_json",
]
