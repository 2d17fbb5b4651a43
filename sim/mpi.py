"""Simulations sharded over MPI ranks: ``mpirun -n K python launch.py sim ...``.

Under ``mpirun`` / ``srun`` with more than one rank (``OMPI_COMM_WORLD_SIZE`` or ``PMI_SIZE``
above 1; mpi4py is imported only then, ``pip install -e ".[mpi]"``), ``launch.py sim``
partitions the agents over the K ranks in contiguous blocks of ids (agent ``a`` lives on rank
``a * K // A``). Every rank builds the same topology, data streams, encoding and set-up
schedule, but starts, feeds and churns only its own agents.

Time advances in conservative windows: the ranks agree on the earliest pending event ``t0``
(riding on the exchange below), each processes its events in ``[t0, t0 + L)`` with ``L`` the
base link latency (every message takes at least that long, so nothing sent inside the window can
arrive inside it), and the deliveries to agents on other ranks are then exchanged: each message
in the protocol codec's frames (:mod:`swarmgp.protocol.codec`, decoded and validated on
arrival), one contiguous byte buffer per destination (``Alltoall`` of lengths, ``Alltoallv``).
Nothing that crosses ranks is ever serialized as a Python object: agent views travel as
snapshot-format records (JSON header + raw float64 arrays,
:mod:`swarmgp.agents.runtime.snapshot`), counters as JSON, ids and floats as numpy buffers.

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

import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarmgp.agents.runtime import snapshot
from swarmgp.fusion.summary import Summary
from swarmgp.protocol import codec
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


#: One delivery event on the wire: time, key (high and low 64 bits), source, destination,
#: size, number of frames.
_EVENT = struct.Struct("<dQQqqqI")
_MASK64 = (1 << 64) - 1
_LEN = struct.Struct("<Q")


def _alltoallv(comm: Any, parts: Sequence[bytes], value: float) -> tuple[list[bytes], float]:
    """Send ``parts[r]`` to rank r; the bytes every rank sent here, by rank, and the minimum
    of ``value`` over the ranks (collective; the minimum rides on the exchange of lengths).

    Plain byte buffers through the uppercase (buffer) API: nothing crossing ranks is ever
    serialized as a Python object.
    """
    from mpi4py import MPI

    size = len(parts)
    send_n = np.array([len(p) for p in parts], dtype=np.int64)
    if send_n.max(initial=0) >= 1 << 31:
        raise NetworkError("sim under MPI: over 2 GiB for one rank in one window")
    head = np.empty((size, 2), dtype=np.float64)
    head[:, 0] = send_n  # exact: below 2**31
    head[:, 1] = value
    got = np.empty((size, 2), dtype=np.float64)
    comm.Alltoall(head, got)
    recv_n = got[:, 0].astype(np.int64)
    send_d = np.zeros(size, dtype=np.int64)
    send_d[1:] = np.cumsum(send_n)[:-1]
    recv_d = np.zeros(size, dtype=np.int64)
    recv_d[1:] = np.cumsum(recv_n)[:-1]
    send = np.frombuffer(b"".join(parts), dtype=np.uint8) if send_n.sum() else np.zeros(1, np.uint8)
    recv = np.zeros(max(int(recv_n.sum()), 1), dtype=np.uint8)
    comm.Alltoallv(  # every rank takes part, whatever it sends
        [send, (send_n.astype(np.int32), send_d.astype(np.int32)), MPI.BYTE],
        [recv, (recv_n.astype(np.int32), recv_d.astype(np.int32)), MPI.BYTE],
    )
    data = recv.tobytes()
    out = [data[int(d) : int(d) + int(n)] for d, n in zip(recv_d, recv_n, strict=True)]
    return out, float(got[:, 1].min())


def _gatherv(comm: Any, data: bytes) -> list[bytes] | None:
    """Every rank's ``data`` on rank 0, by rank (None elsewhere); collective, byte buffers."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    n = np.array([len(data)], dtype=np.int64)
    counts = np.zeros(size, dtype=np.int64) if rank == 0 else None
    comm.Gather(n, counts, root=0)
    send = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, np.uint8)
    if rank != 0:
        comm.Gatherv(send, None, root=0)
        return None
    assert counts is not None
    if counts.sum() >= 1 << 31:
        raise NetworkError("sim under MPI: over 2 GiB gathered on rank 0")
    displs = np.zeros(size, dtype=np.int64)
    displs[1:] = np.cumsum(counts)[:-1]
    recv = np.zeros(max(int(counts.sum()), 1), dtype=np.uint8)
    comm.Gatherv(send, [recv, (counts.astype(np.int32), displs.astype(np.int32)), MPI.BYTE], root=0)
    out = recv.tobytes()
    return [out[int(d) : int(d) + int(c)] for d, c in zip(displs, counts, strict=True)]


