"""The drive server: the Udacity simulator's socket.io protocol in front of any artifact.

The simulator sends ``telemetry`` events (``steering_angle``, ``throttle``, ``speed`` as strings and the centre
camera as a base64 JPEG ``image``); the server answers ``steer`` (``steering_angle``, ``throttle`` as strings),
``manual`` ({}) when the telemetry is empty (the simulator is in manual mode), and ``error`` ({"message"}) for a
malformed or oversized message, without dropping the connection. Throttle comes from a PI speed controller per
client.

Untrusted input costs bounded work: a message over ``max_message_bytes`` is dropped unread past a bound (see
``deploy.engineio3``), and an image's size is read from its PNG/JPEG header and checked against the model's
input before anything is decoded.

Transport: python-socketio's ``Server`` in threading mode, served by the standard library's threaded WSGI server,
with HTTP long-polling and WebSocket (simple-websocket, a dependency of python-engineio, takes over the socket on
upgrade); no web framework or async library is needed. Both protocol generations on one port: Engine.IO 4
(Socket.IO 3+ clients, and the Udacity Unity simulator, whose Socket.IO 2 habits ``deploy.simulator_protocol``
accommodates) and Engine.IO 3 (Socket.IO 1.x/2.x clients such as python-socketio 4, ``deploy.engineio3``).
"""

from __future__ import annotations

import base64
import binascii
import collections
import errno
import logging
import math
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

import numpy as np

from data_tools.frames import image_size

log = logging.getLogger(__name__)

#: Frames larger than this many pixels are refused when the model's input size is unknown.
MAX_PIXELS = 4096 * 4096


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


class ServerAddressError(OSError):
    """The drive server cannot listen where it was asked to; the message names host:port and why."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_image(text: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A base64 JPEG/PNG string to an RGB uint8 frame; TelemetryError naming what is wrong.

    The work is bounded before anything is decoded: the base64 length against what a frame of ``shape`` (or
    ``MAX_PIXELS``) can need, then the width and height from the image header against ``shape``.
    """
    import cv2

    if not isinstance(text, (str, bytes)):
        raise TelemetryError(f"'image' must be a base64 string, got {type(text).__name__}")
    pixels = shape[0] * shape[1] if shape is not None else MAX_PIXELS
    max_bytes = 2 * 3 * pixels + 65536  # twice an uncompressed frame, plus headers: no camera frame comes near
    if len(text) > 4 * math.ceil(max_bytes / 3):
        raise TelemetryError(f"'image' is {len(text)} base64 characters, over the {4 * math.ceil(max_bytes / 3)} "
                             f"a {'%dx%d frame' % (shape[1], shape[0]) if shape is not None else 'frame'} can need")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise TelemetryError(f"'image' is not valid base64 ({error})") from None
    # Only the formats a camera sends: other decoders (GIF, TIFF, ...) are attack surface and log noise.
    if not (data[:2] == b"\xff\xd8" or data[:8] == _PNG_SIGNATURE):
        raise TelemetryError(f"'image' is not a decodable JPEG/PNG ({len(data)} bytes)")
    try:
        width, height = image_size(data)  # from the header alone
    except ValueError as error:
        raise TelemetryError(f"'image': {error}") from None
    if shape is not None and (height, width) != tuple(shape[:2]):
        raise TelemetryError(f"'image' is {width}x{height}, the model takes {shape[1]}x{shape[0]}")
    if shape is None and width * height > MAX_PIXELS:
        raise TelemetryError(f"'image' is {width}x{height}, over the {MAX_PIXELS}-pixel limit")
    # EXIF orientation ignored: the header's size is the decoded size, and a camera frame is never rotated.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
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


def _websocket_aware(app):
    def wrapped(environ, start_response):
        try:
            return app(environ, start_response)
        except StopIteration:  # python-engineio's signal (in gunicorn mode) that a websocket session ended
            environ[_UPGRADED] = True
            return []

    return wrapped


def _address_error(host: str, port: int, error: OSError) -> ServerAddressError:
    where = f"{host}:{port}"
    if isinstance(error, socket.gaierror):
        message = f"{where}: unknown host {host!r} ({error.strerror}); give --host an address of this machine"
    elif error.errno == errno.EADDRINUSE:
        message = f"{where}: address already in use (another drive server or program listens there); " \
                  "pick another --port or stop that program"
    elif error.errno == errno.EADDRNOTAVAIL:
        message = f"{where}: {host} is not an address of this machine; give --host one (127.0.0.1, 0.0.0.0)"
    elif error.errno == errno.EACCES:
        message = f"{where}: permission denied (ports below 1024 need privileges); pick a --port above 1023"
    else:
        message = f"{where}: cannot listen ({error.strerror or error})"
    result = ServerAddressError(message)
    result.errno = error.errno
    return result


