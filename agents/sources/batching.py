"""Group an observation stream into batches ``(X [S, d], y [S])`` for ``Agent.observe``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from swarmgp.agents.sources.errors import BadRowError, SourceConfigError
from swarmgp.agents.sources.record import Observation

__all__ = ["Batch", "Batcher", "iter_batches", "iter_agent_batches"]


@dataclass(frozen=True, eq=False)
class Batch:
    """A batch of observations of one agent.

    Attributes
    ----------
    agent : str
        Agent key (``"*"`` if a batch mixed agents).
    X : numpy.ndarray
        Inputs, float64 ``[S, d]``.
    y : numpy.ndarray
        Targets, float64 ``[S]``.
    t : numpy.ndarray
        Time stamps ``[S]``.
    """

    agent: str
    X: np.ndarray
    y: np.ndarray
    t: np.ndarray

    @property
    def now(self) -> float:
        """Latest time stamp in the batch (the ``now`` of ``observe(X, y, now)``)."""
        return float(self.t.max())

    def __len__(self) -> int:
        return int(self.y.shape[0])


class Batcher:
    """Accumulates observations into preallocated arrays; emits a :class:`Batch` every
    ``batch_size`` observations.

    Parameters
    ----------
    batch_size : int
        ``S`` (>= 1).
    d : int or None
        Input dimension; ``None``: fixed by the first observation.
    """

    def __init__(self, batch_size: int, d: int | None = None) -> None:
        if batch_size < 1:
            raise SourceConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.d = d
        self._n = 0
        self._agent: str | None = None
        self._X: np.ndarray | None = None
        self._y = np.empty(self.batch_size)
        self._t = np.empty(self.batch_size)

    def __len__(self) -> int:
        return self._n

    def add(self, obs: Observation) -> Batch | None:
        """Add one observation; return a full batch when one completes.

        Raises
        ------
        BadRowError
            If ``obs.x`` has a different dimension from the batch's.
        """
        if self.d is None:
            self.d = obs.x.shape[0]
        if self._X is None:
            self._X = np.empty((self.batch_size, self.d))
        if obs.x.shape != (self.d,):
            raise BadRowError("wrong_dimension", f"x has shape {obs.x.shape}, expected ({self.d},)")
        i = self._n
        self._X[i] = obs.x
        self._y[i] = obs.y
        self._t[i] = obs.t
        if i == 0:
            self._agent = obs.agent
        elif obs.agent != self._agent:
            self._agent = "*"
        self._n = i + 1
        if self._n == self.batch_size:
            return self._emit()
        return None

    def flush(self) -> Batch | None:
        """Emit the partial batch, if any."""
        return self._emit() if self._n else None

    def _emit(self) -> Batch:
        assert self._X is not None and self._agent is not None
        n = self._n
        if n == self.batch_size:
            batch = Batch(self._agent, self._X, self._y, self._t)
            self._X = np.empty((self.batch_size, self.d or 0))
            self._y = np.empty(self.batch_size)
            self._t = np.empty(self.batch_size)
        else:
            batch = Batch(self._agent, self._X[:n].copy(), self._y[:n].copy(), self._t[:n].copy())
        self._n = 0
        return batch


def iter_batches(
    observations: Iterable[Observation], batch_size: int, *, keep_partial: bool = True
) -> Iterator[Batch]:
    """Batches of a single stream, in order (the last may be partial if ``keep_partial``)."""
    b = Batcher(batch_size)
    for obs in observations:
        out = b.add(obs)
        if out is not None:
            yield out
    if keep_partial:
        last = b.flush()
        if last is not None:
            yield last


def iter_agent_batches(
    observations: Iterable[Observation], batch_size: int, *, keep_partial: bool = True
) -> Iterator[Batch]:
    """Batches per agent key from an interleaved stream: one :class:`Batcher` per agent;
    each batch is emitted when that agent's batch fills (partials flushed at the end,
    in order of first appearance)."""
    batchers: dict[str, Batcher] = {}
    for obs in observations:
        b = batchers.get(obs.agent)
        if b is None:
            b = batchers[obs.agent] = Batcher(batch_size)
        out = b.add(obs)
        if out is not None:
            yield out
    if keep_partial:
        for b in batchers.values():
            last = b.flush()
            if last is not None:
                yield last
