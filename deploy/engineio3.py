"""Engine.IO 3 beside Engine.IO 4 on one python-engineio 4 server, and bounded messages for both.

Socket.IO 1.x/2.x clients (python-socketio 4 with python-engineio 3, socket.io-client 1/2) connect with
``EIO=3``; python-engineio 4 answers them with a 400. ``EngineIOServer`` serves them on the same port and path
with the same sessions, transports and upgrade, translating only what Engine.IO 3 does differently
(engine.io-protocol v3, as python-engineio 3.14 implements it):

- heartbeat: the client sends PING (``2``) every ``pingInterval`` and waits ``pingTimeout`` for the server's PONG
  (``3``); the server never pings, and closes a session that has sent nothing for pingInterval + pingTimeout.
  (Engine.IO 4 is the reverse: the server pings and the client answers.)
- long-polling payloads: text framing ``<length>:<packet>`` with the length in characters (JavaScript's UTF-16
  units), a binary packet as ``b4<base64>``; or binary framing ``\\x00|\\x01, the length's decimal digits as
  bytes, \\xff, the packet`` (python-engineio 3 clients POST this way), a binary packet as ``\\x04<bytes>``.
  (Engine.IO 4: packets separated by ``\\x1e``, a binary packet as ``b<base64>``.)
- WebSocket: a binary frame starts with the packet type byte ``\\x04``. (Engine.IO 4: the bare bytes.)

The OPEN packet (its ``maxPayload`` field is new in Engine.IO 4; Engine.IO 3 clients ignore it), the upgrade
dance (``2probe``, ``3probe``, ``5``) and text packets are the same. JSONP polling (``j=``) is refused for EIO=3.

Both protocols' sessions also bound what a client can make the server hold: a message over
``max_http_buffer_size`` is dropped and reported to ``EngineIOServer.on_message_too_large(sid, size)`` (the
drive server answers it with an ``error`` event) and the session goes on; only a message over
``HARD_LIMIT_FACTOR`` times that closes the WebSocket (close code 1009) or fails the POST (400). The Engine.IO 4
socket also answers a client's PING with a PONG: the Udacity simulator's Socket.IO 2 habit (see
``deploy.simulator_protocol``). These are python-engineio 4 private methods, so pyproject.toml keeps
python-engineio below 5.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import urllib.parse
from typing import Callable

import engineio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload

#: The WSGI environ key that marks an Engine.IO 3 handshake request.
PROTOCOL_KEY = "e2e_drive.engineio_protocol"
#: Messages between the limit and this many times it are read (and dropped with an error); larger ones end the
#: connection. Bounds memory at this many times the limit per message while keeping the common mistake (a
#: frame a few times too large) answerable.
HARD_LIMIT_FACTOR = 8
_MAX_PACKETS_PER_PAYLOAD = 16  # python-engineio's own limit
_DRAIN_CHUNK = 1 << 16

_request = threading.local()  # per request thread: None, or the EIO=3 client's b64 flag


class PayloadError(eio_exceptions.EngineIOError):
    """An Engine.IO 3 long-polling payload that does not parse (the server answers 400 and closes the session)."""


def _utf16_units(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _take_utf16_units(text: str, start: int, units: int) -> int:
    """The index in ``text`` that is ``units`` UTF-16 code units after ``start``."""
    if text.isascii():
        return start + units
    index = start
    while units > 0 and index < len(text):
        units -= 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    return index + max(units, 0)  # past the end when the text is too short


def _decode_text_packet(text: str) -> eio_packet.Packet:
    if text.startswith("b"):  # b<type><base64>: a binary packet in a text payload
        if text[1:2] != str(eio_packet.MESSAGE):
            raise PayloadError(f"binary packet of type {text[1:2]!r}: only MESSAGE (4) may carry binary data")
        return eio_packet.Packet(eio_packet.MESSAGE, base64.b64decode(text[2:]))
    return eio_packet.Packet(encoded_packet=text)


def _decode_binary_packet(data: bytes) -> eio_packet.Packet:
    if data[:1] != bytes([eio_packet.MESSAGE]):
        raise PayloadError(f"binary packet of type {data[:1]!r}: only MESSAGE (4) may carry binary data")
    return eio_packet.Packet(eio_packet.MESSAGE, bytes(data[1:]))


def decode_payload(body: bytes) -> list[eio_packet.Packet]:
    """An Engine.IO 3 long-polling request body (text or binary framing) as packets."""
    packets: list[eio_packet.Packet] = []
    try:
        if body[:1] in (b"\x00", b"\x01"):  # binary framing
            i = 0
            while i < len(body):
                binary, end = body[i] == 1, body.find(b"\xff", i + 1)
                digits = body[i + 1:end]
                if end < 0 or not digits or len(digits) > 10 or max(digits) > 9:
                    raise PayloadError(f"bad binary payload length at byte {i}")
                length = int("".join(map(str, digits)))
                data = body[end + 1:end + 1 + length]
                if len(data) != length:
                    raise PayloadError(f"payload ends inside a {length}-byte packet")
                packets.append(_decode_binary_packet(data) if binary else _decode_text_packet(data.decode("utf-8")))
                i = end + 1 + length
                if len(packets) > _MAX_PACKETS_PER_PAYLOAD:
                    raise PayloadError("too many packets in one payload")
        else:  # text framing: <length in UTF-16 units>:<packet>...
            text, i = body.decode("utf-8"), 0
            while i < len(text):
                colon = text.find(":", i)
                if colon < 0 or not text[i:colon].isdigit():
                    raise PayloadError(f"bad text payload length at character {i}")
                end = _take_utf16_units(text, colon + 1, int(text[i:colon]))
                if end > len(text):
                    raise PayloadError(f"payload ends inside a {text[i:colon]}-character packet")
                packets.append(_decode_text_packet(text[colon + 1:end]))
                i = end
                if len(packets) > _MAX_PACKETS_PER_PAYLOAD:
                    raise PayloadError("too many packets in one payload")
    except (ValueError, UnicodeDecodeError, IndexError) as error:  # base64 / UTF-8 / packet type
        raise PayloadError(f"bad Engine.IO 3 payload ({error})") from None
    return packets


def encode_payload(packets: list[eio_packet.Packet], b64: bool) -> tuple[bytes, str]:
    """Packets as an Engine.IO 3 long-polling response body and its content type.

    Text framing unless a packet is binary and the client did not ask for base64 (``b64=1``), as the reference
    JavaScript server does; python-engineio 3 and socket.io-client 2 read both.
    """
    if b64 or not any(pkt.binary for pkt in packets):
        body = ""
        for pkt in packets:
            text = "b4" + base64.b64encode(pkt.data).decode("ascii") if pkt.binary else pkt.encode()
            body += f"{_utf16_units(text)}:{text}"
        return body.encode("utf-8"), "text/plain; charset=UTF-8"
    body = b""
    for pkt in packets:
        data = bytes([eio_packet.MESSAGE]) + pkt.data if pkt.binary else pkt.encode().encode("utf-8")
        body += bytes([1 if pkt.binary else 0]) + bytes(int(d) for d in str(len(data))) + b"\xff" + data
    return body, "application/octet-stream"


class _Frames:
    """The WebSocket as an Engine.IO 4 socket expects it: oversized messages dropped, EIO=3 binary translated."""

    def __init__(self, ws, socket: "_BoundedSocket"):
        self.ws, self.socket = ws, socket

    def __getattr__(self, name):
        return getattr(self.ws, name)

    def wait(self):
        while True:
            data = self.ws.wait()
            if data is None:
                return None
            if len(data) <= self.socket.server.max_http_buffer_size:
                break
            self.socket.server.report_message_too_large(self.socket.sid, len(data))
        if isinstance(self.socket, EngineIO3Socket):
            if isinstance(data, (bytes, bytearray)):
                return _decode_binary_packet(data).data  # bytes: a binary MESSAGE to the Engine.IO 4 decoder
            if data.startswith("b"):
                return _decode_text_packet(data).data
        return data

    def send(self, message):
        if isinstance(self.socket, EngineIO3Socket) and isinstance(message, (bytes, bytearray)):
            message = bytes([eio_packet.MESSAGE]) + bytes(message)
        return self.ws.send(message)


class _BoundedSocket(engineio.socket.Socket):
    """python-engineio 4's socket with messages over the limit dropped and reported instead of ending the session."""

    def _payload_packets(self, body: bytes) -> list[eio_packet.Packet]:
        return eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets

    def handle_post_request(self, environ):
        try:
            self._handle_post_request(environ)
        except eio_exceptions.EngineIOError:
            # Closed here without waiting: python-engineio's own close() waits for a GET to collect the CLOSE
            # packet, and holds this POST until then. The server then answers 400.
            self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise

    def _handle_post_request(self, environ):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        limit = self.server.max_http_buffer_size
        if length > limit * HARD_LIMIT_FACTOR:
            raise eio_exceptions.ContentTooLongError()
        stream = environ["wsgi.input"]
        if length > limit:  # read it in chunks (the HTTP exchange must complete) and drop it
            left = length
            while left > 0:
                chunk = stream.read(min(left, _DRAIN_CHUNK))
                if not chunk:
                    break
                left -= len(chunk)
            self.server.report_message_too_large(self.sid, length)
            return
        for pkt in self._payload_packets(stream.read(length)):
            self.receive(pkt)

    def _upgrade_websocket(self, environ, start_response):
        if self.upgraded:
            raise OSError("Socket has been upgraded already")
        if self.server._async["websocket"] is None:
            return self.server._bad_request()
        # simple-websocket buffers a whole message: its own limit bounds that (it closes with 1009 above it).
        ws = self.server._async["websocket"](self._websocket_handler, self.server,
                                             max_message_size=self.server.max_http_buffer_size * HARD_LIMIT_FACTOR)
        return ws(environ, start_response)

    def _websocket_handler(self, ws):
        return super()._websocket_handler(_Frames(ws, self))


