"""Virtual time: a clock that only moves when the event queue says so, and that queue.

Events are ordered by ``(time, key)``: ``key`` defaults to a global counter assigned at
scheduling, so two events at the same virtual time run in the order they were scheduled,
whatever their payloads. The simulator passes its own keys (who scheduled the event and that
scheduler's own counter, see :mod:`swarmgp.sim.scheduler`), which do not depend on how the
agents are spread over MPI ranks. With every random draw seeded, a run is therefore replayable
bit for bit.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from swarmgp.fusion.errors import SwarmGPError

__all__ = ["ClockError", "EventQueue", "VirtualClock"]


class ClockError(SwarmGPError):
    """Time would go backwards, or an event time is not a finite number."""


class VirtualClock:
    """Simulated seconds since the start of the run; never reads the wall clock.

    Parameters
    ----------
    start : float
        Initial time.
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Current virtual time in seconds."""
        return self._now

    __call__ = now

    def advance_to(self, t: float) -> None:
        """Move the clock forward to ``t``.

        Raises
        ------
        ClockError
            If ``t`` is earlier than the current time.
        """
        if t < self._now:
            raise ClockError(f"clock: cannot go back from {self._now} to {t}")
        self._now = float(t)


class EventQueue:
    """Min-heap of ``(time, key, kind, a, b)`` tuples with a deterministic tie-break.

    ``kind`` is a small int chosen by the driver; ``a`` and ``b`` are its payload.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0

    def push(self, t: float, kind: int, a: Any = None, b: Any = None, key: int = -1) -> None:
        """Schedule an event at virtual time ``t`` (finite).

        ``key`` (an int, unique among the queue's events) breaks ties at equal times; by
        default the scheduling order.
        """
        if not math.isfinite(t):
            raise ClockError(f"event queue: event time must be finite, got {t}")
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq if key < 0 else key, kind, a, b))

    def pop(self) -> tuple[float, int, int, Any, Any]:
        """Remove and return the earliest event."""
        return heapq.heappop(self._heap)

    def peek_time(self) -> float:
        """Time of the earliest event, ``inf`` when empty."""
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def scheduled(self) -> int:
        """Events ever scheduled."""
        return self._seq
