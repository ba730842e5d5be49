"""What the Udacity simulator's Socket.IO client needs from a python-socketio 5 server.

The Unity simulator embeds an old Socket.IO client (fpanettieri's unity-socket.io,
``Assets/SocketIO/Scripts/SocketIO/SocketIOComponent.cs`` in udacity/self-driving-car-sim).
It opens ``ws://HOST:4567/socket.io/?EIO=4&transport=websocket`` directly, so
python-engineio 4 accepts it, but it speaks the Socket.IO 2 protocol:

- it never sends a Socket.IO CONNECT (``40``): Socket.IO 2 servers connected every
  client to the ``/`` namespace by themselves, so the simulator's first packet is
  already ``42["telemetry", {...}]``. python-socketio 5 drops events from a client
  that has not connected to the namespace (the car never moves: the well-known
  symptom that made users downgrade to python-socketio 4);
- it sends the Engine.IO heartbeat itself (``2``) and waits for a ``3``;
  Engine.IO 4 servers ping instead and ignore a client's ping.

``SimulatorCompatibleServer`` connects such a client to ``/`` on its first event
(the ``40`` it sends back is ignored by the simulator's decoder) and answers a
client's ping with a pong. Clients that follow Socket.IO 3+ send CONNECT before
any event and ping nobody, so nothing changes for them.

The overrides use python-socketio's private dispatch methods, so pyproject.toml
keeps python-socketio below 6.
"""

from __future__ import annotations

import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet


class _PingAnsweringSocket(engineio.socket.Socket):
    def receive(self, pkt):
        if pkt.packet_type == eio_packet.PING:  # an Engine.IO 3 heartbeat from the client
            self.send(eio_packet.Packet(eio_packet.PONG, pkt.data))
            return
        super().receive(pkt)


class SimulatorCompatibleServer(socketio.Server):
    """A ``socketio.Server`` that also drives the Udacity Unity simulator (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Engine.IO sessions that have connected to "/" once: explicitly (a Socket.IO 3+ client; if it leaves
        # "/" it stays out) or implicitly (the simulator). Only the others are connected by their first event.
        self._joined_default_namespace: set[str] = set()

    def _handle_eio_connect(self, eio_sid, environ):
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) is engineio.socket.Socket:
            socket.__class__ = _PingAnsweringSocket
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_connect(self, eio_sid, namespace, data):
        if (namespace or "/") == "/":
            self._joined_default_namespace.add(eio_sid)
        return super()._handle_connect(eio_sid, namespace, data)

    def _handle_eio_message(self, eio_sid, data):
        if (eio_sid not in self._joined_default_namespace and eio_sid not in self._binary_packet
                and isinstance(data, str) and data[:1] == str(sio_packet.EVENT)):
            pkt = self.packet_class(encoded_packet=data)
            if (pkt.namespace or "/") == "/":
                # A Socket.IO 2 client: connected to "/" implicitly, as its servers did.
                self._handle_connect(eio_sid, "/", None)
        return super()._handle_eio_message(eio_sid, data)

    def _handle_eio_disconnect(self, eio_sid, *args):  # python-socketio >= 5.12 also passes a reason
        self._joined_default_namespace.discard(eio_sid)
        return super()._handle_eio_disconnect(eio_sid, *args)


__all__ = ["SimulatorCompatibleServer"]
