"""Data streams for simulated swarms: synthetic draws from the model itself, and replayed tables.

Synthetic (the paper's SYNTHETIC setting, COOL-GP Sec. 5a, generalized to many agents): one
common latent function ``u ~ GP(0, exp(-|z - z'|^2 / 2))``, drawn once by random Fourier
features with a fixed seed, seen by agent a as ``f_a(x) = s * u(W_g x)`` through the projection
``W_g`` of its group g (agents in a group share a phenomenon; the paper has two agents, two
groups). Inputs are standard normal, so already standardized. Every agent is scored on one
held-out test input set, against its own group's targets.

Tabular: a long-format CSV (one observation a row, a column naming the sensor) split across
agents by that column (each station goes to one agent, round robin in sorted order) or at
random, streamed in random (seeded) or time order; a random held-out set of rows is the test
set every agent is scored on. Inputs and target are standardized with statistics of the
training rows; scores are reported back in the target's units (see
:meth:`Streams.to_units`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..agents.sources import ColumnSchema, open_source
from ..agents.sources.errors import SourceError
from ..agents.sources.synthetic import rff_latent

__all__ = [
    "StreamError",
    "Streams",
    "SyntheticStreamSpec",
    "TableStreamSpec",
    "make_streams",
    "rff_latent",
    "synthetic_streams",
    "table_streams",
]


class StreamError(ValueError):
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
    """

    d: int
    batches: list[list[tuple[np.ndarray, np.ndarray]]]
    X_test: np.ndarray
    y_test_groups: np.ndarray
    group: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

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


# ---------------------------------------------------------------------------- synthetic


@dataclass(frozen=True)
class SyntheticStreamSpec:
    """Settings of the synthetic streams.

    Attributes
    ----------
    agents : int
    batches : int
        Batches per agent.
    batch_size : int
    d : int
        Input (and latent) dimension; the paper uses 6.
    groups : int or None
        Distinct projections W_g; None: ``min(agents, 8)``; agent a is in group ``a % groups``.
    spread : float
        ``W_g = I + spread * G_g / sqrt(d)``, G_g standard normal.
    signal : float
        s.
    noise : float
        Observation noise standard deviation.
    n_test : int
    features : int
        Random Fourier features of u.
    seed : int
        Seed of u, the projections, inputs, noise and test set.
    """

    agents: int = 16
    batches: int = 10
    batch_size: int = 20
    d: int = 2
    groups: int | None = None
    spread: float = 0.3
    signal: float = 1.0
    noise: float = 0.1
    n_test: int = 500
    features: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("agents", "batches", "batch_size", "d", "n_test", "features"):
            if int(getattr(self, k)) < 1:
                raise StreamError(f"synthetic stream: {k} must be >= 1, got {getattr(self, k)}")
        if self.groups is not None and self.groups < 1:
            raise StreamError(f"synthetic stream: groups must be >= 1, got {self.groups}")
        if self.noise <= 0 or self.signal <= 0 or self.spread < 0:
            raise StreamError("synthetic stream: expected noise > 0, signal > 0, spread >= 0")


