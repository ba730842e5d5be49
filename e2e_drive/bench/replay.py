"""``e2e-drive bench replay``: closed-loop replay steps per second without a model, on one core.

A log of ``steps + 1`` rows is written to a temporary folder (simulator frames
as JPEG, a weaving steering trace at 8 m/s, 10 frames per second) and replayed
with a driver that takes the frames and returns zero steering, so every step
pays what a model-driven replay pays except the model: JPEG decoding, the
viewpoint warp, the car model, the projection on the recorded path, the
interventions (the zero driver leaves the weaving path now and then) and the
bookkeeping. OpenCV runs on one thread. Baselines measured in the same run on
the same frames: JPEG decoding plus one full-frame ``cv2.warpPerspective``
per step (the floor of the per-step work), and the simulator's own render
step (``Camera.render``). The log's own steering (``recorded``, no frames) is
timed too: the cost of reconstructing and following the path alone.

What a model adds to each step is timed beside it: one batch-1 call of an untrained PilotNet on the same
frames through ``steering_function`` (a traced graph, what the closed-loop check, ``evaluate`` and ``bench
recipe`` drive with) against the eager ``model(frames)`` call, alternately, in the same run.
"""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data_tools.frames import read_frame
from data_tools.io import write_bytes
from e2e_drive.replay import replay
from e2e_drive.replay.profiles import MPH
from e2e_drive.sim import Camera, CameraRig, make_track

TARGET_STEPS_PER_SECOND = 1000.0


