"""The drive server against real socket.io clients on 127.0.0.1: steering, malformed and oversized telemetry,
bounded work for untrusted input, addresses, load. Engine.IO 3 clients: tests/test_server_eio3.py."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import socketio

from deploy import export, load_predictor
from data_tools.frames import image_size
from deploy.server import DriveServer, ServerAddressError, SpeedController, encode_image
from e2e_drive.bench.serve import format_serve_report, load_test
from tests.builders import FRAME, tiny_model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    tiny_model("all", "keras").save(root / "m.keras")
    export(root / "m.keras", "onnx", root / "m.onnx", parity_frames=2)
    predictor = load_predictor(root / "m.onnx")
    with DriveServer(predictor, speed=20.0, port=0) as running:
        yield running, predictor


@pytest.fixture(params=["websocket", "polling"])
def client(server, request):
    running, _ = server
    with socketio.SimpleClient() as sim:
        sim.connect(running.url, transports=[request.param], wait_timeout=10)
        assert sim.client.transport() == request.param
        yield sim


def _frames(count: int, seed: int = 0) -> np.ndarray:
    from deploy.parity import load_frames

    return load_frames(None, FRAME, count=count, seed=seed).frames  # simulator frames, resized to the model


def test_steer_equals_the_predictor_on_the_decoded_jpeg(server, client):
    _, predictor = server
    for frame in _frames(3):
        image = encode_image(frame)
        client.emit("telemetry", {"steering_angle": "0.0", "throttle": "0.0", "speed": "5.0", "image": image})
        event, data = client.receive(timeout=10)
        assert event == "steer" and set(data) == {"steering_angle", "throttle"}
        assert isinstance(data["steering_angle"], str) and isinstance(data["throttle"], str)
        decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(image), np.uint8), cv2.IMREAD_COLOR),
                               cv2.COLOR_BGR2RGB)
        assert float(data["steering_angle"]) == pytest.approx(float(predictor(decoded[None])[0]), abs=1e-6)
        assert 0.0 < float(data["throttle"]) <= 1.0  # below the set speed: accelerate


def test_empty_telemetry_answers_manual(client):
    client.emit("telemetry", {})
    assert client.receive(timeout=10) == ["manual", {}]


@pytest.mark.parametrize("message,reason", [
    ({"speed": "3", "image": "%%% not base64 %%%"}, "not valid base64"),
    ({"speed": "3", "image": base64.b64encode(b"GIF89a not a jpeg").decode()}, "not a decodable JPEG"),
    ({"speed": "3"}, "lacks 'image'"),
    ({"image": "AAAA"}, "lacks 'speed'"),
    ({"speed": "fast", "image": "AAAA"}, "'speed' must be a number"),
    ({"speed": "3", "image": 42}, "must be a base64 string"),
    ("just a string", "must be an object"),
])
def test_malformed_telemetry_gets_an_error_and_the_server_keeps_driving(server, client, message, reason):
    client.emit("telemetry", message)
    event, data = client.receive(timeout=10)
    assert event == "error" and reason in data["message"]
    client.emit("telemetry", {"speed": "3", "image": encode_image(_frames(1)[0])})  # same connection still served
    assert client.receive(timeout=10)[0] == "steer"


def test_wrong_frame_size_is_named(client):
    small = np.zeros((20, 30, 3), np.uint8)
    client.emit("telemetry", {"speed": "3", "image": encode_image(small)})
    event, data = client.receive(timeout=10)
    assert event == "error" and "30x20" in data["message"] and "80x40" in data["message"]


def _unity_receive(ws, wanted: str) -> str:
    """Next packet starting with ``wanted``, answering the server's Engine.IO pings as the simulator does."""
    import time

    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, f"no packet starting with {wanted!r} within 10 s"
        message = ws.recv()
        if message == "2":
            ws.send("3")
        elif message.startswith(wanted):
            return message


def test_the_unity_simulator_protocol_drives(server):
    """A raw WebSocket speaking exactly what udacity/self-driving-car-sim's SocketIOComponent sends: its URL, no
    Socket.IO CONNECT before the first event, events encoded as 42[...] and its own Engine.IO pings."""
    import json

    import websocket

    running, predictor = server
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    try:
        assert json.loads(ws.recv()[1:])["sid"]  # the Engine.IO OPEN packet: 0{"sid": ...}
        frames = _frames(2, seed=4)
        for frame in frames:
            image = encode_image(frame)
            ws.send("42" + json.dumps(["telemetry", {"steering_angle": "0", "throttle": "0", "speed": "12.5",
                                                     "image": image}]))
            event, data = json.loads(_unity_receive(ws, "42")[2:])
            decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(image), np.uint8),
                                                cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            assert event == "steer"
            assert float(data["steering_angle"]) == pytest.approx(float(predictor(decoded[None])[0]), abs=1e-6)
        ws.send('42["telemetry",{}]')  # manual mode in the simulator
        assert json.loads(_unity_receive(ws, "42")[2:]) == ["manual", {}]
        ws.send("2")  # the simulator's heartbeat, every 25 s: it closes the socket when no pong comes
        assert _unity_receive(ws, "3") == "3"
    finally:
        ws.close()


