"""Load test of the drive server: real socket.io clients on 127.0.0.1, round-trip latency and throughput."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from deploy.predictor import load_predictor
from deploy.server import DriveServer, encode_image
from e2e_drive.bench.latency import bench_frames, time_predictor

log = logging.getLogger(__name__)


def load_test(url: str, images: list[str], clients: int = 4, frames: int = 20, speed: float = 10.0,
              timeout: float = 30.0, transport: str = "websocket") -> dict[str, Any]:
    """Drive ``clients`` real socket.io clients in parallel, ``frames`` telemetry messages each; latency figures.

    Every answer must be a ``steer`` event; returns round-trip p50/p99 (ms), throughput and the count of answers.
    A failing client is reported in ``failures`` and does not hide the others' figures.
    """
    import socketio  # the client side: only a load test needs it

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one_client(k: int) -> None:
        try:
            with socketio.SimpleClient() as client:
                client.connect(url, transports=[transport], wait_timeout=timeout)
                for i in range(frames):
                    message = {"steering_angle": "0", "throttle": "0", "speed": str(speed),
                               "image": images[(k + i) % len(images)]}
                    start = time.perf_counter()
                    client.emit("telemetry", message)
                    event = client.receive(timeout=timeout)
                    elapsed = time.perf_counter() - start
                    if event[0] != "steer":
                        raise RuntimeError(f"client {k}, frame {i}: expected 'steer', got {event!r:.200}")
                    with lock:
                        latencies.append(elapsed)
        except Exception as error:  # collected and reported: one failing client must not hide the others' figures
            log.warning("load test client %d failed: %s: %s", k, type(error).__name__, error)
            with lock:
                failures.append(f"client {k}: {type(error).__name__}: {error}")

    start = time.perf_counter()
    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1e3
    return {"clients": clients, "frames_per_client": frames, "transport": transport, "answered": len(latencies),
            "failures": failures,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "frames_per_second": len(latencies) / wall if wall > 0 else None, "wall_seconds": wall}


def bench_serve(model: str, clients: int = 4, frames: int = 50, transport: str = "websocket") -> dict[str, Any]:
    """Serve ``model`` on a free local port and load-test it; the model's own batch-1 p50 measured alongside."""
    predictor = load_predictor(model)
    images = bench_frames(predictor.input_shape, count=16)
    model_only = time_predictor(predictor, images, runs=50)
    with DriveServer(predictor, port=0) as server:
        result = load_test(server.url, [encode_image(f) for f in images], clients=clients, frames=frames,
                           transport=transport)
    result["model_p50_ms"] = model_only["p50_ms"]
    result["overhead_x"] = result["p50_ms"] / model_only["p50_ms"] if result["p50_ms"] else None
    return result


def format_serve_report(report: dict[str, Any]) -> str:
    """``bench_serve``'s result as the few lines the CLI prints."""
    lines = [f"drive server load ({report['transport']}): {report['clients']} clients x "
             f"{report['frames_per_client']} frames, {report['answered']} answered"]
    if report.get("p50_ms") is not None:
        lines.append(f"  round trip p50 {report['p50_ms']:.2f} ms, p99 {report['p99_ms']:.2f} ms, "
                     f"{report['frames_per_second']:.0f} frames/s")
    if report.get("model_p50_ms") is not None:
        overhead = f", server overhead x{report['overhead_x']:.1f}" if report.get("overhead_x") else ""
        lines.append(f"  model alone p50 {report['model_p50_ms']:.2f} ms{overhead}")
    lines += [f"  failed: {failure}" for failure in report.get("failures", [])]
    return "\n".join(lines)


__all__ = ["bench_serve", "format_serve_report", "load_test"]
