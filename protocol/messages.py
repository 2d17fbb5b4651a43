"""Message types of the swarm protocol (frozen dataclasses, no I/O).

Every message carries ``sender`` (agent id), ``incarnation`` (a number that grows each time an
agent process starts, so a restarted agent supersedes its previous life) and ``seq`` (per-sender
sequence number, increasing within one incarnation). Receivers drop stale and duplicate messages
by ``(incarnation, seq)``.

- :class:`Hello`: first contact; carries the sender's endpoint so a peer can (re)connect.
- :class:`Heartbeat`: liveness plus the sender's spanning-tree state and its fused counts.
- :class:`Fuse`: the whole current tree message ``M_ab`` as a :class:`Summary` (full state,
  idempotent), with the sender's tree state and a content ``version``.
- :class:`Goodbye`: orderly departure.
- :class:`StatusRequest` / :class:`StatusReply`: monitoring (counts, tree, health, fingerprint,
  fused and local summaries, optional predictions at requested inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarmgp.fusion.summary import Summary

__all__ = [
    "NO_PARENT",
    "Fuse",
    "Goodbye",
    "Heartbeat",
    "Hello",
    "Message",
    "Reduce",
    "StatusReply",
    "StatusRequest",
    "TreeState",
]

#: ``TreeState.parent`` of a root.
NO_PARENT = -1


@dataclass(frozen=True, slots=True)
class TreeState:
    """An agent's advertised place in the self-stabilizing BFS spanning tree.

    Attributes
    ----------
    root : int
        Id of the root the agent follows (the smallest live id it knows of).
    root_inc : int
        Incarnation of that root.
    root_seq : int
        Freshest beacon counter of that root seen; it grows only while the root lives.
    dist : int
        Hop distance to the root.
    parent : int
        Next hop towards the root, or ``NO_PARENT`` for the root itself.
    """

    root: int
    root_inc: int
    root_seq: int
    dist: int
    parent: int


@dataclass(frozen=True)
class Hello:
    """First contact. ``endpoint`` lets the receiver (re)connect to the sender."""

    sender: int
    incarnation: int
    seq: int
    endpoint: str = ""


@dataclass(frozen=True)
class Heartbeat:
    """Liveness beacon with tree state and the counts the sender's fused model covers."""

    sender: int
    incarnation: int
    seq: int
    tree: TreeState
    n_agents: int = 0
    n_obs: int = 0
    #: ``(neighbour, its incarnation, version)`` of each tree message the sender holds
    #: (``--fusion rounds``: only unacknowledged tree messages are resent); empty otherwise.
    acks: tuple[tuple[int, int, int], ...] = ()
    #: ``--fusion rounds``: the tree neighbours the sender owes a change it has not sent yet (a
    #: held message, or a change still coming in from the sender's side of the tree), so they
    #: hold their own changed messages for it instead of sending partial rounds; empty otherwise.
    pending: tuple[int, ...] = ()


@dataclass(frozen=True)
class Fuse:
    """The full tree message ``M_{sender,to}``.

    Attributes
    ----------
    to : int
        The tree neighbour the message is computed for (it excludes that neighbour's own
        message, so it is only meaningful there).
    version : int
        Content version per (sender, to); a resend of unchanged content keeps it.
    tree : TreeState
        Sender's tree state, so the receiver learns the edge without waiting for a heartbeat.
    summary : Summary
        ``M = R_sender + sum_{k != to}(M_k - R_0)``, with ``n_agents`` / ``n_obs`` it covers.
    gen : int
        ``--fusion rounds``: the change round the content is complete for (0: not used).
    pending : bool
        ``--fusion rounds``: the sender owes the receiver more changes after this one (as
        :attr:`Heartbeat.pending`; carried here too, so a forwarded change does not look final
        until a heartbeat says otherwise).
    """

    sender: int
    incarnation: int
    seq: int
    to: int
    version: int
    tree: TreeState
    summary: Summary
    gen: int = 0
    pending: bool = False


@dataclass(frozen=True)
class Goodbye:
    """Orderly departure: forget the sender's incarnation now instead of waiting for expiry."""

    sender: int
    incarnation: int
    seq: int


@dataclass(frozen=True)
class StatusRequest:
    """Monitoring query from a status client (whose id is its ``sender``).

    Attributes
    ----------
    nonce : int
        Echoed in the reply.
    X : ndarray of shape (n, d) or None
        Inputs at which to return predictions (local-only, fused, and from ``summary``).
    summary : Summary or None
        An extra summary to predict from (for instance the exact sum over the swarm).
    """

    sender: int
    incarnation: int
    seq: int
    nonce: int
    X: np.ndarray | None = None
    summary: Summary | None = None


@dataclass(frozen=True)
class StatusReply:
    """Answer to :class:`StatusRequest`.

    Attributes
    ----------
    info : dict
        msgpack-able map: counts, tree state, health counters, fingerprint.
    fused, local : Summary or None
        The agent's collective and local summaries.
    predictions : dict of str to ndarray of shape (n,)
        ``mean_local``, ``var_local``, ``mean_fused``, ``var_fused`` and, when a summary was
        given, ``mean_given``, ``var_given`` (variances of y).
    """

    sender: int
    incarnation: int
    seq: int
    nonce: int
    info: dict[str, Any] = field(default_factory=dict)
    fused: Summary | None = None
    local: Summary | None = None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


# --- collective mode (issue 9): the warm-up's all-reduce over the spanning tree -------------
#: ``Reduce.phase`` values.
REDUCE_UP, REDUCE_DOWN, REDUCE_FINAL, REDUCE_ABORT = 0, 1, 2, 3


@dataclass(frozen=True)
class Reduce:
    """One step of a round-tagged all-reduce over the spanning tree (``agents/allreduce.py``).

    Attributes
    ----------
    root, root_inc, epoch : int
        The session: the tree root that runs it, its incarnation and its attempt counter.
    round : int
        Round within the epoch.
    phase : int
        ``REDUCE_UP`` (a subtree's partial sum of round ``round``, to the parent),
        ``REDUCE_DOWN`` (start round ``round``; ``vector`` is the result of round - 1 and
        ``size`` the length of this round's contributions), ``REDUCE_FINAL`` (``vector`` is the
        agreed state) or ``REDUCE_ABORT`` (a member left: restart, towards the root).
    size : int
    vector : ndarray of shape (k,), float64
    """

    sender: int
    incarnation: int
    seq: int
    root: int
    root_inc: int
    epoch: int
    round: int
    phase: int
    size: int
    vector: np.ndarray


Message = Hello | Heartbeat | Fuse | Goodbye | StatusRequest | StatusReply | Reduce