def _write_log(folder: Path, rows: int, unique_frames: int = 50, track_seed: int = 0) -> list[Path]:
    """A Udacity-format log of ``rows`` rows cycling through ``unique_frames`` rendered frames."""
    track = make_track(track_seed)
    camera = Camera(track)
    encoded = []
    for k in range(unique_frames):
        i = (k * 7) % len(track.centre)
        frame = camera.render(track.centre[i, 0], track.centre[i, 1], track.heading[i])
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        encoded.append(data.tobytes())
    images = folder / "IMG"
    images.mkdir(parents=True)
    base = dt.datetime(2020, 1, 1)
    lines, paths = [], []
    for i in range(rows):
        stamp = (base + dt.timedelta(milliseconds=100 * i)).strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        path = images / f"center_{stamp}.jpg"
        write_bytes(path, encoded[i % unique_frames])
        paths.append(path)
        steering = 0.3 * np.sin(i / 15.0)
        lines.append([str(path), "", "", f"{steering:.4f}", "0.3", "0", f"{8.0 / MPH:.4f}"])
    with open(folder / "driving_log.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    return paths


def bench_replay(steps: int = 2000, model_calls: int = 100) -> dict[str, Any]:
    """Time ``steps`` replay steps with a frame-taking zero driver, against decode + warp alone, and
    ``model_calls`` batch-1 PilotNet calls as a graph against eager calls (0: not timed)."""
    if steps < 10:
        raise ValueError(f"Expected steps >= 10. Received: steps={steps}")
    rig = CameraRig()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="e2e-bench-replay-") as tmp:
            paths = _write_log(Path(tmp), steps + 1)

            def zero(frames: np.ndarray) -> np.ndarray:
                return np.zeros(len(frames))

            replay(tmp, zero, camera=rig, profile="sim")  # warm-up (imports, caches)
            started = time.perf_counter()
            report = replay(tmp, zero, camera=rig, profile="sim")
            replay_seconds = time.perf_counter() - started
            started = time.perf_counter()
            recorded = replay(tmp, "recorded", profile="sim")
            recorded_seconds = time.perf_counter() - started
            # Baseline: decode and one full-frame warp per step, nothing else.
            shear = np.array([[1.0, 0.2, -10.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            rows, cols = rig.size
            started = time.perf_counter()
            for path in paths[:steps]:
                cv2.warpPerspective(read_frame(path), shear, (cols, rows),
                                    flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
            floor_seconds = time.perf_counter() - started
            model_call = _time_model_calls([read_frame(path) for path in paths[:50]], model_calls)
        camera = Camera(make_track(0))
        track = camera.track
        render_frames = min(steps, 500)
        started = time.perf_counter()
        for i in range(render_frames):
            j = i % len(track.centre)
            camera.render(track.centre[j, 0], track.centre[j, 1], track.heading[j])
        render_seconds = time.perf_counter() - started
    finally:
        cv2.setNumThreads(threads)
    driven = report.total.frames
    steps_per_second = driven / replay_seconds
    floor = steps / floor_seconds
    return {
        "steps": driven,
        "replay_steps_per_second": round(steps_per_second, 1),
        "replay_ms_per_step": round(1000.0 * replay_seconds / driven, 3),
        "baseline": "JPEG decode + one cv2.warpPerspective per step (same frames, same run)",
        "baseline_steps_per_second": round(floor, 1),
        "ratio_to_baseline": round(steps_per_second / floor, 3),
        "recorded_steps_per_second": round(recorded.total.frames / recorded_seconds, 1),
        "sim_render_fps": round(render_frames / render_seconds, 1),
        "target_steps_per_second": TARGET_STEPS_PER_SECOND,
        "meets_target": bool(steps_per_second >= TARGET_STEPS_PER_SECOND),
        "opencv_threads": 1,
        "frame_size": [rows, cols],
        "model_call": model_call,
    }


def _time_model_calls(frames: list[np.ndarray], calls: int) -> dict[str, Any] | None:
    """Median ms of a batch-1 PilotNet call through ``steering_function`` and eagerly, alternating on ``frames``."""
    if calls <= 0:
        return None
    from e2e_drive.models import pilotnet, steering_function

    model = pilotnet(frames[0].shape, seed=0)
    graph = steering_function(model)

    def eager(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model(batch, training=False)).reshape(len(batch))

    times: dict[str, list[float]] = {"graph": [], "eager": []}
    for i in range(calls + 3):  # the first three: tracing and warm-up
        batch = frames[i % len(frames)][None]
        for name, call in (("graph", graph), ("eager", eager)):
            started = time.perf_counter()
            call(batch)
            if i >= 3:
                times[name].append(time.perf_counter() - started)
    graph_ms, eager_ms = (1000.0 * float(np.median(times[name])) for name in ("graph", "eager"))
    return {"calls": calls, "graph_ms": round(graph_ms, 3), "eager_ms": round(eager_ms, 3),
            "eager_vs_graph": round(eager_ms / graph_ms, 2)}


def format_replay_report(report: dict[str, Any]) -> str:
    """The report as a few lines for people."""
    verdict = "meets" if report["meets_target"] else "misses"
    return (
        f"replay: {report['replay_steps_per_second']:.0f} steps/s ({report['replay_ms_per_step']:.2f} ms/step, "
        f"{report['steps']} steps, {report['frame_size'][1]}x{report['frame_size'][0]} frames, one OpenCV "
        f"thread, no model)\n"
        f"baseline: {report['baseline_steps_per_second']:.0f} steps/s of {report['baseline']}; replay runs at "
        f"{report['ratio_to_baseline']:.2f}x of it\n"
        f"recorded steering (no frames): {report['recorded_steps_per_second']:.0f} steps/s; simulator render: "
        f"{report['sim_render_fps']:.0f} frames/s\n"
        f"target {report['target_steps_per_second']:.0f} steps/s: {verdict}"
        + _format_model_call(report.get("model_call"))
    )


def _format_model_call(call: dict[str, Any] | None) -> str:
    if not call:
        return ""
    return (f"\nPilotNet batch-1 call ({call['calls']} calls): {call['graph_ms']:.2f} ms as a graph "
            f"(steering_function) vs {call['eager_ms']:.2f} ms eager = {call['eager_vs_graph']:.1f}x")
