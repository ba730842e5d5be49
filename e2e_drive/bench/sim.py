"""``e2e-drive bench sim``: camera rendering speed, homography vs the naive per-pixel ray cast.

Both render the same frames of the same track on one core (OpenCV threads set
to 1); the figure is frames per second and the ratio against the ray cast
measured in the same run. The full recording step (3 cameras + JPEG encoding)
is timed too, since that is what ``sim record`` pays per time step.
"""

from __future__ import annotations

import time
from typing import Any

import cv2

from e2e_drive.sim import Camera, make_track
from e2e_drive.sim.render import CAMERAS


def bench_sim(frames: int = 2000, baseline_frames: int = 20, track_seed: int = 0) -> dict[str, Any]:
    """Time ``frames`` homography renders and ``baseline_frames`` ray-cast renders along a track."""
    if frames < 1 or baseline_frames < 1:
        raise ValueError(f"Expected frames >= 1. Received: frames={frames}, baseline_frames={baseline_frames}")
    started = time.perf_counter()
    track = make_track(track_seed)
    track_seconds = time.perf_counter() - started
    camera = Camera(track)
    heading = track.heading
    poses = [(track.centre[i % len(track.centre), 0], track.centre[i % len(track.centre), 1],
              heading[i % len(track.centre)]) for i in range(frames)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        camera.render(*poses[0])  # warm-up
        started = time.perf_counter()
        for pose in poses:
            camera.render(*pose)
        render_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for pose in poses[:baseline_frames]:
            camera.render_raycast(*pose)
        raycast_seconds = time.perf_counter() - started
        steps = max(1, frames // 10)
        started = time.perf_counter()
        for pose in poses[:steps]:
            for name in CAMERAS:
                cv2.imencode(".jpg", camera.render(*pose, name), [cv2.IMWRITE_JPEG_QUALITY, 90])
        record_seconds = time.perf_counter() - started
    finally:
        cv2.setNumThreads(threads)
    render_fps = frames / render_seconds
    raycast_fps = baseline_frames / raycast_seconds
    return {
        "track_seed": track_seed,
        "track_build_seconds": round(track_seconds, 3),
        "texture_shape": list(track.texture.shape),
        "frames": frames,
        "render_fps": round(render_fps, 1),
        "raycast_frames": baseline_frames,
        "raycast_fps": round(raycast_fps, 2),
        "speedup_vs_raycast": round(render_fps / raycast_fps, 1),
        "record_steps_per_second": round(steps / record_seconds, 1),
        "threads": 1,
    }


def format_sim_report(report: dict[str, Any]) -> str:
    return "\n".join([
        f"track {report['track_seed']}: built in {report['track_build_seconds']:.2f} s, "
        f"texture {report['texture_shape'][1]}x{report['texture_shape'][0]} px",
        f"render (homography, cv2.warpPerspective): {report['render_fps']:10.1f} frames/s  (1 core)",
        f"baseline (per-pixel ray cast, NumPy):    {report['raycast_fps']:10.2f} frames/s",
        f"speed-up vs baseline:                    {report['speedup_vs_raycast']:10.1f}x",
        f"record step (3 cameras + JPEG):          {report['record_steps_per_second']:10.1f} steps/s",
    ])
