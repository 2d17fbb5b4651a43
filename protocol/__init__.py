"""swarmgp.protocol: wire format v1, message types, transports (ZeroMQ in zmq_transport only).

``zmq_transport`` is not imported here, so ``import swarmgp.protocol`` does not load zmq.
"""

from .codec import MAJOR, decode, encode
from .errors import DecodeError, ProtocolError, TransportError
from .messages import (
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
from .transport import InMemoryNetwork, InMemoryTransport, Transport

__all__ = [
    "MAJOR",
    "NO_PARENT",
    "DecodeError",
    "Fuse",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "InMemoryNetwork",
    "InMemoryTransport",
    "Message",
    "ProtocolError",
    "StatusReply",
    "StatusRequest",
    "Transport",
    "TransportError",
    "TreeState",
    "decode",
    "encode",
]
