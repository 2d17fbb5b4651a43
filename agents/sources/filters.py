"""Per-agent filters: which rows of a shared stream belong to which agent.

Three assignments, all deterministic so that every agent process, reading the same
stream, agrees on who gets what:

- by the agent column's value (``obs.agent == key``);
- by a mapping ``station -> agent index`` (several stations may map to one agent);
- a seeded random split of rows (draws in stream order, so every process that reads
  the same accepted rows in the same order makes the same draws).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from .errors import SourceConfigError
from .record import Observation

__all__ = [
    "ColumnAssigner",
    "RandomAssigner",
    "agent_filter",
    "station_mapping",
]


def station_mapping(keys: Iterable[str], n_agents: int | None = None) -> dict[str, int]:
    """Map station keys to agent indices: sorted keys, rank modulo ``n_agents``
    (default: one agent per station).

    Raises
    ------
    SourceConfigError
        If there are fewer stations than agents.
    """
    uniq = sorted(set(keys))
    n = len(uniq) if n_agents is None else int(n_agents)
    if n < 1 or n > len(uniq):
        raise SourceConfigError(f"cannot spread {len(uniq)} stations over {n} agents")
    return {k: i % n for i, k in enumerate(uniq)}


class ColumnAssigner:
    """``obs -> agent index`` by the agent key, through ``mapping`` (unknown keys -> ``None``)."""

    def __init__(self, mapping: Mapping[str, int]) -> None:
        self.mapping = dict(mapping)

    def __call__(self, obs: Observation) -> int | None:
        return self.mapping.get(obs.agent)


class RandomAssigner:
    """``obs -> agent index`` uniformly at random, seeded, one draw per observation in order."""

    def __init__(self, n_agents: int, seed: int = 0, chunk: int = 4096) -> None:
        if n_agents < 1:
            raise SourceConfigError(f"n_agents must be >= 1, got {n_agents}")
        self.n_agents = int(n_agents)
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self._chunk = chunk
        self._buf: list[int] = []
        self._i = 0

    def __call__(self, obs: Observation) -> int:
        if self._i >= len(self._buf):
            self._buf = self._rng.integers(0, self.n_agents, self._chunk).tolist()
            self._i = 0
        a = self._buf[self._i]
        self._i += 1
        return a


def agent_filter(
    index: int | None = None,
    *,
    key: str | None = None,
    mapping: Mapping[str, int] | None = None,
    n_agents: int | None = None,
    seed: int = 0,
) -> Callable[[Observation], bool]:
    """Build ``keep(obs) -> bool`` for one agent (pass it as a source's ``keep=``).

    Parameters
    ----------
    index : int, optional
        This agent's index (with ``mapping`` or ``n_agents``).
    key : str, optional
        Keep rows whose agent column equals ``key``.
    mapping : mapping, optional
        ``station -> agent index``; keep rows that map to ``index``.
    n_agents : int, optional
        With neither ``key`` nor ``mapping``: seeded random split into ``n_agents``.
    seed : int
        Seed of the random split.

    Raises
    ------
    SourceConfigError
        For an ambiguous or incomplete choice.
    """
    if key is not None:
        if mapping is not None or n_agents is not None:
            raise SourceConfigError("agent_filter: give key alone")
        return lambda obs: obs.agent == key
    if index is None:
        raise SourceConfigError("agent_filter: index is required with mapping / n_agents")
    if mapping is not None:
        assign: Callable[[Observation], int | None] = ColumnAssigner(mapping)
    elif n_agents is not None:
        if not 0 <= index < n_agents:
            raise SourceConfigError(f"agent index {index} not in [0, {n_agents})")
        assign = RandomAssigner(n_agents, seed)
    else:
        raise SourceConfigError("agent_filter: give key, mapping or n_agents")
    return lambda obs: assign(obs) == index
