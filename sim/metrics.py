"""Scores of a simulated swarm: consistency of the fused models and predictive accuracy.

* :func:`live_components`: connected components of the live agents in the neighbour graph,
  with links cut by partitions active at the given time.
* :func:`component_sums`: ``R_F* = sum_a R_a - (A - 1) R_0`` over each component, from the
  agents' current local summaries (what fusion must converge to).
* :func:`consistency`: ``max_a |R_F(a) - R_F*| / |R_F*|`` (Frobenius over P and h).
* :func:`score_agents`: per-agent RMSE and NLPD, local (pre-fusion) and fused (post-fusion),
  in the target's units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarmgp.agents.local_model import LocalModel
from swarmgp.agents.topology import Adjacency, components
from swarmgp.fusion.metrics import nlpd, rmse
from swarmgp.fusion.predict import predict_many, predictive_cache
from swarmgp.fusion.summary import Summary, fuse
from swarmgp.sim.network import Partition
from swarmgp.sim.streams import Streams

__all__ = [
    "AgentScores",
    "component_sums",
    "consistency",
    "live_components",
    "score_agents",
    "score_prediction",
]


def live_components(
    adjacency: Adjacency,
    alive: Iterable[int],
    partitions: Sequence[Partition] = (),
    t: float = 0.0,
) -> list[list[int]]:
    """Components of the live subgraph, links across an active partition removed."""
    active = [p for p in partitions if p.start <= t < p.end]
    if not active:
        return components(adjacency, alive)
    adj = {
        a: tuple(b for b in nb if not any(p.group_of(a) != p.group_of(b) for p in active))
        for a, nb in adjacency.items()
    }
    return components(adj, alive)


def component_sums(
    locals_: Mapping[int, Summary], comps: Sequence[Sequence[int]]
) -> dict[int, Summary]:
    """The exact fused summary of each agent's component.

    Parameters
    ----------
    locals_ : mapping of agent id to Summary
        Current local summaries of the live agents.
    comps : sequence of sequences of agent ids

    Returns
    -------
    dict of agent id to Summary
        Every agent of a component maps to the same Summary object.
    """
    out: dict[int, Summary] = {}
    for comp in comps:
        first = locals_[comp[0]]
        s = fuse((locals_[a] for a in comp), first.m, first.encoding_hash)
        for a in comp:
            out[a] = s
    return out


def consistency(
    fused: Mapping[int, Summary], exact: Mapping[int, Summary]
) -> tuple[float, dict[int, float]]:
    """Max and per-agent ``|R_F(a) - R_F*| / |R_F*|``.

    Returns
    -------
    max_err : float
    per_agent : dict of int to float
    """
    per = {a: fused[a].max_rel_diff(exact[a]) for a in sorted(fused)}
    return (max(per.values()) if per else 0.0), per


@dataclass
class AgentScores:
    """Per-agent scores (in the target's units), ordered like ``ids``."""

    ids: list[int]
    rmse_local: list[float]
    nlpd_local: list[float]
    rmse_fused: list[float]
    nlpd_fused: list[float]
    #: local predictions in standardized units, kept for gPoE / rBCM: (mean, var_f, s2, sn2)
    local_preds: list[tuple[np.ndarray, np.ndarray, float, float]]

    def mean(self, key: str) -> float:
        """Mean over agents of one score list."""
        v = getattr(self, key)
        return float(np.mean(v)) if v else float("nan")


def score_prediction(
    streams: Streams, a: int, mean: np.ndarray, var_y: np.ndarray, idx: np.ndarray | None = None
) -> tuple[float, float]:
    """RMSE and NLPD of a standardized prediction against agent a's test targets, in units."""
    y = streams.y_test(a) if idx is None else streams.y_test(a)[idx]
    mu, var = streams.to_units(mean, var_y)
    return rmse(streams.y_units(y), mu), nlpd(streams.y_units(y), mu, var)


def score_agents(
    agents: Mapping[int, object],
    streams: Streams,
    ids: Sequence[int],
    *,
    fused: bool = True,
    keep_local: bool = True,
    test_idx: np.ndarray | None = None,
) -> AgentScores:
    """Score agents pre- and post-fusion on their test targets.

    Parameters
    ----------
    agents : mapping of agent id to Agent
        Running agents (``.model`` is the LocalModel, ``.fused_summary`` the collective model).
    streams : Streams
    ids : sequence of int
        Which agents to score.
    fused : bool
        Also score the fused models.
    keep_local : bool
        Keep local predictions (for gPoE / rBCM).
    test_idx : ndarray of int, optional
        Score on this subset of the test set.
    """
    X = streams.X_test if test_idx is None else streams.X_test[test_idx]
    sc = AgentScores([], [], [], [], [], [])
    shared = _shared_predictions(agents, ids, X, fused)
    for a in ids:
        ag = agents[a]
        model = ag.model  # type: ignore[attr-defined]
        m_l, v_l = shared[(a, False)] if (a, False) in shared else model.predict(X, None)
        r, n = score_prediction(streams, a, m_l, v_l, test_idx)
        sc.ids.append(int(a))
        sc.rmse_local.append(r)
        sc.nlpd_local.append(n)
        if keep_local:
            h = model.hyper
            sc.local_preds.append((m_l, np.maximum(v_l - h.sn2, 1e-12), h.s**2, h.sn2))
        if fused:
            m_f, v_f = (
                shared[(a, True)] if (a, True) in shared else model.predict(X, ag.fused_summary)  # type: ignore[attr-defined]
            )
            r, n = score_prediction(streams, a, m_f, v_f, test_idx)
            sc.rmse_fused.append(r)
            sc.nlpd_fused.append(n)
    return sc


def _shared_predictions(
    agents: Mapping[int, object], ids: Sequence[int], X: np.ndarray, fused: bool
) -> dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]]:
    """Predictions of the paper's LocalModels that share one q(W) (learning off), in one pass.

    Agents with equal hyperparameters and encoding predict through the same Psi statistics of
    the test inputs; :func:`~swarmgp.fusion.predict.predict_many` evaluates them once and
    contracts them with every agent's local and fused summaries in one GEMM. Keys are
    ``(agent id, fused?)``; values ``(mean, var_y)`` as ``LocalModel.predict`` returns them.
    """
    groups: dict[tuple[Any, ...], list[int]] = {}
    for a in ids:
        model = getattr(agents[a], "model", None)
        if not isinstance(model, LocalModel):
            continue
        h = model.hyper
        key = (id(model.encoding), h.mu.tobytes(), h.log_sigma.tobytes(), h.log_s, h.log_sn)
        groups.setdefault(key, []).append(a)
    out: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        model = agents[group[0]].model  # type: ignore[attr-defined]
        for lo in range(0, len(group), SHARED_BLOCK):  # bounds the stacked Q at block * m^2
            members = group[lo : lo + SHARED_BLOCK]
            keys = [(a, False) for a in members] + ([(a, True) for a in members] if fused else [])
            _predict_block(agents, keys, X, model, out)
    return out


#: Agents per block of :func:`_shared_predictions` (2 * 32 summaries of m^2 values each).
SHARED_BLOCK = 32


def _predict_block(
    agents: Mapping[int, object],
    keys: list[tuple[int, bool]],
    X: np.ndarray,
    model: Any,
    out: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]],
) -> None:
    """Predict one block of ``(agent, fused?)`` keys sharing ``model``'s q(W) into ``out``."""
    caches = [
        predictive_cache(
            agents[a].fused_summary if f else agents[a].model.summary(),  # type: ignore[attr-defined]
            model.encoding,
        )
        for a, f in keys
    ]
    mean, var = predict_many(X, caches, model.encoding, model.hyper)
    for i, k in enumerate(keys):
        out[k] = (mean[i], var[i] + model.hyper.sn2)
