"""Build and run one simulated swarm from its settings and produce the run report.

:func:`run_simulation` is what ``python launch.py sim`` calls. It builds the topology, the data
streams, the common encoding, one real :class:`swarmgp.agents.agent.Agent` (with its
:class:`swarmgp.agents.local_model.LocalModel`) per agent, the :class:`SimNetwork` and the
:class:`Simulator`; schedules every agent's batches (agent a's k-th batch at
``(k + phase_a) * batch_interval_s``), checkpoints and churn; runs the data phase, then a
settle phase until every agent holds its component's exact sum (or ``max_settle_s`` passes);
then scores the agents and the baselines and returns the report dict (DESIGN.md section 4).

Seeds: one root ``SeedSequence(seed)``, spawned per concern: topology, data, network, agent
models, agent phases and churn. Same settings => same report except ``wall_s`` and
``peak_rss_mb``.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.hyper import Hyperparameters

from . import baselines as bl
from .metrics import component_sums, consistency, live_components, score_agents
from .network import ChurnEvent, NetworkConfig, Partition, SimNetwork, poisson_churn
from .scheduler import Simulator
from .streams import Streams, make_streams
from .topology import Adjacency, diameter, load_peers, make_topology

__all__ = ["SimSettings", "Swarm", "build_swarm", "peak_rss_mb", "run_simulation"]


@dataclass(frozen=True)
class SimSettings:
    """Everything a simulated run depends on (the report echoes them).

    The first block mirrors the ``launch.py sim`` options of DESIGN.md section 4.
    """

    agents: int = 16
    topology: str = "geometric"
    peers: str | None = None
    inducing: int = 50
    samples: int = 20
    batches: int = 10
    batch_size: int = 20
    loss: float = 0.0
    seed: int = 0
    learn: bool = True
    data: str = "synthetic"
    agent_column: str | None = None
    inputs: tuple[str, ...] | None = None
    target: str | None = None
    # model
    encoder: str = "analytic"
    dim: int = 2
    groups: int | None = None
    spread: float = 0.3
    noise: float = 0.1
    n_test: int = 500
    # protocol timing (virtual seconds)
    batch_interval_s: float = 1.0
    heartbeat_s: float = 0.5
    fuse_interval_s: float = 0.05
    resend_s: float = 1.0
    # network faults
    bursty: float | None = None
    duplicate: float = 0.0
    reorder: float = 0.0
    latency_s: float = 0.005
    jitter_s: float = 0.005
    partitions: tuple[Partition, ...] = ()
    churn: tuple[ChurnEvent, ...] = ()
    churn_rate: float = 0.0
    # run control and scoring
    max_settle_s: float = 120.0
    probe_s: float = 0.5
    tol: float = 1e-9
    score_agents: int = 1000
    series_agents: int = 16
    series_test: int = 200
    baselines: tuple[str, ...] = ("local", "oracle", "gpoe", "rbcm", "dpitc", "sgpr_pooled")
    sgpr_iters: int = 150
    sgpr_max_points: int = 20000

    def public(self) -> dict[str, Any]:
        """JSON-ready dict of the settings."""
        d = asdict(self)
        d["partitions"] = [[p.start, p.end, [sorted(g) for g in p.groups]] for p in self.partitions]
        d["churn"] = [[c.time, c.agent, c.kind] for c in self.churn]
        d["baselines"] = list(self.baselines)
        d["inputs"] = list(self.inputs) if self.inputs else None
        return d


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(r) / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


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


def _timeouts(heartbeat_s: float, loss: float) -> float:
    """Peer/root timeout: enough beacons that losing all of them is a 1e-7 event."""
    p = min(max(loss, 1e-3), 0.9)
    beats = min(max(5, math.ceil(math.log(1e-7) / math.log(p))), 160)
    return beats * heartbeat_s


@dataclass
class Swarm:
    """A built, not yet run, simulation (exposed for tests and experiments)."""

    settings: SimSettings
    adjacency: Adjacency
    streams: Streams
    encoding: Any
    sim: Simulator
    network: SimNetwork
    diameter: int
    t_data_end: float
    series: list[dict[str, Any]] = field(default_factory=list)
    settle_trace: list[tuple[float, float]] = field(default_factory=list)


def build_swarm(
    s: SimSettings, adjacency: Adjacency | None = None, streams: Streams | None = None
) -> Swarm:
    """Build topology, streams, encoding, agents factory, network and simulator.

    Parameters
    ----------
    s : SimSettings
    adjacency : Adjacency, optional
        Overrides ``s.topology`` / ``s.peers``.
    streams : Streams, optional
        Overrides ``s.data``.
    """
    from swarmgp.agents.agent import Agent
    from swarmgp.agents.config import AgentConfig, TimingConfig
    from swarmgp.agents.local_model import LocalModel, LocalModelConfig

    root = np.random.SeedSequence(s.seed)
    ss_topo, ss_data, ss_net, ss_model, ss_phase, ss_churn = root.spawn(6)
    if adjacency is None:
        if s.peers:
            adjacency = load_peers(s.peers)
        else:
            topo_seed = int(ss_topo.generate_state(1)[0])
            adjacency = make_topology(s.topology, s.agents, seed=topo_seed)
    if streams is None:
        streams = make_streams(
            s.data,
            agents=len(adjacency),
            batches=s.batches,
            batch_size=s.batch_size,
            seed=int(ss_data.generate_state(1)[0]),
            d=s.dim,
            n_test=s.n_test,
            groups=s.groups,
            spread=s.spread,
            noise=s.noise,
            agent_column=s.agent_column,
            inputs=s.inputs,
            target=s.target,
        )
    A = streams.n_agents
    if A != len(adjacency):
        raise ValueError(f"sim: {A} data streams for {len(adjacency)} agents in the topology")
    encoding = make_encoding(EncodingSpec(d=streams.d, m=s.inducing))
    diam = diameter(adjacency)
    tmo = _timeouts(s.heartbeat_s, max(s.loss, s.bursty or 0.0))
    timing = TimingConfig(
        heartbeat_s=s.heartbeat_s,
        peer_timeout_s=tmo,
        root_timeout_s=tmo,
        fuse_min_interval_s=s.fuse_interval_s,
        fuse_resend_s=s.resend_s,
    )
    model_cfg = LocalModelConfig(
        encoder=s.encoder,  # type: ignore[arg-type]
        samples=s.samples,
        learn=s.learn,
        stream_batches=max(1, s.batches),
        initial=Hyperparameters.initial(streams.d),
    )
    max_dist = max(255, 2 * diam + 2)
    model_key = ss_model.entropy

    def factory(a: int, incarnation: int, now: float) -> Agent:
        seq = np.random.SeedSequence(model_key, spawn_key=(*ss_model.spawn_key, a, incarnation))
        r_model, r_agent = (np.random.default_rng(x) for x in seq.spawn(2))
        cfg = AgentConfig(
            agent_id=a,
            neighbors=adjacency[a],
            m=s.inducing,
            encoding_hash=encoding.hash,
            incarnation=incarnation,
            timing=timing,
            max_dist=max_dist,
        )
        return Agent(cfg, LocalModel(encoding, model_cfg, r_model), now, rng=r_agent)

    from .network import GilbertElliott

    churn = tuple(s.churn)
    t_data_end = (
        max((streams.n_batches(a) for a in range(A)), default=0) + 0.5
    ) * s.batch_interval_s
    if s.churn_rate > 0:
        churn += poisson_churn(
            list(range(A)),
            s.churn_rate,
            0.5 * s.batch_interval_s,
            t_data_end,
            np.random.default_rng(ss_churn),
            downtime_s=2.0 * s.heartbeat_s,
        )
    net_cfg = NetworkConfig(
        base_latency_s=s.latency_s,
        jitter_s=s.jitter_s,
        loss=s.loss,
        bursty=GilbertElliott.from_mean(s.bursty) if s.bursty else None,
        duplicate=s.duplicate,
        reorder=s.reorder,
        partitions=s.partitions,
        churn=churn,
    )
    network = SimNetwork(net_cfg, ss_net, encoding_hash=encoding.hash, m=s.inducing)
    sim = Simulator(factory, network)
    sw = Swarm(s, adjacency, streams, encoding, sim, network, diam, t_data_end)
    joiners = {c.agent for c in churn if c.kind == "join"}
    for a in range(A):
        if a not in joiners:
            sim.schedule_start(a, 0.0)
    phase = np.random.default_rng(ss_phase).uniform(0.05, 0.5, A) * s.batch_interval_s
    for a in range(A):
        for k, (X, y) in enumerate(streams.batches[a]):
            sim.schedule_batch(a, (k + 1) * s.batch_interval_s + phase[a], X, y, k)
    for ev in churn:
        sim.schedule_churn(ev)
    return sw


def _fused_and_exact(sw: Swarm) -> tuple[float, dict[int, float], int]:
    agents = sw.sim.agents
    if not agents:
        return 0.0, {}, 0
    comps = live_components(sw.adjacency, agents, sw.settings.partitions, sw.sim.now)
    exact = component_sums({a: agents[a].local_summary for a in agents}, comps)  # type: ignore[attr-defined]
    fused = {a: agents[a].fused_summary for a in agents}  # type: ignore[attr-defined]
    err, per = consistency(fused, exact)
    return err, per, len(comps)


def _scored_ids(ids: list[int], k: int, seed: int) -> list[int]:
    if len(ids) <= k:
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), k, replace=False)
    return sorted(ids[i] for i in pick)


def run_simulation(
    s: SimSettings,
    progress: Callable[[str, float, float], None] | None = None,
    *,
    adjacency: Adjacency | None = None,
    streams: Streams | None = None,
    keep: list[Swarm] | None = None,
) -> dict[str, Any]:
    """Run one simulation and return its report (a JSON-ready dict).

    Parameters
    ----------
    s : SimSettings
    progress : callable, optional
        ``progress(phase, done, total)`` for a progress bar.
    adjacency, streams : optional
        Override the topology and data built from the settings.
    keep : list, optional
        The built :class:`Swarm` is appended (tests inspect agents after the run).
    """
    if s.learn or "sgpr_pooled" in s.baselines:
        import torch  # noqa: F401  (imported before limiting threads, so the limit applies)
    with single_threaded():
        return _run(s, progress, adjacency, streams, keep)


def _run(
    s: SimSettings,
    progress: Callable[[str, float, float], None] | None,
    adjacency: Adjacency | None,
    streams: Streams | None,
    keep: list[Swarm] | None,
) -> dict[str, Any]:
    wall0 = time.perf_counter()
    sw = build_swarm(s, adjacency, streams)
    if keep is not None:
        keep.append(sw)
    sim, streams_ = sw.sim, sw.streams
    A = streams_.n_agents
    series_ids = list(range(0, A, max(1, A // s.series_agents)))[: s.series_agents]
    series_idx = np.arange(min(s.series_test, streams_.X_test.shape[0]))
    n_rounds = max((streams_.n_batches(a) for a in range(A)), default=0)

    def checkpoint(k: int) -> Callable[[float], None]:
        def fn(now: float) -> None:
            ids = [a for a in series_ids if a in sim.agents]
            if not ids:
                return
            sc = score_agents(sim.agents, streams_, ids, keep_local=False, test_idx=series_idx)
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
        sim.call_at((k + 1) * s.batch_interval_s - 1e-6, checkpoint(k))

    def prog(now: float, until: float) -> None:
        if progress is not None:
            progress("data", now, until)

    sim.run(sw.t_data_end + s.batch_interval_s * 0.5, progress=prog if progress else None)
    # settle: probe consistency until every agent holds its component's exact sum
    t_settle0 = sim.now
    err, per, ncomp = _fused_and_exact(sw)
    sw.settle_trace.append((sim.now, err))
    last_churn = max((c.time for c in sw.network.config.churn), default=0.0)
    last_part = max((p.end for p in s.partitions), default=0.0)
    t_free = max(last_churn, last_part)
    while sim.now - t_settle0 < s.max_settle_s and not (err <= s.tol and sim.now >= t_free):
        sim.run(sim.now + s.probe_s)
        err, per, ncomp = _fused_and_exact(sw)
        sw.settle_trace.append((sim.now, err))
        if progress is not None:
            progress("settle", sim.now - t_settle0, s.max_settle_s)
    settle_s = sim.now - t_settle0
    if progress is not None:
        progress("score", 0.0, 1.0)
    # ---- scores
    live = sim.live_ids()
    ids = _scored_ids(live, s.score_agents, s.seed)
    sc = score_agents(sim.agents, streams_, ids)
    oracle = bl.oracle_summary(sim.agents, s.inducing, sw.encoding.hash)
    rmse_oracle, nlpd_oracle = bl.score_oracle(sim.agents, streams_, ids, oracle)
    base: dict[str, dict[str, float]] = {}
    if "local" in s.baselines:
        base["local"] = {"rmse": sc.mean("rmse_local"), "nlpd": sc.mean("nlpd_local")}
    if "oracle" in s.baselines:
        base["oracle"] = {"rmse": rmse_oracle, "nlpd": nlpd_oracle}
    if "gpoe" in s.baselines or "rbcm" in s.baselines:
        agg = bl.score_aggregate(streams_, ids, sc.local_preds)
        base.update({k: v for k, v in agg.items() if k in s.baselines})
    Xp, yp = _observed_pool(sw)
    if "dpitc" in s.baselines:
        base["dpitc"] = bl.score_dpitc(
            streams_, ids, sw.encoding, Hyperparameters.initial(streams_.d), Xp, yp
        )
    if "sgpr_pooled" in s.baselines and Xp.shape[0] > 0:
        r = bl.score_sgpr_pooled(
            streams_,
            ids,
            Xp,
            yp,
            s.inducing,
            iters=s.sgpr_iters,
            seed=s.seed,
            max_points=s.sgpr_max_points,
        )
        if r:
            base["sgpr_pooled"] = r
    ess = _ess(sim.agents, ids)
    net = sw.network.stats
    counters = _agent_counters(sim.agents)
    report: dict[str, Any] = {
        "agents": A,
        "topology": "peers" if s.peers else s.topology,
        "inducing": s.inducing,
        "samples": s.samples,
        "batches_per_agent": s.batches,
        "batch_size": s.batch_size,
        "loss": s.loss,
        "seed": s.seed,
        "learn": s.learn,
        "rmse_local": sc.mean("rmse_local"),
        "nlpd_local": sc.mean("nlpd_local"),
        "rmse_fused": sc.mean("rmse_fused"),
        "nlpd_fused": sc.mean("nlpd_fused"),
        "rmse_oracle": rmse_oracle,
        "nlpd_oracle": nlpd_oracle,
        "consistency_max_rel_err": err,
        "baselines": base,
        "messages": net.sent,
        "bytes": net.bytes_sent,
        "wall_s": 0.0,
        "peak_rss_mb": 0.0,
        # extras
        "data": streams_.info,
        "encoder": s.encoder,
        "settings": s.public(),
        "diameter": sw.diameter,
        "components": ncomp,
        "live_agents": len(live),
        "scored_agents": len(ids),
        "virtual_time_s": sim.now,
        "data_end_s": sw.t_data_end,
        "settle_s": settle_s,
        "consistent": bool(err <= s.tol),
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
        "ess": ess,
        "network": net.as_dict(),
        "message_size_source": sw.network.size_source,
        "driver": sim.stats.as_dict(),
        "agent_counters": counters,
        "churn_events": len(sw.network.config.churn),
        "observations": int(yp.shape[0]),
    }
    report["wall_s"] = time.perf_counter() - wall0
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def _observed_pool(sw: Swarm) -> tuple[np.ndarray, np.ndarray]:
    """The batches that reached a running agent (missed ones excluded), pooled."""
    Xs, ys = [], []
    for a, k in sw.sim.observed_batches:
        X, y = sw.streams.batches[a][k]
        Xs.append(X)
        ys.append(y)
    if not Xs:
        return np.zeros((0, sw.streams.d)), np.zeros(0)
    return np.concatenate(Xs), np.concatenate(ys)


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


def with_settings(s: SimSettings, **kw: Any) -> SimSettings:
    """A copy of ``s`` with some fields replaced."""
    return replace(s, **kw)
