"""Round-tagged all-reduce of float64 vectors over the agents' spanning tree (sans-I/O).

One concept: a *program* (for instance the collective mode's warm-up,
:mod:`swarmgp.agents.collective_model`) is a deterministic sequence of rounds; in each round every
member contributes a vector, the vectors are combined up the spanning tree to its root
(convergecast) and the root's total is broadcast back down, so every member sees bit-identical
results and therefore runs its copy of the program in lock-step. When the program ends, the root
broadcasts its *final state* (self-contained: a newcomer adopts it without replaying any round).

Messages (:class:`~swarmgp.protocol.messages.Reduce`), tagged by the session
``(root, root_inc, epoch)`` and the round:

- DOWN(r, size, result of r - 1) from a parent: start round r; forwarded to the children and
  acknowledged to the parent (an empty DOWN, child to parent).
- UP(r, partial) to the parent once the member's own contribution and every current child's UP
  of round r are in (combined in ascending child id order); acknowledged by an empty UP.
- FINAL(state) down the tree. Finished members answer any other all-reduce message with it; an
  unfinished member that follows no session probes its parent every ``resend_s``, which is how
  agents that join later (or restart, or lost the FINAL) get the agreed state.

**Census.** Every UP carries ``CENSUS_LEN`` trailing entries added by the all-reduce itself:
members, members ready (``program.ready``), members whose tree view changed within
``settle_s``, and the subtree's height. Round 0 of every session is a census: members contribute
at once what they have buffered. If the tree was still moving somewhere or some member is not
ready, the root drops the session and asks again after a pause (the census's own duration, at
least ``settle_s``) until ``ready_wait_s`` has passed since its first census; then the program
runs (an *attempt*) with the member count fixed. Any later round whose member count differs
(a member left, or a re-parented subtree was lost or counted twice) restarts: restarts follow
real membership changes, not tree motion. The round time-out scales with the tree height
(``round_timeout_s + 2 * height * resend_s``).

Loss is repaired by resend of unacknowledged messages only (the UP to the parent, the DOWN to
children that neither acknowledged it nor sent their UP), once they have been out ``resend_s``;
an acknowledged member polls its parent with an empty UP every ``POLL_FACTOR * resend_s`` (a
lost FINAL). Acknowledgements are *delayed* (``ACK_DELAY * resend_s``) and dropped when the
answer itself goes out first: a member's UP acknowledges its parent's DOWN, and a parent's next
DOWN (or the FINAL) acknowledges its children's UPs. A round that completes within the delay
then costs one message per direction per tree edge, the ideal; explicit acknowledgements are
left for slow subtrees and for duplicates (a resend is answered at once).
Duplicates are idempotent by ``(session, round)``. A member that receives a DOWN of a session
it has not followed from round 0 (a newcomer, or one re-parented from another tree) is a
*spectator* for that session: it contributes the program's neutral vector (and no census
entries) and adopts the FINAL. The root restarts on an ABORT or a round time-out; after
``max_attempts`` attempts (a census that times out counts) it gives up and broadcasts the
program's fallback state. It never hangs.

Counters (``allreduce.*``): census, census_again, sessions, restarts, member_change, timeouts,
rounds, gave_up, final_conflict, spectator, resend, stale.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from swarmgp.protocol.messages import (
    NO_PARENT,
    REDUCE_ABORT,
    REDUCE_DOWN,
    REDUCE_FINAL,
    REDUCE_UP,
    Reduce,
)

__all__ = ["CENSUS_LEN", "AllReduce", "AllReduceTiming", "ReduceProgram", "TreeView"]

#: Entries the all-reduce appends to every UP: members, ready members, members whose tree view
#: changed within ``settle_s``, and the subtree's height.
CENSUS_LEN = 4
#: After its UP is acknowledged, a member polls its parent (an empty UP) every
#: ``POLL_FACTOR * resend_s``: a finished parent answers with the FINAL.
POLL_FACTOR = 10
#: An explicit acknowledgement waits this fraction of ``resend_s`` for the implicit one (the
#: UP answering a DOWN, the next DOWN answering an UP); the peer resends only after
#: ``resend_s``.
ACK_DELAY = 0.5

Outbound = tuple[int, Reduce]


class ReduceProgram(Protocol):
    """A deterministic sequence of rounds (every member runs an identical copy)."""

    def restart(self) -> int:
        """Begin anew (a new session); return the length of round 0's contributions."""
        ...

    def ready(self, now: float) -> bool:
        """Whether this member's round-0 contribution can be computed now."""
        ...

    def contribution(self, rnd: int) -> np.ndarray:
        """This member's vector for round ``rnd``."""
        ...

    def neutral(self, rnd: int, size: int) -> np.ndarray:
        """The identity of round ``rnd``'s combination (a spectator's contribution)."""
        ...

    def combine(self, rnd: int, parts: list[np.ndarray]) -> np.ndarray:
        """Combine contributions (in the given order) of round ``rnd``."""
        ...

    def apply(self, rnd: int, result: np.ndarray) -> int | None:
        """Take round ``rnd``'s result; return the next round's length, None when done."""
        ...

    def final_state(self) -> np.ndarray:
        """The agreed state to broadcast when the program is done."""
        ...

    def fallback_state(self) -> np.ndarray:
        """What the root broadcasts when it gives up."""
        ...

    def adopt(self, state: np.ndarray, now: float) -> None:
        """Take the agreed (final) state."""
        ...