def synthetic_streams(spec: SyntheticStreamSpec) -> Streams:
    """Streams drawn from the model itself (see the module docstring).

    Parameters
    ----------
    spec : SyntheticStreamSpec

    Returns
    -------
    Streams
    """
    ss = np.random.SeedSequence(spec.seed)
    r_u, r_w, r_x, r_noise, r_test = (np.random.default_rng(s) for s in ss.spawn(5))
    d, A, B, S = spec.d, spec.agents, spec.batches, spec.batch_size
    G = spec.groups if spec.groups is not None else min(A, 8)
    u = rff_latent(d, spec.features, r_u)
    W = np.eye(d)[None] + spec.spread * r_w.standard_normal((G, d, d)) / math.sqrt(d)  # [G, d, d]
    group = np.arange(A) % G
    X = r_x.standard_normal((A, B, S, d))  # [A, B, S, d]
    F = np.empty((A, B, S))
    for g in range(G):
        idx = np.nonzero(group == g)[0]
        Xg = X[idx].reshape(-1, d)
        F[idx] = spec.signal * u(Xg @ W[g].T).reshape(idx.size, B, S)
    Y = F + spec.noise * r_noise.standard_normal((A, B, S))
    X_test = r_test.standard_normal((spec.n_test, d))
    y_test = np.stack(
        [
            spec.signal * u(X_test @ W[g].T) + spec.noise * r_test.standard_normal(spec.n_test)
            for g in range(G)
        ]
    )  # [G, n_test]
    batches = [[(X[a, k], Y[a, k]) for k in range(B)] for a in range(A)]
    info = {
        "kind": "synthetic",
        "d": d,
        "groups": G,
        "spread": spec.spread,
        "signal": spec.signal,
        "noise": spec.noise,
        "n_test": spec.n_test,
        "features": spec.features,
        "data_seed": spec.seed,
    }
    return Streams(d, batches, X_test, y_test, group, 0.0, 1.0, info)


# ---------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class TableStreamSpec:
    """Settings of a replayed long-format table.

    Attributes
    ----------
    path : str
    agents : int or None
        Number of agents; None: one per distinct value of ``agent_column`` (split "column").
    agent_column : str or None
        Column naming the sensor; None splits rows at random.
    inputs : tuple of str
    target : str
    batches : int or None
        At most this many batches per agent (None: all rows).
    batch_size : int
    n_test : int
        Held-out rows (random, every agent scored on them).
    order : {"random", "time"}
        Stream order within an agent's rows.
    time_column : str or None
        Sort key for ``order="time"``.
    seed : int
    """

    path: str
    agents: int | None = None
    agent_column: str | None = "station"
    inputs: tuple[str, ...] = ("lon", "lat", "t")
    target: str = "y"
    batches: int | None = 10
    batch_size: int = 20
    n_test: int = 1000
    order: str = "random"
    time_column: str | None = "t"
    seed: int = 0