class DriveServer:
    """Serve a predictor to the simulator (or any socket.io client, Socket.IO 1.x to 4.x).

    Args:
        predictor: a ``deploy.load_predictor`` result (callable uint8 (B, H, W, 3) -> (B,), ``.input_shape``).
        speed: target speed for the PI controller (finite, >= 0; the CLI's ``--speed``).
        host, port: where to listen (port 0 picks a free one; see ``.port`` once started).
        ping_interval: seconds between engine.io pings. A pending long-poll only returns on a packet, so a
            client's disconnect waits up to this long (python-engineio's default of 25 s makes tests crawl).
        max_message_bytes: the largest message read; a larger one is dropped and answered with ``error``.

    Example:
        >>> server = DriveServer(load_predictor("pilotnet.onnx"), speed=20, port=4567)
        >>> server.serve_forever()
    """

    def __init__(self, predictor: Callable[[np.ndarray], np.ndarray], speed: float = 20.0, host: str = "127.0.0.1",
                 port: int = 4567, ping_interval: float = 2.0, max_message_bytes: int = 1_000_000,
                 throttle: str = "model"):
        from deploy.simulator_protocol import SimulatorCompatibleServer

        try:
            speed = float(speed)
        except (TypeError, ValueError):
            raise ValueError(f"--speed: the target speed must be a number, got {speed!r}") from None
        if not math.isfinite(speed) or speed < 0:
            raise ValueError(f"--speed: the target speed must be a finite number >= 0, got {speed}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"--port: must be an integer from 0 to 65535, got {port!r}")
        if not (isinstance(max_message_bytes, int) and max_message_bytes > 0):
            raise ValueError(f"max_message_bytes: must be a positive integer, got {max_message_bytes!r}")
        if throttle not in ("model", "controller"):
            raise ValueError(f"--throttle: expected model or controller, got {throttle!r}")
        self.predictor, self.speed = predictor, speed
        # A model with a throttle head drives its own speed unless the user asks for the PI controller.
        self.model_throttle = throttle == "model" and "throttle" in getattr(predictor, "output_names", ())
        self.host, self.port, self.max_message_bytes = host, port, max_message_bytes
        self.stats = ServerStats()
        self._lock = threading.Lock()  # TFLite interpreters and PI state are not thread-safe
        self._controllers: dict[str, SpeedController] = {}
        self.sio = SimulatorCompatibleServer(async_mode="threading", cors_allowed_origins="*",
                                             ping_interval=ping_interval, max_http_buffer_size=max_message_bytes)
        self.sio.eio.on_message_too_large = self._message_too_large
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("telemetry", self._telemetry)
        self.httpd: WSGIServer | None = None
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

    def _error(self, sid, message: str) -> None:
        self.stats.errors += 1
        self.sio.emit("error", data={"message": message}, to=sid)

    def _message_too_large(self, eio_sid: str, size: int) -> None:
        self.stats.errors += 1
        self.sio.send_to_session(eio_sid, "error", {
            "message": f"message of {size} bytes is over the drive server's {self.max_message_bytes}-byte limit "
                       "(max_message_bytes); it was dropped"})

    def _telemetry(self, sid, *args):
        if len(args) != 1:  # a handler TypeError would only reach the log
            self._error(sid, f"telemetry takes one argument (the telemetry object), got {len(args)}")
            return
        data = args[0]
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
                if self.model_throttle:
                    outputs = self.predictor.predict_outputs(frame[None])
                    steering = float(np.asarray(outputs["steering"]).reshape(-1)[0])
                    throttle = float(np.clip(np.asarray(outputs["throttle"]).reshape(-1)[0], -1.0, 1.0))
                else:
                    steering = float(np.asarray(self.predictor(frame[None])).reshape(-1)[0])
                self.stats.predict_seconds.append(time.perf_counter() - start)
                if not self.model_throttle:
                    controller = self._controllers.setdefault(sid, SpeedController(self.speed))
                    throttle = controller.update(speed)
                self.stats.frames += 1
        except TelemetryError as error:
            self._error(sid, str(error))
            return
        self.sio.emit("steer", data={"steering_angle": repr(steering), "throttle": repr(throttle)}, to=sid)

    def bind(self) -> "DriveServer":
        """Listen on host:port (``.port`` is then the real one); ServerAddressError naming host:port if it can't."""
        if self.httpd is None:
            import socketio

            try:
                self.httpd = make_server(self.host, self.port, _websocket_aware(socketio.WSGIApp(self.sio)),
                                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
            except OSError as error:
                raise _address_error(self.host, self.port, error) from error
            self.port = int(self.httpd.server_port)
        return self

    def start(self) -> "DriveServer":
        """Serve in a background thread (tests, notebooks); ``stop()`` ends it."""
        self.bind()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="drive-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.bind()
        log.info("drive server on %s (socket.io, EIO=4 and EIO=3, websocket + polling); throttle from %s", self.url,
                 "the model's throttle head" if self.model_throttle else f"a PI controller at speed {self.speed:g}")
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self) -> None:
        """End a ``start()``-ed server (or release a ``bind()``-only one)."""
        if self.httpd is None:
            return
        if self._thread is not None:  # shutdown() waits for serve_forever(): only ask a loop that runs
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self.httpd = None

    def __enter__(self) -> "DriveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