@dataclass(frozen=True)
class TreeView:
    """What the all-reduce reads from its agent (built by the agent for each call)."""

    me: int
    incarnation: int
    root: int
    root_inc: int
    parent: int
    neighbors: frozenset[int]
    next_seq: Callable[[], int]
    counters: Counter[str]

    @property
    def is_root(self) -> bool:
        return self.root == self.me

    @property
    def children(self) -> frozenset[int]:
        return self.neighbors - {self.parent}


@dataclass(frozen=True)
class AllReduceTiming:
    """Periods of the all-reduce, seconds of the driver's clock.

    Attributes
    ----------
    resend_s : float
        Full-state resend period (repairs loss).
    settle_s : float
        A root starts a census only after its tree has been unchanged this long; a member whose
        tree view changed this recently reports itself as moving in the census.
    round_timeout_s : float
        A round that takes longer makes the root restart the session.
    ready_wait_s : float
        How long the root's census keeps asking until every member is ready (has its warm-up
        batches); afterwards members contribute what they hold.
    max_attempts : int
        Sessions before the root gives up and broadcasts the fallback state.
    """

    resend_s: float = 0.5
    settle_s: float = 1.0
    round_timeout_s: float = 10.0
    ready_wait_s: float = 10.0
    max_attempts: int = 5


