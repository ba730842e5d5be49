"""Engine.IO 3 / Socket.IO 2 clients on the drive server: a real python-socketio 4.6 client in its own virtual
environment (a second process), and the exact EIO=3 packets over WebSocket and long-polling."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy import export, load_predictor
from deploy.engineio3 import decode_payload, encode_payload
from deploy.server import DriveServer, encode_image
from tests.builders import FRAME, tiny_model

REPO = Path(__file__).resolve().parents[1]
SIO4_VENV = REPO / ".pytest_cache" / "sio4-venv"  # git-ignored; built once per machine (CI builds it once a run)
SIO4_PACKAGES = ["python-socketio[client]==4.6.1", "python-engineio==3.14.2", "websocket-client", "requests"]


@pytest.fixture(scope="module")
def sio4_python() -> Path:
    """The Python of a virtual environment holding python-socketio 4.6.1 / python-engineio 3.14.2 (EIO=3)."""
    python = SIO4_VENV / "bin" / "python"
    SIO4_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(SIO4_VENV.parent / "sio4-venv.lock", "w") as lock:  # pytest-xdist workers build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = SIO4_VENV / "ready"
        if not ready.exists():
            try:
                subprocess.run([sys.executable, "-m", "venv", "--clear", str(SIO4_VENV)], check=True,
                               capture_output=True, text=True, timeout=120)
                subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SIO4_PACKAGES], check=True,
                               capture_output=True, text=True, timeout=300)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
                output = (getattr(error, "stderr", None) or getattr(error, "output", None) or str(error))
                pytest.skip(f"cannot install {' '.join(SIO4_PACKAGES)} into {SIO4_VENV}: "
                            f"{str(output).strip().splitlines()[-1:]}")
            ready.write_text(" ".join(SIO4_PACKAGES))
    return python


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve3")
    tiny_model("all", "keras").save(root / "m.keras")
    export(root / "m.keras", "onnx", root / "m.onnx", parity_frames=2)
    predictor = load_predictor(root / "m.onnx")
    with DriveServer(predictor, speed=20.0, port=0, ping_interval=1.0) as running:
        yield running, predictor


def _frames(count: int, seed: int = 0) -> np.ndarray:
    from deploy.parity import load_frames

    return load_frames(None, FRAME, count=count, seed=seed).frames


def _expected_steering(predictor, image: str) -> float:
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(image), np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    return float(predictor(decoded[None])[0])


# A python-socketio 4 client, as behavioral-cloning tutorials pin it: connects, sends telemetry with a real JPEG,
# empty telemetry and a malformed one, outlives a few of its own heartbeats, then drives again.
SIO4_CLIENT = r'''
import json, sys, threading, time
import engineio, socketio
url, transport, images = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
client = socketio.Client(reconnection=False)
answers, answered, connected = [], threading.Event(), threading.Event()
client.on("connect", connected.set)
for event in ("steer", "manual", "error"):
    client.on(event, (lambda event: lambda data: (answers.append([event, data]), answered.set()))(event))
client.connect(url, transports=None if transport == "upgrade" else [transport])
assert connected.wait(10), "never connected to '/'"
def ask(message):
    answered.clear()
    client.emit("telemetry", message)
    assert answered.wait(10), f"no answer to {str(message)[:60]}"
for image in images:
    ask({"steering_angle": "0", "throttle": "0", "speed": "5", "image": image})
ask({})
ask({"speed": "fast", "image": images[0]})
time.sleep(2.5)  # the server announced pingInterval 1 s: the client's pings must be answered meanwhile
ask({"speed": "25", "image": images[0]})
result = {"versions": [socketio.__version__, engineio.__version__], "transport": client.eio.current_transport,
          "answers": answers}
client.disconnect()
print(json.dumps(result))
'''


@pytest.mark.parametrize("transport", ["websocket", "polling", "upgrade"])
def test_a_python_socketio_4_client_drives(server, sio4_python, tmp_path, transport):
    running, predictor = server
    images = [encode_image(frame) for frame in _frames(2, seed=7)]
    (tmp_path / "client.py").write_text(SIO4_CLIENT)
    (tmp_path / "images.json").write_text(json.dumps(images))
    done = subprocess.run([str(sio4_python), str(tmp_path / "client.py"), running.url, transport,
                           str(tmp_path / "images.json")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["versions"] == ["4.6.1", "3.14.2"]
    assert result["transport"] == ("websocket" if transport == "upgrade" else transport)
    answers = result["answers"]
    assert [event for event, _ in answers] == ["steer", "steer", "manual", "error", "steer"]
    for (_, data), image in zip(answers[:2], images):
        assert float(data["steering_angle"]) == pytest.approx(_expected_steering(predictor, image), abs=1e-6)
        assert 0.0 < float(data["throttle"]) <= 1.0  # 5 mph, set speed 20: accelerate
    assert answers[2][1] == {}
    assert "'speed' must be a number" in answers[3][1]["message"]
    assert float(answers[4][1]["steering_angle"]) == pytest.approx(_expected_steering(predictor, images[0]),
                                                                   abs=1e-6)
    assert float(answers[4][1]["throttle"]) < 0  # 25 mph: brake


ENGINEIO3_PAYLOADS = r'''
import base64, json, sys
from engineio import packet, payload
packets = [packet.Packet(packet.MESSAGE, data='2["telemetry",{"speed":"1"}]'),
           packet.Packet(packet.PING), packet.Packet(packet.MESSAGE, data=b"\x00\x01\xffbinary")]
decoded = {}
for name, body in json.load(sys.stdin).items():
    decoded[name] = [[p.packet_type, base64.b64encode(p.data).decode() if isinstance(p.data, bytes) else p.data]
                     for p in payload.Payload(encoded_payload=base64.b64decode(body)).packets]
print(json.dumps({"binary": base64.b64encode(payload.Payload(packets=packets).encode()).decode(),
                  "b64": base64.b64encode(payload.Payload(packets=packets).encode(b64=True)).decode(),
                  "decoded": decoded}))
'''


def test_payload_framing_matches_python_engineio_3(sio4_python):
    """Our EIO=3 long-polling framing against python-engineio 3.14's own Payload, both ways."""
    from engineio import packet

    # ASCII text: what Socket.IO sends (JSON with ASCII escapes). For other text python-engineio 3 disagrees with
    # itself (it encodes b64 lengths in UTF-8 bytes and decodes them in characters); we follow the JavaScript
    # reference (UTF-16 units), checked below.
    ours = [packet.Packet(packet.MESSAGE, '2["telemetry",{"speed":"1"}]'),
            packet.Packet(packet.PING), packet.Packet(packet.MESSAGE, b"\x00\x01\xffbinary")]
    bodies = {"text": encode_payload(ours[:2], b64=False), "b64": encode_payload(ours, b64=True),
              "binary": encode_payload(ours, b64=False)}
    assert bodies["text"][1].startswith("text/plain") and bodies["binary"][1] == "application/octet-stream"
    done = subprocess.run([str(sio4_python), "-c", ENGINEIO3_PAYLOADS], capture_output=True, text=True, timeout=60,
                          input=json.dumps({k: base64.b64encode(v[0]).decode() for k, v in bodies.items()}))
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    expected = [[4, ours[0].data], [2, None], [4, base64.b64encode(ours[2].data).decode()]]
    assert theirs["decoded"] == {"text": expected[:2], "b64": expected, "binary": expected}
    for name in ("binary", "b64"):  # python-engineio 3 clients POST binary framing; browsers b64 text framing
        decoded = decode_payload(base64.b64decode(theirs[name]))
        assert [(p.packet_type, p.data or None) for p in decoded] == [(4, ours[0].data), (2, None), (4, ours[2].data)]
    # Text framing counts JavaScript string length (UTF-16 units): socket.io-client 2 sends a car emoji as 2.
    car = '42["telemetry",{"note":"\U0001F697"}]'
    assert [p.data or None for p in decode_payload(f"{len(car) + 1}:{car}1:6".encode())] == [car[1:], None]


