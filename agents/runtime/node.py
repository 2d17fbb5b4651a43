"""``launch.py agent``: one agent process over ZeroMQ, in named phases.

:func:`main` resolves the identity (flags, or SLURM, Open MPI, PMI or torchrun variables),
reads what a launcher declared in the rendezvous directory (neighbour graph, data manifest) or
derives it as every agent would, builds the agent through the one factory, claims its id and
publishes its endpoint (a live other process holding the id is an error), waits for its
neighbours' records (a time-out is an error unless ``--join-alone``), connects to them, and
runs until SIGINT/SIGTERM or, with ``--until consistent`` (the default), until its data has
ended and the swarm holds one collective model (:mod:`.until`); then it writes ``--report``
(``{id}`` expands to the agent id) and exits 0. A watchdog thread stops the process when its
parent dies, from the first line of :func:`main` on (also during the rendezvous wait).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.identity import resolve_identity
from swarmgp.agents.runtime.rendezvous import claim_record, read_swarm, touch_record, wait_records
from swarmgp.agents.runtime.report import (
    Scores,
    build_report,
    check_outputs,
    plot_report,
    write_report,
)
from swarmgp.agents.runtime.runner import RunFacts, configure_threads, run, setup_logging
from swarmgp.agents.runtime.until import SwarmDone, write_done
from swarmgp.agents.sources.agent_feed import DataManifest, agent_batches, declare_data
from swarmgp.agents.topology import neighbour_graph
from swarmgp.protocol.messages import Message
from swarmgp.protocol.transport import LiveTransport

__all__ = ["LossyTransport", "NodePlan", "main", "plan_node"]

log = logging.getLogger("swarmgp.agent")

#: Seed key of the injected-loss generator under the run seed.
LOSS_SEED_KEY = 8
#: Ids at or above this are status clients, never dropped by injected loss.
CLIENT_ID_BASE = 1 << 62


@dataclass(frozen=True)
class NodePlan:
    """Who this agent is and what it needs before it can start.

    Attributes
    ----------
    agent_id, world : int
    identity_source : str
        ``flags``, ``slurm``, ``openmpi``, ``pmi`` or ``torchrun``.
    neighbors : tuple of int
    max_dist : int
        Distance cap of the spanning tree.
    manifest : DataManifest
    rendezvous : Path or None
    """

    agent_id: int
    world: int
    identity_source: str
    neighbors: tuple[int, ...]
    max_dist: int
    manifest: DataManifest
    rendezvous: Path | None


def plan_node(cfg: RunConfig) -> NodePlan:
    """Identity, neighbours and data manifest of this agent (no sockets yet).

    Raises
    ------
    LaunchError
        No identity, or an id outside the swarm.
    """
    agent_id, world, source = resolve_identity(cfg.process.id, cfg.process.world)
    rdv = Path(cfg.process.rendezvous) if cfg.process.rendezvous else None
    declared = read_swarm(rdv)
    if declared is not None and "data" in declared:
        manifest = DataManifest.from_json(declared["data"])
    else:  # no launcher declared it: derive it as every agent would
        manifest = declare_data(cfg.data, world or cfg.swarm.agents, cfg.seed, mode=cfg.model.mode)
    world = world or (declared or {}).get("world") or manifest.n_agents
    if not 0 <= agent_id < world:
        raise LaunchError(f"agent id {agent_id} is outside the swarm of {world} agents")
    if cfg.process.neighbors is not None:
        neighbors = tuple(cfg.process.neighbors)
        bad = [j for j in neighbors if not 0 <= j < world or j == agent_id]
        if bad:
            raise LaunchError(
                f"--neighbors {','.join(map(str, neighbors))}: {bad[0]} is not another agent "
                f"of the swarm of {world} (ids 0..{world - 1}, this agent {agent_id})"
            )
    else:
        if declared is not None and "adjacency" in declared:
            adjacency = {int(k): tuple(v) for k, v in declared["adjacency"].items()}
        else:
            adjacency = neighbour_graph(cfg.swarm.topology, cfg.swarm.peers, world, cfg.seed)
        neighbors = tuple(adjacency.get(agent_id, ()))
    return NodePlan(agent_id, world, source, neighbors, max(2, world), manifest, rdv)


class LossyTransport:
    """``--loss`` on real processes: drops outbound agent messages with probability p (seeded).

    Wraps a :class:`~swarmgp.protocol.transport.LiveTransport`; status replies are never dropped.
    """

    def __init__(
        self, inner: LiveTransport, p: float, rng: np.random.Generator, counters: Counter[str]
    ) -> None:
        self.inner, self.p, self.rng, self.counters = inner, p, rng, counters
        self.endpoint = inner.endpoint

    def send(self, dest: int, msg: Message) -> None:
        if dest < CLIENT_ID_BASE and self.rng.random() < self.p:
            self.counters["net.injected_loss"] += 1
            return
        self.inner.send(dest, msg)

    def recv(self, timeout_s: float) -> Message | None:
        return self.inner.recv(timeout_s)

    def flush(self) -> object:
        return self.inner.flush()

    async def wait_readable(self, timeout_s: float) -> object:
        return await self.inner.wait_readable(timeout_s)

    def disconnect(self, peer: int) -> None:
        self.inner.disconnect(peer)

    def close(self) -> None:
        self.inner.close()


def _advertised_host(bind: str, advertise_host: str | None) -> str | None:
    """The host peers should dial: only needed when binding a wildcard interface."""
    if "*" not in bind.split("//")[-1].split(":")[0]:
        return None
    return advertise_host or socket.gethostname()


def start_watchdog(poll_s: float = 0.5) -> threading.Thread:
    """Stop this process (SIGTERM to itself) when its parent dies: no orphaned agents.

    Before the runner installs its handler, SIGTERM ends the process at once; afterwards it
    makes the runner say goodbye and return.
    """
    ppid = os.getppid()

    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(poll_s)
        log.warning("event=parent_died action=sigterm")
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    t.start()
    return t


def _record(plan: NodePlan, transport: Any, incarnation: int) -> dict[str, Any]:
    return {
        "id": plan.agent_id,
        "world": plan.world,
        "endpoint": transport.endpoint,
        "incarnation": incarnation,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "identity": plan.identity_source,
    }


def _publish_and_connect(cfg: RunConfig, plan: NodePlan, transport: Any, incarnation: int) -> None:
    """Claim this agent's id, wait for the neighbours' records, connect to them.

    Raises
    ------
    LaunchError
        A live other process holds the id; neighbours missing at the rendezvous time-out
        (unless ``--join-alone``).
    """
    if plan.rendezvous is not None:
        record = _record(plan, transport, incarnation)
        claim_record(plan.rendezvous, plan.agent_id, record)
        (plan.rendezvous / f"agent-{plan.agent_id}.done").unlink(missing_ok=True)  # a past life's
        recs = wait_records(
            plan.rendezvous,
            plan.neighbors,
            cfg.process.rendezvous_timeout,
            own=(plan.agent_id, record),
        )
        missing = sorted(set(plan.neighbors) - set(recs))
        if missing and not cfg.process.join_alone:
            raise LaunchError(
                f"neighbours {missing} did not publish in {plan.rendezvous} within "
                f"{cfg.process.rendezvous_timeout:g} s (--rendezvous-timeout; --join-alone "
                "runs without them)"
            )
        if missing:
            log.warning("event=rendezvous_timeout missing=%s action=join_alone", missing)
        transport.connect_many({i: r["endpoint"] for i, r in recs.items()})
    for item in cfg.process.connect or ():
        pid, _, ep = item.partition("=")
        try:
            transport.connect(int(pid), ep)
        except ValueError:
            raise LaunchError(f"--connect: {item!r} is not ID=ENDPOINT") from None


def _open_state(cfg: RunConfig, plan: NodePlan) -> Any:
    """The agent's :class:`~swarmgp.agents.runtime.snapshot.Durable` store (``--state-dir``)."""
    if not getattr(cfg.process, "state_dir", None):
        return None
    from swarmgp.agents.runtime.snapshot import Durable

    return Durable.open(cfg, plan)