class EngineIO4Socket(_BoundedSocket):
    """An Engine.IO 4 session; a client's PING (the Unity simulator sends them) gets a PONG."""

    def receive(self, pkt):
        if pkt.packet_type == eio_packet.PING:
            self.send(eio_packet.Packet(eio_packet.PONG, pkt.data))
            return
        super().receive(pkt)


class EngineIO3Socket(_BoundedSocket):
    """An Engine.IO 3 session: the client pings; silence for pingInterval + pingTimeout closes it."""

    last_received: float = 0.0

    def receive(self, pkt):
        self.last_received = time.time()  # any packet shows the client is alive, as engine.io 3 servers count it
        if pkt.packet_type == eio_packet.PING:
            self.send(eio_packet.Packet(eio_packet.PONG, pkt.data))
        elif pkt.packet_type != eio_packet.NOOP:
            super().receive(pkt)

    def schedule_ping(self):  # the client pings in Engine.IO 3
        pass

    def check_ping_timeout(self):
        if self.closed:
            raise eio_exceptions.SocketIsClosedError()
        allowed = self.server.ping_interval + self.server.ping_interval_grace_period + self.server.ping_timeout
        if time.time() - self.last_received > allowed:
            self.server.logger.info("%s: Engine.IO 3 client stopped pinging, closing socket", self.sid)
            self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT)
            return False
        return True

    def _payload_packets(self, body: bytes) -> list[eio_packet.Packet]:
        return decode_payload(body)