# The exact packets, without any Socket.IO library on the client side.

def _open(packet_text: str) -> dict:
    assert packet_text[0] == "0", packet_text
    handshake = json.loads(packet_text[1:])
    assert handshake["sid"] and handshake["pingInterval"] == 1000 and handshake["pingTimeout"] > 0
    return handshake


def test_eio3_websocket_packets(server):
    import websocket

    running, predictor = server
    ws = websocket.create_connection(f"ws://127.0.0.1:{running.port}/socket.io/?EIO=3&transport=websocket",
                                     timeout=10)
    try:
        assert _open(ws.recv())["upgrades"] == []
        assert ws.recv() == "40"  # Socket.IO 2: connected to "/" by the server, no CONNECT payload
        image = encode_image(_frames(1, seed=3)[0])
        ws.send("42" + json.dumps(["telemetry", {"steering_angle": "0", "throttle": "0", "speed": "3",
                                                 "image": image}]))
        event, data = json.loads(ws.recv()[2:])
        assert event == "steer"
        assert float(data["steering_angle"]) == pytest.approx(_expected_steering(predictor, image), abs=1e-6)
        ws.send("2")  # the EIO=3 heartbeat comes from the client
        assert ws.recv() == "3"
        # a Socket.IO 2 binary event: the JSON with a placeholder, then the attachment as a \x04-typed frame
        ws.send('451-["telemetry",{"speed":"3","image":{"_placeholder":true,"num":0}}]')
        ws.send_binary(b"\x04" + base64.b64decode(image))
        event, data = json.loads(ws.recv()[2:])
        assert event == "error" and "not valid base64" in data["message"]  # the JPEG bytes arrived
        ws.settimeout(2.5)  # 2.5 pingIntervals: an EIO=4 server would have pinged twice; an EIO=3 one never does
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
        ws.settimeout(10)
        ws.send("2probe")
        assert ws.recv() == "3probe"
    finally:
        ws.close()


