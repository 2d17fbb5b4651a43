"""The one splitter: which agent observes a row, and whether the row is held out for scoring.

Every decision is taken per row, from the row alone (and the run seed), so that the simulator
reading a whole table, a real agent process filtering a stream for its own rows, and the
experiments all agree on every row, whatever order or subset of rows each of them reads:

* **assignment**, by the agent column (sorted sensor keys dealt round robin over the agents,
  :func:`station_mapping`), by a stable hash of the sensor key (``by="hash"``,
  :func:`key_agent`: live feeds, where no list of every key exists before the agents start)
  or at random (a seeded hash of the row's content, so the choice does not depend on the rows
  read before it);
* **hold-out**, by ``"random"`` rows (the same hash: a row is held out with probability
  ``1 / every``) or by ``"time"`` (whole days: ``int(floor(t)) % every == 0``), plus any
  named sensors held out whole (the experiments' spatial task). ``"none"`` holds out nothing
  but those sensors.

The row hash is BLAKE2b of the seed and the row's values (agent key, ``t``, ``x`` and ``y``
as little-endian float64): stable across processes, platforms and row order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarmgp.agents.sources.batching import Batch, iter_batches
from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.agents.sources.record import Observation

__all__ = [
    "AgentStreams",
    "ColumnAssigner",
    "HOLDOUT_RULES",
    "Holdout",
    "RandomAssigner",
    "Splitter",
    "agent_filter",
    "holdout_split",
    "key_agent",
    "order_rows",
    "pick_stations",
    "pick_test_rows",
    "row_digest",
    "split_table_stream",
    "station_mapping",
    "to_arrays",
]

#: Hold-out rules: random rows, whole days, or nothing (but named sensors).
HOLDOUT_RULES = ("random", "time", "none")
_TWO64 = float(2**64)
# spawn keys of the run seed's SeedSequence used here
_ORDER, _TEST, _STATIONS = 101, 102, 103


def row_digest(obs: Observation, seed: int) -> bytes:
    """16 bytes of BLAKE2b of ``seed`` and the row's values (agent, t, x, y).

    Bytes 0-7 decide the hold-out, bytes 8-15 the random assignment (independent draws).
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(str(int(seed)).encode())
    h.update(b"\x00")
    h.update(obs.agent.encode("utf-8"))
    h.update(b"\x00")
    h.update(struct.pack("<d", float(obs.t)))
    h.update(np.ascontiguousarray(obs.x, dtype="<f8").tobytes())
    h.update(struct.pack("<d", float(obs.y)))
    return h.digest()


def key_agent(key: str, n_agents: int) -> int:
    """The agent of a sensor key on a live feed: BLAKE2b-64 of the key modulo ``n_agents``.

    Needs no list of keys, so every process maps a key it has never seen the same way. The
    trade-off against the round robin of :func:`station_mapping` (tables, whose keys are all
    known): the load is balanced only on average, and with K keys over A agents an agent gets
    no key with probability ``(1 - 1/A)^K`` (it then learns nothing but still fuses).
    """
    h = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") % int(n_agents)


def _unit(b: bytes) -> float:
    """Eight digest bytes as a uniform number in [0, 1)."""
    return int.from_bytes(b, "little") / _TWO64


# ---------------------------------------------------------------------------- assignment


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
    """``obs -> agent index`` uniformly at random: a seeded hash of the row (:func:`row_digest`).

    The choice depends on the row alone, not on the rows before it.
    """

    def __init__(self, n_agents: int, seed: int = 0) -> None:
        if n_agents < 1:
            raise SourceConfigError(f"n_agents must be >= 1, got {n_agents}")
        self.n_agents = int(n_agents)
        self.seed = int(seed)

    def __call__(self, obs: Observation) -> int:
        return int.from_bytes(row_digest(obs, self.seed)[8:16], "little") % self.n_agents


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


# ---------------------------------------------------------------------------- hold-out


