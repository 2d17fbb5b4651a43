"""One swarm agent as a sans-I/O state machine.

Observations, messages and clock ticks go in; lists of ``(dest_id, Message)`` come out. The
agent never reads a clock, never touches a socket and never draws from a global random
generator: the driver (the real-time ZeroMQ runner or the discrete-event simulator) passes
``now`` and an optional ``rng``, and asks :meth:`Agent.next_deadline` when to tick next.

Fusion (DESIGN.md section 2) runs on the edges of the self-stabilizing spanning tree
(:mod:`swarmgp.agents.tree`). The message to tree neighbour b is
``M_ab = R_a + sum_{k in T(a), k != b} (M_ka - R_0)`` and the collective model is
``R_F(a) = R_a + sum_{k in T(a)} (M_ka - R_0)``; the agent computes ``R_F(a)`` once and each
``M_ab`` as ``R_F(a) - M_ba + R_0``, so one round costs O(degree * m^2). Messages carry the
full state, tagged ``(incarnation, seq)`` and a per-edge content ``version``: they are sent when
their content changes (coalesced to one round per ``fuse_min_interval_s``) and resent every
``fuse_resend_s`` to repair loss; stale and duplicate ones are dropped. A neighbour's message is
forgotten as soon as its edge leaves the tree or it expires. The local summary is never
replaced by a fused one.

Beacons. Every ``heartbeat_s`` the agent beacons its tree state; a link off the tree carries
nothing else, so it gets only every ``timing.quiet_every``-th periodic beacon and its peer is
expired that many periods later (:func:`~swarmgp.agents.factory.quiet_every` keeps the
false-expiry budget). Tree neighbours, peers owed an acknowledgement or a pending notice and
peers not heard yet get every one; a triggered beacon (a tree change, a new peer) goes to all.

``fusion="rounds"`` (``--fusion rounds``, the default) keeps these full-state messages and
their exactness argument but sends about one message per tree edge and direction per round of
changes:

* Change rounds. The agent's own input is at round ``r`` (one more per local-summary change,
  at least one past the last round its parent declared complete); each message carries the
  round ``gen`` its content is complete for: the oldest of its inputs (own round, and the
  ``gen`` of each neighbour ``k != b``'s message). A changed message to ``b`` is sent when
  that round advances past the one last sent to ``b``: a wave has passed. On a tree this is a
  convergecast of subtree sums towards the root followed by a broadcast of the total, one
  message per edge and direction per round, also when the tree is deeper than the time
  between rounds (the waves are pipelined: an agent whose own round is ahead forwards each
  older wave as it passes instead of waiting for its inputs to catch up with it).
* A change that does not advance the round is sent at once when no input is behind ``G``, the
  newest round among the agent's own and its neighbours' (a late change within a complete
  round: one extra wave), else it waits for the next wave: while waves keep arriving (some
  round advanced within ``fuse_hold_s``), up to a peer time-out; then it goes anyway,
  declaring round ``G`` with the lagging inputs taken to be at ``G`` (nothing stalls the
  swarm, and the agents downstream forward it at once).
* Own lag is treated apart: an agent whose own round is behind ``G`` waits at most
  ``fuse_hold_s`` for its own change, then declares its summary unchanged for round ``G``
  (its next change stays in ``G``), so an agent without new data does not stall the waves.
* While the tree forms (root or parent changed within five triggered-beacon intervals), fresh
  sends wait for it, at most ``fuse_hold_s`` at a stretch.
* Acknowledged state. Heartbeats list ``(neighbour, incarnation, version)`` of the tree
  messages the sender holds, and every received Fuse is answered with a heartbeat to its
  sender; a message is resent (same version) only while the receiver's latest heartbeat does
  not hold it, every ``fuse_resend_s / 2``. Holding never changes what is sent, only when, so
  loss, duplication, reordering, churn and partitions converge exactly as in the tree mode.
* Pending notices. Every Fuse (``pending``) and heartbeat (``pending``: the ids owed) says
  which tree neighbours the sender still owes a change: one whose changed message it holds,
  one it owes because its own summary is behind a neighbour's round, or one whose message
  depends on a change another neighbour still owes it. A notice that changes without a Fuse
  goes out at once in a heartbeat to that neighbour. An agent told that ``k`` owes it a change
  holds what depends on ``k`` (counted in ``fuse_pending_hold``) while the notice is fresh
  (``min(peer_timeout_s, 2.5 * heartbeat_s)``), at most ``10 * fuse_hold_s`` from the first
  hold, so a change still travelling through a deep subtree keeps the rounds around it open
  instead of letting holds time out into partial rounds. A notice is advisory (it never
  changes what is sent), so a lost or forged one only delays.
"""

from __future__ import annotations

import hashlib
import logging
import math
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from swarmgp.agents.config import AgentConfig
from swarmgp.agents.peers import Admit, Limits, PeerTable, incarnation_limit
from swarmgp.agents.tree import SpanningTree
from swarmgp.fusion.errors import SwarmGPError
from swarmgp.fusion.linalg import packed_size
from swarmgp.fusion.summary import Summary
from swarmgp.protocol.messages import (
    Fuse,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Reduce,  # collective mode (issue 9)
    StatusReply,
    StatusRequest,
)

__all__ = ["Agent", "LocalModelLike", "Outbound", "StaticModel", "fingerprint"]

log = logging.getLogger("swarmgp.agent")

Outbound = tuple[int, Message]


class LocalModelLike(Protocol):
    """What the agent needs from its local model (``agents/local_model.py`` provides it)."""

    def observe(self, X: np.ndarray, y: np.ndarray, fused: Summary | None) -> None: ...

    def summary(self) -> Summary: ...

    def predict(self, X: np.ndarray, fused: Summary | None) -> tuple[np.ndarray, np.ndarray]: ...