class AllReduce:
    """The all-reduce state machine of one member (see the module docstring)."""

    def __init__(self, program: ReduceProgram, timing: AllReduceTiming) -> None:
        self.program = program
        self.timing = timing
        self.finished = False
        self.final: np.ndarray | None = None
        self.attempts = 0  # program sessions (a census that is re-run does not count)
        self.census_runs = 0
        self._epoch = 0  # own counter as a root
        self._key: tuple[int, int, int] | None = None  # session followed
        self._round = -1
        self._size = 0
        self._spectator = False
        self._own: np.ndarray | None = None
        self._parts: dict[int, np.ndarray] = {}
        self._up: np.ndarray | None = None  # last UP vector of the current round
        self._up_acked = False
        self._down: tuple[int, int, np.ndarray] | None = None  # (round, size, vector)
        self._down_acked: set[int] = set()
        self._acks: dict[int, tuple[int, int, float]] = {}  # peer -> (phase, round, due)
        self._up_t = -math.inf  # when our UP of this round last went out
        self._down_t = -math.inf  # when our DOWN of this round last went out
        self._down_to: set[int] = set()  # the children it went to
        self._round_t0 = 0.0
        self._tree_sig: tuple[object, ...] | None = None
        self._tree_t = 0.0
        self._next_resend = -math.inf
        self._last_resend = -math.inf
        # as a root: census facts of the session in progress
        self._first_t: float | None = None  # first census started (readiness budget)
        self._hold_until = -math.inf
        self._members = 0
        self._height = 0

    # ------------------------------------------------------------------ driver interface

    def next_deadline(self) -> float:
        """When :meth:`step` must next be called (without a message)."""
        t = self._next_resend if math.isfinite(self._next_resend) else 0.0
        if math.isfinite(self._hold_until) and not self.finished:
            t = min(t, self._hold_until)
        if self._acks:
            t = min(t, min(due for _, _, due in self._acks.values()))
        return t

    def step(self, tv: TreeView, now: float, msg: Reduce | None = None) -> list[Outbound]:
        """Advance on a message, a tick or a tree change; return messages to send."""
        out: list[Outbound] = []
        sig = (tv.root, tv.root_inc, tv.parent, tv.neighbors)
        if sig != self._tree_sig:
            if self._tree_sig is not None and self._tree_sig[2] != tv.parent:
                self._up_acked = False  # a new parent does not hold our UP
            self._tree_sig, self._tree_t = sig, now
        if msg is not None:
            out += self._on_message(tv, msg, now)
        out += self._advance(tv, now)
        if self._acks:
            out += self._due_acks(tv, now)
        if now >= self._next_resend:
            self._next_resend = now + self.timing.resend_s
            out += self._resend(tv, now)
        return out

    # ------------------------------------------------------------------ internals

    def _msg(self, tv: TreeView, phase: int, rnd: int, size: int, v: np.ndarray) -> Reduce:
        root, rinc, epoch = self._key if self._key is not None else (tv.root, tv.root_inc, 0)
        return Reduce(tv.me, tv.incarnation, tv.next_seq(), root, rinc, epoch, rnd, phase, size, v)

    def _ack(self, tv: TreeView, phase: int, rnd: int) -> Reduce:
        return self._msg(tv, phase, rnd, 0, np.zeros(0))

    def _ack_later(self, peer: int, phase: int, rnd: int, now: float) -> None:
        """Acknowledge ``peer`` at ``now + ACK_DELAY * resend_s`` unless answered before."""
        self._acks[peer] = (phase, rnd, now + ACK_DELAY * self.timing.resend_s)

    def _due_acks(self, tv: TreeView, now: float) -> list[Outbound]:
        """The delayed acknowledgements that fell due and are still about this round."""
        out: list[Outbound] = []
        for peer, (phase, rnd, due) in sorted(self._acks.items()):
            if due > now:
                continue
            del self._acks[peer]
            if self._key is not None and rnd == self._round and not self.finished:
                out.append((peer, self._ack(tv, phase, rnd)))
        return out

    def _final_msg(self, tv: TreeView) -> Reduce:
        assert self.final is not None
        return Reduce(
            tv.me, tv.incarnation, tv.next_seq(), tv.root, tv.root_inc, 0, 0, REDUCE_FINAL,
            self.final.shape[0], self.final,
        )  # fmt: skip

    def _on_message(self, tv: TreeView, msg: Reduce, now: float) -> list[Outbound]:
        c = tv.counters
        s = msg.sender
        if s not in tv.neighbors:
            c["allreduce.off_tree"] += 1
            return []
        if msg.phase == REDUCE_FINAL:
            if self.finished:
                if self.final is not None and not np.array_equal(self.final, msg.vector):
                    c["allreduce.final_conflict"] += 1
                return []
            self._finish(tv, msg.vector.copy(), now)
            return [(k, self._final_msg(tv)) for k in sorted(tv.children)]
        if self.finished:  # a newcomer or a lagging neighbour: tell it the outcome
            return [(s, self._final_msg(tv))]
        key = (msg.root, msg.root_inc, msg.epoch)
        if msg.phase == REDUCE_DOWN:
            if s != tv.parent:
                if key == self._key and msg.round == self._round and s in tv.children:
                    self._down_acked.add(s)  # a child acknowledges our DOWN
                else:
                    c["allreduce.stale"] += 1
                return []
            return self._on_down(tv, key, msg, now)
        if key != self._key:
            c["allreduce.stale"] += 1
            return []
        if msg.phase == REDUCE_ABORT:
            if tv.is_root:
                return self._restart(tv, now)
            return [(tv.parent, self._msg(tv, REDUCE_ABORT, self._round, 0, np.zeros(0)))]
        if msg.phase == REDUCE_UP and s == tv.parent:
            if msg.round == self._round:
                self._up_acked = True  # the parent holds our UP: stop resending it
            return []
        if msg.phase == REDUCE_UP and msg.size == 0 and s in tv.children:
            return []  # a child's poll (its UP was acknowledged)
        if msg.phase == REDUCE_UP and msg.round == self._round and s in tv.children:
            if msg.vector.shape[0] == self._size + CENSUS_LEN:
                if s in self._parts:  # a resend: the child has waited resend_s already
                    return [(s, self._ack(tv, REDUCE_UP, msg.round))]
                self._parts[s] = msg.vector.copy()
                self._ack_later(s, REDUCE_UP, msg.round, now)  # our next DOWN may answer
                return []
        c["allreduce.stale"] += 1
        return []

    def _on_down(
        self, tv: TreeView, key: tuple[int, int, int], msg: Reduce, now: float
    ) -> list[Outbound]:
        ack = (tv.parent, self._ack(tv, REDUCE_DOWN, msg.round))  # for a resent DOWN: at once
        if key != self._key:
            self._key = key
            self._round = -1
            self._spectator = msg.round != 0
            if self._spectator:
                tv.counters["allreduce.spectator"] += 1
            else:
                self.program.restart()
        if msg.round <= self._round:
            return [ack] if msg.round == self._round else []  # duplicate or resend
        if not self._spectator:
            if msg.round != self._round + 1:
                self._spectator = True  # missed a round: cannot follow this session
                tv.counters["allreduce.spectator"] += 1
            elif msg.round > 0:
                self.program.apply(msg.round - 1, msg.vector)
        self._new_round(tv, msg.round, msg.size, now)
        self._down = (msg.round, msg.size, msg.vector)
        self._down_t, self._down_to = now, set(tv.children)
        self._ack_later(tv.parent, REDUCE_DOWN, msg.round, now)  # our UP may answer first
        return [
            (k, self._msg(tv, REDUCE_DOWN, msg.round, msg.size, msg.vector))
            for k in sorted(tv.children)
        ]

    def _new_round(self, tv: TreeView, rnd: int, size: int, now: float) -> None:
        self._round, self._size = rnd, size
        self._own = None
        self._parts = {}
        self._up = None
        self._up_acked = False
        self._down_acked = set()
        # the DOWN of the new round answers the children's UPs of the last one
        self._acks = {p: a for p, a in self._acks.items() if a[0] != REDUCE_UP}
        self._up_t = -math.inf
        self._round_t0 = now
        self._last_resend = now

    def _round_limit(self) -> float:
        """A round's time-out at the root: the base plus a resend per hop down and up (the
        census, whose height may not be known yet, also gets ``ready_wait_s``)."""
        t = self.timing
        extra = t.ready_wait_s if self._round == 0 else 0.0
        return t.round_timeout_s + extra + 2.0 * self._height * t.resend_s

    def _restart(self, tv: TreeView, now: float, count: bool = True) -> list[Outbound]:
        if self._key is not None and count:
            tv.counters["allreduce.restarts"] += 1
        self._key = None
        if self.attempts >= self.timing.max_attempts:
            tv.counters["allreduce.gave_up"] += 1
            self._finish(tv, self.program.fallback_state(), now)
            return [(k, self._final_msg(tv)) for k in sorted(tv.children)]
        return []  # _advance starts the next census once the tree is still and the hold is over

    def _start(self, tv: TreeView, now: float) -> list[Outbound]:
        if self._first_t is None:
            self._first_t = now
        self.census_runs += 1
        self._epoch += 1
        self._key = (tv.me, tv.incarnation, self._epoch)
        self._spectator = False
        tv.counters["allreduce.census"] += 1
        size = self.program.restart()
        self._new_round(tv, 0, size, now)
        v = np.zeros(0)
        self._down = (0, size, v)
        self._down_t, self._down_to = now, set(tv.children)
        return [(k, self._msg(tv, REDUCE_DOWN, 0, size, v)) for k in sorted(tv.children)]

    def _finish(self, tv: TreeView, state: np.ndarray, now: float) -> None:
        self.program.adopt(state, now)
        self.final = state
        self.finished = True
        self._key = None
        self._hold_until = -math.inf
        # a finished member only answers with the final state: the round's vectors are done
        self._own, self._parts, self._up, self._down = None, {}, None, None
        self._down_acked = set()
        self._acks = {}

    def _census(self, tv: TreeView, now: float) -> np.ndarray:
        """This member's census entries: [member, ready, tree changed lately, height 0]."""
        if self._spectator:
            return np.zeros(CENSUS_LEN)
        ready = self._round == 0 and self.program.ready(now)
        moved = now - self._tree_t < self.timing.settle_s
        return np.array([1.0, float(ready), float(moved), 0.0])

    def _combine(self, parts: list[np.ndarray]) -> np.ndarray:
        k = self._size
        total = self.program.combine(self._round, [p[:k] for p in parts])
        cen = np.sum([p[k:] for p in parts], axis=0)
        cen[3] = max([parts[0][k + 3]] + [p[k + 3] + 1.0 for p in parts[1:]])  # subtree height
        return np.concatenate([total, cen])

    def _advance(self, tv: TreeView, now: float) -> list[Outbound]:
        if self.finished:
            return []
        out: list[Outbound] = []
        mine = self._key is not None and self._key[0] == tv.me
        if tv.is_root and not mine:
            # a (new) root: start once the tree has been still for settle_s
            if self._key is not None and self._key[0] != tv.me:
                self._key = None  # the old root's session is gone
            if now - self._tree_t >= self.timing.settle_s and now >= self._hold_until:
                return self._start(tv, now)
            return []
        if not tv.is_root and mine:
            self._key = None  # merged under another root: follow its sessions
            return []
        if self._key is None:
            return []
        if tv.is_root and now - self._round_t0 > self._round_limit():
            tv.counters["allreduce.timeouts"] += 1
            if self._round == 0:
                self.attempts += 1  # a census that never completes counts (never hang)
            return self._restart(tv, now)
        if self._own is None:
            if self._spectator:
                own = self.program.neutral(self._round, self._size)
            else:
                own = self.program.contribution(self._round)
            self._own = np.concatenate([own, self._census(tv, now)])
        # wait for every current child (a lost child's subtree shows in the member count)
        if self._up is not None or not all(k in self._parts for k in tv.children):
            return out
        parts = [self._own] + [self._parts[k] for k in sorted(tv.children)]
        total = self._combine(parts)
        if not tv.is_root:
            self._up = total
            if tv.parent != NO_PARENT:
                out.append((tv.parent, self._msg(tv, REDUCE_UP, self._round, self._size, total)))
                self._up_t = now
                pending = self._acks.get(tv.parent)
                if pending is not None and pending[0] == REDUCE_DOWN:
                    del self._acks[tv.parent]  # the UP acknowledges the DOWN
            return out
        return out + self._root_done(tv, total, now)

    def _root_done(self, tv: TreeView, total: np.ndarray, now: float) -> list[Outbound]:
        """The root holds the round's total: judge the census, check members, go on."""
        k = self._size
        result, members, ready, moved, height = total[:k], *total[k:]
        c = tv.counters
        if self._round == 0:
            assert self._first_t is not None
            self._height = int(height)
            waited = now - self._first_t
            if (moved > 0 or ready < members) and waited < self.timing.ready_wait_s:
                # the tree is still forming or members lack data: ask again after a pause
                c["allreduce.census_again"] += 1
                self._key = None
                self._hold_until = now + max(self.timing.settle_s, now - self._round_t0)
                return []
            self._members = int(members)
            self.attempts += 1
            c["allreduce.sessions"] += 1
        elif int(members) != self._members:
            c["allreduce.member_change"] += 1  # the sums mix member sets: a real change
            return self._restart(tv, now)
        c["allreduce.rounds"] += 1
        nxt = self.program.apply(self._round, result)
        if nxt is None:
            self._finish(tv, self.program.final_state(), now)
            return [(k2, self._final_msg(tv)) for k2 in sorted(tv.children)]
        rnd = self._round + 1
        self._new_round(tv, rnd, nxt, now)
        self._down = (rnd, nxt, result)
        self._down_t, self._down_to = now, set(tv.children)
        return [(k2, self._msg(tv, REDUCE_DOWN, rnd, nxt, result)) for k2 in sorted(tv.children)]

    def _resend(self, tv: TreeView, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        if self.finished:
            return out  # finished members answer probes instead of resending forever
        if self._key is None and not tv.is_root and tv.parent != NO_PARENT:
            # no session to follow (a newcomer under a finished parent): probe for the FINAL
            out.append((tv.parent, self._msg(tv, REDUCE_ABORT, 0, 0, np.zeros(0))))
        elif self._key is not None:
            resend = self.timing.resend_s
            if self._up is not None and not tv.is_root and tv.parent != NO_PARENT:
                if not self._up_acked:
                    if now - self._up_t >= resend:  # out for resend_s, unanswered
                        self._up_t = now
                        out.append(
                            (tv.parent, self._msg(tv, REDUCE_UP, self._round, self._size, self._up))
                        )
                elif now - self._last_resend >= POLL_FACTOR * self.timing.resend_s:
                    # acknowledged: poll with an empty UP now and then (a finished parent
                    # answers with the FINAL, which may have been lost)
                    self._last_resend = now
                    out.append((tv.parent, self._ack(tv, REDUCE_UP, self._round)))
            if self._down is not None and self._down[0] == self._round:
                # a child's ACK or UP of this round acknowledges the DOWN: resend to the others
                r, size, v = self._down
                late = sorted(
                    k for k in tv.children if k not in self._parts and k not in self._down_acked
                )
                if now - self._down_t >= resend:
                    self._down_t = now
                else:  # out for less than resend_s: only children that never had it
                    late = [k for k in late if k not in self._down_to]
                self._down_to.update(late)
                out += [(k, self._msg(tv, REDUCE_DOWN, r, size, v)) for k in late]
        tv.counters["allreduce.resend"] += len(out)
        return out
