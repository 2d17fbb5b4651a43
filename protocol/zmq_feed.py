"""A ZeroMQ SUB socket for live data feeds (``zmq+sub://`` sources).

It lives in ``protocol/`` only because protocol is the one package that imports zmq
(DESIGN.md section 3); it is not part of the agents' transport.
"""

from __future__ import annotations

from typing import Any

import zmq

__all__ = ["SubscriberSocket"]


class SubscriberSocket:
    """A ZeroMQ SUB socket for data feeds (``zmq+sub://`` sources), so zmq stays in protocol/.

    Parameters
    ----------
    endpoint : str
        Where the publisher is, e.g. ``tcp://127.0.0.1:5600``.
    topic : str
        Subscription prefix ('' for all).
    rcvhwm : int
        Receive high-water mark (messages).
    context : zmq.Context, optional
        Shared context (default: the process-wide instance).
    """

    def __init__(self, endpoint: str, topic: str, rcvhwm: int, context: Any = None) -> None:
        ctx = context if context is not None else zmq.Context.instance()
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)

    def poll(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a message; True when one can be read."""
        return bool(self._sock.poll(int(timeout_s * 1000), zmq.POLLIN))

    def recv_frames(self) -> list[bytes]:
        """Read one multipart message without blocking (call after :meth:`poll`)."""
        return list(self._sock.recv_multipart(zmq.NOBLOCK))

    def close(self) -> None:
        """Close at once (linger 0)."""
        self._sock.close(0)