class StaticModel:
    """A stand-in local model with a fixed local summary (fusion tests, learning off).

    Parameters
    ----------
    summary : Summary
        The local summary returned by :meth:`summary`; :meth:`set` replaces it.
    """

    def __init__(self, summary: Summary) -> None:
        self._s = summary

    def set(self, summary: Summary) -> None:
        """Replace the local summary."""
        self._s = summary

    def observe(self, X: np.ndarray, y: np.ndarray, fused: Summary | None) -> None:
        """Ignore data (the summary is fixed)."""

    def summary(self) -> Summary:
        """The fixed local summary."""
        return self._s

    def predict(self, X: np.ndarray, fused: Summary | None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean/variance of the whitened features ``X @ v`` (shape (n,) each)."""
        s = fused if fused is not None else self._s
        mom = s.moments()
        mean = X @ mom.mean[: X.shape[1]]
        return mean, np.ones(X.shape[0])


def fingerprint(s: Summary) -> str:
    """Short sha256 of a packed summary: equal fingerprints mean bit-identical models."""
    return hashlib.sha256(np.ascontiguousarray(s.pack()).tobytes()).hexdigest()[:16]


class Agent:
    """Sans-I/O COOL-GP agent: peer liveness, spanning tree, tree fusion, status.

    Parameters
    ----------
    config : AgentConfig
    local_model : LocalModelLike
        Owns the local summary; ``observe`` gets the current fused summary (for learning).
    now : float
        Driver clock at creation.
    rng : numpy.random.Generator, optional
        Used only to spread the first heartbeat over one period (avoids lock-step beacons).
    status_extra : callable, optional
        Returns driver facts (memory, endpoint, pid, ...) merged into every status reply.
    counters : collections.Counter, optional
        Where to count (shared with the transport, which adds ``net.*`` and ``rejected.*``).

    Attributes
    ----------
    counters : collections.Counter
        ``tx.<kind>``, ``rx.<kind>``, ``drop.<reason>``, ``rejected.<reason>``, ``observations``,
        ``tree_changes``, ``expired``.
    """

    def __init__(
        self,
        config: AgentConfig,
        local_model: LocalModelLike,
        now: float,
        rng: np.random.Generator | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.id = config.agent_id
        self.model = local_model
        t = config.timing
        #: Bounds on peers' claims and costs (``config.limits`` when the config has it).
        self.limits: Limits = getattr(config, "limits", None) or Limits()
        self._created = now
        self._duplicates_logged: set[tuple[int, int, int]] = set()
        self._removed_peers: list[int] = []
        self.peers = PeerTable(
            t.peer_timeout_s,
            self.limits.max_peers,
            self.limits.prune_after_timeouts * t.peer_timeout_s,
        )
        for n in config.neighbors:
            self.peers.add(n, configured=True)
        self.tree = SpanningTree(
            self.id, config.incarnation, config.max_dist, t.root_timeout_s, t.heartbeat_s
        )
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._seq = 0
        self._local = local_model.summary()
        self._local.validate()
        # fusion state: stored tree messages and change generations
        self._incoming: dict[int, tuple[int, int, _Packed]] = {}  # k -> (inc, version, M_ka)
        self._in_gen: dict[int, int] = {}
        self._gen = 0  # changes when the local summary or the tree-neighbour set changes
        self._stamp = 0  # monotone source of generation/version numbers (never reused)
        self._tree_nbrs: frozenset[int] = frozenset()
        # (root, root_inc, parent, tree neighbours) at the last collective step
        self._step_sig: tuple[int, int, int, frozenset[int]] | None = None
        self._sent: dict[int, tuple[tuple[Any, ...], int]] = {}  # b -> (content key, version)
        self._fused_v: np.ndarray | None = None  # R_F(a) packed (see fused_summary)
        self._fused_counts = (0, 0)  # its (n_obs, n_agents)
        self._fused_ref: weakref.ref[Summary] | None = None  # the last full R_F(a) built
        self._fused_key: tuple[Any, ...] | None = None
        self._fused_parts: dict[int, _Packed] = {}  # the messages _fused_v was computed from
        # --fusion rounds: change rounds, holds and acknowledgements (see the module)
        self._rounds = getattr(config, "fusion", "tree") == "rounds"
        self._round = 1  # the round the own summary is at (gen 0: "missing" on the wire)
        self._adopted = False  # _round was taken from a hold time-out, not from a change
        self._own_wait: float | None = None  # since when the own round is behind a neighbour's
        self._progress_at = now  # last time a neighbour's round or the own round advanced
        self._complete = 0  # newest round known complete for the rest of the tree
        self._lstamp = 0  # changes with the local summary only
        self._in_round: dict[int, int] = {}  # k -> gen of M_ka
        self._sent_gen: dict[int, int] = {}
        self._sent_at: dict[int, float] = {}
        self._acked: set[int] = set()  # neighbours whose latest heartbeat holds our message
        self._held: dict[int, float] = {}  # b -> when a changed M_ab was first held
        self._ack_to: set[int] = set()  # neighbours owed an acknowledging heartbeat
        self._late = 0.0  # longest a held message has waited for an input that did arrive
        self._timeout_since: float | None = None  # hold start of the last time-out
        self._tree_changed_at = now  # last change of root, parent or tree neighbours
        self._unstable_since: float | None = None  # first fresh send deferred for the tree
        self._pend_from: dict[int, float] = {}  # k -> when k last said it owes us a change
        self._pend_to: frozenset[int] = frozenset()  # neighbours we last said we owe one
        self._joining = self._rounds and t.join_wait_s > 0 and bool(config.neighbors)
        if self._joining:  # the first heartbeat already says so
            self._pend_to = frozenset(config.neighbors)
        # timers
        phase = float(rng.uniform(0.0, t.heartbeat_s)) if rng is not None else 0.0
        self._next_hb = now + phase
        self._next_resend = now + t.fuse_resend_s
        self._fuse_due = math.inf
        self._hb_due = math.inf
        self._beats = 0  # periodic beacons so far (every quiet_every-th goes to every peer)
        self._beat_all = True  # the next beacon goes to every peer (first, triggered, quiet)
        self._last_fuse = -math.inf
        self._last_hb = -math.inf
        self.started = self.stopped = False
        self.last_observation: float | None = None
        #: Optional callable adding driver facts (memory, pid, endpoint) to :meth:`status`.
        self.status_extra = status_extra

    # ------------------------------------------------------------------ properties

    @property
    def local_summary(self) -> Summary:
        """The agent's own summary R_a (never replaced by a fused one)."""
        return self._local

    @property
    def fused_summary(self) -> Summary:
        """The collective model ``R_F(a) = R_a + sum_{k in T(a)} (M_ka - R_0)``.

        Recomputed from scratch (fixed summation order) when the local summary or the tree
        neighbours change; when only some neighbours' messages changed since, updated in place
        of a new sum as ``R_F + sum_k (M_ka_new - M_ka_old)``: two passes per changed message
        instead of degree + 1. The sum is kept packed (upper triangle of P, then h: half the
        memory of the full matrix; the same additions entry by entry); the full Summary is
        built from it on demand and reused while it is alive and the sum unchanged.
        """
        v = self._fused_vec()
        s = self._fused_ref() if self._fused_ref is not None else None
        if s is None:
            n_obs, n_agents = self._fused_counts
            s = Summary.unpack(v, self.config.m, n_obs, n_agents, self.config.encoding_hash)
            self._fused_ref = weakref.ref(s)
        return s

    def _fused_vec(self) -> np.ndarray:
        """The packed ``R_F(a)`` (``Summary.pack`` layout), brought up to date."""
        key = self.fused_stamp
        v = self._fused_v
        if v is not None and key == self._fused_key:
            return v
        parts = self._fused_parts
        changed = [k for k, e in self._incoming.items() if parts.get(k) is not e[2]]
        if (
            v is None
            or self._fused_key is None
            or key[0] != self._fused_key[0]
            or parts.keys() != self._incoming.keys()
            or 2 * len(changed) > len(parts) + 1
        ):
            # as fusion.tree.tree_fused: zeros, plus the local summary and every message in
            # the order of repr(k), minus (count - 1) R_0
            loc = self._local
            v = np.zeros(packed_size(loc.m) + loc.m)
            v += loc.pack()
            n_obs, n_agents = loc.n_obs, loc.n_agents
            for _, (_, _, msg) in sorted(self._incoming.items(), key=lambda kv: repr(kv[0])):
                v += msg.v
                n_obs += msg.n_obs
                n_agents += msg.n_agents
            v[_packed_diagonal(loc.m)] -= float(len(self._incoming))
        else:
            n_obs, n_agents = self._fused_counts
            for k in sorted(changed):  # v is this agent's own: updated in place
                new, old = self._incoming[k][2], parts[k]
                v += new.v
                v -= old.v
                n_obs += new.n_obs - old.n_obs
                n_agents += new.n_agents - old.n_agents
        self._fused_v, self._fused_counts, self._fused_ref = v, (n_obs, n_agents), None
        self._fused_parts = {k: e[2] for k, e in self._incoming.items()}
        self._fused_key = key
        return v

    @property
    def fused_stamp(self) -> tuple[Any, ...]:
        """Changes whenever the inputs of :attr:`fused_summary` change (cheap to compare)."""
        return (self._gen, tuple(sorted(self._in_gen.items())))

    @property
    def tree_neighbors(self) -> frozenset[int]:
        """Current tree neighbours (parent and children)."""
        return self._tree_nbrs

    def next_deadline(self) -> float:
        """Driver time at which :meth:`on_tick` must next be called."""
        t = min(self._next_hb, self._next_resend, self._fuse_due, self._hb_due)
        deadline = getattr(self.model, "collective_deadline", None)  # collective mode (issue 9)
        return t if deadline is None or self.stopped else min(t, deadline())

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[Outbound]:
        """Announce this agent (Hello + heartbeat to every configured neighbour)."""
        self.started = True
        hello = Hello(self.id, self.config.incarnation, self._next_seq(), self.config.endpoint)
        out: list[Outbound] = [(p, hello) for p in self.peers.ids()]
        self.counters["tx.hello"] += len(out)
        self._hb_due = now
        return out + self._emit(now)

    def observe(self, X: np.ndarray, y: np.ndarray, now: float) -> list[Outbound]:
        """Feed a batch to the local model and schedule fusion messages.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        """
        self.model.observe(X, y, self.fused_summary)
        self.counters["observations"] += int(np.shape(y)[0])
        self.last_observation = now
        summary = self.model.summary()
        if not getattr(self.model, "summary_validated", False):
            summary.validate()  # else SPD checked by its own factorization: no second Cholesky
        out = self._adopt_local_summary(summary, now)
        return out + self._collective_step(now)  # collective mode (issue 9)

    def set_local_summary(self, summary: Summary, now: float) -> list[Outbound]:
        """Replace the local summary directly (tests, or a model updated out of band).

        Raises
        ------
        SwarmGPError
            The summary is invalid or of another encoding/size (state is unchanged).
        """
        summary.validate()
        return self._adopt_local_summary(summary, now)

    def _adopt_local_summary(self, summary: Summary, now: float) -> list[Outbound]:
        if summary.encoding_hash != self.config.encoding_hash or summary.m != self.config.m:
            raise SwarmGPError(
                f"agent {self.id}: local summary of encoding {summary.encoding_hash} m={summary.m}"
                f" does not match {self.config.encoding_hash} m={self.config.m}"
            )
        self._local = summary
        self._gen = self._next_stamp()
        if self._rounds:
            self._lstamp = self._gen
            self._round = max(self._round + (0 if self._adopted else 1), self._complete + 1)
            self._progress_at = now
            self._adopted = False
        self._schedule_fuse(now)
        return self._emit(now)

    # --- collective mode (issue 9) -------------------------------------------------------
    def _collective_step(self, now: float, msg: Reduce | None = None) -> list[Outbound]:
        """Let a collective model run its warm-up all-reduce on this agent's spanning tree.

        A model without ``collective_step`` (the paper's LocalModel) is untouched. When the
        model's summary changes (the warm-up ended), it becomes the local summary.
        """
        step = getattr(self.model, "collective_step", None)
        if step is None or self.stopped or not self.started:
            return []
        from swarmgp.agents.allreduce import TreeView

        st = self.tree.state
        self._step_sig = (st.root, st.root_inc, st.parent, self._tree_nbrs)
        tv = TreeView(
            self.id,
            self.config.incarnation,
            st.root,
            st.root_inc,
            st.parent,
            self._tree_nbrs,
            self._next_seq,
            self.counters,
        )
        sent, changed = step(tv, now, msg)
        self.counters["tx.reduce"] += len(sent)
        out: list[Outbound] = list(sent)
        if changed:
            out += self.set_local_summary(self.model.summary(), now)
        return out

    # --- end collective mode ---------------------------------------------------------------

    def count_rejected(self, reason: str) -> None:
        """Count a frame set the transport rejected before it became a message."""
        self.counters["rejected." + reason] += 1

    def on_message(self, msg: Message, now: float) -> list[Outbound]:
        """Handle one decoded message; bad, stale or implausible ones are dropped and counted.

        Guards against forged claims (DESIGN.md section 2, "Security"): incarnations beyond
        the clock bound (``rejected.incarnation_future``), root freshness beyond what the
        root can have announced (``rejected.root_inc_future`` / ``rejected.root_seq_jump``),
        a goodbye not from the peer's current live incarnation (``drop.goodbye_mismatch``),
        tree messages claiming absurd counts (``rejected.implausible_counts``), a full peer
        table (``drop.peer_table_full``) and two processes sharing one id
        (``drop.duplicate_id``, logged loudly once per pair of lives).
        """
        kind = type(msg).__name__.lower()
        self.counters["rx." + kind] += 1
        if isinstance(msg, StatusRequest):
            return [(msg.sender, self._status_reply(msg))]
        if isinstance(msg, StatusReply) or self.stopped:
            return self._drop("unexpected" if not self.stopped else "stopped")
        s = msg.sender
        if s == self.id:
            if msg.incarnation != self.config.incarnation:
                self._duplicate(s, msg.incarnation, self.config.incarnation)
            return self._drop("self")
        limit = self._incarnation_limit(now)
        if msg.incarnation > limit:
            return self._reject("incarnation_future")
        if s not in self.peers:
            if not self.config.accept_unknown_peers:
                return self._drop("unknown_peer")
            if self.peers.add(s, configured=False) is None:
                return self._drop("peer_table_full")
        peer = self.peers.get(s)
        if isinstance(msg, Goodbye) and (
            msg.incarnation != peer.incarnation or not peer.alive or msg.seq <= peer.max_seq
        ):
            return self._drop("goodbye_mismatch")  # only the live life itself may leave
        seq_before = peer.max_seq
        verdict = self.peers.admit(s, msg.incarnation, now, msg.seq, limit)
        if verdict is Admit.STALE:
            return self._drop("stale_incarnation")
        if verdict is Admit.DEPARTED:
            return self._drop("departed")
        if verdict is Admit.FUTURE:
            return self._reject("incarnation_future")
        if verdict is Admit.DUPLICATE:
            self._duplicate(s, msg.incarnation, peer.incarnation)
            return self._drop("duplicate_id")
        out: list[Outbound] = []
        if verdict is Admit.NEW:
            # a new life of the peer: forget its old tree state and message, greet it
            self.tree.forget(s)
            self._forget_message(s)
            self._acked.discard(s)
            out.append(
                (s, Hello(self.id, self.config.incarnation, self._next_seq(), self.config.endpoint))
            )
            self.counters["tx.hello"] += 1
            self._trigger_beacon(now)
        if isinstance(msg, Goodbye):
            self.peers.depart(s, now, seq_before)
            self.tree.forget(s)
            self._forget_message(s)
        elif isinstance(msg, Heartbeat):
            if self._fresh_seq(peer.state_seq, peer.state_at, msg.seq, now):
                peer.state_seq, peer.state_at = msg.seq, now
                self._observe_tree(s, msg.tree, now, limit)
                if self._rounds:
                    self._take_acks(s, msg, now)
                    if self._joining:
                        self._schedule_fuse(now)  # perhaps the last configured neighbour
            else:
                self.counters["drop.stale_seq"] += 1
        elif isinstance(msg, Fuse):
            if msg.to != self.id:
                self.counters["drop.misrouted"] += 1
            elif not self._fresh_seq(peer.fuse_seq, peer.fuse_at, msg.seq, now):
                self.counters["drop.stale_seq"] += 1
            elif (
                msg.summary.n_agents > self.limits.max_agents
                or msg.summary.n_obs > self.limits.max_obs
            ):
                self._reject("implausible_counts")
            elif (
                msg.summary.encoding_hash != self.config.encoding_hash
                or msg.summary.P.shape != (self.config.m, self.config.m)
                or msg.summary.h.shape != (self.config.m,)
            ):
                self._reject("encoding_mismatch")  # it could not be fused with ours
            else:
                peer.fuse_seq, peer.fuse_at = msg.seq, now
                if self._fresh_seq(peer.state_seq, peer.state_at, msg.seq, now):
                    peer.state_seq, peer.state_at = msg.seq, now
                    self._observe_tree(s, msg.tree, now, limit)
                self._update_tree(now)
                if s in self._tree_nbrs:
                    self._store_message(s, msg, now)
                else:
                    self.counters["drop.off_tree"] += 1
                return out + self._emit(now)  # the tree is up to date
        elif isinstance(msg, Reduce):  # collective mode (issue 9)
            self._update_tree(now)
            out.extend(self._collective_step(now, msg))
            return out + self._emit(now)  # (the all-reduce does not move the tree)
        self._update_tree(now)
        return out + self._emit(now)

    def take_removed_peers(self) -> list[int]:
        """Peers dropped from the table since the last call (the driver disconnects them).

        Guards against a Hello flood keeping a socket open per fake id: the runner calls
        ``transport.disconnect(p)`` for each.
        """
        out, self._removed_peers = self._removed_peers, []
        return out

    def _unheard(self, p: int) -> bool:
        # no tree state from p yet (its Hello alone does not say what it owes us)
        return p in self.peers and self.peers.get(p).state_seq < 0

    def _take_acks(self, s: int, msg: Heartbeat, now: float) -> None:
        sent = self._sent.get(s)
        mine = (self.id, self.config.incarnation, sent[1]) if sent is not None else None
        if mine is not None and mine in msg.acks:
            self._acked.add(s)
        else:
            self._acked.discard(s)
        # s owes us a change it has not sent (see _pending): hold what depends on it
        if self.id in msg.pending:
            if s not in self._pend_from:
                self._schedule_fuse(now)  # our own pending notices may change
            self._pend_from[s] = now
        elif self._pend_from.pop(s, None) is not None:
            self._schedule_fuse(now)  # held messages may go now

    def _fresh_seq(self, last: int, last_at: float, seq: int, now: float) -> bool:
        # newer than the last accepted, or the last accepted (perhaps an inflated, forged
        # seq) has not been followed by anything for a peer timeout: start over from seq
        if seq > last:
            return True
        if now - last_at > self.config.timing.peer_timeout_s:
            self.counters["seq_reset"] += 1
            return True
        return False

    def _incarnation_limit(self, now: float) -> int:
        return incarnation_limit(self.config.incarnation, self._created, now, self.limits)

    def _observe_tree(self, s: int, st: Any, now: float, limit: int) -> None:
        refused = self.tree.observe(s, st, now, limit)
        if refused is not None:
            self.counters["rejected." + refused] += 1

    def _reject(self, reason: str) -> list[Outbound]:
        self.counters["rejected." + reason] += 1
        return []

    def _duplicate(self, pid: int, inc_a: int, inc_b: int) -> None:
        self.counters["duplicate_id"] += 1
        key = (pid, min(inc_a, inc_b), max(inc_a, inc_b))
        if key in self._duplicates_logged:
            return
        self._duplicates_logged.add(key)
        log.error(
            "agent %d: DUPLICATE ID: two processes claim id %d (incarnations %d and %d); "
            "stop one of them",
            self.id,
            pid,
            key[1],
            key[2],
        )

    def on_tick(self, now: float) -> list[Outbound]:
        """Advance timers: beacons, expiry, coalesced and periodic fusion sends."""
        force = False
        if now >= self._next_hb:
            t = self.config.timing
            self._next_hb = max(self._next_hb + t.heartbeat_s, now)
            self._beats += 1
            if self._beats % t.quiet_every == 0:
                self._beat_all = True
            self.tree.beacon()
            grace = (t.quiet_every - 1) * t.heartbeat_s  # quiet links beacon less often
            for p in self.peers.expire(now, grace, self._tree_nbrs):
                self.counters["expired"] += 1
                self.tree.forget(p)
                self._forget_message(p)
            for p in self.peers.take_removed():  # pruned or evicted from the peer table
                self.tree.forget(p)
                self._forget_message(p)
                self._sent.pop(p, None)
                if len(self._removed_peers) < self.limits.max_peers:
                    self._removed_peers.append(p)
            self._update_tree(now)
            self._hb_due = now
        if now >= self._next_resend:
            period = self.config.timing.fuse_resend_s
            self._next_resend = now + (period / 2 if self._rounds else period)
            force = True
        return self._emit(now, force) + self._collective_tick(now)

    def _collective_tick(self, now: float) -> list[Outbound]:
        """A tick's step of the collective warm-up, only where it can do something.

        A member that is not a root moves on messages, tree changes and its own timers
        (``collective_deadline``); on any other tick (a heartbeat's, a fusion send's) its step
        does nothing, so it is skipped (the simulator ticks each agent about ten times a
        second). A root always steps: its census start and round time-out depend on the clock.
        """
        deadline = getattr(self.model, "collective_deadline", None)
        if deadline is None:
            return []
        st = self.tree.state
        if (
            st.root != self.id
            and now < deadline()
            and self._step_sig == (st.root, st.root_inc, st.parent, self._tree_nbrs)
        ):
            return []
        return self._collective_step(now)

    def stop(self, now: float) -> list[Outbound]:
        """Say goodbye to every known peer; afterwards only status requests are served."""
        self.stopped = True
        bye = Goodbye(self.id, self.config.incarnation, self._next_seq())
        out: list[Outbound] = [(p, bye) for p in self.peers.ids()]
        self.counters["tx.goodbye"] += len(out)
        self._next_hb = self._next_resend = self._fuse_due = self._hb_due = math.inf
        return out

    # ------------------------------------------------------------------ status

    def status(self, now: float | None = None) -> dict[str, Any]:
        """Counts, tree state, health counters and fingerprint (msgpack-able)."""
        f = self.fused_summary
        st = self.tree.state
        return {
            "id": self.id,
            "incarnation": self.config.incarnation,
            "m": self.config.m,
            "encoding": self.config.encoding_hash,
            "n_agents": f.n_agents,
            "n_obs": f.n_obs,
            "local_n_obs": self._local.n_obs,
            "root": st.root,
            "dist": st.dist,
            "parent": st.parent,
            "tree_neighbors": sorted(self._tree_nbrs),
            "live_peers": sorted(self.peers.live()),
            "peers": self.peers.ids(),
            "fingerprint": fingerprint(f),
            "last_observation": self.last_observation,
            "counters": dict(self.counters),
            **(self.status_extra() if self.status_extra is not None else {}),
        }

    def _status_reply(self, req: StatusRequest) -> StatusReply:
        preds: dict[str, np.ndarray] = {}
        info = self.status()
        rows = self.limits.max_status_rows
        if req.X is not None and (req.X.shape[0] > rows or req.X.size > 64 * rows):
            # a huge request would stall the agent past its peers' timeouts
            self.counters["rejected.status_rows"] += 1
            info["predict_error"] = f"{req.X.shape[0]} rows x {req.X.shape[1]} over the cap"
        elif req.X is not None:
            try:
                fused = self.fused_summary
                preds["mean_local"], preds["var_local"] = self.model.predict(req.X, None)
                preds["mean_fused"], preds["var_fused"] = self.model.predict(req.X, fused)
                if req.summary is not None:
                    preds["mean_given"], preds["var_given"] = self.model.predict(req.X, req.summary)
            except SwarmGPError as e:  # a bad request must not take the agent down
                preds = {}
                info["predict_error"] = str(e)[:200]
        self.counters["tx.statusreply"] += 1
        return StatusReply(
            self.id,
            self.config.incarnation,
            self._next_seq(),
            req.nonce,
            info,
            self.fused_summary,
            self._local,
            preds,
        )

    # ------------------------------------------------------------------ internals

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_stamp(self) -> int:
        self._stamp += 1
        return self._stamp

    def _drop(self, reason: str) -> list[Outbound]:
        self.counters["drop." + reason] += 1
        return []

    def _forget_message(self, k: int) -> None:
        self._pend_from.pop(k, None)
        if self._incoming.pop(k, None) is not None:
            self._in_gen.pop(k, None)
            self._in_round.pop(k, None)
            self._gen = self._next_stamp()
            self._schedule_fuse_soon()

    def _store_message(self, k: int, msg: Fuse, now: float) -> None:
        old = self._incoming.get(k)
        if self._rounds:
            self._ack_to.add(k)  # acknowledge every copy: the first acknowledgement may be lost
            if k == self.tree.state.parent:
                # the rest of the tree may be one round ahead of this subtree, not more
                self._complete = max(self._complete, msg.gen - 1)
            if msg.pending:
                self._pend_from[k] = now  # more is on its way after this one
            elif self._pend_from.pop(k, None) is not None:
                self._schedule_fuse(now)  # the change it owed us came
        if old is not None and old[0] == msg.incarnation and old[1] == msg.version:
            self.counters["fuse_unchanged"] += 1  # a resend: content identical
            return
        sm = msg.summary  # kept packed: half the floats of the full P, nothing lost
        self._incoming[k] = (
            msg.incarnation,
            msg.version,
            _Packed(sm.pack(), sm.n_obs, sm.n_agents),
        )
        self._in_gen[k] = self._next_stamp()
        if msg.gen > self._in_round.get(k, 0):
            self._progress_at = now  # a wave arrived: waves are under way
        self._in_round[k] = msg.gen
        if old is not None and self._fused_v is not None:
            # fold the change in now, so the cache no longer holds the replaced message
            # (m^2 / 2 floats per tree neighbour that a 100k-agent simulation cannot afford)
            self._fused_vec()
        if self._rounds and self._timeout_since is not None:
            # an input arrived after a hold timed out: hold longer next time (a deep subtree)
            self._late = max(self._late, now - self._timeout_since)
            self._timeout_since = None
        self._schedule_fuse(now)

    def _update_tree(self, now: float) -> None:
        live = self.peers.live()
        was = (self.tree.state.root, self.tree.state.parent)
        if self.tree.recompute(now, live):
            self.counters["tree_changes"] += 1
            if (self.tree.state.root, self.tree.state.parent) != was:
                self._tree_changed_at = now  # not for a new beacon of the same root
            self._trigger_beacon(now)  # tell neighbours soon, rate-limited
        nbrs = self.tree.neighbors(live)
        if nbrs != self._tree_nbrs:
            for k in self._tree_nbrs - nbrs:
                self._incoming.pop(k, None)
                self._in_gen.pop(k, None)
                self._sent.pop(k, None)
                self._in_round.pop(k, None)
                self._sent_gen.pop(k, None)
                self._sent_at.pop(k, None)
                self._acked.discard(k)
                self._held.pop(k, None)
                self._pend_from.pop(k, None)
            self._tree_nbrs = nbrs
            self._tree_changed_at = now
            self._gen = self._next_stamp()
            self._schedule_fuse(now)

    def _trigger_beacon(self, now: float) -> None:
        # a burst of tree changes while the tree forms costs one beacon per interval,
        # not one per change (that was degree^2 messages per agent at start-up)
        soonest = self._last_hb + self.config.timing.beacon_min_interval_s
        self._hb_due = min(self._hb_due, max(now, soonest))
        self._beat_all = True

    def _schedule_fuse(self, now: float) -> None:
        # min, not "if unset": a later hold deadline must not postpone a send that is due now
        due = max(now, self._last_fuse + self.config.timing.fuse_min_interval_s)
        self._fuse_due = min(self._fuse_due, due)

    def _schedule_fuse_soon(self) -> None:
        # no clock here: send with the next emit (the coalescing floor still applies)
        self._fuse_due = min(
            self._fuse_due, self._last_fuse + self.config.timing.fuse_min_interval_s
        )

    def _emit(self, now: float, force: bool = False) -> list[Outbound]:
        out: list[Outbound] = []
        if self._hb_due <= now and self.started:
            self._hb_due = math.inf
            self._last_hb = now
            self._fused_vec()
            n_obs, n_agents = self._fused_counts
            hb = Heartbeat(
                self.id,
                self.config.incarnation,
                self._next_seq(),
                self.tree.state,
                n_agents,
                n_obs,
                self._acks(),
                tuple(sorted(self._pend_to)),
            )
            if self._beat_all:
                to = list(self.peers.ids())
                self._ack_to.clear()  # the broadcast heartbeat acknowledges everything
            else:  # a quiet period: only the links that carry more than liveness
                to = [p for p in self.peers.ids() if self._full_rate(p)]
                self._ack_to.difference_update(to)
            self._beat_all = False
            out.extend((p, hb) for p in to)
            self.counters["tx.heartbeat"] += len(to)
            # greet configured neighbours not heard yet (their endpoint may have changed)
            dead = [p for p in self.peers.ids() if not self.peers.get(p).alive]
            if dead:
                hello = Hello(
                    self.id, self.config.incarnation, self._next_seq(), self.config.endpoint
                )
                out.extend((p, hello) for p in dead)
                self.counters["tx.hello"] += len(dead)
        if (self._fuse_due <= now or force) and self.started:
            self._fuse_due = math.inf
            if self._rounds:
                out.extend(self._fuse_round_rounds(now, force))
            else:
                out.extend(self._fuse_round(now, force))
        if self._ack_to and self.started:
            self._fused_vec()
            n_obs, n_agents = self._fused_counts
            ack = Heartbeat(
                self.id,
                self.config.incarnation,
                self._next_seq(),
                self.tree.state,
                n_agents,
                n_obs,
                self._acks(),
                tuple(sorted(self._pend_to)),
            )
            out.extend((k, ack) for k in sorted(self._ack_to))
            self.counters["tx.heartbeat"] += len(self._ack_to)
            self.counters["tx.ack"] += len(self._ack_to)
            self._ack_to.clear()
        return out

    def _full_rate(self, p: int) -> bool:
        # tree neighbours, peers owed an acknowledgement or a pending notice, peers not heard
        return (
            p in self._tree_nbrs
            or p in self._ack_to
            or p in self._pend_from
            or p in self._pend_to
            or not self.peers.get(p).alive
        )

    def _acks(self) -> tuple[tuple[int, int, int], ...]:
        if not self._rounds:
            return ()
        return tuple((k, v[0], v[1]) for k, v in sorted(self._incoming.items()))

    def _fuse_message(self, b: int, version: int, gen: int, pending: bool = False) -> Fuse:
        return Fuse(
            self.id,
            self.config.incarnation,
            self._next_seq(),
            b,
            version,
            self.tree.state,
            self._message_summary(b),
            gen,
            pending,
        )

    def _message_summary(self, b: int) -> Summary:
        """``M_ab = R_F(a) - M_ba + R_0``: O(m^2) (tree_message would be O(degree m^2))."""
        inc = self._incoming.get(b)
        if inc is None:
            return self.fused_summary
        m, M_ba = self.config.m, inc[2]
        v = self._fused_vec() - M_ba.v  # as fusion.summary.subtract, entry by entry
        v[_packed_diagonal(m)] += 1.0
        n_obs, n_agents = self._fused_counts
        return Summary.unpack(
            v, m, n_obs - M_ba.n_obs, n_agents - M_ba.n_agents, self.config.encoding_hash
        )

    def _fuse_round_rounds(self, now: float, force: bool) -> list[Outbound]:
        """``fusion="rounds"``: send changed messages whose inputs are in, resend unacked ones."""
        nbrs = sorted(self._tree_nbrs)
        if not nbrs:
            return []
        t = self.config.timing
        # a neighbour's wave is waited for up to a peer time-out while waves keep coming,
        # longer when one has come later than that (a deep tree), capped
        hold = min(max(t.fuse_hold_s, t.peer_timeout_s, 1.5 * self._late), 10 * t.fuse_hold_s)
        gens = {k: (self._in_round.get(k, 0) if k in self._incoming else 0) for k in nbrs}
        G = max(self._round, *gens.values())  # the newest round known here
        next_due = math.inf
        if self._round < G:
            # the own summary is behind the rest: wait for the own change at most one
            # fuse_hold_s, then declare it unchanged for round G (a later change goes at once)
            if self._own_wait is None:
                self._own_wait = now
            if now >= self._own_wait + t.fuse_hold_s:
                self.counters["fuse_round_adopted"] += 1
                self._round, self._adopted, self._own_wait = G, True, None
            else:
                next_due = self._own_wait + t.fuse_hold_s
        else:
            self._own_wait = None
        # while the tree forms (root or parent changed less than five triggered-beacon
        # intervals ago: the next improvement of the root is probably on its way), fresh sends
        # wait for it to settle, at most one hold time at a stretch, so forming the tree does
        # not cost a wave of messages per change (start-up; in local swarms batches come first)
        stable_at = self._tree_changed_at + 5 * t.beacon_min_interval_s
        if now < stable_at:
            if self._unstable_since is None:
                self._unstable_since = now
            settling = now < self._unstable_since + t.fuse_hold_s
        else:
            settling, self._unstable_since = False, None
        self._complete = max(self._complete, min(self._round, *gens.values()))
        if self._joining:
            # configured neighbours not heard yet are starting: their changes are owed
            end = self._created + t.join_wait_s
            self._joining = now < end and any(self._unheard(p) for p in self.config.neighbors)
            if self._joining:
                next_due = min(next_due, end)
        # neighbours that owe this agent a change (a fresh pending notice): a message that
        # depends on theirs waits for it, up to pend_cap from its first hold
        window = min(t.peer_timeout_s, 2.5 * t.heartbeat_s)
        # (a starting neighbour owes before it is in the tree: it says so to every neighbour)
        owing = {k: at + window for k, at in self._pend_from.items() if now < at + window}
        pend_cap = 10 * t.fuse_hold_s
        own = self._own_wait is not None or self._joining or settling  # owed to everyone
        out: list[Outbound] = []
        fresh = 0
        for b in nbrs:
            ins = tuple((k, self._in_gen[k]) for k in nbrs if k != b and k in self._in_gen)
            key = (self._lstamp, ins)
            prev = self._sent.get(b)
            if prev is not None and prev[0] == key:
                self._held.pop(b, None)
                if (
                    force
                    and b not in self._acked
                    and now - self._sent_at.get(b, -math.inf) >= t.fuse_resend_s / 2
                ):
                    owes = own or any(k != b for k in owing)
                    out.append((b, self._fuse_message(b, prev[1], self._sent_gen[b], owes)))
                    self._sent_at[b] = now
                    self.counters["tx.fuse_resend"] += 1
                continue
            if settling:
                next_due = min(next_due, stable_at, self._unstable_since + t.fuse_hold_s)
                continue
            # the round M_ab is complete for: the oldest of its inputs (a wave of the
            # convergecast, or of the broadcast, has passed this agent when it advances)
            gen = min([self._round, *(gens[k] for k in nbrs if k != b)])
            wait = [until for k, until in owing.items() if k != b]
            if wait and (gen <= self._sent_gen.get(b, 0) or b not in self._sent_gen):
                # no new round is complete (or nothing was sent to b yet), and an input owes a
                # change (a wave still on its way through a deep subtree, more changes of this
                # round, neighbours still starting): wait for it instead of sending a partial
                # round, up to pend_cap
                since = self._held.setdefault(b, now)
                if now < since + pend_cap:
                    self.counters["fuse_pending_hold"] += 1
                    next_due = min(next_due, since + pend_cap, *wait)
                    continue
            if gen <= self._sent_gen.get(b, 0) and gen < G:
                # changed, but no new round is complete and an input is behind the newest
                # round: wait for the next wave (a late change within a complete round goes now)
                # while waves keep arriving (some round advanced within fuse_hold_s), at
                # most `hold`; once none has for fuse_hold_s, none is on its way
                since = self._held.setdefault(b, now)
                until = min(since + hold, max(since, self._progress_at) + t.fuse_hold_s)
                if now < until:
                    next_due = min(next_due, until)
                    continue
                self._timeout_since = since
                # held long enough (a wave that will not come: restarted or re-formed
                # neighbours, no more changes): declare round G complete, taking the lagging
                # inputs to be at G, so the agents downstream forward it at once
                self.counters["fuse_hold_timeout"] += 1
                if self._round < G:
                    self._round, self._adopted, self._own_wait = G, True, None
                for k in nbrs:
                    if k != b and k in self._incoming and gens[k] < G:
                        self._in_round[k] = gens[k] = G
                gen = G
            self._held.pop(b, None)
            version = self._next_stamp()  # monotone: a re-formed edge never reuses one
            self._sent[b] = (key, version)
            self._sent_gen[b], self._sent_at[b] = gen, now
            self._acked.discard(b)
            owes = own or any(k != b for k in owing)
            out.append((b, self._fuse_message(b, version, gen, owes)))
            fresh += 1
        if fresh:
            self._last_fuse = now
            self._unstable_since = None
        self._update_pending(nbrs, owing, {b for b, _ in out}, own)
        if next_due < math.inf:
            self._fuse_due = min(self._fuse_due, next_due)
        self.counters["tx.fuse"] += len(out)
        return out

    def _update_pending(
        self, nbrs: list[int], owing: dict[int, float], sent: set[int], own: bool
    ) -> None:
        """Which tree neighbours this agent owes a change (heartbeats say so; see Heartbeat).

        ``b`` is owed one while a changed ``M_ab`` is held here, while the own summary is behind
        a neighbour's round (its change is expected), or while another tree neighbour owes this
        agent one (its change will change ``M_ab``): a change still travelling through a deep
        subtree keeps the rounds around it open instead of letting holds time out into partial
        rounds. The notice rides on every Fuse (``pending``) and heartbeat; a neighbour whose
        notice changed without a Fuse gets a heartbeat now.
        """
        new = frozenset(b for b in nbrs if own or b in self._held or any(k != b for k in owing))
        old = self._pend_to
        # a Fuse just sent carries the notice itself (a heartbeat saying so could overtake it)
        self._ack_to.update((old ^ new) - sent)
        self._pend_to = new

    def _fuse_round(self, now: float, force: bool) -> Iterable[Outbound]:
        nbrs = sorted(self._tree_nbrs)
        if not nbrs:
            return []
        out: list[Outbound] = []
        for b in nbrs:
            key = (self._gen, tuple((k, self._in_gen.get(k, 0)) for k in nbrs if k != b))
            prev = self._sent.get(b)
            if prev is not None and prev[0] == key and not force:
                continue
            # versions come from one monotone counter, so a re-formed edge never reuses one
            version = prev[1] if prev is not None and prev[0] == key else self._next_stamp()
            self._sent[b] = (key, version)
            M = self._message_summary(b)
            fuse = Fuse(
                self.id, self.config.incarnation, self._next_seq(), b, version, self.tree.state, M
            )
            out.append((b, fuse))
        self._last_fuse = now
        self.counters["tx.fuse"] += len(out)
        return out


class _Packed:
    """A tree message as the agent keeps it: ``Summary.pack()`` (the upper triangle of P, then
    h) and its counts. P is symmetric, so nothing is lost (the codec sends the same values),
    at half the floats of the full matrix."""

    __slots__ = ("v", "n_obs", "n_agents")

    def __init__(self, v: np.ndarray, n_obs: int, n_agents: int) -> None:
        self.v, self.n_obs, self.n_agents = v, n_obs, n_agents


_DIAGONAL: dict[int, np.ndarray] = {}


def _packed_diagonal(m: int) -> np.ndarray:
    """Positions of P's diagonal in the packed layout (row i of the upper triangle starts at
    ``i m - i (i - 1) / 2``)."""
    idx = _DIAGONAL.get(m)
    if idx is None:
        i = np.arange(m)
        idx = _DIAGONAL[m] = i * m - i * (i - 1) // 2
    return idx
