"""The Socket.IO side of the clients python-socketio 5 does not serve by itself: Socket.IO 2 habits.

Two kinds of client speak Socket.IO 2 to the drive server:

- Socket.IO 1.x/2.x clients over Engine.IO 3 (``EIO=3``: python-socketio 4 with python-engineio 3, the pin most
  behavioral-cloning tutorials give; socket.io-client 1/2). ``deploy.engineio3`` speaks their Engine.IO; at the
  Socket.IO level a Socket.IO 2 server connects every client to ``/`` as soon as the Engine.IO session opens and
  says so with a bare ``40`` (Socket.IO 5 waits for the client's CONNECT and answers ``40{"sid": ...}``).
- The Udacity Unity simulator. Its embedded client (fpanettieri's unity-socket.io,
  ``Assets/SocketIO/Scripts/SocketIO/SocketIOComponent.cs`` in udacity/self-driving-car-sim) opens
  ``ws://HOST:4567/socket.io/?EIO=4&transport=websocket``, so python-engineio 4 accepts it, but it keeps
  Socket.IO 2 habits: it never sends a Socket.IO CONNECT (its first packet is already
  ``42["telemetry", {...}]``), and it sends its own Engine.IO heartbeat (``2``) and waits for a ``3``
  (``deploy.engineio3.EngineIO4Socket`` answers it). python-socketio 5 drops events from a client that has not
  connected to the namespace (the car never moves: the symptom that made users downgrade to python-socketio 4).

``SimulatorCompatibleServer`` connects an EIO=3 client to ``/`` when its session opens, and any other client that
has never connected to ``/`` on its first event there (the ``40`` it gets back is ignored by the simulator's
decoder). Socket.IO 3+ clients send CONNECT before any event, so nothing changes for them.

The overrides use python-socketio's private dispatch methods, so pyproject.toml keeps python-socketio below 6.
"""

from __future__ import annotations

import logging

import socketio
from socketio import packet as sio_packet

from deploy.engineio3 import EngineIOServer, protocol_of

log = logging.getLogger(__name__)


class SimulatorCompatibleServer(socketio.Server):
    """A ``socketio.Server`` that also drives Socket.IO 2 clients (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Engine.IO sessions that have connected to "/" once: explicitly (a Socket.IO 3+ client; if it leaves
        # "/" it stays out) or implicitly (EIO=3 clients, the simulator). Only the others are connected by their
        # first event.
        self._joined_default_namespace: set[str] = set()

    def _engineio_server_class(self):
        return EngineIOServer

    def send_to_session(self, eio_sid: str, event: str, data) -> None:
        """Emit ``event`` on ``/`` to an Engine.IO session, whether or not it has connected to ``/`` yet."""
        self._send_packet(eio_sid, self.packet_class(sio_packet.EVENT, data=[event, data], namespace="/"))

    def _handle_eio_connect(self, eio_sid, environ):
        result = super()._handle_eio_connect(eio_sid, environ)
        if protocol_of(self.eio, eio_sid) == 3:  # Socket.IO 2: connected to "/" when the session opens
            self._handle_connect(eio_sid, "/", None)
        return result

    def _handle_connect(self, eio_sid, namespace, data):
        namespace = namespace or "/"
        if namespace == "/":
            if eio_sid in self._joined_default_namespace and protocol_of(self.eio, eio_sid) == 3 and \
                    self.manager.sid_from_eio_sid(eio_sid, "/") is not None:
                # A Socket.IO 2 client confirming "/": already connected, say so again (no second session).
                self._send_packet(eio_sid, self.packet_class(sio_packet.CONNECT, namespace="/"))
                return None
            self._joined_default_namespace.add(eio_sid)
        return super()._handle_connect(eio_sid, namespace, data)

    def _send_packet(self, eio_sid, pkt):
        if pkt.packet_type == sio_packet.CONNECT and pkt.data is not None and protocol_of(self.eio, eio_sid) == 3:
            pkt = self.packet_class(sio_packet.CONNECT, namespace=pkt.namespace)  # Socket.IO 2: no payload
        return super()._send_packet(eio_sid, pkt)

    def _handle_eio_message(self, eio_sid, data):
        try:
            if (eio_sid not in self._joined_default_namespace and eio_sid not in self._binary_packet
                    and isinstance(data, str) and data[:1] == str(sio_packet.EVENT)):
                pkt = self.packet_class(encoded_packet=data)
                if (pkt.namespace or "/") == "/":
                    # A Socket.IO 2 client: connected to "/" implicitly, as its servers did.
                    self._handle_connect(eio_sid, "/", None)
            return super()._handle_eio_message(eio_sid, data)
        except ValueError as error:  # malformed JSON or packet: tell the client, keep the session (no traceback)
            log.warning("%s: malformed Socket.IO packet %.60r: %s", eio_sid, data, error)
            self.send_to_session(eio_sid, "error", {"message": f"malformed Socket.IO packet {data!r:.60} ({error})"})
            return None

    def _handle_eio_disconnect(self, eio_sid, *args):  # python-socketio >= 5.12 also passes a reason
        self._joined_default_namespace.discard(eio_sid)
        return super()._handle_eio_disconnect(eio_sid, *args)


__all__ = ["SimulatorCompatibleServer"]