@dataclass(frozen=True)
class Holdout:
    """Which rows are held out for scoring (never observed by any agent).

    Parameters
    ----------
    rule : {"random", "time", "none"}
        ``"random"``: a row is held out with probability ``1 / every`` (seeded row hash);
        ``"time"``: rows of every ``every``-th day, ``int(floor(t / day_length)) % every == 0``;
        ``"none"``: only the rows of ``stations``.
    every : int
        K >= 2 (ignored by ``"none"``).
    seed : int
        Seed of the row hash.
    stations : tuple of str
        Sensors held out whole, in addition to the rule.
    day_length : float
        Length of a day in units of ``t`` (1 when ``t`` is in days).
    """

    rule: str = "random"
    every: int = 10
    seed: int = 0
    stations: tuple[str, ...] = ()
    day_length: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stations", tuple(sorted(set(self.stations))))
        if self.rule not in HOLDOUT_RULES:
            raise SourceConfigError(
                f"holdout rule must be one of {HOLDOUT_RULES}, got {self.rule!r}"
            )
        if self.rule != "none" and self.every < 2:
            raise SourceConfigError(f"holdout every must be >= 2, got {self.every}")
        if not self.day_length > 0:
            raise SourceConfigError(f"holdout day_length must be > 0, got {self.day_length}")

    def __call__(self, obs: Observation) -> bool:
        """Whether ``obs`` is held out."""
        if self.stations and obs.agent in self.stations:
            return True
        if self.rule == "time":
            return int(np.floor(obs.t / self.day_length)) % self.every == 0
        if self.rule == "random":
            return _unit(row_digest(obs, self.seed)[:8]) * self.every < 1.0
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rule": self.rule,
            "every": self.every,
            "seed": self.seed,
            "stations": list(self.stations),
            "day_length": self.day_length,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Holdout:
        """Inverse of :meth:`to_dict`."""
        kw = dict(data)
        kw["stations"] = tuple(kw.get("stations", ()))
        return cls(**kw)


def pick_stations(
    keys: Iterable[str], n: int, seed: int, *, always: Sequence[str] = ()
) -> tuple[str, ...]:
    """``always`` plus ``n`` more sensors drawn with ``seed`` from the others (sorted).

    Raises
    ------
    SourceConfigError
        If fewer than ``n`` other sensors exist.
    """
    rest = sorted(set(keys) - set(always))
    if n > len(rest):
        raise SourceConfigError(f"cannot hold out {n} of {len(rest)} stations")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STATIONS,)))
    drawn = [rest[i] for i in rng.choice(len(rest), n, replace=False)] if n else []
    return tuple(sorted({*always, *drawn}))


def holdout_split(
    observations: Iterable[Observation], holdout: Holdout
) -> tuple[list[Observation], list[Observation]]:
    """Split rows into ``(train, test)`` by ``holdout``, each in the input order."""
    train: list[Observation] = []
    test: list[Observation] = []
    for o in observations:
        (test if holdout(o) else train).append(o)
    return train, test


