"""Data streams of a simulated swarm, built from the one data layer of ``agents/sources``.

The simulator gives agent ``a`` exactly the batches a real agent process ``a`` reads through
:func:`swarmgp.agents.sources.agent_feed.agent_batches` for the same data settings and seed:

* synthetic (the paper's SYNTHETIC setting, COOL-GP Sec. 5a, generalized to many agents): the
  rows of the one :class:`~swarmgp.agents.sources.world.SyntheticWorld` (a latent GP draw ``u``
  seen through the projection ``W_g`` of the agent's group, standard-normal inputs); every
  agent is scored on the world's test inputs against its own group's targets;
* a table (``csv:PATH``, ...): split over agents and held out row by row by the one
  :class:`~swarmgp.agents.sources.split.Splitter` (by the agent column or at random; random rows
  or whole days held out), each agent's rows in random (seeded) or time order, standardized by
  the manifest's feature transform fitted on the training rows; every agent is scored on a
  seeded sample of the held-out rows, in the target's units (see :meth:`Streams.to_units`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarmgp.agents.sources.agent_feed import (
    TestSet,
    batch_arrays,
    is_synthetic,
    load_table,
    table_test_set,
)
from swarmgp.agents.sources.errors import SourceError
from swarmgp.agents.sources.settings import DataSettings
from swarmgp.agents.sources.split import order_rows
from swarmgp.agents.sources.world import DEFAULT_AGENTS, DEFAULT_BATCHES, SyntheticWorld

__all__ = [
    "StreamError",
    "Streams",
    "make_streams",
    "synthetic_streams",
    "table_streams",
]


class StreamError(SourceError):
    """A stream cannot be built: bad settings, unreadable file, missing column, too few rows."""


@dataclass
class Streams:
    """Per-agent batch lists plus a held-out test set.

    Attributes
    ----------
    d : int
        Input dimension.
    batches : list of list of (ndarray (S, d), ndarray (S,))
        ``batches[a][k]`` is agent a's k-th batch, standardized.
    X_test : ndarray of shape (n_test, d)
    y_test_groups : ndarray of shape (G, n_test)
        Standardized test targets of each group.
    group : ndarray of shape (A,)
        Agent -> group index.
    y_mean, y_std : float
        Target standardization (y_units = y_mean + y_std * y_std_units).
    info : dict
        Description for the report.
    agent_test : list of (ndarray (n_a, d), ndarray (n_a,)) or None
        A table's held-out rows of each agent's own sensors (standardized), in file order:
        ``agent_test[a]`` (the splitter's hold-out, :meth:`held_rows`); None on synthetic data,
        where every agent's own test targets are ``y_test(a)`` on ``X_test``.
    """

    d: int
    batches: list[list[tuple[np.ndarray, np.ndarray]]]
    X_test: np.ndarray
    y_test_groups: np.ndarray
    group: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    agent_test: list[tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def n_agents(self) -> int:
        """A."""
        return len(self.batches)

    def n_batches(self, a: int) -> int:
        """Number of batches agent a will receive."""
        return len(self.batches[a])

    def y_test(self, a: int) -> np.ndarray:
        """Standardized test targets of agent a, shape (n_test,)."""
        return self.y_test_groups[int(self.group[a])]

    def pooled(self, upto: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All batches (or the first ``upto[a]`` of each agent) stacked: X (n, d), y (n,)."""
        Xs, ys = [], []
        for a, bl in enumerate(self.batches):
            k = len(bl) if upto is None else int(upto[a])
            for X, y in bl[:k]:
                Xs.append(X)
                ys.append(y)
        if not Xs:
            return np.zeros((0, self.d)), np.zeros(0)
        return np.concatenate(Xs), np.concatenate(ys)

    def to_units(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map standardized predictive mean and variance back to the target's units."""
        return self.y_mean + self.y_std * mean, (self.y_std**2) * var

    def y_units(self, y: np.ndarray) -> np.ndarray:
        """Standardized targets back in the target's units."""
        return self.y_mean + self.y_std * y

    def held_rows(self, a: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Agent a's own held-out rows (X (n, d), standardized y (n,)); None if none known."""
        if self.agent_test is None:
            return None
        return self.agent_test[a]

    def select(self, ids: Sequence[int]) -> Streams:
        """The streams of agents ``ids`` only, renumbered ``0 .. len(ids) - 1`` (same test set).

        Raises
        ------
        StreamError
            No agent, or an id out of range.
        """
        ids = [int(a) for a in ids]
        if not ids or not all(0 <= a < self.n_agents for a in ids):
            raise StreamError(f"select: expected agents in [0, {self.n_agents}), got {ids}")
        return Streams(
            self.d,
            [self.batches[a] for a in ids],
            self.X_test,
            self.y_test_groups,
            self.group[ids],
            self.y_mean,
            self.y_std,
            dict(self.info),
            None if self.agent_test is None else [self.agent_test[a] for a in ids],
        )


# ---------------------------------------------------------------------------- synthetic


def synthetic_streams(
    world: SyntheticWorld, n_agents: int, n_batches: int, batch_size: int, test_points: int
) -> Streams:
    """Streams of the synthetic world: agent ``a`` gets ``world.batches(a, B, S)``.

    Parameters
    ----------
    world : SyntheticWorld
    n_agents : int
        A.
    n_batches : int
        B, batches per agent.
    batch_size : int
        S.
    test_points : int
        Test inputs (every group's targets there).

    Returns
    -------
    Streams
    """
    if n_agents < 1:
        raise StreamError(f"synthetic stream: agents must be >= 1, got {n_agents}")
    batches = [world.batches(a, n_batches, batch_size) for a in range(n_agents)]
    X_test, Y_test = world.test_set(test_points)  # [n, d], [G, n]
    group = np.array([world.group_of(a) for a in range(n_agents)], dtype=np.int64)
    info = {
        "kind": "synthetic",
        "d": world.d,
        "groups": world.groups,
        "spread": world.spread,
        "signal": world.signal,
        "noise": world.noise,
        "n_test": int(test_points),
        "features": world.features,
        "data_seed": world.seed,
    }
    return Streams(world.d, batches, X_test, Y_test, group, 0.0, 1.0, info)


# ---------------------------------------------------------------------------- tables


def table_streams(
    data: DataSettings,
    agents: int | None,
    seed: int,
    test_points: int,
    record_s: float | None = None,
) -> Streams:
    """A table split over agents by the one splitter (see the module docstring).

    Raises
    ------
    StreamError
        Unreadable source, missing columns, too many agents, no training or held-out row.
    """
    try:
        table = load_table(data, agents, seed, record_s)
        m = table.manifest
        tf = m.transform()
        batches = [
            batch_arrays(
                order_rows(rows, data.order, seed, a),
                tf,
                data.batch_size,
                data.batches,
                keep_partial=data.batches is None,  # "all rows" means all, the last batch too
            )
            for a, rows in enumerate(table.per_agent)
        ]
        test: TestSet = table_test_set(m, table.held, test_points)
        agent_test = _agent_held_rows(m, table.held)
    except SourceError as exc:
        if isinstance(exc, StreamError):
            raise
        raise StreamError(f"table stream {data.data!r}: {exc}") from exc
    assert m.schema is not None and m.splitter is not None and m.features is not None
    path = data.data.partition(":")[2].partition("?")[0]
    info = {
        "kind": "table",
        "path": os.path.basename(path),
        "split": m.splitter.by,
        "agent_column": m.schema.agent,
        "inputs": list(m.schema.inputs),
        "target": m.schema.target,
        "rows": len(table.rows),
        "rejected": dict(table.stats.get("rejected", {})),
        "train_rows": sum(len(r) for r in table.per_agent),
        "held_out_rows": len(table.held),
        "holdout": m.splitter.holdout.rule,
        "holdout_every": m.splitter.holdout.every,
        "n_test": test.n,
        "order": data.order,
        "y_mean": test.y_mean,
        "y_std": test.y_std,
        "d": m.d,
    }
    return Streams(
        m.d, batches, test.X, test.Y, test.group, test.y_mean, test.y_std, info, agent_test
    )


def _agent_held_rows(m: Any, held: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each agent's own held-out rows (the splitter's agent of each row), transformed."""
    assert m.splitter is not None
    tf = m.transform()
    rows: list[list[Any]] = [[] for _ in range(m.n_agents)]
    for o in held:
        a = m.splitter.agent_of(o)
        if a is not None:
            rows[a].append(o)
    out = []
    for r in rows:
        if not r:
            out.append((np.zeros((0, m.d)), np.zeros(0)))
            continue
        X = np.stack([o.x for o in r]).astype(np.float64, copy=False)  # [n, d_in]
        t = np.array([o.t for o in r], dtype=np.float64)
        y = np.array([o.y for o in r], dtype=np.float64)
        out.append((tf.transform_X(X, t), np.asarray(tf.transform_y(y), dtype=np.float64)))
    return out


def make_streams(
    data: DataSettings,
    *,
    agents: int | None,
    seed: int,
    test_points: int,
    record_s: float | None = None,
) -> Streams:
    """The simulator's streams for a run's data settings.

    Parameters
    ----------
    data : DataConfig (any :class:`~swarmgp.agents.sources.settings.DataSettings`)
        ``data.data`` is ``synthetic`` or a table URI (``csv:PATH``, ``jsonl:PATH``, ...).
    agents : int or None
        A; None: one per distinct agent-column value on a table, 8 on synthetic data.
    seed : int
        The run seed.
    test_points : int
        Points of the test set (at most this many held-out rows of a table).
    record_s : float, optional
        A live feed (``zmq+sub://``, ``mqtt://``) is recorded for this many seconds of wall
        time, then simulated like a table (``--duration``).

    Returns
    -------
    Streams
        ``batches[a]`` equals agent ``a``'s batches from
        :func:`~swarmgp.agents.sources.agent_feed.agent_batches`.

    Raises
    ------
    StreamError
    """
    if is_synthetic(data.data):
        if data.data not in ("", "synthetic", "synthetic:"):
            raise StreamError(
                f"--data {data.data}: the synthetic world takes --dim, --groups, --spread, "
                "--noise and --seed, not URI options"
            )
        A = DEFAULT_AGENTS if agents is None else agents
        try:
            world = SyntheticWorld.from_config(data, A, seed)
        except SourceError as exc:
            raise StreamError(f"synthetic stream: {exc}") from exc
        B = DEFAULT_BATCHES if data.batches is None else data.batches
        return synthetic_streams(world, A, B, data.batch_size, test_points)
    return table_streams(data, agents, seed, test_points, record_s)