def _polling(running, b64: bool = False):
    import requests

    session = requests.Session()
    url = f"{running.url}/socket.io/"
    params = {"EIO": "3", "transport": "polling", **({"b64": "1"} if b64 else {})}
    first = session.get(url, params=params, timeout=10)
    assert first.status_code == 200 and first.headers["Content-Type"].startswith("text/plain")
    opened, connected = [p.encode() for p in decode_payload(first.content)]
    assert first.text == f"{len(opened)}:{opened}2:40"  # OPEN, then Socket.IO 2's implicit CONNECT to "/"
    handshake = _open(opened)
    assert handshake["upgrades"] == ["websocket"]
    return session, url, {**params, "sid": handshake["sid"]}


def test_eio3_polling_packets(server):
    running, predictor = server
    session, url, params = _polling(running)
    image = encode_image(_frames(1, seed=5)[0])
    event = "42" + json.dumps(["telemetry", {"speed": "3", "image": image}])
    # text framing <length>:<packet>, as socket.io-client 2 posts it; the ping rides in the same payload
    posted = session.post(url, params=params, data=f"{len(event)}:{event}1:2".encode(), timeout=10)
    assert posted.status_code == 200 and posted.text.lower() == "ok"
    answers = []
    while len(answers) < 2:
        got = session.get(url, params=params, timeout=10)
        assert got.status_code == 200
        answers += [p.encode() for p in decode_payload(got.content)]
    assert "3" in answers  # the pong (the event is answered by another thread: in either order)
    event_name, data = json.loads(next(a for a in answers if a != "3")[2:])
    assert event_name == "steer"
    assert float(data["steering_angle"]) == pytest.approx(_expected_steering(predictor, image), abs=1e-6)
    # binary framing, as python-engineio 3 posts it: \x00, the length's digits as bytes, \xff, the packet
    manual = b'42["telemetry",{}]'
    body = b"\x00" + bytes(int(d) for d in str(len(manual))) + b"\xff" + manual
    assert session.post(url, params=params, data=body, timeout=10).status_code == 200
    got = session.get(url, params=params, timeout=10)
    assert got.text == '15:42["manual",{}]'  # len('42["manual",{}]') == 15
    # close packet: the session ends
    assert session.post(url, params=params, data=b"1:1", timeout=10).status_code == 200
    assert session.get(url, params=params, timeout=10).status_code == 400