def pick_test_rows(n_rows: int, n: int, seed: int) -> np.ndarray:
    """Which held-out rows are scored: a seeded random order of them, the first ``n``.

    Returns
    -------
    ndarray of shape (min(n, n_rows),)
        Row indices into the held-out rows (in file order), in a random order (a series that
        scores only a prefix of the test set then scores a random sample).
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TEST,)))
    return rng.permutation(n_rows)[:n]


# ---------------------------------------------------------------------------- the splitter


@dataclass(frozen=True)
class Splitter:
    """Row -> the agent that observes it, or ``None`` (held out, or of no agent's sensor).

    Parameters
    ----------
    n_agents : int
        A.
    holdout : Holdout
    by : {"column", "hash", "random"}
        Assign by the agent column through ``sensors``, by a hash of the agent column's key
        (:func:`key_agent`; no key list), or by a seeded row hash.
    sensors : tuple of tuple of str
        ``by="column"``: ``sensors[a]``, the sensor keys agent ``a`` reads.
    seed : int
        Seed of the random assignment (and of :func:`order_rows`).
    """

    n_agents: int
    holdout: Holdout = field(default_factory=Holdout)
    by: str = "column"
    sensors: tuple[tuple[str, ...], ...] = ()
    seed: int = 0
    _owner: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_agents < 1:
            raise SourceConfigError(f"n_agents must be >= 1, got {self.n_agents}")
        if self.by not in ("column", "hash", "random"):
            raise SourceConfigError(f"by must be 'column', 'hash' or 'random', got {self.by!r}")
        sensors = tuple(tuple(s) for s in self.sensors)
        object.__setattr__(self, "sensors", sensors)
        if self.by == "column":
            if len(sensors) != self.n_agents:
                raise SourceConfigError(
                    f"by column: {len(sensors)} sensor lists for {self.n_agents} agents"
                )
            owner = {k: a for a, keys in enumerate(sensors) for k in keys}
            if len(owner) != sum(len(s) for s in sensors):
                raise SourceConfigError("a sensor maps to two agents")
            object.__setattr__(self, "_owner", owner)

    @classmethod
    def by_column(
        cls, keys: Iterable[str], n_agents: int | None, holdout: Holdout, seed: int = 0
    ) -> Splitter:
        """Sorted sensor keys dealt round robin over ``n_agents`` (None: one per sensor)."""
        mapping = station_mapping(keys, n_agents)
        A = max(mapping.values()) + 1
        per: list[list[str]] = [[] for _ in range(A)]
        for k in sorted(mapping):
            per[mapping[k]].append(k)
        return cls(A, holdout, "column", tuple(tuple(p) for p in per), seed)

    def agent_of(self, obs: Observation) -> int | None:
        """The agent whose share ``obs`` is (hold-out aside); None: no agent reads its sensor."""
        if self.by == "column":
            return self._owner.get(obs.agent)
        if self.by == "hash":
            return key_agent(obs.agent, self.n_agents)
        return int.from_bytes(row_digest(obs, self.seed)[8:16], "little") % self.n_agents

    def held_out(self, obs: Observation) -> bool:
        """Whether ``obs`` is a test row."""
        return self.holdout(obs)

    def route(self, obs: Observation) -> int | None:
        """The agent that observes ``obs``; None for a held-out row or an unread sensor."""
        if self.holdout(obs):
            return None
        return self.agent_of(obs)

    def keep_train(self, agent: int) -> Callable[[Observation], bool]:
        """``keep(obs)`` of agent ``agent``'s own training rows (a source's ``keep=``)."""
        if not 0 <= agent < self.n_agents:
            raise SourceConfigError(f"agent {agent} not in [0, {self.n_agents})")
        if self.by == "column":
            own = frozenset(self.sensors[agent])
            return lambda obs: obs.agent in own and not self.holdout(obs)
        return lambda obs: self.route(obs) == agent

    def partition(
        self, rows: Iterable[Observation]
    ) -> tuple[list[list[Observation]], list[Observation]]:
        """One pass: ``(per_agent, held)``, each list in input order (unread sensors dropped)."""
        per: list[list[Observation]] = [[] for _ in range(self.n_agents)]
        held: list[Observation] = []
        for o in rows:
            if self.holdout(o):
                held.append(o)
                continue
            a = self.agent_of(o)
            if a is not None:
                per[a].append(o)
        return per, held

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "n_agents": self.n_agents,
            "holdout": self.holdout.to_dict(),
            "by": self.by,
            "sensors": [list(s) for s in self.sensors],
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Splitter:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(data["n_agents"]),
            Holdout.from_dict(data["holdout"]),
            str(data["by"]),
            tuple(tuple(s) for s in data["sensors"]),
            int(data["seed"]),
        )


def order_rows(rows: Sequence[Observation], order: str, seed: int, agent: int) -> list[Observation]:
    """One agent's rows in stream order: ``"time"`` (stable by ``t``) or ``"random"``.

    The random order is seeded by ``(seed, agent)`` alone, so an agent computes it by itself.
    """
    if order == "time":
        return sorted(rows, key=lambda o: o.t)
    if order == "random":
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_ORDER, agent)))
        return [rows[i] for i in rng.permutation(len(rows))]
    raise SourceConfigError(f"order must be 'random' or 'time', got {order!r}")


# ---------------------------------------------------------------------------- batch lists


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

    def __iter__(self) -> Iterator[list[Batch]]:
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
    """Read a whole stream and split it into per-agent batch lists (no hold-out).

    Parameters
    ----------
    source : iterable of Observation
    n_agents : int, optional
        Number of agents. ``by="column"``: default one per station; with fewer agents
        than stations, sorted stations are dealt round robin (see :func:`station_mapping`).
        Required for ``by="random"``.
    by : {"column", "random"}
        Assign by the agent column (station), or by the seeded row hash.
    seed : int
        Seed of the random split.
    batch_size : int
        ``S`` of each batch (the last batch of an agent may be partial if ``keep_partial``).
    mapping : mapping, optional
        Explicit ``station -> agent index`` (``by="column"``); unmapped stations are dropped.
    keep_partial : bool
        Keep each agent's last, partial batch.

    Returns
    -------
    AgentStreams
    """
    if by not in ("column", "random"):
        raise SourceConfigError(f"by must be 'column' or 'random', got {by!r}")
    rows = list(source)
    none = Holdout("none")
    if by == "random":
        if n_agents is None:
            raise SourceConfigError("by='random' needs n_agents")
        splitter = Splitter(n_agents, none, "random", seed=seed)
    else:
        m = (
            dict(mapping)
            if mapping is not None
            else station_mapping((o.agent for o in rows), n_agents)
        )
        n_agents = max(m.values()) + 1 if n_agents is None else n_agents
        if any(not 0 <= v < n_agents for v in m.values()):
            raise SourceConfigError(f"mapping sends a station outside [0, {n_agents})")
        per_keys: list[list[str]] = [[] for _ in range(n_agents)]
        for k in sorted(m):
            per_keys[m[k]].append(k)
        splitter = Splitter(n_agents, none, "column", tuple(tuple(p) for p in per_keys), seed)
    per, _ = splitter.partition(rows)
    batches = [list(iter_batches(p, batch_size, keep_partial=keep_partial)) for p in per]
    keys = [list(s) for s in splitter.sensors] if by == "column" else [[] for _ in per]
    return AgentStreams(batches, keys, [len(p) for p in per])


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
