"""Build and run one simulated swarm from its run configuration and produce the run report.

:func:`run_simulation` is what ``python launch.py sim`` calls. Its phases are named functions:
:func:`build_swarm` (topology, data streams, common encoding, the network, the simulator with
the one agent factory, every agent's batches at ``(k + 1 + phase_a) * batch_interval``, churn),
:func:`run_data_phase` (per-round checkpoints of a few agents), :func:`settle` (probe until
every agent holds its component's exact sum, or ``max_settle`` passes), :func:`score` (the
agents and the baselines) and the report (:func:`swarmgp.agents.runtime.report.build_report`).

Seeds: one root ``SeedSequence(seed)``, spawned per concern: topology, data, network (one
generator per directed link), agent models (per agent), agent phases and churn (drawn for
the whole swarm at set-up). Same configuration => same report except ``wall_s`` and
``peak_rss_mb``, whether run in one process or sharded over MPI ranks (:mod:`swarmgp.sim.mpi`,
which adds ``ranks``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarmgp.agents.agent import Agent
from swarmgp.agents.collective_model import WarmupMemo
from swarmgp.agents.factory import agent_seeds, build_agent, common_encoding
from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.runtime.report import Scores, build_report, peak_rss_mb
from swarmgp.agents.topology import Adjacency, diameter, neighbour_graph
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.sim import baselines as bl
from swarmgp.sim import mpi
from swarmgp.sim.metrics import component_sums, consistency, live_components, score_agents
from swarmgp.sim.network import (
    ChurnEvent,
    GilbertElliott,
    NetworkConfig,
    Partition,
    SimNetwork,
    poisson_churn,
)
from swarmgp.sim.newcomers import NewcomerSplit, evaluate_newcomers, split_newcomers
from swarmgp.sim.scheduler import Simulator
from swarmgp.sim.streams import StreamError, Streams, make_streams

__all__ = [
    "Swarm",
    "build_swarm",
    "run_data_phase",
    "run_simulation",
    "score",
    "settle",
    "single_threaded",
]

Progress = Callable[[str, float, float], None]

#: Spawn keys of the run seed's children (topology 0 and agent models 3 are shared with the
#: real drivers through :func:`neighbour_graph` and :func:`agent_seeds`).
_NET, _PHASE, _CHURN = 2, 4, 5
#: A collective warm-up still running extends the settle phase up to this many max_settle.
WARMUP_SETTLE_CAP = 10


class single_threaded:
    """Context manager: one BLAS thread and one torch thread while simulating.

    Agents do many small linear-algebra calls; on a 2-core machine, torch's OpenMP pool and
    OpenBLAS's threads otherwise fight each other and slow small calls tenfold.
    """

    def __enter__(self) -> single_threaded:
        self._limits = None
        self._torch_threads: int | None = None
        try:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(1)
        except ImportError:
            pass
        torch = sys.modules.get("torch")
        if torch is not None:
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()
        torch = sys.modules.get("torch")
        if torch is not None and self._torch_threads is not None:
            torch.set_num_threads(self._torch_threads)


@dataclass
class Swarm:
    """A built, not yet run, simulation (exposed for tests and experiments)."""

    config: RunConfig
    adjacency: Adjacency
    streams: Streams
    encoding: Any
    sim: Simulator
    network: SimNetwork
    diameter: int
    t_data_end: float
    partitions: tuple[Partition, ...] = ()
    shard: mpi.Shard | None = None
    series: list[dict[str, Any]] = field(default_factory=list)
    peak_rss_mb: float | None = None  # under MPI: the largest over the ranks
    settle_trace: list[tuple[float, float]] = field(default_factory=list)


def _seed_child(seed: int, key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(key,))


def _network(cfg: RunConfig, encoding: Any, churn: tuple[ChurnEvent, ...]) -> SimNetwork:
    f = cfg.faults
    net_cfg = NetworkConfig(
        base_latency_s=f.latency,
        jitter_s=f.jitter,
        loss=f.loss,
        bursty=GilbertElliott.from_mean(f.bursty) if f.bursty else None,
        duplicate=f.duplicate,
        reorder=f.reorder,
        partitions=_partitions(cfg),
        churn=churn,
    )
    return SimNetwork(
        net_cfg, _seed_child(cfg.seed, _NET), encoding_hash=encoding.hash, m=encoding.m
    )  # encoding.m: the summary size (inducing + 2 in the collective mode)


def _partitions(cfg: RunConfig) -> tuple[Partition, ...]:
    return tuple(
        Partition(t0, t1, tuple(frozenset(g) for g in groups))
        for t0, t1, groups in cfg.faults.partition
    )


def build_swarm(
    cfg: RunConfig,
    adjacency: Adjacency | None = None,
    streams: Streams | None = None,
    shard: mpi.Shard | None = None,
) -> Swarm:
    """Build topology, streams, encoding, the agent factory, network and simulator.

    Parameters
    ----------
    cfg : RunConfig
    adjacency : Adjacency, optional
        Overrides ``cfg.swarm.topology`` / ``cfg.swarm.peers``.
    streams : Streams, optional
        Overrides ``cfg.data``.
    shard : swarmgp.sim.mpi.Shard, optional
        This MPI rank's share of the agents (everything else is built on every rank).

    Raises
    ------
    StreamError
        The streams and the topology disagree on the number of agents.
    """
    if streams is None:
        agents = len(adjacency) if adjacency is not None else cfg.swarm.agents
        streams = make_streams(
            cfg.data,
            agents=agents,
            seed=cfg.seed,
            test_points=cfg.scoring.test_points,
            record_s=cfg.scoring.duration,
        )
    if adjacency is None:
        adjacency = neighbour_graph(cfg.swarm.topology, cfg.swarm.peers, streams.n_agents, cfg.seed)
    A = streams.n_agents
    if A != len(adjacency):
        raise StreamError(f"sim: {A} data streams for {len(adjacency)} agents in the topology")
    encoding = common_encoding(cfg, streams.d)
    diam = diameter(adjacency)
    max_dist = max(255, 2 * diam + 2)
    interval = cfg.timing.batch_interval
    memo = WarmupMemo()  # the warm-up's identical evaluations, once per process

    def factory(a: int, incarnation: int, now: float) -> Agent:
        return build_agent(
            cfg,
            a,
            adjacency[a],
            encoding,
            incarnation=incarnation,
            now=now,
            seeds=agent_seeds(cfg.seed, a, incarnation),
            max_dist=max_dist,
            warmup_memo=memo,
        )

    t_data_end = (max((streams.n_batches(a) for a in range(A)), default=0) + 0.5) * interval
    churn = tuple(ChurnEvent(t, a, kind) for t, a, kind in cfg.faults.churn)
    if cfg.faults.churn_rate > 0:
        churn += poisson_churn(
            list(range(A)),
            cfg.faults.churn_rate,
            0.5 * interval,
            t_data_end,
            np.random.default_rng(_seed_child(cfg.seed, _CHURN)),
            downtime_s=2.0 * cfg.timing.heartbeat,
        )
    network = _network(cfg, encoding, churn)
    if shard is None:
        sim = Simulator(factory, network)
    else:
        sim = mpi.ShardedSimulator(
            factory, network, shard, network.config.base_latency_s, encoding.hash, encoding.m
        )
    sw = Swarm(
        cfg, adjacency, streams, encoding, sim, network, diam, t_data_end, _partitions(cfg), shard
    )
    joiners = {c.agent for c in churn if c.kind == "join"}
    for a in range(A):
        if a not in joiners:
            sim.schedule_start(a, 0.0)
    phase = np.random.default_rng(_seed_child(cfg.seed, _PHASE)).uniform(0.05, 0.5, A) * interval
    for a in range(A):
        for k, (X, y) in enumerate(streams.batches[a]):
            sim.schedule_batch(a, (k + 1) * interval + phase[a], X, y, k)
    for ev in churn:
        sim.schedule_churn(ev)
    return sw


def _agents(sw: Swarm, models: Any = ()) -> dict[int, Any] | None:
    """The running agents; under MPI, views of every rank's on rank 0 (None elsewhere)."""
    if sw.shard is None:
        return sw.sim.agents
    return mpi.gather_views(sw.sim, models, sw.encoding)  # type: ignore[arg-type]


