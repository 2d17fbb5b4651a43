"""Simulations sharded over MPI ranks: ``mpirun -n K python launch.py sim ...``.

Under ``mpirun`` / ``srun`` with more than one rank (``OMPI_COMM_WORLD_SIZE`` or ``PMI_SIZE``
above 1; mpi4py is imported only then, ``pip install -e ".[mpi]"``), ``launch.py sim``
partitions the agents over the K ranks in contiguous blocks of ids (agent ``a`` lives on rank
``a * K // A``). Every rank builds the same topology, data streams, encoding and set-up
schedule, but starts, feeds and churns only its own agents.

Time advances in conservative windows: the ranks agree on the earliest pending event ``t0``
(an ``allreduce``), each processes its events in ``[t0, t0 + L)`` with ``L`` the base link
latency (every message takes at least that long, so nothing sent inside the window can arrive
inside it), and the deliveries to agents on other ranks are then exchanged (an ``alltoall``).
Callbacks (the per-round checkpoints) run on every rank at the same window; the checkpoints,
the consistency probes of the settle phase and the final scoring gather the state they need
(agents' summaries, and the models of the scored agents) on rank 0, which computes exactly
what the single-process run computes and writes the one report (``ranks: K``).

The report is the same for every K, bit for bit, except its cost fields
(:data:`COST_KEYS`): with per-link generators (:mod:`swarmgp.sim.network`), per-agent seeds and
event ties broken per scheduler (:mod:`swarmgp.sim.scheduler`), no random draw or event order
depends on how the agents are spread.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from swarmgp.sim.network import LinkStats, NetworkError, SimNetwork
from swarmgp.sim.scheduler import DELIVER, AgentFactory, DriverStats, Simulator

__all__ = [
    "COST_KEYS",
    "AgentView",
    "Shard",
    "ShardedSimulator",
    "mpi_world_size",
    "start_shard",
]

#: Report keys that depend on the machine or on the number of ranks (left out of comparisons).
COST_KEYS = ("wall_s", "peak_rss_mb", "ranks")


def mpi_world_size() -> int:
    """Ranks of the MPI job this process was started in (1 outside ``mpirun``/``srun``)."""
    for var in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"):
        v = os.environ.get(var, "")
        if v.isdigit():
            return int(v)
    return 1


@dataclass
class Shard:
    """This rank's share of the agents."""

    comm: Any
    rank: int
    size: int
    n_agents: int

    def owner(self, a: int) -> int:
        """Rank of agent ``a`` (contiguous blocks of ids)."""
        return a * self.size // self.n_agents

    @property
    def owned(self) -> frozenset[int]:
        """Agent ids simulated on this rank."""
        return frozenset(a for a in range(self.n_agents) if self.owner(a) == self.rank)

    @property
    def root(self) -> bool:
        """Whether this is rank 0 (which writes the report)."""
        return self.rank == 0


def start_shard(n_agents: int) -> Shard:
    """The shard of this rank in ``MPI.COMM_WORLD`` (imports mpi4py)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return Shard(comm, comm.Get_rank(), comm.Get_size(), n_agents)


class ShardedSimulator(Simulator):
    """A :class:`Simulator` of this rank's agents, advanced in conservative windows.

    Parameters
    ----------
    factory, network
        As for :class:`Simulator`.
    shard : Shard
    lookahead : float
        The minimum delay of any message (the base latency), > 0.
    """

    outbox: list[tuple[float, int, tuple[int, int, int], Any]]

    def __init__(
        self, factory: AgentFactory, network: SimNetwork, shard: Shard, lookahead: float
    ) -> None:
        if not lookahead > 0:
            raise NetworkError("sim under MPI: needs a base latency > 0 (--latency) as lookahead")
        super().__init__(factory, network)
        self.shard = shard
        self.owned = shard.owned
        self.lookahead = float(lookahead)
        self.calls_run = 0
        self.windows = 0

    def call_at(self, t: float, fn: Callable[[float], Any]) -> None:
        def counted(now: float) -> Any:
            self.calls_run += 1
            return fn(now)

        super().call_at(t, counted)

    def _exchange(self) -> None:
        sh = self.shard
        out: list[list[Any]] = [[] for _ in range(sh.size)]
        sent, self.outbox = self.outbox, []
        for ev in sent:
            out[sh.owner(ev[2][1])].append(ev)
        q = self.queue
        for evs in sh.comm.alltoall(out):
            for t, key, info, msg in evs:
                q.push(t, DELIVER, info, msg, key)

    def run(
        self,
        until: float,
        progress: Callable[[float, float], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> float:
        """Process every rank's events up to and including ``until`` (collective)."""
        from mpi4py import MPI

        comm = self.shard.comm
        step = Simulator.run
        while True:
            self._exchange()
            t0 = comm.allreduce(self.queue.peek_time(), op=MPI.MIN)
            if t0 > until:
                break
            end = t0 + self.lookahead
            self.windows += 1
            if end > until:
                step(self, until, progress, progress_every_s)
            else:
                step(self, math.nextafter(end, -math.inf), progress, progress_every_s)
        self.clock.advance_to(max(self.clock.now(), until))
        return self.clock.now()


