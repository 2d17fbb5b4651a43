"""The discrete-event driver: many sans-I/O agents, one virtual clock, one simulated network.

:class:`Simulator` owns the event queue (:class:`~swarmgp.sim.clock.EventQueue`), the clock and
the set of live agents. It is the only loop: it calls ``agent.start``, ``observe``,
``on_message``, ``on_tick`` and ``stop`` of the real :class:`swarmgp.agents.agent.Agent`, routes
every returned ``(dest, msg)`` through :class:`~swarmgp.sim.network.SimNetwork`, and after every
call re-reads ``agent.next_deadline()`` to schedule the agent's next tick (stale ticks are
skipped lazily). Messages are passed as objects, never serialized; the network counts their
encoded size.

Event kinds, in ``(time, key)`` order: message delivery, agent tick, a data batch, a churn
event, an agent start and an arbitrary callback (checkpoints, consistency probes). The key
breaks ties at equal times without depending on the global scheduling order: events the set-up
schedules (starts, batches, churn, callbacks) are keyed by a set-up counter and come first;
events an agent's call schedules (its messages' deliveries, its next tick) are keyed by that
agent's id and its own counter. Every agent therefore sees its events in the same order however
the agents are spread over MPI ranks (:mod:`swarmgp.sim.mpi`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from swarmgp.sim.clock import EventQueue, VirtualClock
from swarmgp.sim.network import ChurnEvent, SimNetwork

__all__ = ["AgentFactory", "DriverStats", "SimAgent", "Simulator"]

DELIVER, TICK, OBSERVE, CHURN, START, CALL = range(6)

#: When a tick leaves an agent's deadline at or before now, retry this much later (a guard
#: against a busy loop; counted in ``DriverStats.stalled_ticks``).
STALL_BACKOFF_S = 1e-3

#: Event keys: ``(agent + 1) * _KEY_SPAN + counter`` for an agent's events, the set-up counter
#: (below ``_KEY_SPAN``) for the set-up's.
_KEY_SPAN = 1 << 48


class SimAgent(Protocol):
    """The sans-I/O agent interface the driver calls (``swarmgp.agents.agent.Agent``)."""

    def start(self, now: float) -> list[tuple[int, Any]]: ...

    def observe(self, X: np.ndarray, y: np.ndarray, now: float) -> list[tuple[int, Any]]: ...

    def on_message(self, msg: Any, now: float) -> list[tuple[int, Any]]: ...

    def on_tick(self, now: float) -> list[tuple[int, Any]]: ...

    def stop(self, now: float) -> list[tuple[int, Any]]: ...

    def next_deadline(self) -> float: ...


#: ``factory(agent_id, incarnation, now) -> agent``: builds a fresh agent (new local model).
AgentFactory = Callable[[int, int, float], SimAgent]


class DriverStats:
    """Counters of the driver (ints)."""

    __slots__ = (
        "events",
        "ticks",
        "deliveries",
        "observations",
        "missed_batches",
        "stale_ticks",
        "stalled_ticks",
        "churn",
    )

    def __init__(self) -> None:
        self.events = self.ticks = self.deliveries = self.observations = 0
        self.missed_batches = self.stale_ticks = self.stalled_ticks = self.churn = 0

    def as_dict(self) -> dict[str, int]:
        """JSON-ready copy."""
        return {k: int(getattr(self, k)) for k in self.__slots__}


class Simulator:
    """Runs agents built by ``factory`` over ``network`` in virtual time.

    Parameters
    ----------
    factory : AgentFactory
        Builds agent ``a`` with a given incarnation (0 at first start).
    network : SimNetwork
    clock : VirtualClock, optional
    """

    def __init__(
        self, factory: AgentFactory, network: SimNetwork, clock: VirtualClock | None = None
    ) -> None:
        self.factory = factory
        self.network = network
        self.clock = clock if clock is not None else VirtualClock()
        self.queue = EventQueue()
        self.agents: dict[int, SimAgent] = {}
        self.incarnation: dict[int, int] = {}
        self.stats = DriverStats()
        self._tick_at: dict[int, float] = {}
        self._stop = False
        self.churn_log: list[tuple[float, int, str]] = []
        #: (agent, tag) of every batch that reached a running agent, in delivery order
        self.observed_batches: list[tuple[int, int]] = []
        #: agents simulated here (None: all; a set on an MPI rank, see swarmgp.sim.mpi)
        self.owned: set[int] | frozenset[int] | None = None
        #: deliveries to agents not simulated here: (time, key, (src, dest, size), msg)
        self.outbox: list[tuple[float, int, tuple[int, int, int], Any]] = []
        self._setup_n = 0
        self._key: dict[int, int] = {}  # agent -> its next event key

    # ---- scheduling ---------------------------------------------------------------------
    @property
    def now(self) -> float:
        """Current virtual time."""
        return self.clock.now()

    def alive(self, a: int) -> bool:
        """Whether agent a is running."""
        return a in self.agents

    def schedule_start(self, a: int, t: float) -> None:
        """Start agent a (incarnation 0) at time t."""
        key = self._setup_key()
        if self.owned is None or a in self.owned:
            self.queue.push(t, START, a, None, key)

    def schedule_batch(self, a: int, t: float, X: np.ndarray, y: np.ndarray, tag: int = -1) -> None:
        """Deliver batch (X (n, d), y (n,)) to agent a at time t (lost if a is down then).

        ``(a, tag)`` is appended to :attr:`observed_batches` when the batch is delivered.
        """
        key = self._setup_key()
        if self.owned is None or a in self.owned:
            self.queue.push(t, OBSERVE, a, (X, y, tag), key)

    def schedule_churn(self, ev: ChurnEvent) -> None:
        """Apply a membership change at ``ev.time``."""
        key = self._setup_key()
        if self.owned is None or ev.agent in self.owned:
            self.queue.push(ev.time, CHURN, ev, None, key)

    def call_at(self, t: float, fn: Callable[[float], Any]) -> None:
        """Call ``fn(now)`` at virtual time t (checkpoints, probes; on every MPI rank)."""
        self.queue.push(t, CALL, fn, None, self._setup_key())

    def _setup_key(self) -> int:
        self._setup_n += 1
        return self._setup_n

    def _next_key(self, a: int) -> int:
        n = self._key.get(a, 0) + 1
        self._key[a] = n
        return (a + 1) * _KEY_SPAN + n

    def stop(self) -> None:
        """Make :meth:`run` return after the current event."""
        self._stop = True

    # ---- agent calls --------------------------------------------------------------------
    def _route(self, src: int, out: list[tuple[int, Any]], now: float) -> None:
        net = self.network
        q = self.queue
        owned = self.owned
        for dest, msg in out:
            size = net.message_size_cached(msg)
            for t in net.transmit_sized(src, dest, msg, now, size):
                if owned is None or dest in owned:
                    q.push(t, DELIVER, (src, dest, size), msg, self._next_key(src))
                else:
                    self.outbox.append((t, self._next_key(src), (src, dest, size), msg))

    def _reschedule(self, a: int, agent: SimAgent, now: float, after_tick: bool = False) -> None:
        d = agent.next_deadline()
        if not d < math.inf:
            self._tick_at.pop(a, None)
            return
        if d <= now:
            if after_tick:
                self.stats.stalled_ticks += 1
                d = now + STALL_BACKOFF_S
            else:
                d = now
        if self._tick_at.get(a) != d:
            self._tick_at[a] = d
            self.queue.push(d, TICK, a, self.incarnation[a], self._next_key(a))

    def _start(self, a: int, now: float, incarnation: int) -> None:
        agent = self.factory(a, incarnation, now)
        self.agents[a] = agent
        self.incarnation[a] = incarnation
        self._tick_at.pop(a, None)
        self._route(a, agent.start(now), now)
        self._reschedule(a, agent, now)

    def _churn(self, ev: ChurnEvent, now: float) -> None:
        a = ev.agent
        self.stats.churn += 1
        self.churn_log.append((now, a, ev.kind))
        agent = self.agents.get(a)
        if ev.kind == "crash":
            if agent is not None:
                del self.agents[a]
                self._tick_at.pop(a, None)
        elif ev.kind == "leave":
            if agent is not None:
                out = agent.stop(now)
                del self.agents[a]
                self._tick_at.pop(a, None)
                self._route(a, out, now)
        elif ev.kind == "join":
            if agent is None:
                self._start(a, now, self.incarnation.get(a, -1) + 1)
        elif ev.kind == "restart":
            if agent is not None:
                del self.agents[a]
            self._start(a, now, self.incarnation.get(a, -1) + 1)

    # ---- the loop -----------------------------------------------------------------------
    def run(
        self,
        until: float,
        progress: Callable[[float, float], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> float:
        """Process events up to and including virtual time ``until``.

        Parameters
        ----------
        until : float
            Virtual end time; the clock is left there (or where :meth:`stop` was called).
        progress : callable, optional
            ``progress(now, until)``, called about every ``progress_every_s`` of wall time.

        Returns
        -------
        float
            The virtual time reached.
        """
        q = self.queue
        clock = self.clock
        agents = self.agents
        net = self.network
        st = self.stats
        self._stop = False
        wall_next = time.monotonic() + progress_every_s if progress is not None else math.inf
        n = 0
        while q and q.peek_time() <= until and not self._stop:
            t, _, kind, a, b = q.pop()
            clock.advance_to(t)
            st.events += 1
            if kind == DELIVER:
                src, dest, size = a
                agent = agents.get(dest)
                if net.deliverable(src, dest, t, agent is not None, size):
                    st.deliveries += 1
                    self._route(dest, agent.on_message(b, t), t)  # type: ignore[union-attr]
                    self._reschedule(dest, agent, t)  # type: ignore[arg-type]
            elif kind == TICK:
                agent = agents.get(a)
                if agent is None or self._tick_at.get(a) != t or self.incarnation[a] != b:
                    st.stale_ticks += 1
                    continue
                del self._tick_at[a]
                st.ticks += 1
                self._route(a, agent.on_tick(t), t)
                self._reschedule(a, agent, t, after_tick=True)
            elif kind == OBSERVE:
                agent = agents.get(a)
                if agent is None:
                    st.missed_batches += 1
                    continue
                st.observations += 1
                self.observed_batches.append((a, b[2]))
                self._route(a, agent.observe(b[0], b[1], t), t)
                self._reschedule(a, agent, t)
            elif kind == CHURN:
                self._churn(a, t)
            elif kind == START:
                if a not in agents:
                    self._start(a, t, self.incarnation.get(a, -1) + 1)
            elif kind == CALL:
                a(t)
            n += 1
            if progress is not None and (n & 255) == 0 and time.monotonic() >= wall_next:
                progress(t, until)
                wall_next = time.monotonic() + progress_every_s
        if not self._stop:
            clock.advance_to(max(clock.now(), until))
        return clock.now()

    def live_ids(self) -> list[int]:
        """Sorted ids of running agents."""
        return sorted(self.agents)

    def snapshot(self) -> Mapping[int, SimAgent]:
        """Read-only view of the running agents."""
        return dict(self.agents)