_EIO3_QUERY = re.compile(r"(^|&)EIO=3(&|$)")


class EngineIOServer(engineio.Server):
    """``engineio.Server`` (threading mode) that also serves EIO=3 clients and bounds message sizes.

    ``on_message_too_large(sid, size)``, when set, is called for each dropped oversized message.
    """

    on_message_too_large: Callable[[str, int], None] | None = None

    def report_message_too_large(self, sid: str, size: int) -> None:
        self.logger.warning("%s: dropped a %d-byte message (limit %d bytes)", sid, size, self.max_http_buffer_size)
        if self.on_message_too_large is not None:
            self.on_message_too_large(sid, size)

    def handle_request(self, environ, start_response):
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        sid = query.get("sid", [None])[0]
        eio3 = isinstance(self.sockets.get(sid), EngineIO3Socket) if sid else query.get("EIO") == ["3"]
        if not eio3:
            return super().handle_request(environ, start_response)
        if "j" in query:
            answer = self._bad_request("JSONP long-polling is not supported for Engine.IO 3 (EIO=3) clients")
            start_response(answer["status"], answer["headers"])
            return [answer["response"]]
        if sid is None:  # past python-engineio's version check; the connect hook makes the socket an EIO=3 one
            environ["QUERY_STRING"] = _EIO3_QUERY.sub(r"\1EIO=4\2", environ.get("QUERY_STRING", ""))
            environ[PROTOCOL_KEY] = 3
        _request.b64 = query.get("b64", ["0"])[0] in ("1", "true")
        try:
            return super().handle_request(environ, start_response)
        finally:
            _request.b64 = None

    def _trigger_event(self, event, *args, **kwargs):
        if event == "connect":  # the new session's socket exists and nothing has been sent through it yet
            sid, environ = args[0], args[1]
            socket = self.sockets.get(sid)
            if socket is not None and type(socket) is engineio.socket.Socket:
                if environ.get(PROTOCOL_KEY) == 3:
                    socket.__class__ = EngineIO3Socket
                    socket.last_received = time.time()
                else:
                    socket.__class__ = EngineIO4Socket
        return super()._trigger_event(event, *args, **kwargs)

    def _ok(self, packets=None, headers=None, jsonp_index=None):
        b64 = getattr(_request, "b64", None)
        if packets is None or b64 is None:
            return super()._ok(packets, headers=headers, jsonp_index=jsonp_index)
        body, content_type = encode_payload(packets, b64)
        return {"status": "200 OK", "headers": list(headers or []) + [("Content-Type", content_type)],
                "response": body}


def protocol_of(server: engineio.Server, sid: str) -> int:
    """The Engine.IO protocol (3 or 4) of session ``sid``."""
    return 3 if isinstance(server.sockets.get(sid), EngineIO3Socket) else 4


__all__ = ["EngineIOServer", "EngineIO3Socket", "EngineIO4Socket", "HARD_LIMIT_FACTOR", "PayloadError",
           "decode_payload", "encode_payload", "protocol_of"]
