"""ZeroMQ SUB feed source (``zmq+sub://host:port/topic``).

The socket comes from :class:`swarmgp.protocol.zmq_transport.SubscriberSocket` (only
``protocol/`` imports ``zmq``), loaded lazily so that importing this module does not load it.

Wire format: two-frame messages ``[topic, payload]`` (a single frame is read as the
payload with an empty topic). The payload is a JSON object validated like any row
(see :mod:`.feed`); with ``schema.agent = None`` the agent key is the topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import BadRowError, SourceConfigError
from swarmgp.agents.sources.feed import EOS, SYNC, decode_payload
from swarmgp.agents.sources.jsonl_source import DEFAULT_JSON_SCHEMA
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import ColumnSchema, RowParser

__all__ = ["ZmqSubSource"]


class ZmqSubSource(Source):
    """Subscribe to a ZeroMQ PUB socket.

    Parameters
    ----------
    endpoint : str
        ZeroMQ endpoint to connect to, e.g. ``"tcp://127.0.0.1:5556"``.
    topic : str
        Subscription prefix (``""`` = everything).
    schema : ColumnSchema, optional
        Default :data:`~.jsonl_source.DEFAULT_JSON_SCHEMA`.
    idle_timeout_s : float or None
        End the stream after this long without any message (``None``: wait forever).
    poll_s : float
        Poll granularity (how quickly :meth:`stop` is noticed).
    context : zmq.Context, optional
        Shared context (default: ``zmq.Context.instance()``).
    **kwargs
        ``pacer``, ``keep``, ``on_bad``.

    Attributes
    ----------
    synced : threading.Event
        Set when the first ``sync`` control message arrived (handshake).

    Notes
    -----
    The socket is created by the constructor and then used only by the iterating
    thread (hand-over is safe; concurrent use is not): iterate from one thread, call
    :meth:`stop` from any.
    """

    def __init__(
        self,
        endpoint: str,
        topic: str = "",
        schema: ColumnSchema | None = None,
        *,
        idle_timeout_s: float | None = None,
        poll_s: float = 0.05,
        rcvhwm: int = 10_000,
        context: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(f"zmq+sub://{endpoint.split('://', 1)[-1]}/{topic}", **kwargs)
        if poll_s <= 0:
            raise SourceConfigError(f"poll_s must be > 0, got {poll_s}")
        self.endpoint = endpoint
        self.topic = topic
        self.schema = schema or DEFAULT_JSON_SCHEMA
        self.idle_timeout_s = idle_timeout_s
        self.poll_s = poll_s
        self.rcvhwm = rcvhwm
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._context = context
        self._sock: Any = None
        self._sock = self._connect()

    def _connect(self) -> Any:
        from swarmgp.protocol.zmq_feed import SubscriberSocket

        return SubscriberSocket(self.endpoint, self.topic, self.rcvhwm, self._context)

    def stop(self) -> None:
        """Ask the iteration to end at its next poll (thread-safe)."""
        self._stop.set()

    def _produce(self) -> Iterator[Observation]:
        sock = self._sock
        if sock is None:
            return
        parser = RowParser(self.schema, self.uri)
        last = time.monotonic()
        n = 0
        while not self._stop.is_set():
            if not sock.poll(self.poll_s):
                if (
                    self.idle_timeout_s is not None
                    and time.monotonic() - last > self.idle_timeout_s
                ):
                    return
                continue
            frames = sock.recv_frames()
            last = time.monotonic()
            n += 1
            topic = frames[0].decode("utf-8", "replace") if len(frames) > 1 else ""
            try:
                if len(frames) > 2:
                    raise BadRowError(
                        "malformed",
                        f"{len(frames)} frames, expected 1 or 2",
                        origin=self.uri,
                        line=n,
                    )
                got = decode_payload(frames[-1], parser, default_agent=topic or None, line=n)
            except BadRowError as err:
                self._bad(err)
                continue
            if isinstance(got, str):
                self.stats.control += 1
                if got == SYNC:
                    self.synced.set()
                    continue
                if got == EOS:
                    return
            else:
                yield got

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        super().close()
