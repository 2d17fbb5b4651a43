"""Helpers for the simulator: split a table stream into per-agent batch lists, and hold
out a test set (stations and/or days)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .batching import Batch, iter_batches
from .errors import SourceConfigError
from .filters import RandomAssigner, station_mapping
from .record import Observation

__all__ = ["AgentStreams", "split_table_stream", "holdout_split", "to_arrays"]


@dataclass
class AgentStreams:
    """Per-agent lists of batches (indexable like ``list[list[Batch]]``).

    Attributes
    ----------
    batches : list of list of Batch
        ``batches[i]``: agent ``i``'s batches in stream order.
    keys : list of list of str
        Station keys each agent got (``by="column"``), empty for a random split.
    n_obs : list of int
        Observations per agent.
    """

    batches: list[list[Batch]]
    keys: list[list[str]] = field(default_factory=list)
    n_obs: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[Batch]:
        return self.batches[i]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)


def split_table_stream(
    source: Iterable[Observation],
    n_agents: int | None = None,
    *,
    by: str = "column",
    seed: int = 0,
    batch_size: int = 1,
    mapping: Mapping[str, int] | None = None,
    keep_partial: bool = True,
) -> AgentStreams:
    """Read a whole stream and split it into per-agent batch lists.

    Parameters
    ----------
    source : iterable of Observation
    n_agents : int, optional
        Number of agents. ``by="column"``: default one per station; with fewer agents
        than stations, sorted stations are dealt round robin (see :func:`station_mapping`).
        Required for ``by="random"``.
    by : {"column", "random"}
        Assign by the agent column (station), or by a seeded random split of rows.
    seed : int
        Seed of the random split.
    batch_size : int
        ``S`` of each batch (the last batch of an agent may be partial if ``keep_partial``).
    mapping : mapping, optional
        Explicit ``station -> agent index`` (``by="column"``); unmapped stations are dropped
        and counted in the result's ``keys`` (they do not appear).

    Returns
    -------
    AgentStreams
    """
    if by not in ("column", "random"):
        raise SourceConfigError(f"by must be 'column' or 'random', got {by!r}")
    rows = list(source)
    if by == "random":
        if n_agents is None:
            raise SourceConfigError("by='random' needs n_agents")
        assign = RandomAssigner(n_agents, seed)
        idx = [assign(o) for o in rows]
        keys: list[list[str]] = [[] for _ in range(n_agents)]
    else:
        m = (
            dict(mapping)
            if mapping is not None
            else station_mapping((o.agent for o in rows), n_agents)
        )
        n_agents = max(m.values()) + 1 if n_agents is None else n_agents
        if any(not 0 <= v < n_agents for v in m.values()):
            raise SourceConfigError(f"mapping sends a station outside [0, {n_agents})")
        idx = [m.get(o.agent, -1) for o in rows]
        keys = [[] for _ in range(n_agents)]
        for k in sorted(m):
            keys[m[k]].append(k)
    per: list[list[Observation]] = [[] for _ in range(n_agents)]
    for o, i in zip(rows, idx, strict=True):
        if i >= 0:
            per[i].append(o)
    batches = [list(iter_batches(p, batch_size, keep_partial=keep_partial)) for p in per]
    return AgentStreams(batches, keys, [len(p) for p in per])


def holdout_split(
    observations: Iterable[Observation],
    *,
    stations: Sequence[str] = (),
    n_stations: int = 0,
    days: Sequence[int] = (),
    day_fraction: float = 0.0,
    day_length: float = 1.0,
    seed: int = 0,
) -> tuple[list[Observation], list[Observation]]:
    """Split into ``(train, test)``: test = rows of held-out stations or held-out days.

    Parameters
    ----------
    stations : sequence of str
        Stations held out explicitly.
    n_stations : int
        Additionally hold out this many stations, drawn with ``seed`` from the others.
    days : sequence of int
        Day indices ``floor(t / day_length)`` held out explicitly.
    day_fraction : float
        Additionally hold out each other day with this probability (seeded per day, so
        the choice does not depend on the order of rows).
    day_length : float
        Length of a day in units of ``t`` (1 when ``t`` is in days, 86400 for seconds).
    seed : int
    """
    if not 0.0 <= day_fraction <= 1.0:
        raise SourceConfigError(f"day_fraction must be in [0, 1], got {day_fraction}")
    rows = list(observations)
    held = set(stations)
    if n_stations:
        rest = sorted({o.agent for o in rows} - held)
        if n_stations > len(rest):
            raise SourceConfigError(f"cannot hold out {n_stations} of {len(rest)} stations")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
        held |= {rest[i] for i in rng.choice(len(rest), n_stations, replace=False)}
    held_days = set(int(d) for d in days)
    cache: dict[int, bool] = {}

    def day_out(t: float) -> bool:
        day = int(np.floor(t / day_length))
        if day in held_days:
            return True
        if day_fraction <= 0:
            return False
        if day not in cache:
            r = np.random.default_rng(np.random.SeedSequence([seed, 13, day & 0x7FFFFFFF]))
            cache[day] = bool(r.random() < day_fraction)
        return cache[day]

    train: list[Observation] = []
    test: list[Observation] = []
    for o in rows:
        (test if o.agent in held or day_out(o.t) else train).append(o)
    return train, test


def to_arrays(observations: Sequence[Observation]) -> tuple[np.ndarray, np.ndarray]:
    """Stack observations into ``(X [n, d], y [n])`` float64.

    Raises
    ------
    SourceConfigError
        On an empty sequence.
    """
    if not observations:
        raise SourceConfigError("to_arrays: no observations")
    X = np.stack([o.x for o in observations]).astype(np.float64, copy=False)
    y = np.array([o.y for o in observations], dtype=np.float64)
    return X, y
