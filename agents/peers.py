"""Peer table: liveness by any received traffic, expiry, incarnations and departures.

A peer is *live* while it has been heard from within ``timeout_s``. Each process start of a
peer has a larger incarnation; a message of an older incarnation is stale, a message of a
newer one resets what is known of the peer. A peer that said goodbye stays departed until a
newer incarnation speaks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

__all__ = ["Admit", "Peer", "PeerTable"]


class Admit(Enum):
    """Verdict of :meth:`PeerTable.admit` on a message's (sender, incarnation)."""

    OK = "ok"  # known live incarnation
    NEW = "new"  # first contact or a newer incarnation: reset per-peer protocol state
    REVIVED = "revived"  # same incarnation heard again after expiry
    STALE = "stale"  # an older incarnation: drop
    DEPARTED = "departed"  # this incarnation said goodbye: drop


@dataclass
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
    """

    id: int
    configured: bool = True
    incarnation: int = -1
    alive: bool = False
    last_heard: float = -math.inf
    departed_inc: int = -1
    state_seq: int = -1
    fuse_seq: int = -1


class PeerTable:
    """Liveness of an agent's neighbours.

    Parameters
    ----------
    timeout_s : float
        Silence after which a peer is declared dead.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self._peers: dict[int, Peer] = {}

    def __contains__(self, pid: int) -> bool:
        return pid in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, pid: int) -> Peer:
        """The entry of ``pid`` (KeyError if absent)."""
        return self._peers[pid]

    def add(self, pid: int, configured: bool = True) -> Peer:
        """Add ``pid`` (not yet live) if absent and return its entry."""
        p = self._peers.get(pid)
        if p is None:
            p = self._peers[pid] = Peer(pid, configured)
        return p

    def ids(self) -> list[int]:
        """All known peer ids, sorted."""
        return sorted(self._peers)

    def live(self) -> frozenset[int]:
        """Ids of the live peers."""
        return frozenset(p.id for p in self._peers.values() if p.alive)

    def admit(self, pid: int, incarnation: int, now: float) -> Admit:
        """Record traffic from ``(pid, incarnation)`` at ``now`` and classify it."""
        p = self._peers[pid]
        if incarnation < p.incarnation:
            return Admit.STALE
        if incarnation == p.departed_inc:
            return Admit.DEPARTED
        if incarnation > p.incarnation:
            p.incarnation = incarnation
            p.state_seq = p.fuse_seq = -1
            p.alive, p.last_heard = True, now
            return Admit.NEW
        p.last_heard = now
        if p.alive:
            return Admit.OK
        p.alive = True
        return Admit.REVIVED

    def depart(self, pid: int) -> None:
        """``pid`` said goodbye in its current incarnation."""
        p = self._peers[pid]
        p.departed_inc = p.incarnation
        p.alive = False

    def expire(self, now: float) -> list[int]:
        """Declare silent peers dead; return the ids that just expired, sorted."""
        out = []
        for p in self._peers.values():
            if p.alive and now - p.last_heard > self.timeout_s:
                p.alive = False
                out.append(p.id)
        return sorted(out)