def _frame_records(blobs: Sequence[bytes]) -> bytes:
    """Length-prefixed records: count, lengths, then the records."""
    return b"".join([_LEN.pack(len(blobs)), *(_LEN.pack(len(b)) for b in blobs), *blobs])


def _records(data: bytes) -> list[bytes]:
    """Inverse of :func:`_frame_records`."""
    if not data:
        return []
    (n,) = _LEN.unpack_from(data, 0)
    off = _LEN.size * (n + 1)
    out = []
    for i in range(n):
        (k,) = _LEN.unpack_from(data, _LEN.size * (i + 1))
        out.append(data[off : off + k])
        off += k
    if off != len(data):
        raise NetworkError(f"sim under MPI: {len(data) - off} trailing bytes in a record block")
    return out


class ShardedSimulator(Simulator):
    """A :class:`Simulator` of this rank's agents, advanced in conservative windows.

    Parameters
    ----------
    factory, network
        As for :class:`Simulator`.
    shard : Shard
    lookahead : float
        The minimum delay of any message (the base latency), > 0.
    encoding_hash : str
        The common encoding's hash (messages to other ranks cross in the protocol codec).
    m : int
        The simulator's summary size (``encoding.m``: inducing + 2 in the collective mode).
    """

    outbox: list[tuple[float, int, tuple[int, int, int], Any]]

    def __init__(
        self,
        factory: AgentFactory,
        network: SimNetwork,
        shard: Shard,
        lookahead: float,
        encoding_hash: str,
        m: int,
    ) -> None:
        if not lookahead > 0:
            raise NetworkError("sim under MPI: needs a base latency > 0 (--latency) as lookahead")
        super().__init__(factory, network)
        self.shard = shard
        self.owned = shard.owned
        self.lookahead = float(lookahead)
        self.encoding_hash = encoding_hash
        self.m = int(m)
        self.calls_run = 0
        self.windows = 0

    def call_at(self, t: float, fn: Callable[[float], Any]) -> None:
        def counted(now: float) -> Any:
            self.calls_run += 1
            return fn(now)

        super().call_at(t, counted)

    def _encode_event(self, ev: tuple[float, int, tuple[int, int, int], Any]) -> bytes:
        t, key, (src, dest, size), msg = ev
        frames = codec.encode(msg, self.encoding_hash, self.m)
        return b"".join(
            [
                _EVENT.pack(t, key >> 64, key & _MASK64, src, dest, size, len(frames)),
                *(_LEN.pack(memoryview(f).nbytes) for f in frames),
                *(bytes(f) for f in frames),
            ]
        )

    def _decode_events(self, data: bytes) -> None:
        q = self.queue
        view = memoryview(data)
        off, end = 0, len(data)
        while off < end:
            t, hi, lo, src, dest, size, nf = _EVENT.unpack_from(data, off)
            key = (hi << 64) | lo
            off += _EVENT.size
            lens = [_LEN.unpack_from(data, off + _LEN.size * i)[0] for i in range(nf)]
            off += _LEN.size * nf
            frames = []
            for n in lens:
                frames.append(view[off : off + n])
                off += n
            msg = codec.decode(frames, self.m, self.encoding_hash)
            q.push(t, DELIVER, (src, dest, size), msg, key)

    def _exchange(self) -> float:
        """Deliver the outbox to the other ranks; the earliest pending event of every rank."""
        sh = self.shard
        out: list[list[bytes]] = [[] for _ in range(sh.size)]
        sent, self.outbox = self.outbox, []
        t_min = self.queue.peek_time()
        for ev in sent:
            out[sh.owner(ev[2][1])].append(self._encode_event(ev))
            t_min = min(t_min, ev[0])
        parts, t0 = _alltoallv(sh.comm, [b"".join(o) for o in out], t_min)
        for data in parts:
            self._decode_events(data)
        return t0

    def run(
        self,
        until: float,
        progress: Callable[[float, float], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> float:
        """Process every rank's events up to and including ``until`` (collective)."""
        step = Simulator.run
        while True:
            t0 = self._exchange()
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


def _reduce(comm: Any, value: float, op: str) -> float:
    """``value`` reduced over the ranks as one float64 (on every rank)."""
    from mpi4py import MPI

    send = np.array([value], dtype=np.float64)
    recv = np.zeros(1, dtype=np.float64)
    comm.Allreduce(send, recv, op=getattr(MPI, op))
    return float(recv[0])


@dataclass
class AgentView:
    """What rank 0 reads of an agent on another rank (``model`` only where asked)."""

    local_summary: Any
    fused_summary: Any
    counters: dict[str, int]
    model: Any = None


def _summary_head(s: Summary | None) -> list[Any] | None:
    return None if s is None else [s.m, int(s.n_obs), int(s.n_agents), s.encoding_hash]


def _encode_view(a: int, incarnation: int, ag: Any, with_model: bool) -> bytes:
    """One agent's view as a snapshot-format record (JSON header + raw float64 arrays)."""
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {
        "format": snapshot.FORMAT_NAME,
        "agent": a,
        "incarnation": incarnation,
        "counters": {str(k): int(v) for k, v in ag.counters.items()},
        "local": _summary_head(ag.local_summary),
        "fused": _summary_head(ag.fused_summary),
        "model": None,
    }
    for name in ("local", "fused"):
        s = getattr(ag, name + "_summary")
        if s is not None:
            arrays[name] = s.pack()
    if with_model:
        scalars, model_arrays = snapshot.split_state(ag.model.state())
        header["model"] = scalars
        arrays.update({"model." + k: v for k, v in model_arrays.items()})
    return snapshot.encode(header, arrays)


def _decode_view(data: bytes, factory: AgentFactory) -> tuple[int, AgentView]:
    snap = snapshot.decode(data)
    h, arrays = snap.header, snap.arrays

    def summary(name: str) -> Summary | None:
        head = h[name]
        if head is None:
            return None
        m, n_obs, n_agents, ehash = head
        return Summary.unpack(arrays[name], int(m), int(n_obs), int(n_agents), str(ehash))

    a = int(h["agent"])
    model = None
    if h["model"] is not None:
        state: dict[str, Any] = dict(h["model"])
        state.update({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        # the same factory as the single-process run, then the sender's state
        model = factory(a, int(h["incarnation"]), 0.0).model  # type: ignore[attr-defined]
        model.restore(state)
    counters = {str(k): int(v) for k, v in h["counters"].items()}
    return a, AgentView(summary("local"), summary("fused"), counters, model)


def gather_views(
    sim: ShardedSimulator, models: Iterable[int], shared: Any = None
) -> dict[int, AgentView] | None:
    """Views of every running agent on rank 0 (None elsewhere); collective.

    Agents on other ranks cross as snapshot-format records (summaries packed, counters in the
    JSON header, models as their ``state()``), never serialized as Python objects; rank 0
    rebuilds each wanted model through the run's agent factory (with the common encoding,
    so the models group as in the single-process run) and ``restore``-s the state. Rank 0's
    own agents are read in place. ``shared`` is kept for the callers' signature.
    """
    want = set(models)
    sh = sim.shard
    if sh.root:
        blob = b""
    else:
        blob = _frame_records(
            [
                _encode_view(a, sim.incarnation[a], ag, a in want)
                for a, ag in sorted(sim.agents.items())
            ]
        )
    parts = _gatherv(sh.comm, blob)
    if parts is None:
        return None
    out: dict[int, AgentView] = {
        a: AgentView(
            ag.local_summary,  # type: ignore[attr-defined]
            ag.fused_summary,  # type: ignore[attr-defined]
            dict(ag.counters),  # type: ignore[attr-defined]
            ag.model if a in want else None,  # type: ignore[attr-defined]
        )
        for a, ag in sim.agents.items()
    }
    for p in parts[1:]:
        for rec in _records(p):
            a, view = _decode_view(rec, sim.factory)
            out[a] = view
    return dict(sorted(out.items()))


def _allgather_ints(comm: Any, values: Sequence[int]) -> list[int]:
    """Every rank's ``values`` concatenated in rank order (on every rank)."""
    from mpi4py import MPI

    size = comm.Get_size()
    n = np.array([len(values)], dtype=np.int64)
    counts = np.zeros(size, dtype=np.int64)
    comm.Allgather(n, counts)
    displs = np.zeros(size, dtype=np.int64)
    displs[1:] = np.cumsum(counts)[:-1]
    send = np.array(values, dtype=np.int64)
    recv = np.zeros(max(int(counts.sum()), 1), dtype=np.int64)
    comm.Allgatherv(send, [recv, (counts.astype(np.int32), displs.astype(np.int32)), MPI.INT64_T])
    return [int(v) for v in recv[: int(counts.sum())]]


def all_live_ids(sim: ShardedSimulator) -> list[int]:
    """Sorted ids of the running agents of every rank (on every rank)."""
    return sorted(_allgather_ints(sim.shard.comm, sorted(sim.agents)))


def all_true(sim: ShardedSimulator, value: bool) -> bool:
    """Logical and over the ranks."""
    return _reduce(sim.shard.comm, 1.0 if value else 0.0, "MIN") > 0.5


def merge_on_root(sim: ShardedSimulator, network: SimNetwork) -> bool:
    """Sum the network and driver counters and merge the observed batches on rank 0.

    Every rank's counters cross as JSON. Returns whether this is rank 0 (whose ``sim`` and
    ``network`` then hold the totals).
    """
    sh = sim.shard
    mine = {
        "link": network.stats.as_dict(),
        "driver": sim.stats.as_dict(),
        "observed": [[int(a), int(k)] for a, k in sim.observed_batches],
        "calls": int(sim.calls_run),
    }
    parts = _gatherv(sh.comm, json.dumps(mine).encode("utf-8"))
    if parts is None:
        return False
    tot = LinkStats()
    drv = DriverStats()
    observed: list[tuple[int, int]] = []
    calls = 0
    for p in parts:
        part = json.loads(p.decode("utf-8"))
        for k, v in part["link"].items():
            if isinstance(v, dict):
                d = getattr(tot, k)
                for name, n in v.items():
                    d[name] = d.get(name, 0) + int(n)
            else:
                setattr(tot, k, getattr(tot, k) + int(v))
        for k, v in part["driver"].items():
            setattr(drv, k, getattr(drv, k) + int(v))
        observed.extend((int(a), int(k)) for a, k in part["observed"])
        calls += int(part["calls"])
    drv.events -= calls - calls // sh.size  # callbacks ran on every rank; count them once
    network.stats = tot
    sim.stats = drv
    sim.observed_batches = sorted(observed)
    return True


def max_over_ranks(sim: ShardedSimulator, value: float) -> float:
    """Maximum of ``value`` over the ranks (on every rank)."""
    return _reduce(sim.shard.comm, value, "MAX")
