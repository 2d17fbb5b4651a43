"""Bounded queue between a source and a learner, with back-pressure.

Policy ``"block"`` (default): a producer that finds the queue full waits, so
observations are held back, never dropped. Policy ``"drop-oldest"``: the oldest
queued item is discarded to make room, and counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Generic, TypeVar

from swarmgp.agents.sources.errors import QueueClosed, SourceConfigError

__all__ = ["BoundedQueue", "SourcePump", "POLICIES", "aiter_source", "iter_queue"]

T = TypeVar("T")
POLICIES = ("block", "drop-oldest")


class BoundedQueue(Generic[T]):
    """Thread-safe bounded FIFO.

    Parameters
    ----------
    maxsize : int
        Capacity (>= 1).
    policy : {"block", "drop-oldest"}

    Attributes
    ----------
    n_put, n_got, dropped, blocked : int
        Items accepted, delivered, dropped (drop-oldest only), and puts that had to wait.
    high_water : int
        Largest length seen.
    """

    def __init__(self, maxsize: int = 1024, policy: str = "block") -> None:
        if maxsize < 1:
            raise SourceConfigError(f"maxsize must be >= 1, got {maxsize}")
        if policy not in POLICIES:
            raise SourceConfigError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.maxsize = int(maxsize)
        self.policy = policy
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._error: BaseException | None = None
        self.n_put = 0
        self.n_got = 0
        self.dropped = 0
        self.blocked = 0
        self.high_water = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Append ``item``; under ``"block"`` wait while full.

        Returns
        -------
        bool
            ``False`` only if ``timeout`` elapsed with the queue still full (item not added).

        Raises
        ------
        QueueClosed
            If the queue is closed.
        """
        with self._not_full:
            if self._closed:
                raise QueueClosed("put on a closed queue")
            if len(self._items) >= self.maxsize:
                if self.policy == "drop-oldest":
                    self._items.popleft()
                    self.dropped += 1
                else:
                    self.blocked += 1
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while len(self._items) >= self.maxsize and not self._closed:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return False
                        self._not_full.wait(remaining)
                    if self._closed:
                        raise QueueClosed("queue closed while waiting to put")
            self._items.append(item)
            self.n_put += 1
            if len(self._items) > self.high_water:
                self.high_water = len(self._items)
            self._not_empty.notify()
            return True

    def get_many(self, max_items: int = 1, timeout: float | None = None) -> list[T]:
        """Remove and return up to ``max_items`` items, waiting up to ``timeout`` for the first.

        Returns
        -------
        list
            Empty only when ``timeout`` elapsed.

        Raises
        ------
        QueueClosed
            When the queue is closed and drained (or the producer's error, if it failed).
        """
        with self._not_empty:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    raise QueueClosed("queue closed and drained")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._not_empty.wait(remaining)
            n = min(max_items, len(self._items))
            out = [self._items.popleft() for _ in range(n)]
            self.n_got += n
            self._not_full.notify_all()
            return out

    def get(self, timeout: float | None = None) -> T:
        """Remove and return one item.

        Raises
        ------
        TimeoutError
            If ``timeout`` elapsed.
        QueueClosed
            When closed and drained.
        """
        items = self.get_many(1, timeout)
        if not items:
            raise TimeoutError(f"no item within {timeout} s")
        return items[0]

    def close(self, error: BaseException | None = None) -> None:
        """Close: producers fail, consumers drain what is left, then get ``QueueClosed``
        (or ``error``, the producer's failure)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._error = error
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def counters(self) -> dict[str, int]:
        """Snapshot of the counters."""
        with self._lock:
            return {
                "queued": len(self._items),
                "put": self.n_put,
                "got": self.n_got,
                "dropped": self.dropped,
                "blocked": self.blocked,
                "high_water": self.high_water,
            }


def iter_queue(q: BoundedQueue[T], chunk: int = 256) -> Iterator[T]:
    """Blocking iteration until the queue is closed and drained."""
    while True:
        try:
            items = q.get_many(chunk, None)
        except QueueClosed:
            return
        yield from items


class SourcePump(threading.Thread):
    """A daemon thread that iterates a (blocking) source into a :class:`BoundedQueue`.

    The queue is closed when the source ends, or with the source's exception, which the
    consumer then re-raises. :meth:`stop` closes the queue, which also unblocks the pump.
    """

    def __init__(self, source: Iterable[T], queue: BoundedQueue[T]) -> None:
        super().__init__(name=f"source-pump:{source!r}", daemon=True)
        self.source = source
        self.queue = queue

    def run(self) -> None:
        try:
            for item in self.source:
                self.queue.put(item)
        except QueueClosed:
            pass
        except BaseException as exc:  # handed to the consumer, not lost
            self.queue.close(exc)
            return
        self.queue.close()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Close the queue and join the thread."""
        self.queue.close()
        self.join(timeout)


async def aiter_source(
    source: Iterable[T],
    maxsize: int = 1024,
    policy: str = "block",
    chunk: int = 256,
    poll_s: float = 0.05,
) -> AsyncIterator[T]:
    """Async iteration over a blocking source: a :class:`SourcePump` thread feeds a bounded
    queue, the event loop drains it in chunks without blocking.

    Parameters
    ----------
    source : iterable
    maxsize, policy
        See :class:`BoundedQueue`.
    chunk : int
        Items taken per hop to a worker thread.
    poll_s : float
        Longest wait per hop (keeps cancellation responsive).
    """
    q: BoundedQueue[T] = BoundedQueue(maxsize, policy)
    pump = SourcePump(source, q)
    pump.start()
    try:
        while True:
            try:
                items = q.get_many(chunk, 0)
                if not items:
                    items = await asyncio.to_thread(q.get_many, chunk, poll_s)
            except QueueClosed:
                return
            for item in items:
                yield item
    finally:
        q.close()
