"""The transport interface and an in-memory network for deterministic tests.

A :class:`Transport` moves :class:`~swarmgp.protocol.messages.Message` objects between agent
ids. Delivery is best effort: messages may be lost, duplicated or reordered, and the protocol
above copes by sending full, versioned state. Receive-side decode failures never raise: they
are counted in ``rejected`` by reason and reported to ``on_reject``.

:class:`InMemoryNetwork` connects :class:`InMemoryTransport` endpoints inside one process with
seeded loss, duplication and reordering. With ``wire=True`` every message goes through the
real codec (encode on send, decode on receive), so byte counts and validation are exercised.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from swarmgp.protocol.codec import decode, encode
from swarmgp.protocol.errors import DecodeError
from swarmgp.protocol.messages import Message

__all__ = ["InMemoryNetwork", "InMemoryTransport", "LiveTransport", "RejectHook", "Transport"]

#: Called with the reason of each rejected incoming frame set.
RejectHook = Callable[[str], None]


@runtime_checkable
class Transport(Protocol):
    """What an agent driver needs from a network."""

    def send(self, dest: int, msg: Message) -> None:
        """Queue ``msg`` for ``dest``; never blocks, may drop."""
        ...

    def recv(self, timeout_s: float) -> Message | None:
        """Next valid message, waiting up to ``timeout_s``; ``None`` if none arrived."""
        ...

    def close(self) -> None:
        """Release resources; pending messages may be discarded."""
        ...


@runtime_checkable
class LiveTransport(Transport, Protocol):
    """What the real-time runner needs beyond :class:`Transport`: an address and an event loop."""

    endpoint: str

    def flush(self) -> object:
        """Try again to send messages a full socket held back (never blocks)."""
        ...

    async def wait_readable(self, timeout_s: float) -> object:
        """Return when a message may be waiting, or after ``timeout_s``."""
        ...

    def disconnect(self, peer: int) -> None:
        """Close the connection to ``peer`` (a peer the agent dropped)."""
        ...


class InMemoryNetwork:
    """A seeded lossy network between in-process transports.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random fault decision (replayable).
    loss : float
        Probability that a sent message is dropped.
    duplicate : float
        Probability that a delivered message is delivered twice.
    reorder : float
        Probability that a delivered message is inserted at a random earlier place in the
        receiver's queue instead of at its end.
    wire : bool
        Encode and decode every message with the real codec.
    m, encoding_hash : int, str
        The swarm's encoding, used by the codec when ``wire`` is set.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        wire: bool = False,
        m: int = 0,
        encoding_hash: str = "",
    ) -> None:
        self.rng = rng
        self.loss, self.duplicate, self.reorder = float(loss), float(duplicate), float(reorder)
        self.wire, self.m, self.encoding_hash = wire, m, encoding_hash
        self._queues: dict[int, deque[Message | Sequence[bytes]]] = {}
        self._transports: dict[int, InMemoryTransport] = {}
        self.down: set[int] = set()  # ids whose traffic is dropped (crashed)
        self.stats: Counter[str] = Counter()

    def transport(self, agent_id: int) -> InMemoryTransport:
        """Create (or replace) the endpoint of ``agent_id``; its queue starts empty."""
        t = InMemoryTransport(self, agent_id)
        self._queues[agent_id] = deque()
        self._transports[agent_id] = t
        self.down.discard(agent_id)
        return t

    def inject(self, dest: int, frames: Sequence[bytes]) -> None:
        """Deliver raw frames to ``dest`` (for fuzzing); they are decoded on receive."""
        self._queues[dest].append(list(frames))

    def pending(self, agent_id: int) -> int:
        """Number of messages queued for ``agent_id``."""
        return len(self._queues.get(agent_id, ()))

    def _deliver(self, src: int, dest: int, msg: Message) -> None:
        q = self._queues.get(dest)
        self.stats["sent"] += 1
        if q is None or dest in self.down or src in self.down:
            self.stats["unroutable"] += 1
            return
        if self.loss and self.rng.random() < self.loss:
            self.stats["lost"] += 1
            return
        item: Message | Sequence[bytes] = msg
        if self.wire:
            frames = encode(msg, self.encoding_hash, self.m)
            self.stats["bytes"] += sum(memoryview(f).nbytes for f in frames)
            item = [bytes(f) for f in frames]  # a real wire copies too
        copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            if q and self.reorder and self.rng.random() < self.reorder:
                q.insert(int(self.rng.integers(0, len(q))), item)
                self.stats["reordered"] += 1
            else:
                q.append(item)


class InMemoryTransport:
    """One agent's endpoint on an :class:`InMemoryNetwork` (non-blocking ``recv``)."""

    def __init__(self, net: InMemoryNetwork, agent_id: int) -> None:
        self.net = net
        self.agent_id = agent_id
        self.rejected: Counter[str] = Counter()
        self.on_reject: RejectHook | None = None
        self.closed = False

    def send(self, dest: int, msg: Message) -> None:
        """Hand ``msg`` to the network for ``dest``."""
        if not self.closed:
            self.net._deliver(self.agent_id, dest, msg)

    def recv(self, timeout_s: float = 0.0) -> Message | None:
        """Pop the next valid message, or ``None`` when the queue is empty (never waits)."""
        q = self.net._queues.get(self.agent_id)
        while q:
            item = q.popleft()
            if isinstance(item, list):
                try:
                    return decode(item, self.net.m, self.net.encoding_hash)
                except DecodeError as e:
                    self.rejected[e.reason] += 1
                    if self.on_reject is not None:
                        self.on_reject(e.reason)
                    continue
            return item  # type: ignore[return-value]
        return None

    def close(self) -> None:
        """Stop sending; queued messages stay until the id is re-created."""
        self.closed = True
