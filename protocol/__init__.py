"""swarmgp.protocol: wire format v1, message types, transports (ZeroMQ in zmq_transport only).

``zmq_transport`` is not imported here, so ``import swarmgp.protocol`` does not load zmq.
"""

from swarmgp.protocol.codec import MAJOR, decode, encode
from swarmgp.protocol.errors import DecodeError, ProtocolError, TransportError
from swarmgp.protocol.messages import (
    NO_PARENT,
    Fuse,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    StatusReply,
    StatusRequest,
    TreeState,
)
from swarmgp.protocol.transport import InMemoryNetwork, InMemoryTransport, LiveTransport, Transport

__all__ = [
    "DecodeError",
    "Fuse",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "InMemoryNetwork",
    "InMemoryTransport",
    "LiveTransport",
    "MAJOR",
    "Message",
    "NO_PARENT",
    "ProtocolError",
    "StatusReply",
    "StatusRequest",
    "Transport",
    "TransportError",
    "TreeState",
    "decode",
    "encode",
]
