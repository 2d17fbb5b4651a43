"""The :class:`Source` interface shared by every data source."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType

from swarmgp.agents.sources.errors import BadRowError, SourceConfigError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.replay import Pacer
from swarmgp.agents.sources.stats import SourceStats

__all__ = ["Source", "ON_BAD"]

ON_BAD = ("count", "raise")


class Source(abc.ABC):
    """An iterator of :class:`Observation` s, with counters and an optional pacer / filter.

    Subclasses implement :meth:`_produce` (yield accepted observations; report bad rows
    through :meth:`_bad`). Iterate with ``for obs in source`` (blocking) or
    ``async for obs in source`` (a thread feeds a bounded queue; see
    :func:`~.queue.aiter_source`).

    Parameters
    ----------
    uri : str
        Where the data come from (for messages and reports).
    pacer : Pacer, optional
        Replay pacing; default: as fast as possible.
    keep : callable, optional
        Per-agent filter ``keep(obs) -> bool`` applied after parsing.
    on_bad : {"count", "raise"}
        Count-and-skip malformed rows (default), or raise the :class:`BadRowError`.
    """

    def __init__(
        self,
        uri: str,
        *,
        pacer: Pacer | None = None,
        keep: Callable[[Observation], bool] | None = None,
        on_bad: str = "count",
    ) -> None:
        if on_bad not in ON_BAD:
            raise SourceConfigError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
        self.uri = uri
        self.stats = SourceStats()
        self.pacer = pacer
        self.keep = keep
        self.on_bad = on_bad
        self._closed = False

    @abc.abstractmethod
    def _produce(self) -> Iterator[Observation]:
        """Yield accepted observations in source order."""

    def _bad(self, err: BadRowError) -> None:
        self.stats.reject(err)
        if self.on_bad == "raise":
            raise err

    def __iter__(self) -> Iterator[Observation]:
        keep = self.keep
        pacer = self.pacer
        stats = self.stats
        try:
            for obs in self._produce():
                stats.accepted += 1
                if keep is not None and not keep(obs):
                    continue
                if pacer is not None:
                    pacer.wait(obs.t)
                yield obs
        finally:
            self.close()

    def __aiter__(self) -> AsyncIterator[Observation]:
        from swarmgp.agents.sources.queue import aiter_source

        return aiter_source(self)

    def close(self) -> None:
        """Release files / sockets (idempotent)."""
        self._closed = True

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