def test_eio3_polling_b64_binary_attachment(server):
    running, _ = server
    session, url, params = _polling(running, b64=True)
    placeholder = '451-["telemetry",{"speed":"3","image":{"_placeholder":true,"num":0}}]'
    attachment = "b4" + base64.b64encode(b"\xff\xd8 not really a jpeg").decode()
    body = f"{len(placeholder)}:{placeholder}{len(attachment)}:{attachment}"
    assert session.post(url, params=params, data=body.encode(), timeout=10).status_code == 200
    got = session.get(url, params=params, timeout=10)
    event, data = json.loads(decode_payload(got.content)[0].data[1:])
    assert event == "error" and "not valid base64" in data["message"]


def test_eio3_jsonp_and_unknown_versions_are_refused_with_a_reason(server):
    import requests

    running, _ = server
    url = f"{running.url}/socket.io/"
    jsonp = requests.get(url, params={"EIO": "3", "transport": "polling", "j": "0"}, timeout=10)
    assert jsonp.status_code == 400 and "JSONP" in jsonp.text
    future = requests.get(url, params={"EIO": "5", "transport": "polling"}, timeout=10)
    assert future.status_code == 400 and "unsupported version" in future.text
    fine = requests.get(url, params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert fine.status_code == 200 and fine.text.startswith("0{")  # Engine.IO 4 is unchanged


def test_bad_eio3_payload_ends_only_that_session(server):
    import requests

    running, _ = server
    session, url, params = _polling(running)
    assert session.post(url, params=params, data=b"12:42[", timeout=10).status_code == 400
    other, url, params = _polling(running)  # the server goes on
    assert other.post(url, params=params, data=b"1:2", timeout=10).status_code == 200
    assert other.get(url, params=params, timeout=10).text == "1:3"


@pytest.mark.parametrize("body", [
    b"x:42[]",                                   # a length that is no number
    b"99:42[]",                                  # a length past the end of the body
    b"3:42[]1:",                                 # a packet cut short, then an empty one
    b"\x00\x09\x09\xff42[]",                     # binary framing: 99 bytes announced, 4 sent
    b"\x00\x01\x0a\xff42[]",                     # binary framing: a length digit above 9
    b"1:2" * 700_000,                            # 2.1 MB of pings (python-engineio's packet limit is 16)
    b"2000000:" + b"4" * 2_000_000,              # one 2 MB message
], ids=["letters", "past-end", "cut-short", "binary-short", "binary-digit", "many-pings", "2MB-message"])
def test_a_malformed_or_huge_polling_body_never_stops_the_server(server, body):
    """Whatever one polling client posts, the next client is answered: its ping gets its pong."""
    import requests

    running, _ = server
    session, url, params = _polling(running)
    try:
        posted = session.post(url, params=params, data=body, timeout=30)
        assert posted.status_code in (200, 400, 413), posted.status_code
    except requests.exceptions.ConnectionError:
        pass  # a body over the hard limit may end the connection, and only it
    other, url, params = _polling(running)
    assert other.post(url, params=params, data=b"1:2", timeout=10).status_code == 200
    assert other.get(url, params=params, timeout=10).text == "1:3"