def _fused_and_exact(sw: Swarm) -> tuple[float, dict[int, float], int]:
    agents = _agents(sw)
    if sw.shard is not None:
        res = _fused_and_exact_of(sw, agents) if agents is not None else None
        err, ncomp = sw.shard.comm.bcast(None if res is None else (res[0], res[2]), root=0)
        return err, (res[1] if res is not None else {}), ncomp
    return _fused_and_exact_of(sw, agents)  # type: ignore[arg-type]


def _fused_and_exact_of(sw: Swarm, agents: dict[int, Any]) -> tuple[float, dict[int, float], int]:
    if not agents:
        return 0.0, {}, 0
    comps = live_components(sw.adjacency, agents, sw.partitions, sw.sim.now)
    exact = component_sums({a: agents[a].local_summary for a in agents}, comps)  # type: ignore[attr-defined]
    fused = {a: agents[a].fused_summary for a in agents}  # type: ignore[attr-defined]
    err, per = consistency(fused, exact)
    return err, per, len(comps)


def _scored_ids(ids: list[int], k: int, seed: int) -> list[int]:
    if len(ids) <= k:
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), k, replace=False)
    return sorted(ids[i] for i in pick)


def run_data_phase(sw: Swarm, progress: Progress | None = None) -> None:
    """Run until the data has been delivered, scoring a few agents after every round."""
    cfg, sim, streams = sw.config, sw.sim, sw.streams
    sc_cfg = cfg.scoring
    A = streams.n_agents
    series_ids = list(range(0, A, max(1, A // sc_cfg.series_agents)))[: sc_cfg.series_agents]
    series_idx = np.arange(min(sc_cfg.series_test, streams.X_test.shape[0]))
    n_rounds = max((streams.n_batches(a) for a in range(A)), default=0)
    interval = cfg.timing.batch_interval

    def checkpoint(k: int) -> Callable[[float], None]:
        def fn(now: float) -> None:
            agents = _agents(sw, series_ids)
            if agents is None:  # MPI rank other than 0
                return
            ids = [a for a in series_ids if a in agents]
            if not ids:
                return
            sc = score_agents(agents, streams, ids, keep_local=False, test_idx=series_idx)
            sw.series.append(
                {
                    "t": now,
                    "batches": k,
                    "rmse_local": sc.mean("rmse_local"),
                    "rmse_fused": sc.mean("rmse_fused"),
                    "nlpd_local": sc.mean("nlpd_local"),
                    "nlpd_fused": sc.mean("nlpd_fused"),
                    "ids": sc.ids,
                    "per_agent_local": sc.rmse_local,
                    "per_agent_fused": sc.rmse_fused,
                }
            )

        return fn

    for k in range(1, n_rounds + 1):
        sim.call_at((k + 1) * interval - 1e-6, checkpoint(k))

    def prog(now: float, until: float) -> None:
        if progress is not None:
            progress("data", now, until)

    sim.run(sw.t_data_end + interval * 0.5, progress=prog if progress else None)


def settle(sw: Swarm, progress: Progress | None = None) -> tuple[float, dict[int, float], int]:
    """Probe until every agent holds its component's exact sum (after the last fault).

    Returns
    -------
    (max relative error, per-agent error, number of components)
    """
    cfg, sim = sw.config, sw.sim
    t0 = sim.now
    err, per, ncomp = _fused_and_exact(sw)
    sw.settle_trace.append((sim.now, err))
    last_churn = max((c.time for c in sw.network.config.churn), default=0.0)
    last_part = max((p.end for p in sw.partitions), default=0.0)
    t_free = max(last_churn, last_part)
    max_settle = cfg.scoring.max_settle
    t_warm = t0  # collective mode (issue 9): max_settle counts from the end of the warm-up
    while sim.now - t_warm < max_settle and not (
        err <= cfg.scoring.tol and sim.now >= t_free and _all_warmed_up(sw)
    ):
        sim.run(sim.now + cfg.scoring.probe)
        if not _all_warmed_up(sw) and sim.now - t0 < WARMUP_SETTLE_CAP * max_settle:
            t_warm = sim.now  # the warm-up ends by itself (time-outs, fallback); wait for it
        err, per, ncomp = _fused_and_exact(sw)
        sw.settle_trace.append((sim.now, err))
        if progress is not None:
            progress("settle", sim.now - t0, max_settle)
    return err, per, ncomp


def _all_warmed_up(sw: Swarm) -> bool:
    ok = _warmed_up(sw.sim.agents)
    return ok if sw.shard is None else mpi.all_true(sw.sim, ok)  # type: ignore[arg-type]


def _warmed_up(agents: dict[int, Any]) -> bool:
    """Every collective model has left its warm-up (always true in the paper's mode)."""
    return all(getattr(a.model, "phase", "stream") == "stream" for a in agents.values())


def score(sw: Swarm, ids: list[int]) -> tuple[Scores, dict[str, dict[str, float]], Any]:
    """Scores of agents ``ids`` and of the configured baselines, in the target's units."""
    cfg, sim, streams = sw.config, sw.sim, sw.streams
    wanted = set(cfg.scoring.baselines)
    sc = score_agents(sim.agents, streams, ids)
    oracle = bl.oracle_summary(sim.agents, sw.encoding.m, sw.encoding.hash)
    rmse_oracle, nlpd_oracle = bl.score_oracle(sim.agents, streams, ids, oracle)
    base: dict[str, dict[str, float]] = {}
    if "local" in wanted:
        base["local"] = {"rmse": sc.mean("rmse_local"), "nlpd": sc.mean("nlpd_local")}
    if "oracle" in wanted:
        base["oracle"] = {"rmse": rmse_oracle, "nlpd": nlpd_oracle}
    if wanted & {"gpoe", "rbcm"}:
        agg = bl.score_aggregate(streams, ids, sc.local_preds)
        base.update({k: v for k, v in agg.items() if k in wanted})
    Xp, yp = _observed_pool(sw)
    # collective mode (issue 9): dPITC is the paper's encoding under the paper's initial
    # hyperparameters; the collective --no-learn run is its counterpart, so it is skipped here
    if "dpitc" in wanted and getattr(cfg.model, "mode", "paper") != "collective":
        base["dpitc"] = bl.score_dpitc(
            streams, ids, sw.encoding, Hyperparameters.initial(streams.d), Xp, yp
        )
    if "sgpr_pooled" in wanted and Xp.shape[0] > 0:
        r = bl.score_sgpr_pooled(
            streams,
            ids,
            Xp,
            yp,
            cfg.model.inducing,
            iters=cfg.scoring.sgpr_iters,
            seed=cfg.seed,
            max_points=cfg.scoring.sgpr_max_points,
        )
        if r:
            base["sgpr_pooled"] = r
    scores = Scores(
        rmse_local=sc.mean("rmse_local"),
        nlpd_local=sc.mean("nlpd_local"),
        rmse_fused=sc.mean("rmse_fused"),
        nlpd_fused=sc.mean("nlpd_fused"),
        rmse_oracle=rmse_oracle,
        nlpd_oracle=nlpd_oracle,
    )
    return scores, base, sc


def run_simulation(
    cfg: RunConfig,
    progress: Progress | None = None,
    *,
    adjacency: Adjacency | None = None,
    streams: Streams | None = None,
    keep: list[Swarm] | None = None,
) -> dict[str, Any]:
    """Run one simulation and return its checked report (a JSON-ready dict).

    Parameters
    ----------
    cfg : RunConfig
    progress : callable, optional
        ``progress(phase, done, total)`` for a progress bar.
    adjacency, streams : optional
        Override the topology and data built from the configuration.
    keep : list, optional
        The built :class:`Swarm` is appended (tests inspect agents after the run).

    Returns
    -------
    dict or None
        None on MPI ranks other than 0 (rank 0 returns the one report).
    """
    paper_learner = cfg.model.mode == "paper" and cfg.model.learn
    if paper_learner or "sgpr_pooled" in cfg.scoring.baselines:
        import torch  # noqa: F401  (imported before limiting threads, so the limit applies)
    with single_threaded():
        wall0 = time.perf_counter()
        split, skipped = _newcomer_split(cfg, adjacency, streams)  # --newcomers (issue 9)
        if split is not None:
            streams = split.swarm
        shard = None
        if mpi.mpi_world_size() > 1:  # under mpirun / srun: shard the agents (issue 12)
            if split is not None:
                raise ValueError(
                    "sim under MPI: --newcomers is not supported; run it without mpirun"
                )
            n = (
                len(adjacency)
                if adjacency is not None
                else (streams.n_agents if streams is not None else cfg.swarm.agents)
            )
            shard = mpi.start_shard(n)
            if shard.rank != 0:
                progress = None
        sw = build_swarm(cfg, adjacency, streams, shard)
        if keep is not None:
            keep.append(sw)
        run_data_phase(sw, progress)
        t_settle0 = sw.sim.now
        err, per, ncomp = settle(sw, progress)
        if progress is not None:
            progress("score", 0.0, 1.0)
        live = sw.sim.live_ids()
        if sw.shard is not None:
            live = mpi.all_live_ids(sw.sim)  # type: ignore[arg-type]
        ids = _scored_ids(live, cfg.scoring.score_agents, cfg.seed)
        if sw.shard is not None and not _merge_on_root(sw, ids + live[:1]):
            return None  # type: ignore[return-value]
        scores, base, sc = score(sw, ids)
        extra: dict[str, Any] = {}
        if split is not None:
            extra["newcomers"] = evaluate_newcomers(sw, split)
        elif skipped:
            extra["newcomers"] = {"skipped": skipped}
        return _report(sw, scores, base, sc, err, per, ncomp, live, ids, t_settle0, wall0, extra)


def _merge_on_root(sw: Swarm, models: list[int]) -> bool:
    """Under MPI: make rank 0's swarm hold every rank's agents (as views) and counters."""
    sim = sw.sim
    agents = _agents(sw, models)
    rss = mpi.max_over_ranks(sim, peak_rss_mb())  # type: ignore[arg-type]
    if not mpi.merge_on_root(sim, sw.network):  # type: ignore[arg-type]
        return False
    sim.agents = agents  # type: ignore[assignment]
    sw.peak_rss_mb = rss
    return True


def _newcomer_split(
    cfg: RunConfig, adjacency: Adjacency | None, streams: Streams | None
) -> tuple[NewcomerSplit | None, str]:
    """The data split into swarm and newcomers (``--newcomers``), or why there is none."""
    n = cfg.scoring.newcomers
    if n <= 0:
        return None, ""
    if getattr(cfg.model, "mode", "collective") == "paper":
        return None, "paper mode: newcomers need the collective mode's agreed theta (skipped)"
    if streams is None:
        agents = len(adjacency) + n if adjacency is not None else cfg.swarm.agents
        streams = make_streams(
            cfg.data,
            agents=agents,
            seed=cfg.seed,
            test_points=cfg.scoring.test_points,
            record_s=cfg.scoring.duration,
        )
    return split_newcomers(streams, n, cfg.seed), ""


def _report(
    sw: Swarm,
    scores: Scores,
    base: dict[str, dict[str, float]],
    sc: Any,
    err: float,
    per: dict[int, float],
    ncomp: int,
    live: list[int],
    ids: list[int],
    t_settle0: float,
    wall0: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cfg, sim, streams = sw.config, sw.sim, sw.streams
    net = sw.network.stats
    fused_obs = [sim.agents[a].fused_summary.n_obs for a in live]  # type: ignore[attr-defined]
    extras = {
        "data": streams.info,
        "diameter": sw.diameter,
        "components": ncomp,
        "live_agents": len(live),
        "scored_agents": len(ids),
        "virtual_time_s": sim.now,
        "data_end_s": sw.t_data_end,
        "settle_s": sim.now - t_settle0,
        "consistent": bool(err <= cfg.scoring.tol),
        "per_agent": {
            "ids": sc.ids,
            "rmse_local": sc.rmse_local,
            "rmse_fused": sc.rmse_fused,
            "nlpd_local": sc.nlpd_local,
            "nlpd_fused": sc.nlpd_fused,
            "consistency_rel_err": [per.get(a, float("nan")) for a in sc.ids],
        },
        "rmse_over_time": sw.series,
        "settle_trace": [[t, e] for t, e in sw.settle_trace],
        "ess": _ess(sim.agents, ids),
        "network": net.as_dict(),
        "message_size_source": sw.network.size_source,
        "driver": sim.stats.as_dict(),
        "agent_counters": _agent_counters(sim.agents),
        "churn_events": len(sw.network.config.churn),
        "ranks": 1 if sw.shard is None else sw.shard.size,
        "observations": int(sum(X.shape[0] for X, _ in _observed(sw))),
        **(extra or {}),
    }
    return build_report(
        cfg,
        agents=streams.n_agents,
        topology="peers" if cfg.swarm.peers else cfg.swarm.topology,
        batches_per_agent=max((streams.n_batches(a) for a in range(streams.n_agents)), default=0),
        scores=scores,
        consistency_max_rel_err=err,
        baselines=base,
        messages=net.sent,
        bytes_sent=net.bytes_sent,
        wall_s=time.perf_counter() - wall0,
        peak_rss_mb=peak_rss_mb() if sw.peak_rss_mb is None else sw.peak_rss_mb,
        n_obs=int(max(fused_obs, default=0)),
        extras=extras,
    )


def _observed(sw: Swarm) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches that reached a running agent (missed ones excluded), by agent and round."""
    return [sw.streams.batches[a][k] for a, k in sorted(sw.sim.observed_batches)]


def _observed_pool(sw: Swarm) -> tuple[np.ndarray, np.ndarray]:
    """The observed batches pooled: X (n, d), y (n,)."""
    obs = _observed(sw)
    if not obs:
        return np.zeros((0, sw.streams.d)), np.zeros(0)
    return np.concatenate([X for X, _ in obs]), np.concatenate([y for _, y in obs])


def _ess(agents: dict[int, Any], ids: list[int]) -> dict[str, float] | None:
    vals = []
    for a in ids:
        enc = agents[a].model.encoder
        if hasattr(enc, "ess"):
            vals.append(enc.ess(agents[a].model.hyper))
    if not vals:
        return None
    return {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}


def _agent_counters(agents: dict[int, Any]) -> dict[str, int]:
    tot: dict[str, int] = {}
    for a in sorted(agents):
        for k, v in agents[a].counters.items():
            tot[k] = tot.get(k, 0) + int(v)
    return dict(sorted(tot.items()))
