"""Personalization: warm starts for agents that join a settled swarm (issue 9).

``launch.py sim --newcomers N`` withholds N of the data's agents from the swarm
(:func:`split_newcomers`: a seeded choice among the agents whose streams hold at least
``max(KS)`` rows; their rows never reach the swarm, and the topology is built over the other
``A - N``). After the swarm has settled, each newcomer joins with the first k rows of its own
stream (stream order), k in :data:`KS`, and is scored on its own held-out rows
(:func:`newcomer_test`) by

* **collective**: what a :class:`~swarmgp.agents.collective_model.CollectiveModel` does after
  joining: it takes a peer's agreed theta and standardization (the peer's durable state with
  empty statistics, :func:`join_collective`), adds its k rows' statistics, and predicts from
  the swarm's fused statistics plus its own (``fuse``), refitting ``(s, sigma_n)`` from them
  (:meth:`CollectiveModel.predict`);
* **local**: the same sparse model class fitted by its own collapsed bound on the k rows alone
  (:func:`fit_local`: the k rows' standardization and box, :func:`initial_params`, then
  :func:`fit_pooled` with :data:`LOCAL_MAX_EVALS` evaluations). For k = 0 there is nothing to
  fit: the prior, zero mean in the data's standardized units and variance ``1 + 0.5^2``
  (unit signal variance plus the initial noise).

RMSE and NLPD are in the target's units, averaged over the newcomers per k.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarmgp.agents.collective_model import DEFAULT_MAX_EVALS, CollectiveModel, _standard_from_sums
from swarmgp.agents.sources.split import pick_test_rows
from swarmgp.fusion.collapsed import (
    CollectiveParams,
    Stats,
    batch_stats,
    fit_pooled,
    initial_params,
    pooled_bound_and_grad,
    predict_collective,
)
from swarmgp.fusion.errors import SwarmGPError
from swarmgp.fusion.metrics import nlpd, rmse
from swarmgp.fusion.summary import Summary, fuse
from swarmgp.sim.streams import StreamError, Streams

__all__ = [
    "KS",
    "LOCAL_MAX_EVALS",
    "NewcomerSplit",
    "evaluate_newcomers",
    "fit_local",
    "join_collective",
    "newcomer_test",
    "newcomers_plot_path",
    "plot_newcomers",
    "split_newcomers",
]

#: Observations a newcomer joins with.
KS = (0, 5, 10, 20, 50)
#: Evaluation budget of the local model's fit (the swarm warm-up's default).
LOCAL_MAX_EVALS = DEFAULT_MAX_EVALS
#: Variance of the k = 0 local predictor (standardized units): unit signal + initial noise^2.
PRIOR_VAR = 1.0 + 0.5**2
#: Spawn key of the run seed's child that picks the newcomers (swarm.py uses 0-5).
_NEWCOMERS = 7

HELD_OUT_RULE = (
    "table data: the newcomer's own held-out rows (its station's rows the splitter holds out; "
    "a seeded sample of at most --test-points); synthetic data: the world's test inputs with "
    "the newcomer's group targets; a newcomer without held-out rows: its stream rows after "
    "the first max(k)"
)


@dataclass(frozen=True)
class NewcomerSplit:
    """The data's agents split into the swarm and the newcomers.

    Attributes
    ----------
    data : Streams
        Every agent of the data (A).
    swarm : Streams
        The ``A - N`` swarm agents, renumbered: swarm agent i is data agent ``kept[i]``.
    newcomers : tuple of int
        Data agent indices withheld from the swarm (sorted).
    kept : tuple of int
    """

    data: Streams
    swarm: Streams
    newcomers: tuple[int, ...]
    kept: tuple[int, ...]


def _rows(streams: Streams, a: int) -> tuple[np.ndarray, np.ndarray]:
    """Agent a's whole stream, in stream order."""
    bl = streams.batches[a]
    if not bl:
        return np.zeros((0, streams.d)), np.zeros(0)
    return np.concatenate([X for X, _ in bl]), np.concatenate([y for _, y in bl])


def split_newcomers(data: Streams, n: int, seed: int, ks: Sequence[int] = KS) -> NewcomerSplit:
    """Withhold ``n`` agents, a seeded choice among those with at least ``max(ks)`` rows.

    Raises
    ------
    StreamError
        ``n`` leaves no swarm agent, or fewer than ``n`` agents hold ``max(ks)`` rows.
    """
    A = data.n_agents
    if not 1 <= n < A:
        raise StreamError(f"--newcomers {n}: the data has {A} agents (at least one must stay)")
    need = max(ks)
    eligible = [a for a in range(A) if sum(y.shape[0] for _, y in data.batches[a]) >= need]
    if len(eligible) < n:
        raise StreamError(f"--newcomers {n}: only {len(eligible)} of {A} agents hold {need} rows")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_NEWCOMERS,)))
    pick = sorted(int(eligible[i]) for i in rng.choice(len(eligible), n, replace=False))
    kept = tuple(a for a in range(A) if a not in set(pick))
    swarm = data.select(kept)
    swarm.info["newcomers_withheld"] = list(pick)
    return NewcomerSplit(data, swarm, tuple(pick), kept)