def _read_table(spec: TableStreamSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Rows of the table through the shared CSV source: ``(X [N, d], y [N], t [N], keys)``.

    Rows with NaN or infinite values are skipped (counted by the source); any other bad row
    (missing or non-numeric value, wrong width) makes the table unusable.
    """
    schema = ColumnSchema(
        agent=spec.agent_column,
        # without a time column any present column will do: t is then the row number
        time=spec.time_column or spec.target,
        inputs=tuple(spec.inputs),
        target=spec.target,
    )
    try:
        with open_source(f"csv:{spec.path}", schema=schema, on_bad="count") as src:
            rows = list(src)
            rejected = dict(src.stats.rejected)
    except SourceError as exc:
        raise StreamError(f"table stream {spec.path!r}: {exc}") from None
    fatal = {k: v for k, v in rejected.items() if k != "non_finite"}
    if fatal:
        raise StreamError(f"table stream {spec.path!r}: bad rows {fatal}")
    d = len(spec.inputs)
    X = np.array([o.x for o in rows], dtype=np.float64).reshape(len(rows), d)  # [N, d]
    y = np.array([o.y for o in rows], dtype=np.float64)  # [N]
    if spec.time_column:
        t = np.array([o.t for o in rows], dtype=np.float64)
    else:
        t = np.arange(y.size, dtype=np.float64)
    keys = np.array([o.agent for o in rows], dtype=object) if spec.agent_column else None
    return X, y, t, keys


def table_streams(spec: TableStreamSpec) -> Streams:
    """Split a CSV table across agents (see the module docstring).

    Raises
    ------
    StreamError
        Unreadable file, missing columns, non-numeric values, or too few rows.
    """
    X, y, t, keys = _read_table(spec)
    N = y.size
    if N <= spec.n_test + 1:
        raise StreamError(f"table stream {spec.path!r}: {N} rows, need more than n_test")
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(1)[0])
    perm = rng.permutation(N)
    test, train = np.sort(perm[: spec.n_test]), perm[spec.n_test :]
    x_mu, x_sd = X[train].mean(0), X[train].std(0)
    x_sd[x_sd == 0] = 1.0
    y_mu, y_sd = float(y[train].mean()), float(y[train].std() or 1.0)
    Xs = (X - x_mu) / x_sd
    ys = (y - y_mu) / y_sd
    if keys is not None:
        stations = sorted(set(keys[train].tolist()))
        A = spec.agents if spec.agents is not None else len(stations)
        if A < 1 or A > len(stations):
            raise StreamError(
                f"table stream {spec.path!r}: {A} agents for {len(stations)} stations "
                f"in column {spec.agent_column!r}"
            )
        owner = {s: i % A for i, s in enumerate(stations)}
        agent_of = np.array([owner[k] for k in keys[train]])
    else:
        if spec.agents is None or spec.agents < 1:
            raise StreamError("table stream: a random split needs agents >= 1")
        A = spec.agents
        agent_of = rng.integers(0, A, train.size)
    batches: list[list[tuple[np.ndarray, np.ndarray]]] = []
    S = spec.batch_size
    for a in range(A):
        rows = train[agent_of == a]
        if spec.order == "time":
            rows = rows[np.argsort(t[rows], kind="stable")]
        elif spec.order != "random":
            raise StreamError(f"table stream: unknown order {spec.order!r}")
        nb = rows.size // S
        if spec.batches is not None:
            nb = min(nb, spec.batches)
        batches.append(
            [(Xs[rows[k * S : (k + 1) * S]], ys[rows[k * S : (k + 1) * S]]) for k in range(nb)]
        )
    info = {
        "kind": "table",
        "path": os.path.basename(spec.path),
        "split": "column" if keys is not None else "random",
        "agent_column": spec.agent_column,
        "inputs": list(spec.inputs),
        "target": spec.target,
        "rows": int(N),
        "n_test": spec.n_test,
        "order": spec.order,
        "y_mean": y_mu,
        "y_std": y_sd,
        "d": int(X.shape[1]),
    }
    return Streams(
        int(X.shape[1]),
        batches,
        Xs[test],
        ys[test][None, :],
        np.zeros(A, dtype=np.int64),
        y_mu,
        y_sd,
        info,
    )


def make_streams(
    data: str,
    *,
    agents: int,
    batches: int,
    batch_size: int,
    seed: int,
    d: int = 2,
    n_test: int = 500,
    groups: int | None = None,
    spread: float = 0.3,
    noise: float = 0.1,
    agent_column: str | None = None,
    inputs: Sequence[str] | None = None,
    target: str | None = None,
) -> Streams:
    """Streams from a ``--data`` URI: ``synthetic`` or ``csv:PATH``.

    For ``csv:`` the column options default to the shared data sets' layout: agent column
    ``station``, inputs ``lon,lat,t``, target = the last column of the header.
    """
    if data in ("", "synthetic"):
        return synthetic_streams(
            SyntheticStreamSpec(
                agents=agents,
                batches=batches,
                batch_size=batch_size,
                d=d,
                groups=groups,
                spread=spread,
                noise=noise,
                n_test=n_test,
                seed=seed,
            )
        )
    if not data.startswith("csv:"):
        raise StreamError(f"--data: expected 'synthetic' or 'csv:PATH', got {data!r}")
    path = data[4:]
    if target is None:
        try:
            with open(path, encoding="utf-8") as fh:
                target = fh.readline().strip().split(",")[-1]
        except OSError as exc:
            raise StreamError(f"table stream {path!r}: cannot open: {exc.strerror or exc}") from exc
    col = agent_column if agent_column is not None else "station"
    return table_streams(
        TableStreamSpec(
            path=path,
            agents=agents if agents > 0 else None,
            agent_column=col or None,
            inputs=tuple(inputs) if inputs else ("lon", "lat", "t"),
            target=target,
            batches=batches,
            batch_size=batch_size,
            n_test=n_test,
            seed=seed,
        )
    )