def main(cfg: RunConfig) -> int:
    """Run one agent process (``launch.py agent``); 0 once done or stopped, 1 on an error."""
    t0 = time.time()
    end_ingest = threading.Event()  # SIGUSR1 or --duration: stop ingesting, learn what came
    signal.signal(signal.SIGUSR1, lambda _sig, _frame: end_ingest.set())
    start_watchdog()
    configure_threads()
    from swarmgp.agents.factory import agent_seeds, build_agent, common_encoding
    from swarmgp.protocol.keys import load_keyring
    from swarmgp.protocol.zmq_transport import ZmqTransport

    plan = plan_node(cfg)
    check_outputs(cfg.output.report, cfg.output.plot, plan.agent_id)  # fail now, not at the end
    incarnation = time.time_ns()  # grows across restarts: a restart supersedes its past life
    durable = _open_state(cfg, plan)  # durable agents (issue 10): None without --state-dir
    if durable is not None:  # above the snapshot's own, even if the clock stepped back
        incarnation = durable.new_incarnation(incarnation)
    setup_logging(
        plan.agent_id,
        incarnation,
        cfg.process.log_file,
        cfg.process.log_level,
        cfg.process.log_format,
    )
    encoding = common_encoding(cfg, plan.manifest.d)
    counters: Counter[str] = Counter()
    keyring = load_keyring(cfg.process.keys, plan.agent_id) if cfg.process.keys else None
    zmq_transport = ZmqTransport(
        plan.agent_id,
        encoding.m,
        encoding.hash,
        bind=cfg.process.bind,
        advertise_host=_advertised_host(cfg.process.bind, cfg.process.advertise_host),
        stats=counters,
        keyring=keyring,
    )
    facts = RunFacts(zmq_transport.endpoint, plan.world)
    facts.end_ingest = end_ingest
    agent = build_agent(
        cfg,
        plan.agent_id,
        plan.neighbors,
        encoding,
        incarnation=incarnation,
        now=time.monotonic(),
        seeds=agent_seeds(cfg.seed, plan.agent_id, 0),
        max_dist=plan.max_dist,
        endpoint=zmq_transport.endpoint,
        status_extra=facts,
        counters=counters,
    )
    if durable is not None:  # durable agents: restored before it starts; saved after batches
        durable.restore(agent, time.monotonic())
        facts.after_batch = durable.after_batch
        atexit.register(durable.save)  # a clean stop keeps every batch learned
    _publish_and_connect(cfg, plan, zmq_transport, incarnation)
    batches: Iterator[Any] = agent_batches(plan.manifest, cfg.data, plan.agent_id, cfg.seed)
    facts.feed = batches if hasattr(batches, "finish") else None
    duration = getattr(cfg.scoring, "duration", None)
    if duration:
        timer = threading.Timer(max(t0 + duration - time.time(), 0.0), end_ingest.set)
        timer.daemon = True
        timer.start()
    if cfg.process.metrics_port is not None:  # Prometheus exporter, refreshed by the runner
        from swarmgp.agents.runtime.metrics import start_metrics

        facts.metrics = start_metrics(cfg.process.metrics_port, plan.agent_id)
        log.info("event=metrics port=%d", facts.metrics.port)
    if durable is not None:  # resume after the last batch learned
        batches = durable.feed(batches)
    transport: LiveTransport = zmq_transport
    if cfg.faults.loss > 0:
        rng = np.random.default_rng(
            np.random.SeedSequence(cfg.seed, spawn_key=(LOSS_SEED_KEY, plan.agent_id))
        )
        transport = LossyTransport(zmq_transport, cfg.faults.loss, rng, counters)
    until = None
    if cfg.process.until == "consistent":
        until = SwarmDone(
            plan.rendezvous,
            plan.agent_id,
            plan.world,
            cfg.scoring.tol,
            keyring,
            lambda: facts.data_done,
        )
    taken: list[str] = []

    def refresh() -> bool:  # every status period: keep the record live, and ours
        if plan.rendezvous is None:
            return True
        try:
            touch_record(plan.rendezvous, plan.agent_id, _record(plan, zmq_transport, incarnation))
        except LaunchError as exc:
            taken.append(str(exc))
            log.error("event=duplicate_id action=stop %s", exc)
            return False
        except OSError:
            pass
        return True

    rc = run(
        agent,
        transport,
        batches=batches,
        batch_interval_s=cfg.timing.batch_interval,
        status_period_s=max(1.0, 10 * cfg.timing.heartbeat),
        facts=facts,
        until=until,
        periodic=refresh,
    )
    if taken:
        raise LaunchError(taken[0])
    done = until is not None and until.done.is_set()
    if cfg.output.report and (done or until is None):
        path = cfg.output.report.replace("{id}", str(plan.agent_id))
        report = agent_report(cfg, plan, agent, facts, until, t0)
        if cfg.output.plot:  # lon/lat inputs: a map of this agent's collective model
            from swarmgp.agents.runtime.mapplot import map_data, table_rows

            fused = facts.final_fused or agent.fused_summary
            report["map"] = map_data(
                plan.manifest,
                table_rows(plan.manifest),
                lambda Z: agent.model.predict(Z, fused),
            )
        write_report(report, path)
        log.info("event=report path=%s", path)
        if cfg.output.plot:
            plot_report(report, cfg.output.plot.replace("{id}", str(plan.agent_id)))
    if done and plan.rendezvous is not None:
        final = facts.final_fused or agent.fused_summary
        write_done(
            plan.rendezvous,
            plan.agent_id,
            {
                "id": plan.agent_id,
                "incarnation": incarnation,
                "max_rel_diff": until.max_rel_diff if until is not None else None,
                "n_obs": int(final.n_obs),
                "report": cfg.output.report,
            },
        )
    return rc