@dataclass
class AgentView:
    """What rank 0 reads of an agent on another rank (``model`` only where asked)."""

    local_summary: Any
    fused_summary: Any
    counters: dict[str, int]
    model: Any = None


class _Pickler(pickle.Pickler):
    def __init__(self, f: io.BytesIO, shared: Any) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self._shared = shared

    def persistent_id(self, obj: Any) -> str | None:
        return "shared" if obj is self._shared else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: io.BytesIO, shared: Any) -> None:
        super().__init__(f)
        self._shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self._shared


def gather_views(
    sim: ShardedSimulator, models: Iterable[int], shared: Any
) -> dict[int, AgentView] | None:
    """Views of every running agent on rank 0 (None elsewhere); collective.

    ``shared`` (the common encoding) is not copied: rank 0's own object takes its place, so
    the models group as in the single-process run.
    """
    want = set(models)
    mine = {
        a: AgentView(
            ag.local_summary,  # type: ignore[attr-defined]
            ag.fused_summary,  # type: ignore[attr-defined]
            dict(ag.counters),  # type: ignore[attr-defined]
            ag.model if a in want else None,  # type: ignore[attr-defined]
        )
        for a, ag in sim.agents.items()
    }
    buf = io.BytesIO()
    _Pickler(buf, shared).dump(mine)
    parts = sim.shard.comm.gather(buf.getvalue(), root=0)
    if parts is None:
        return None
    out: dict[int, AgentView] = {}
    for p in parts:
        out.update(_Unpickler(io.BytesIO(p), shared).load())
    return dict(sorted(out.items()))


def all_live_ids(sim: ShardedSimulator) -> list[int]:
    """Sorted ids of the running agents of every rank (on every rank)."""
    return sorted(a for part in sim.shard.comm.allgather(sorted(sim.agents)) for a in part)


def all_true(sim: ShardedSimulator, value: bool) -> bool:
    """Logical and over the ranks."""
    return all(sim.shard.comm.allgather(bool(value)))


def merge_on_root(sim: ShardedSimulator, network: SimNetwork) -> bool:
    """Sum the network and driver counters and merge the observed batches on rank 0.

    Returns whether this is rank 0 (whose ``sim`` and ``network`` then hold the totals).
    """
    sh = sim.shard
    parts = sh.comm.gather(
        (network.stats, sim.stats.as_dict(), sim.observed_batches, sim.calls_run), root=0
    )
    if parts is None:
        return False
    tot = LinkStats()
    drv = DriverStats()
    observed: list[tuple[int, int]] = []
    calls = 0
    for ls, ds, obs, n_calls in parts:
        for k, v in vars(ls).items():
            if isinstance(v, dict):
                d = getattr(tot, k)
                for name, n in v.items():
                    d[name] = d.get(name, 0) + n
            else:
                setattr(tot, k, getattr(tot, k) + v)
        for k, v in ds.items():
            setattr(drv, k, getattr(drv, k) + v)
        observed.extend(obs)
        calls += n_calls
    drv.events -= calls - calls // sh.size  # callbacks ran on every rank; count them once
    network.stats = tot
    sim.stats = drv
    sim.observed_batches = sorted(observed)
    return True


def max_over_ranks(sim: ShardedSimulator, value: float) -> float:
    """Maximum of ``value`` over the ranks (on every rank)."""
    return max(sim.shard.comm.allgather(value))
