"""The drive server: the Udacity simulator's socket.io protocol in front of any artifact.

The simulator sends ``telemetry`` events (``steering_angle``, ``throttle``, ``speed`` as strings and the centre
camera as a base64 JPEG ``image``); the server answers ``steer`` (``steering_angle``, ``throttle`` as strings),
``manual`` ({}) when the telemetry is empty (the simulator is in manual mode), and ``error`` ({"message"}) for a
malformed message, without dropping the connection. Throttle comes from a PI speed controller per client.

Transport: python-socketio's ``Server`` in threading mode, served by the standard library's threaded WSGI server,
with HTTP long-polling and WebSocket (simple-websocket, a dependency of python-engineio, takes over the socket on
upgrade); no web framework or async library is needed. Engine.IO protocol 4: Socket.IO 3+ clients, and the
Udacity Unity simulator, whose Socket.IO 2 habits ``deploy.simulator_protocol`` accommodates.
"""

from __future__ import annotations

import base64
import binascii
import collections
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import numpy as np


class SpeedController:
    """A PI controller from speed error to throttle, with the integral clamped (anti-windup).

    Args:
        set_speed: the target speed (the simulator's units, mph).
        kp: proportional gain. ki: integral gain (per telemetry message).
        limits: throttle range.

    Example:
        >>> SpeedController(20.0).update(0.0)  # standing still: full proportional push
        1.0
    """

    def __init__(self, set_speed: float, kp: float = 0.1, ki: float = 0.002, limits: tuple[float, float] = (-1.0, 1.0)):
        self.set_speed, self.kp, self.ki, self.limits = float(set_speed), float(kp), float(ki), limits
        self.integral = 0.0

    def update(self, speed: float) -> float:
        error = self.set_speed - float(speed)
        self.integral = float(np.clip(self.integral + error, -1.0 / max(self.ki, 1e-9), 1.0 / max(self.ki, 1e-9)))
        return float(np.clip(self.kp * error + self.ki * self.integral, *self.limits))


class TelemetryError(ValueError):
    """A telemetry message the server cannot drive from."""


def decode_image(text: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A base64 JPEG/PNG string to an RGB uint8 frame; TelemetryError naming what is wrong."""
    import cv2

    if not isinstance(text, (str, bytes)):
        raise TelemetryError(f"'image' must be a base64 string, got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise TelemetryError(f"'image' is not valid base64 ({error})") from None
    # Only the formats a camera sends: other decoders (GIF, TIFF, ...) are attack surface and log noise.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data[:2] == b"\xff\xd8" or \
        data[:8] == b"\x89PNG\r\n\x1a\n" else None
    if bgr is None:
        raise TelemetryError(f"'image' is not a decodable JPEG/PNG ({len(data)} bytes)")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if shape is not None and rgb.shape != tuple(shape):
        raise TelemetryError(f"'image' is {rgb.shape[1]}x{rgb.shape[0]}, the model takes {shape[1]}x{shape[0]}")
    return rgb


def encode_image(rgb: np.ndarray, quality: int = 90) -> str:
    """An RGB frame as the base64 JPEG string the simulator sends."""
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode the frame as JPEG")
    return base64.b64encode(data.tobytes()).decode("ascii")


def _number(data: dict, key: str) -> float:
    if key not in data:
        raise TelemetryError(f"telemetry lacks {key!r}")
    try:
        value = float(data[key])
    except (TypeError, ValueError):
        raise TelemetryError(f"{key!r} must be a number, got {data[key]!r:.40}") from None
    if not np.isfinite(value):
        raise TelemetryError(f"{key!r} must be finite, got {value}")
    return value


@dataclass
class ServerStats:
    frames: int = 0
    errors: int = 0
    manual: int = 0
    # The latest model call times (bounded: a server runs for hours).
    predict_seconds: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000), repr=False)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


_UPGRADED = "e2e_drive.websocket_closed"


class _ServerHandler(ServerHandler):
    def finish_response(self):
        if self.environ.get(_UPGRADED):  # simple-websocket owned the socket: no HTTP response may follow
            self.status = "101 Switching Protocols"  # what the client got; close() logs it
            self.close()
            return
        super().finish_response()


class _QuietHandler(WSGIRequestHandler):
    """The standard library's request handler, able to hand its socket to simple-websocket for an upgrade."""

    def get_environ(self):
        environ = super().get_environ()
        environ["gunicorn.socket"] = self.connection  # where simple-websocket looks for the raw socket
        return environ

    def handle(self):  # WSGIRequestHandler.handle, with the handler class that knows about upgrades
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536 or not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())

    def log_message(self, format, *args):  # one line per long-poll request would flood the console
        pass


EIO3_HINT = ("an Engine.IO 3 client (EIO=3: a Socket.IO 1.x/2.x client such as python-socketio 4) connected; "
             "this server speaks EIO=4 (python-engineio 4.x), which the Udacity Unity simulator also uses. "
             "Use a Socket.IO 3+ client.")


