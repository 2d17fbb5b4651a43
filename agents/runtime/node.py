"""``launch.py agent``: one agent process over ZeroMQ, in named phases.

:func:`main` resolves the identity (flags, or SLURM, Open MPI, PMI or torchrun variables),
reads what a launcher declared in the rendezvous directory (neighbour graph, data manifest) or
derives it as every agent would, builds the agent through the one factory, publishes its
endpoint, connects to its neighbours, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
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
from swarmgp.agents.runtime.rendezvous import read_swarm, wait_records, write_record
from swarmgp.agents.runtime.runner import RunFacts, configure_threads, run, setup_logging
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
        manifest = declare_data(cfg.data, world or cfg.swarm.agents, cfg.seed)
    world = world or (declared or {}).get("world") or manifest.n_agents
    if not 0 <= agent_id < world:
        raise LaunchError(f"agent id {agent_id} is outside the swarm of {world} agents")
    if cfg.process.neighbors is not None:
        neighbors = tuple(cfg.process.neighbors)
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


def _publish_and_connect(cfg: RunConfig, plan: NodePlan, transport: Any, incarnation: int) -> None:
    """Publish this agent's record, wait for the neighbours' records, connect to them."""
    if plan.rendezvous is not None:
        record = {
            "id": plan.agent_id,
            "endpoint": transport.endpoint,
            "incarnation": incarnation,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "identity": plan.identity_source,
        }
        write_record(plan.rendezvous, plan.agent_id, record)
        recs = wait_records(plan.rendezvous, plan.neighbors, cfg.process.rendezvous_timeout)
        missing = sorted(set(plan.neighbors) - set(recs))
        if missing:
            log.warning("event=rendezvous_timeout missing=%s", missing)
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
    """Run one agent process until SIGINT/SIGTERM (``launch.py agent``)."""
    configure_threads()
    from swarmgp.agents.factory import agent_seeds, build_agent, common_encoding
    from swarmgp.protocol.keys import load_keyring
    from swarmgp.protocol.zmq_transport import ZmqTransport

    plan = plan_node(cfg)
    incarnation = time.time_ns()  # grows across restarts: a restart supersedes its past life
    durable = _open_state(cfg, plan)  # durable agents (issue 10): None without --state-dir
    if durable is not None:  # above the snapshot's own, even if the clock stepped back
        incarnation = durable.new_incarnation(incarnation)
    setup_logging(plan.agent_id, incarnation, cfg.process.log_file, cfg.process.log_level)
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
    facts = RunFacts(zmq_transport.endpoint)
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
    if durable is not None:  # resume after the last batch learned
        batches = durable.feed(batches)
    transport: LiveTransport = zmq_transport
    if cfg.faults.loss > 0:
        rng = np.random.default_rng(
            np.random.SeedSequence(cfg.seed, spawn_key=(LOSS_SEED_KEY, plan.agent_id))
        )
        transport = LossyTransport(zmq_transport, cfg.faults.loss, rng, counters)
    return run(
        agent,
        transport,
        batches=batches,
        batch_interval_s=cfg.timing.batch_interval,
        status_period_s=max(1.0, 10 * cfg.timing.heartbeat),
        facts=facts,
    )