def _scores(cfg: RunConfig, plan: NodePlan, agent: Any, fused: Any) -> tuple[Scores, str]:
    """This agent's scores on its held-out rows (NaN, i.e. null, where there are none)."""
    from swarmgp.agents.sources.agent_feed import test_set
    from swarmgp.fusion.metrics import nlpd, rmse

    nan = math.nan
    try:
        test = test_set(plan.manifest, cfg.data, cfg.seed, cfg.scoring.test_points)
    except (ValueError, OSError) as exc:
        return Scores(nan, nan, nan, nan, nan, nan), str(exc).splitlines()[0]
    yt = test.y_of(plan.agent_id)

    def units(mean: Any, var: Any) -> tuple[float, float]:
        return test.y_std * rmse(yt, mean), nlpd(yt, mean, var) + float(np.log(test.y_std))

    rl, nl = units(*agent.model.predict(test.X, None))
    rf, nf = units(*agent.model.predict(test.X, fused))
    # the swarm verified fused == the exact sum of all local summaries (within --tol)
    return Scores(rl, nl, rf, nf, rf, nf), ""


def agent_report(
    cfg: RunConfig, plan: NodePlan, agent: Any, facts: RunFacts, until: Any, t0: float
) -> dict[str, Any]:
    """The DESIGN section 4 report from this agent's view.

    ``rmse_oracle`` equals ``rmse_fused`` once the swarm is verified consistent (the collective
    model is then the exact sum within ``--tol``); scores are null where the data offer no
    held-out rows (a live feed), with the reason in ``scores_note``; ``messages``/``bytes``
    count what this agent sent; ``consistency_max_rel_err`` is what agent 0 verified (null
    with ``--until never``).
    """
    fused = facts.final_fused or agent.fused_summary
    scores, note = _scores(cfg, plan, agent, fused)
    c = agent.counters
    err = until.max_rel_diff if until is not None else math.nan
    topo = f"peers:{cfg.swarm.peers}" if cfg.swarm.peers else cfg.swarm.topology
    return build_report(
        cfg,
        agents=plan.world,
        topology=topo,
        batches_per_agent=math.ceil(agent.local_summary.n_obs / cfg.data.batch_size),
        scores=scores,
        consistency_max_rel_err=err,
        baselines={},
        messages=int(c.get("net.tx_msgs", 0)),
        bytes_sent=int(c.get("net.tx_bytes", 0)),
        wall_s=time.time() - t0,
        peak_rss_mb=float(facts()["peak_rss_mb"]),
        n_obs=int(fused.n_obs),
        extras={
            "agent_id": plan.agent_id,
            "identity": plan.identity_source,
            "local_n_obs": int(agent.local_summary.n_obs),
            "fused_n_agents": int(fused.n_agents),
            "nlpd_oracle": scores.nlpd_oracle,
            "scores_note": note,
            "until": cfg.process.until,
            "rejected": int(sum(v for k, v in c.items() if k.startswith("rejected."))),
            "rows_received": facts.rows_received,
            "ingest_lag_mean_s": facts.lag_sum / facts.lag_n if facts.lag_n else None,
            "ingest_lag_max_s": facts.lag_max if facts.lag_n else None,
            # --plot: this agent's point (pre- vs post-fusion RMSE)
            "per_agent": (
                {
                    "ids": [plan.agent_id],
                    "rmse_local": [scores.rmse_local],
                    "rmse_fused": [scores.rmse_fused],
                }
                if math.isfinite(scores.rmse_fused)
                else {}
            ),
        },
    )