def test_a_socketio_3_client_that_left_the_namespace_is_not_reconnected_by_an_event(server):
    import time

    import websocket

    running, _ = server
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=1)
    try:
        assert ws.recv().startswith("0")
        ws.send("40")
        assert _unity_receive(ws, "40").startswith("40{")
        ws.send("41")  # leaves "/", keeps the Engine.IO session
        ws.send('42["telemetry",{}]')
        answers, deadline = [], time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                message = ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if message == "2":
                ws.send("3")
            else:
                answers.append(message)
        assert not [m for m in answers if m.startswith(("40", "42"))], answers
    finally:
        ws.close()


def test_speed_controller_pushes_towards_the_set_speed():
    controller = SpeedController(20.0, kp=0.1, ki=0.002)
    assert controller.update(0.0) == 1.0  # 0.1 * 20 + 0.002 * 20, clipped
    assert controller.update(30.0) == pytest.approx(0.1 * -10 + 0.002 * 10)  # too fast: brake
    speeds = [0.0]
    for _ in range(400):  # a first-order car: the PI loop settles at the set speed
        speeds.append(speeds[-1] + 0.5 * controller.update(speeds[-1]) - 0.02 * speeds[-1])
    assert abs(speeds[-1] - 20.0) < 0.5


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_bounded_load_several_clients(server, transport):
    running, _ = server
    before = running.stats.frames
    images = [encode_image(f) for f in _frames(4)]
    result = load_test(running.url, images, clients=4, frames=15, transport=transport)
    assert result["failures"] == [] and result["answered"] == 60
    assert running.stats.frames - before == 60
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["frames_per_second"] > 0
    print(f"\nload ({transport}): 4 clients x 15 frames, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"{result['frames_per_second']:.0f} frames/s")


def test_cli_serve_drives_a_real_client(server, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    running, predictor = server
    with socket.socket() as probe:  # a free port for the child process
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "e2e_drive", "serve", predictor.path, "--port", str(port), "--speed", "12"]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        deadline = time.monotonic() + 60
        with socketio.SimpleClient() as sim:
            while True:
                try:
                    sim.connect(f"http://127.0.0.1:{port}", wait_timeout=5)
                    break
                except socketio.exceptions.ConnectionError:
                    if time.monotonic() > deadline or child.poll() is not None:
                        raise
                    time.sleep(0.2)
            frame = _frames(1)[0]
            sim.emit("telemetry", {"speed": "12", "image": encode_image(frame)})
            event, data = sim.receive(timeout=10)
        assert event == "steer" and float(data["throttle"]) == 0.0  # at the set speed: no push
    finally:
        child.terminate()
        child.wait(timeout=10)
    assert "drive server on http://127.0.0.1" in child.stderr.read()


def test_cli_bench_serve_json(server, capsys):
    import json

    from e2e_drive.cli import main

    _, predictor = server
    assert main(["bench", "serve", predictor.path, "--clients", "2", "--frames", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answered"] == 10 and result["failures"] == [] and result["transport"] == "websocket"
    assert result["model_p50_ms"] > 0 and result["overhead_x"] > 0


def test_bench_report_text():
    report = {"clients": 2, "frames_per_client": 5, "transport": "polling", "answered": 10, "failures": [],
              "p50_ms": 3.0, "p99_ms": 9.5, "frames_per_second": 300.0, "model_p50_ms": 1.5, "overhead_x": 2.0}
    text = format_serve_report(report)
    assert "2 clients x 5 frames, 10 answered" in text and "p50 3.00 ms" in text and "x2.0" in text


# Issue 11: bounded work for untrusted input.

def _huge_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A valid 1-bit grey PNG of width x height pixels in ~12 KB: decoding it to BGR takes width*height*3 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (1 + (width + 7) // 8)  # filter byte + 1 bit per pixel
    idat = b"".join(packer.compress(row * 100) for _ in range(height // 100)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_image_size_reads_headers_as_opencv_decodes_them():
    rng = np.random.default_rng(0)
    for height, width in [(40, 80), (160, 320), (7, 3)]:
        frame = rng.integers(0, 255, (height, width, 3), np.uint8)
        for ext, params in [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", [])]:
            data = cv2.imencode(ext, frame, params)[1].tobytes()
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image_size(data) == (decoded.shape[1], decoded.shape[0]) == (width, height)
    assert image_size(_huge_png(10_000, 10_000)) == (10_000, 10_000)


def test_a_huge_png_is_refused_from_its_header_with_bounded_memory(server, client):
    import tracemalloc

    png = _huge_png()
    assert len(png) < 50_000  # under the base64 bound for an 80x40 frame: the header check refuses it
    # Calibration: tracemalloc sees OpenCV's decoded frames (numpy buffers), so a decode would show up.
    small = cv2.imencode(".png", np.zeros((1000, 1000, 3), np.uint8))[1].tobytes()
    tracemalloc.start()
    try:
        cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR)
        assert tracemalloc.get_traced_memory()[1] >= 3_000_000
        tracemalloc.reset_peak()
        client.emit("telemetry", {"speed": "3", "image": base64.b64encode(png).decode()})
        event, data = client.receive(timeout=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert event == "error" and "10000x10000" in data["message"] and "80x40" in data["message"]
    assert peak < 30_000_000, f"{peak / 1e6:.0f} MB traced while refusing the PNG (a decode takes 300 MB)"
    client.emit("telemetry", {"speed": "3", "image": encode_image(_frames(1)[0])})
    assert client.receive(timeout=10)[0] == "steer"


def test_an_overlong_base64_image_is_refused_before_decoding(client):
    client.emit("telemetry", {"speed": "3", "image": "A" * 500_000})
    event, data = client.receive(timeout=10)
    assert event == "error" and "500000 base64 characters" in data["message"] and "80x40" in data["message"]


@pytest.mark.parametrize("arguments,count", [((), 0), (({"speed": "3"}, {"speed": "4"}), 2)])
def test_telemetry_with_no_or_extra_arguments_gets_an_error(server, client, arguments, count):
    client.client.emit("telemetry", arguments)  # a tuple: one Socket.IO argument per item
    event, data = client.receive(timeout=10)
    assert event == "error" and f"telemetry takes one argument (the telemetry object), got {count}" in data["message"]
    client.emit("telemetry", {"speed": "3", "image": encode_image(_frames(1)[0])})
    assert client.receive(timeout=10)[0] == "steer"


def test_an_oversized_message_gets_an_error_and_the_connection_goes_on(server, client):
    running, _ = server
    client.emit("telemetry", {"speed": "3", "image": "A" * 1_500_000})
    event, data = client.receive(timeout=10)
    assert event == "error" and "over the drive server's 1000000-byte limit" in data["message"]
    client.emit("telemetry", {"speed": "3", "image": encode_image(_frames(1)[0])})
    assert client.receive(timeout=10)[0] == "steer"


def test_a_malformed_socketio_packet_gets_an_error(server):
    import json

    import websocket

    running, _ = server
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=10)
    try:
        assert ws.recv().startswith("0")
        ws.send('42["telemetry",{"speed":')
        event, data = json.loads(_unity_receive(ws, "42")[2:])
        assert event == "error" and "malformed Socket.IO packet" in data["message"]
    finally:
        ws.close()


@pytest.mark.parametrize("speed", [float("nan"), float("inf"), -1.0, "fast"])
def test_the_target_speed_is_validated(server, speed):
    _, predictor = server
    with pytest.raises(ValueError, match="--speed"):
        DriveServer(predictor, speed=speed, port=0)


def test_address_errors_name_host_and_port(server):
    running, predictor = server
    with pytest.raises(ServerAddressError, match=f"127.0.0.1:{running.port}: address already in use") as caught:
        DriveServer(predictor, port=running.port).start()
    assert isinstance(caught.value, OSError) and "\n" not in str(caught.value)
    with pytest.raises(ServerAddressError, match="no such host:0: unknown host"):
        DriveServer(predictor, host="no such host", port=0).start()
    with pytest.raises(ValueError, match="--port"):
        DriveServer(predictor, port=70000)


@pytest.mark.parametrize("mode", ["model", "controller"])
def test_a_model_with_a_throttle_head_drives_its_own_speed(tmp_path, mode):
    from e2e_drive.models import pilotnet

    pilotnet(FRAME, crop=(4, 4), outputs=("steering", "throttle"), seed=2).save(tmp_path / "two.keras")
    export(tmp_path / "two.keras", "onnx", tmp_path / "two.onnx", parity_frames=2)
    predictor = load_predictor(tmp_path / "two.onnx")
    frame = _frames(1, seed=4)[0]
    image = encode_image(frame)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(image), np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    expected = predictor.predict_outputs(decoded[None])
    with DriveServer(predictor, speed=20.0, port=0, throttle=mode) as running, socketio.SimpleClient() as sim:
        sim.connect(running.url, transports=["websocket"], wait_timeout=10)
        sim.emit("telemetry", {"speed": "50.0", "image": image})  # far above the set speed
        event, data = sim.receive(timeout=10)
    assert event == "steer"
    assert float(data["steering_angle"]) == pytest.approx(float(expected["steering"][0]), abs=1e-6)
    if mode == "model":
        assert float(data["throttle"]) == pytest.approx(float(np.clip(expected["throttle"][0], -1, 1)), abs=1e-6)
    else:
        assert float(data["throttle"]) < 0  # the PI controller brakes above the set speed
