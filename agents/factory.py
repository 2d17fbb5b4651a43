"""The one agent factory: both drivers (the simulator and the ZeroMQ runner) build agents here.

:func:`protocol_timing` is the one timeout policy; :func:`build_agent` turns a run config, an
identity and a common encoding into a ready :class:`~swarmgp.agents.agent.Agent` with its
:class:`~swarmgp.agents.local_model.LocalModel`. Nothing here does I/O: the clock reading
``now`` and the random generators are passed in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from swarmgp.agents.agent import Agent
from swarmgp.agents.allreduce import AllReduceTiming  # collective mode (issue 9)
from swarmgp.agents.collective_model import (
    DEFAULT_MAX_EVALS,
    DEFAULT_STARTS,
    CollectiveEncoding,
    CollectiveModel,
    WarmupMemo,
)
from swarmgp.agents.config import AgentConfig, TimingConfig
from swarmgp.agents.local_model import LocalModel, LocalModelConfig
from swarmgp.agents.run_config import RunConfig
from swarmgp.fusion.encoding import Encoding, EncodingSpec, make_encoding
from swarmgp.fusion.hyper import Hyperparameters

__all__ = [
    "agent_seeds",
    "build_agent",
    "collective_timing",
    "common_encoding",
    "heartbeat_floor",
    "local_heartbeat",
    "model_config",
    "protocol_timing",
    "quiet_every",
    "static_dims",
    "static_inducing",
]

#: Probability that a live peer is declared dead because every beacon of a timeout was lost.
FALSE_EXPIRY = 1e-7
#: Fewest beacons in a timeout, even on a lossless network (scheduling hiccups of real processes).
MIN_TIMEOUT_BEACONS = 6
#: Real agents start one after another (each waits for its neighbours' endpoints): how long a
#: starting agent owes its tree neighbours the changes of configured neighbours not heard yet.
JOIN_WAIT_S = 30.0

#: CPU seconds one beacon on one directed link costs a swarm of agent processes on one machine:
#: the sender's share of building and sending it, the receiver's waking up (context switch, event
#: loop, ZeroMQ poll), receiving, decoding and handling it, with each agent's own per-period
#: ticking spread over its links. Measured with ``benchmarks/bench_heartbeat.py --swarm`` on
#: the project's 2-core shared CPU box (idle swarms after consistency, m = 100, paper mode; CPU
#: seconds per second of every agent process over the beacons sent per second), two rounds:
#: 32 ring at 0.1 s 1.59/1.73 ms, 32 geometric at 0.1 s 1.21/1.26 ms, at 0.2 s 1.32/1.50 ms,
#: 64 ring at 0.2 s 1.58/1.79 ms, 64 geometric at 0.7 s 1.16/1.18 ms; this is their median
#: (rings cost more per link: each agent's ticking is spread over two links only). The bare
#: path alone (build, encode, send, receive, decode, handle; two agents in one process,
#: ``bench_heartbeat.py`` without ``--swarm``) is 0.26-0.29 ms: most of the cost is waking up.
HEARTBEAT_CPU_S = 1.4e-3
#: Share of the machine's cores the beacons of a ``local`` swarm may use (the rest is for
#: fusion, learning and the launcher); above it peers time out under load and the tree churns.
HEARTBEAT_CPU_SHARE = 0.5


def heartbeat_floor(
    links: int,
    cores: int,
    default: float,
    cost_s: float = HEARTBEAT_CPU_S,
    share: float = HEARTBEAT_CPU_SHARE,
) -> float:
    """The shortest heartbeat period at which a swarm's beacons use at most ``share`` of
    ``cores``: ``max(default, links * cost_s / (cores * share))``.

    Parameters
    ----------
    links : int
        Directed links (every agent beacons to each configured neighbour: the sum of degrees).
    cores : int
        Cores the swarm's processes run on.
    default : float
        The period to use when the beacons fit (the command's default ``--heartbeat``).
    """
    return max(default, links * cost_s / (max(cores, 1) * share))


def local_heartbeat(cfg: RunConfig, links: int, cores: int) -> tuple[float, str]:
    """The heartbeat period of a ``local`` swarm of ``links`` directed links on ``cores``,
    with the reason: ``--heartbeat`` exactly when given, else :func:`heartbeat_floor` of the
    default (every agent of one machine beacons on its CPUs, and a swarm whose beacons
    overload them never agrees: peers time out, the tree churns)."""
    hb = cfg.timing.heartbeat
    if "heartbeat" in cfg.given:
        return hb, "--heartbeat"
    floor = heartbeat_floor(links, cores, hb)
    if floor <= hb:
        return hb, "default"
    return floor, f"floor for {links} links on {cores} cores; --heartbeat to override"


#: Spawn key of the agents' seeds under the run seed (shared by every driver).
AGENT_SEED_KEY = 3


def agent_seeds(seed: int, agent_id: int, incarnation: int) -> np.random.SeedSequence:
    """The seed of one agent's life: a child of the run seed by (agent, incarnation)."""
    return np.random.SeedSequence(seed, spawn_key=(AGENT_SEED_KEY, agent_id, incarnation))


def protocol_timing(cfg: RunConfig) -> TimingConfig:
    """Protocol periods of a run: one policy for every driver.

    The peer and root timeouts hold enough beacons that losing all of them at the run's loss
    rate is a ``FALSE_EXPIRY`` event (at least ``MIN_TIMEOUT_BEACONS``, at most 160); links off
    the tree beacon only as often as that still holds (:func:`quiet_every`); fusion
    state is resent every two beacons, triggered beacons are rate-limited to ten per period.
    With ``--fusion rounds`` a changed tree message waiting for its inputs is held at most one
    batch interval or two beacons, whichever is longer; outside the simulator (whose agents
    start together) an agent owes its tree neighbours the changes of configured neighbours not
    heard yet for up to ``JOIN_WAIT_S`` after its start.
    """
    hb = cfg.timing.heartbeat
    p = min(max(cfg.faults.loss, cfg.faults.bursty or 0.0, 1e-3), 0.9)
    needed = math.ceil(math.log(FALSE_EXPIRY) / math.log(p))  # losing that many: FALSE_EXPIRY
    beats = min(max(MIN_TIMEOUT_BEACONS, needed), 160)
    return TimingConfig(
        heartbeat_s=hb,
        peer_timeout_s=beats * hb,
        root_timeout_s=beats * hb,
        fuse_min_interval_s=cfg.timing.fuse_interval,
        fuse_resend_s=2 * hb,
        beacon_min_interval_s=hb / 10,
        fuse_hold_s=max(cfg.timing.batch_interval, 2 * hb),
        join_wait_s=0.0 if cfg.command == "sim" else JOIN_WAIT_S,
        quiet_every=quiet_every(beats, needed),
    )


def quiet_every(beats: int, needed: int) -> int:
    """The sparsest beacon schedule of a link off the tree (``TimingConfig.quiet_every``).

    A quiet link beacons every ``k`` periods and its peer is expired after ``beats + k - 1``
    periods of silence, which hold ``floor((beats + k - 1) / k)`` of its beacons (counted as a
    tree link's ``beats``-period timeout holds ``beats``). The largest ``k`` (at most 8) whose
    window still holds ``needed``, the number of beacons whose loss is a ``FALSE_EXPIRY``
    event: 2 on a lossless network (the six-beacon timeout keeps its margin for the tree
    links), 1 from about 1 % loss.
    """
    return max([1] + [k for k in range(2, 9) if (beats + k - 1) // k >= needed])


def common_encoding(cfg: RunConfig, d: int) -> Encoding | CollectiveEncoding:
    """The swarm's common encoding for inputs of dimension ``d`` (identical on every agent).

    In the collective mode (the default) it is a :class:`CollectiveEncoding`: its ``m`` is the
    summary size ``inducing + 2`` and its ``hash`` the run's collective settings.
    """
    if getattr(cfg.model, "mode", "paper") == "collective":  # collective mode (issue 9)
        return CollectiveEncoding(
            d=d,
            inducing=cfg.model.inducing,
            warmup_batches=getattr(cfg.model, "warmup_batches", 2),
            learn=cfg.model.learn,
            seed=cfg.seed,
            box=declared_box(cfg, d),
            site_effect=getattr(cfg.model, "site_effect", False),
            static_dims=static_dims(cfg, d),
            static_inducing=static_inducing(cfg),
            inducing_init=getattr(cfg.model, "inducing_init", "halton"),
            warmup_starts=getattr(cfg.model, "warmup_starts", DEFAULT_STARTS),
            max_evals=getattr(cfg.model, "warmup_evals", DEFAULT_MAX_EVALS),
        )
    return make_encoding(EncodingSpec(d=d, m=cfg.model.inducing))


def static_dims(cfg: RunConfig, d: int) -> tuple[int, ...]:
    """The inputs of the collective model's static component: all but the time column.

    () -- no static component -- unless the time column is one of ``d >= 2`` named inputs,
    ``--static-share`` is positive and there is no ``--site-effect``.
    """
    names = list(cfg.data.inputs or ())
    t = cfg.data.time_column
    if (
        len(names) != d
        or d < 2
        or t not in names
        or static_inducing(cfg) < 1
        or getattr(cfg.model, "site_effect", False)
    ):
        return ()
    return tuple(i for i, name in enumerate(names) if name != t)


def static_inducing(cfg: RunConfig) -> int:
    """Inducing inputs of the static component: ``--static-share`` of m, leaving the joint >= 1."""
    m = cfg.model.inducing
    return min(m - 1, round(getattr(cfg.model, "static_share", 0.0) * m)) if m >= 2 else 0


def declared_box(cfg: RunConfig, d: int) -> tuple[tuple[float, float], ...]:
    """Per input, the declared ``--input-range NAME=LO:HI`` (NaN, NaN where none); () if none.

    Raises
    ------
    ValueError
        A malformed range, an unknown input name, or ``LO >= HI``.
    """
    specs = getattr(cfg.data, "input_range", ())
    if not specs:
        return ()
    names = list(cfg.data.inputs or ())
    box = [(math.nan, math.nan)] * d
    for spec in specs:
        try:
            name, rng = spec.split("=")
            lo, hi = (float(v) for v in rng.split(":"))
        except ValueError:
            raise ValueError(f"--input-range: got {spec!r}, expected NAME=LO:HI") from None
        if name not in names or not lo < hi:
            raise ValueError(f"--input-range {spec!r}: NAME must be one of {names}, LO < HI")
        box[names.index(name)] = (lo, hi)
    return tuple(box)


def collective_timing(cfg: RunConfig) -> AllReduceTiming:
    """Periods of the collective warm-up's all-reduce, from the run's protocol timing."""
    t = protocol_timing(cfg)
    wait = max(2.0 * t.peer_timeout_s, 3.0 * cfg.timing.batch_interval)
    return AllReduceTiming(
        resend_s=t.heartbeat_s / 5,  # rounds are sequential: repair loss quickly
        settle_s=2.0 * t.heartbeat_s,
        round_timeout_s=2.0 * t.peer_timeout_s,
        ready_wait_s=wait * max(1, getattr(cfg.model, "warmup_batches", 2)),
    )


def model_config(cfg: RunConfig, d: int) -> LocalModelConfig:
    """The local model settings of every agent of a run."""
    return LocalModelConfig(
        encoder=cfg.model.encoder,  # type: ignore[arg-type]
        samples=cfg.model.samples,
        learn=cfg.model.learn,
        stream_batches=cfg.data.batches,
        initial=Hyperparameters.initial(d),
    )


def build_agent(
    cfg: RunConfig,
    agent_id: int,
    neighbors: Sequence[int],
    encoding: Encoding | CollectiveEncoding,
    *,
    incarnation: int,
    now: float,
    seeds: np.random.SeedSequence,
    max_dist: int,
    endpoint: str = "",
    status_extra: Callable[[], dict[str, Any]] | None = None,
    counters: Counter[str] | None = None,
    warmup_memo: WarmupMemo | None = None,
) -> Agent:
    """One agent of the run, with its local model.

    Parameters
    ----------
    cfg : RunConfig
    agent_id : int
    neighbors : sequence of int
        Configured neighbour ids.
    encoding : Encoding
        The common encoding (:func:`common_encoding`).
    incarnation : int
        Grows with every start of this agent.
    now : float
        The driver's clock.
    seeds : numpy.random.SeedSequence
        This agent's (and incarnation's) seed: spawned into the model's and the agent's
        generators, so every random choice replays from the run seed.
    max_dist : int
        Distance cap of the spanning tree (at least the graph's diameter).
    endpoint : str
        Announced in Hello messages ("" in simulation).
    status_extra : callable, optional
        Driver facts merged into status replies.
    counters : collections.Counter, optional
        The agent's counters, shared with a transport that counts into them.
    warmup_memo : WarmupMemo, optional
        Collective mode: the warm-up evaluations shared by every agent of this process (the
        simulator's; a real agent process has none).
    """
    r_model, r_agent = (np.random.default_rng(s) for s in seeds.spawn(2))
    config = AgentConfig(
        agent_id=agent_id,
        neighbors=tuple(neighbors),
        m=encoding.m,
        encoding_hash=encoding.hash,
        incarnation=incarnation,
        timing=protocol_timing(cfg),
        max_dist=max_dist,
        endpoint=endpoint,
        fusion=getattr(cfg.timing, "fusion", "tree"),
    )
    model: LocalModel | CollectiveModel
    if isinstance(encoding, CollectiveEncoding):  # collective mode (issue 9)
        model = CollectiveModel(encoding, collective_timing(cfg), warmup_memo)
    else:
        model = LocalModel(encoding, model_config(cfg, encoding.d), r_model)
    return Agent(config, model, now, rng=r_agent, status_extra=status_extra, counters=counters)
