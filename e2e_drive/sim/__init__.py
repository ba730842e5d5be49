"""The embedded procedural driving simulator.

Tracks from a seed (``make_track``), first-person cameras like the Udacity
simulator's (``Camera``), a kinematic car (``CarState``, ``step``), a noisy
pure-pursuit expert with recoveries (``Expert``), Udacity-format recording
or donkeycar tub v2 recording (``record``) and batched closed-loop driving by a network (``drive``) scored
with NVIDIA's autonomy metric (``autonomy``).

Example:
    >>> from e2e_drive.sim import make_track, record, drive
    >>> record(make_track(3), "runs/rec3", laps=1)
    >>> results = drive(deploy.load_predictor("pilotnet.onnx"), tracks=[101, 102], laps=1)
"""

from __future__ import annotations

from e2e_drive.sim.autonomy import autonomy
from e2e_drive.sim.car import CarParams, CarState, step
from e2e_drive.sim.drive import DriveResult, drive
from e2e_drive.sim.expert import Expert, pure_pursuit
from e2e_drive.sim.record import RecordResult, SimRecording, read_recording, record
from e2e_drive.sim.render import Camera, CameraRig, sample_frames
from e2e_drive.sim.track import Theme, Track, make_track

__all__ = [
    "Camera", "CameraRig", "CarParams", "CarState", "DriveResult", "Expert", "RecordResult", "Theme", "Track",
    "autonomy", "drive", "make_track", "pure_pursuit", "record", "sample_frames", "step",
]
