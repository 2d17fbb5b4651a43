"""Peer table: liveness by any received traffic, expiry, incarnations and departures.

A peer is *live* while it has been heard from within ``timeout_s``. Each process start of a
peer has a larger incarnation; a message of an older incarnation is stale, a message of a
newer one resets what is known of the peer. A peer that said goodbye stays departed until a
newer incarnation speaks.

Claims are bounded (DESIGN.md section 2, "Security"): an incarnation far ahead of the
receiver's clock is refused (:func:`incarnation_limit`); an incarnation that went silent gives
way to an older one that keeps speaking (a forged or crashed newer life cannot cut a live peer
off for good); a departure contradicted by fresh traffic of the departed life is revoked; and
the table holds at most ``max_peers`` entries, evicting unconfigured peers that are not live.
"""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from enum import Enum

__all__ = ["NS_INCARNATION", "Admit", "Limits", "Peer", "PeerTable", "incarnation_limit"]

#: Incarnations at or above this are wall-clock nanosecond stamps (the runner's
#: ``time.time_ns()``); smaller ones are restart counters (the simulator).
NS_INCARNATION = 10**15


@dataclass(frozen=True)
class Limits:
    """Bounds on what a peer may claim or cost an agent (the agent core's security knobs).

    An :class:`~swarmgp.agents.agent.Agent` reads them from ``config.limits`` when its
    configuration has that field, else uses these defaults (which keep the simulator and the
    test swarms working unchanged).

    Attributes
    ----------
    max_peers : int
        Peer-table size; unconfigured peers that are not live are evicted to make room.
    max_agents : int
        Largest ``n_agents`` a tree message may claim (a secured transport also checks it
        against the keyring's member count).
    max_obs : int
        Largest ``n_obs`` a tree message may claim.
    max_status_rows : int
        Largest number of rows of ``X`` a status request may ask predictions at.
    incarnation_skew_s : float
        How far (seconds) a wall-clock incarnation may run ahead of this agent's clock.
    counter_incarnation_ahead : int
        How far a restart-counter incarnation may run ahead of this agent's own.
    prune_after_timeouts : float
        An unconfigured peer silent this many peer timeouts is removed from the table.
    """

    max_peers: int = 256
    max_agents: int = 1 << 20
    max_obs: int = 1 << 48
    max_status_rows: int = 10_000
    incarnation_skew_s: float = 300.0
    counter_incarnation_ahead: int = 1 << 20
    prune_after_timeouts: float = 10.0


def incarnation_limit(own: int, created_at: float, now: float, limits: Limits) -> int:
    """The largest incarnation a peer may plausibly have at driver time ``now``.

    Guards against an inflated incarnation (for instance 2^64 - 1 in another agent's name)
    superseding that agent's real life for good. Wall-clock incarnations (``own >=
    NS_INCARNATION``) may run ``incarnation_skew_s`` ahead of this agent's clock, estimated as
    ``own`` plus the driver time elapsed since creation; restart counters may run
    ``counter_incarnation_ahead`` ahead of ``own`` plus a thousand per elapsed second.
    """
    elapsed = max(now - created_at, 0.0)
    if own >= NS_INCARNATION:
        return own + int((elapsed + limits.incarnation_skew_s) * 1e9)
    return own + limits.counter_incarnation_ahead + int(elapsed * 1000)


class Admit(Enum):
    """Verdict of :meth:`PeerTable.admit` on a message's (sender, incarnation)."""

    OK = "ok"  # known live incarnation
    NEW = "new"  # first contact or a newer incarnation: reset per-peer protocol state
    REVIVED = "revived"  # same incarnation heard again after expiry
    STALE = "stale"  # an older incarnation: drop
    DEPARTED = "departed"  # this incarnation said goodbye: drop
    FUTURE = "future"  # an incarnation beyond the clock bound: drop
    DUPLICATE = "duplicate"  # an older life still speaking long after a newer one: two processes


@dataclass(slots=True)
class Peer:
    """What one agent knows of one peer.

    Attributes
    ----------
    id : int
    configured : bool
        A configured neighbour (as opposed to one that introduced itself).
    incarnation : int
        Latest incarnation heard (-1: never heard).
    alive : bool
    last_heard : float
    departed_inc : int
        Incarnation that said goodbye (-1: none).
    state_seq, fuse_seq : int
        Highest seq that set the tree state / a fusion message, within ``incarnation``.
    max_seq : int
        Highest seq heard within ``incarnation``.
    inc_since : float
        When ``incarnation`` was first heard.
    departed_at : float
        When the goodbye of ``departed_inc`` arrived.
    departed_seq : int
        ``max_seq`` before that goodbye (later traffic above it contradicts the goodbye).
    state_at, fuse_at : float
        When ``state_seq`` / ``fuse_seq`` last advanced (an inflated seq that nothing
        follows is given up after a timeout).
    """

    id: int
    configured: bool = True
    incarnation: int = -1
    alive: bool = False
    last_heard: float = -math.inf
    departed_inc: int = -1
    state_seq: int = -1
    fuse_seq: int = -1
    max_seq: int = -1
    inc_since: float = -math.inf
    departed_at: float = -math.inf
    departed_seq: int = -1
    state_at: float = -math.inf
    fuse_at: float = -math.inf