def newcomer_test(
    data: Streams, a: int, test_points: int, seed: int, first: int = max(KS)
) -> tuple[np.ndarray, np.ndarray, str]:
    """Agent a's own held-out rows: X (n, d), standardized y (n,) and the rule used."""
    held = data.held_rows(a)
    if held is None:
        return data.X_test, data.y_test(a), "synthetic: world test set, own group"
    X, y = held
    if X.shape[0] > 0:
        if X.shape[0] > test_points:
            idx = np.sort(pick_test_rows(X.shape[0], test_points, seed + a))
            X, y = X[idx], y[idx]
        return X, y, "own held-out rows"
    Xs, ys = _rows(data, a)
    if Xs.shape[0] <= first:
        raise StreamError(
            f"newcomer {a}: no held-out row and no stream row after the first {first}"
        )
    return Xs[first:], ys[first:], f"own stream rows after the first {first}"


# -------------------------------------------------------------------------- the two models


def join_collective(peer: CollectiveModel) -> CollectiveModel:
    """A newcomer's collective model: the peer's agreed theta and standardization, no data.

    The peer's durable state (:meth:`CollectiveModel.state`) with empty statistics, restored
    into a fresh model of the same encoding: exactly the state of an agent that joined.

    Raises
    ------
    SwarmGPError
        The peer is still in its warm-up.
    """
    st = peer.state()
    if st.get("phase") != "stream" or peer.params is None:
        raise SwarmGPError("newcomers: the swarm has not left its warm-up")
    st = dict(st, stats=Stats.zeros(peer.params.m).pack(), n_obs=0)
    model = CollectiveModel(peer.encoding)
    model.restore(st)
    return model


@dataclass(frozen=True)
class LocalFit:
    """The local sparse GP of k rows (its own standardization, theta and statistics)."""

    mx: np.ndarray
    sx: np.ndarray
    my: float
    sy: float
    params: CollectiveParams
    stats: Stats
    n_evals: int

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of y in the caller's units."""
        mean, var_f = predict_collective((X - self.mx) / self.sx, self.stats, self.params)
        return self.my + self.sy * mean, self.sy**2 * (var_f + self.params.sn**2)


def fit_local(
    X: np.ndarray, y: np.ndarray, inducing: int, seed: int, max_evals: int = LOCAL_MAX_EVALS
) -> LocalFit:
    """Fit the collective model class to ``(X, y)`` alone by its collapsed bound.

    The rows' own standardization and box (as the warm-up computes it for a swarm of one),
    :func:`initial_params` over that box with the run's design seed, then :func:`fit_pooled`
    with ``max_evals`` evaluations (a failed fit keeps the best point reached, or theta0).
    """
    n, d = X.shape
    sums = np.concatenate([[n], X.sum(0), (X * X).sum(0), [y.sum(), y @ y], X.max(0), (-X).max(0)])
    std = _standard_from_sums(sums, d)
    Xs, ys = (X - std.mx) / std.sx, (y - std.my) / std.sy
    theta0 = initial_params(std.lo, std.hi, inducing, seed)

    def evaluate(v: np.ndarray) -> tuple[float, np.ndarray]:
        p = CollectiveParams.from_vector(v, inducing, d, theta0.jitter)
        return pooled_bound_and_grad(Xs, ys, p)

    try:
        fit = fit_pooled(evaluate, theta0, max_evals=max_evals)
        params, evals = fit.params, fit.n_evals
    except SwarmGPError:
        params, evals = theta0, -1
    return LocalFit(std.mx, std.sx, std.my, std.sy, params, batch_stats(Xs, ys, params), evals)


# -------------------------------------------------------------------------- the measurement


def _peer(sw: Any) -> int | None:
    """The live agent holding the largest fused summary (lowest id on ties)."""
    live = sw.sim.live_ids()
    if not live:
        return None
    return max(sorted(live), key=lambda a: (sw.sim.agents[a].fused_summary.n_obs, -a))


