"""The drive server against real socket.io clients on 127.0.0.1: steering, malformed telemetry, load."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
import socketio

from deploy import export, load_predictor
from deploy.server import DriveServer, SpeedController, encode_image, load_test
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


def test_engine_io_3_clients_are_told_why_they_are_refused(server):
    import requests

    running, _ = server
    answer = requests.get(f"{running.url}/socket.io/", params={"EIO": "3", "transport": "polling"}, timeout=10)
    assert answer.status_code == 400 and "speaks EIO=4" in answer.text
    fine = requests.get(f"{running.url}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert fine.status_code == 200 and fine.text.startswith("0{")  # an engine.io v4 OPEN packet


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