def _websocket_aware(app):
    warned = []

    def wrapped(environ, start_response):
        if "EIO=3" in environ.get("QUERY_STRING", ""):
            if not warned:  # once: the simulator retries every second
                warned.append(True)
                print(f"drive server: {EIO3_HINT}", file=sys.stderr, flush=True)
            start_response("400 BAD REQUEST", [("Content-Type", "text/plain")])
            return [EIO3_HINT.encode()]
        try:
            return app(environ, start_response)
        except StopIteration:  # python-engineio's signal (in gunicorn mode) that a websocket session ended
            environ[_UPGRADED] = True
            return []

    return wrapped


class DriveServer:
    """Serve a predictor to the simulator (or any socket.io client).

    Args:
        predictor: a ``deploy.load_predictor`` result (callable uint8 (B, H, W, 3) -> (B,), ``.input_shape``).
        speed: target speed for the PI controller.
        host, port: where to listen (port 0 picks a free one; see ``.port``).
        ping_interval: seconds between engine.io pings. A pending long-poll only returns on a packet, so a
            client's disconnect waits up to this long (python-engineio's default of 25 s makes tests crawl).

    Example:
        >>> server = DriveServer(load_predictor("pilotnet.onnx"), speed=20, port=4567)
        >>> server.serve_forever()
    """

    def __init__(self, predictor: Callable[[np.ndarray], np.ndarray], speed: float = 20.0, host: str = "127.0.0.1",
                 port: int = 4567, ping_interval: float = 2.0):
        import socketio

        from deploy.simulator_protocol import SimulatorCompatibleServer

        self.predictor, self.speed = predictor, float(speed)
        self.stats = ServerStats()
        self._lock = threading.Lock()  # TFLite interpreters and PI state are not thread-safe
        self._controllers: dict[str, SpeedController] = {}
        self.sio = SimulatorCompatibleServer(async_mode="threading", cors_allowed_origins="*",
                                   ping_interval=ping_interval)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("telemetry", self._telemetry)
        self.httpd = make_server(host, int(port), _websocket_aware(socketio.WSGIApp(self.sio)), server_class=_ThreadingWSGIServer,
                                 handler_class=_QuietHandler)
        self.host, self.port = host, int(self.httpd.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _connect(self, sid, environ, auth=None):
        with self._lock:
            self._controllers[sid] = SpeedController(self.speed)

    def _disconnect(self, sid, *args):
        with self._lock:
            self._controllers.pop(sid, None)

    def _telemetry(self, sid, data):
        if not data:  # the simulator sends empty telemetry in manual mode
            self.stats.manual += 1
            self.sio.emit("manual", data={}, to=sid)
            return
        try:
            if not isinstance(data, dict):
                raise TelemetryError(f"telemetry must be an object, got {type(data).__name__}")
            speed = _number(data, "speed")
            if "image" not in data:
                raise TelemetryError("telemetry lacks 'image'")
            frame = decode_image(data["image"], getattr(self.predictor, "input_shape", None))
            with self._lock:
                start = time.perf_counter()
                steering = float(np.asarray(self.predictor(frame[None])).reshape(-1)[0])
                self.stats.predict_seconds.append(time.perf_counter() - start)
                controller = self._controllers.setdefault(sid, SpeedController(self.speed))
                throttle = controller.update(speed)
                self.stats.frames += 1
        except TelemetryError as error:
            self.stats.errors += 1
            self.sio.emit("error", data={"message": str(error)}, to=sid)
            return
        self.sio.emit("steer", data={"steering_angle": repr(steering), "throttle": repr(throttle)}, to=sid)

    def start(self) -> "DriveServer":
        """Serve in a background thread (tests, notebooks); ``stop()`` ends it."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="drive-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        print(f"drive server on {self.url} (socket.io, EIO=4, websocket + polling); Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "DriveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def load_test(url: str, images: list[str], clients: int = 4, frames: int = 20, speed: float = 10.0,
              timeout: float = 30.0, transport: str = "websocket") -> dict[str, Any]:
    """Drive ``clients`` real socket.io clients in parallel, ``frames`` telemetry messages each; latency figures.

    Every answer must be a ``steer`` event; returns round-trip p50/p99 (ms), throughput and the count of answers.
    """
    import socketio

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
    return {"clients": clients, "frames_per_client": frames, "transport": transport, "answered": len(latencies), "failures": failures,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "frames_per_second": len(latencies) / wall if wall > 0 else None, "wall_seconds": wall}


def bench_serve(model: str, clients: int = 4, frames: int = 50, transport: str = "websocket") -> dict[str, Any]:
    """Serve ``model`` on a free local port and load-test it; the model's own batch-1 p50 measured alongside."""
    from deploy.latency import bench_frames, time_predictor
    from deploy.predictor import load_predictor

    predictor = load_predictor(model)
    images = bench_frames(predictor.input_shape, count=16)
    model_only = time_predictor(predictor, images, runs=50)
    with DriveServer(predictor, port=0) as server:
        result = load_test(server.url, [encode_image(f) for f in images], clients=clients, frames=frames,
                           transport=transport)
    result["model_p50_ms"] = model_only["p50_ms"]
    result["overhead_x"] = result["p50_ms"] / model_only["p50_ms"] if result["p50_ms"] else None
    return result