class PeerTable:
    """Liveness of an agent's neighbours.

    Parameters
    ----------
    timeout_s : float
        Silence after which a peer is declared dead.
    max_peers : int
        Table size cap (configured peers always fit; see :meth:`add`).
    prune_after_s : float
        An unconfigured peer silent this long is removed by :meth:`expire` (default ten
        timeouts).
    """

    def __init__(
        self, timeout_s: float, max_peers: int = 256, prune_after_s: float | None = None
    ) -> None:
        self.timeout_s = float(timeout_s)
        self.max_peers = max(int(max_peers), 1)
        self.prune_after_s = 10 * self.timeout_s if prune_after_s is None else prune_after_s
        self._peers: dict[int, Peer] = {}
        #: Ids removed by :meth:`add` evictions and :meth:`expire` pruning, for the driver to
        #: disconnect (cleared by :meth:`take_removed`).
        self.removed: list[int] = []
        self._live: frozenset[int] | None = None  # cache of live(); reset on any change

    def __contains__(self, pid: int) -> bool:
        return pid in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, pid: int) -> Peer:
        """The entry of ``pid`` (KeyError if absent)."""
        return self._peers[pid]

    def add(self, pid: int, configured: bool = True) -> Peer | None:
        """Add ``pid`` (not yet live) if absent and return its entry.

        Guards against a flood of fresh ids growing the table without bound: at ``max_peers``
        an unconfigured peer that is not live is evicted (never-live ones first, then the
        longest silent); when none can go, an unconfigured ``pid`` is refused (None).
        """
        p = self._peers.get(pid)
        if p is None:
            if len(self._peers) >= self.max_peers and not self._evict() and not configured:
                return None
            p = self._peers[pid] = Peer(pid, configured)
            self._live = None
        return p

    def _evict(self) -> bool:
        cands = [q for q in self._peers.values() if not q.configured and not q.alive]
        if not cands:
            return False
        victim = min(cands, key=lambda q: (q.incarnation >= 0, q.last_heard, q.id))
        del self._peers[victim.id]
        self.removed.append(victim.id)
        self._live = None
        return True

    def take_removed(self) -> list[int]:
        """Ids removed from the table since the last call (disconnect their sockets)."""
        out, self.removed = self.removed, []
        return out

    def ids(self) -> list[int]:
        """All known peer ids, sorted."""
        return sorted(self._peers)

    def live(self) -> frozenset[int]:
        """Ids of the live peers (cached: only this table's methods change ``alive``)."""
        if self._live is None:
            self._live = frozenset(p.id for p in self._peers.values() if p.alive)
        return self._live

    def admit(
        self, pid: int, incarnation: int, now: float, seq: int = -1, limit: int | None = None
    ) -> Admit:
        """Record traffic from ``(pid, incarnation)`` at ``now`` and classify it.

        Guards against forged claims: an incarnation above ``limit`` is refused (FUTURE); an
        older incarnation is re-admitted once the newer one has been silent for two timeouts
        (a forged or dead newer life does not shut out the live one for good); a departed
        incarnation heard with a seq above anything it sent before its goodbye, more than a
        timeout after it, revokes the goodbye (a spoofed goodbye isolates a peer for at most
        a timeout). An older life still speaking a timeout after a newer one is DUPLICATE.
        """
        p = self._peers[pid]
        if limit is not None and incarnation > limit:
            return Admit.FUTURE
        if incarnation < p.incarnation:
            if not p.alive and now - p.last_heard > 2 * self.timeout_s:
                return self._new_life(p, incarnation, now, seq)
            if p.alive and now - p.inc_since > self.timeout_s:
                return Admit.DUPLICATE
            return Admit.STALE
        if incarnation == p.departed_inc:
            if now - p.departed_at > self.timeout_s and seq > p.departed_seq:
                p.departed_inc = -1  # the departed life is still talking: the goodbye was forged
                return self._new_life(p, incarnation, now, seq)
            return Admit.DEPARTED
        if incarnation > p.incarnation:
            return self._new_life(p, incarnation, now, seq)
        p.last_heard = now
        p.max_seq = max(p.max_seq, seq)
        if p.alive:
            return Admit.OK
        p.alive = True
        self._live = None
        return Admit.REVIVED

    def _new_life(self, p: Peer, incarnation: int, now: float, seq: int) -> Admit:
        p.incarnation = incarnation
        p.state_seq = p.fuse_seq = -1
        p.max_seq = seq
        p.inc_since = now
        p.alive, p.last_heard = True, now
        self._live = None
        return Admit.NEW

    def depart(self, pid: int, now: float | None = None, last_seq: int | None = None) -> None:
        """``pid`` said goodbye in its current incarnation (at ``now``).

        ``last_seq`` is the highest seq heard from it before the goodbye (default ``max_seq``);
        traffic above it later revokes the goodbye (see :meth:`admit`).
        """
        p = self._peers[pid]
        p.departed_inc = p.incarnation
        p.departed_at = p.last_heard if now is None else now
        p.departed_seq = p.max_seq if last_seq is None else last_seq
        p.alive = False
        self._live = None

    def expire(self, now: float, grace_s: float = 0.0, full_rate: Container[int] = ()) -> list[int]:
        """Declare silent peers dead; return the ids that just expired, sorted.

        A peer not in ``full_rate`` beacons less often (the agent's quiet links, off the
        spanning tree): it gets ``grace_s`` more than ``timeout_s``. Unconfigured peers silent
        for ``prune_after_s`` are removed (see :meth:`take_removed`).
        """
        out = []
        self._live = None
        for p in list(self._peers.values()):
            limit = self.timeout_s if p.id in full_rate else self.timeout_s + grace_s
            if p.alive and now - p.last_heard > limit:
                p.alive = False
                out.append(p.id)
            elif not p.alive and not p.configured and now - p.last_heard > self.prune_after_s:
                del self._peers[p.id]
                self.removed.append(p.id)
        return sorted(out)