def evaluate_newcomers(
    sw: Any, split: NewcomerSplit, ks: Sequence[int] = KS, max_evals: int = LOCAL_MAX_EVALS
) -> dict[str, Any]:
    """Score every newcomer joining the settled swarm ``sw`` with k of its rows, k in ``ks``.

    Returns
    -------
    dict
        ``table``: one row per k with ``rmse_collective``, ``rmse_local``,
        ``nlpd_collective``, ``nlpd_local`` (means over newcomers, target units);
        ``per_newcomer``: the same per newcomer; the rule and the models' settings.
    """
    cfg, data = sw.config, split.data
    out: dict[str, Any] = {
        "agents": list(split.newcomers),
        "ks": [int(k) for k in ks],
        "held_out": HELD_OUT_RULE,
        "local_model": (
            f"the collective model class fitted to the k rows alone by its collapsed bound "
            f"(own standardization and box, m = {cfg.model.inducing}, {max_evals} evaluations); "
            "k = 0: the prior (mean 0 in standardized units, variance 1 + 0.5^2)"
        ),
        "collective_model": (
            "a peer's agreed theta; the swarm's fused statistics plus the k rows' statistics; "
            "(s, sigma_n) refit from them (CollectiveModel.predict)"
        ),
    }
    a_peer = _peer(sw)
    if a_peer is None:
        return {**out, "skipped": "no live agent in the swarm"}
    agent = sw.sim.agents[a_peer]
    peer = agent.model
    if not isinstance(peer, CollectiveModel):
        return {**out, "skipped": "not a collective-mode swarm"}
    try:
        base = join_collective(peer)
    except SwarmGPError as exc:
        return {**out, "skipped": str(exc)}
    swarm_fused: Summary = agent.fused_summary
    enc = peer.encoding
    out.update(peer=int(a_peer), swarm_n_obs=int(swarm_fused.n_obs))
    per: dict[str, list[list[float]]] = {
        key: [] for key in ("rmse_collective", "rmse_local", "nlpd_collective", "nlpd_local")
    }
    n_test, rules, evals = [], [], []
    kmax = max(ks)
    for b in split.newcomers:
        Xtr, ytr = _rows(data, b)
        Xt, yt, rule = newcomer_test(data, b, cfg.scoring.test_points, cfg.seed, kmax)
        y_units = data.y_units(yt)
        n_test.append(int(Xt.shape[0]))
        rules.append(rule)
        model = base if b == split.newcomers[0] else join_collective(peer)
        seen = 0
        rows: dict[str, list[float]] = {key: [] for key in per}
        ev_b = []
        for k in ks:
            k = min(int(k), Xtr.shape[0])
            if k > seen:
                model.observe(Xtr[seen:k], ytr[seen:k])
                seen = k
            fused = fuse([swarm_fused, model.summary()], enc.m, enc.hash)
            # at its own site: with the site effect, its offset's posterior from its k rows
            mu_c, var_c = data.to_units(*model.predict(Xt, fused, own_site=True))
            if k == 0:
                mu_l, var_l = data.to_units(np.zeros(Xt.shape[0]), np.full(Xt.shape[0], PRIOR_VAR))
                ev_b.append(0)
            else:
                loc = fit_local(Xtr[:k], ytr[:k], cfg.model.inducing, enc.seed, max_evals)
                mu_l, var_l = data.to_units(*loc.predict(Xt))
                ev_b.append(loc.n_evals)
            rows["rmse_collective"].append(rmse(y_units, mu_c))
            rows["nlpd_collective"].append(nlpd(y_units, mu_c, var_c))
            rows["rmse_local"].append(rmse(y_units, mu_l))
            rows["nlpd_local"].append(nlpd(y_units, mu_l, var_l))
        for key in per:
            per[key].append(rows[key])
        evals.append(ev_b)
    out["table"] = [
        {"k": int(k), **{key: float(np.mean([r[i] for r in per[key]])) for key in per}}
        for i, k in enumerate(ks)
    ]
    out["per_newcomer"] = {
        "agents": list(split.newcomers),
        "n_test": n_test,
        "test_rows": rules,
        "local_evals": evals,
        **{key: per[key] for key in per},
    }
    return out


# -------------------------------------------------------------------------- the plot


def newcomers_plot_path(plot: str | os.PathLike[str]) -> str:
    """``<plot>-newcomers.png`` next to the run's plot (its extension dropped)."""
    root, _ = os.path.splitext(os.fspath(plot))
    return f"{root}-newcomers.png"


def plot_newcomers(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG: RMSE and NLPD vs k, collective vs local, from ``report["newcomers"]["table"]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nc = report["newcomers"]
    tab = nc["table"]
    k = [r["k"] for r in tab]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, what in zip(axes, ("rmse", "nlpd"), strict=True):
        ax.plot(k, [r[f"{what}_collective"] for r in tab], "s-", label="collective (joins swarm)")
        ax.plot(k, [r[f"{what}_local"] for r in tab], "o--", label="local (own k rows)")
        ax.set_xlabel("newcomer's observations k")
        ax.set_ylabel(f"mean {what.upper()} (target units)")
        ax.set_xticks(k)
        ax.grid(alpha=0.3)
        ax.legend()
    data = report.get("data", {})
    name = data.get("path", data.get("kind", ""))
    fig.suptitle(
        f"{len(nc['agents'])} newcomers joining a settled swarm of {report['agents']} agents "
        f"({name}, m={report['inducing']}, seed {report['seed']})"
    )
    fig.tight_layout()
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def newcomer_lines(report: Mapping[str, Any]) -> list[str]:
    """Summary lines of ``report["newcomers"]`` (none without it)."""
    nc = report.get("newcomers")
    if not nc:
        return []
    if "table" not in nc:
        return [f"  newcomers: {nc.get('skipped', 'not measured')}"]
    lines = [
        f"  newcomers {nc['agents']} (mean over {len(nc['agents'])}; target units):"
        "  k  RMSE coll/local  NLPD coll/local"
    ]
    for r in nc["table"]:
        lines.append(
            f"    k={r['k']:<3d} {r['rmse_collective']:.4g} / {r['rmse_local']:.4g}"
            f"   {r['nlpd_collective']:.4g} / {r['nlpd_local']:.4g}"
        )
    return lines
