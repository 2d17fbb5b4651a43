"""Self-stabilizing BFS spanning tree rooted at the smallest live id.

Each agent advertises a :class:`~swarmgp.protocol.messages.TreeState` ``(root, root_inc,
root_seq, dist, parent)`` in its heartbeats and fusion messages. It picks, among its live
neighbours ``b`` whose advertised root is smaller than its own id, alive, and reachable within
``max_dist`` hops, the lexicographically smallest ``(root, dist_b + 1, b)``, preferring its
current parent on ties (no flapping); otherwise it is a root itself.

Dead roots: every agent increments its own beacon counter each heartbeat and a root's
counter travels down the tree. An agent considers root ``r`` alive only while the largest
``(root_inc, root_seq)`` it has seen for ``r`` advanced within ``root_timeout_s``. A dead root
stops advancing, so every agent drops it within ``root_timeout_s`` plus one beacon, instead of
counting distances to infinity through stale neighbours; ``max_dist`` bounds distances as a
second guard. A neighbour that declares this agent as its parent is never used as a parent
(split horizon), which rules out two-cycles. With the root alive and the links stable, distances
settle to BFS distances within diameter-many beacon periods.

Forged freshness: a neighbour's claim about a root's ``(root_inc, root_seq)`` is bounded. A claim
of the same incarnation may grow by at most ``max_dist + 4`` plus two per beacon period elapsed
since the last advance (relay lags differ by at most the tree depth), and a larger incarnation is
refused above the caller's clock bound. A claim nobody repeats stops advancing, so the root looks
dead for ``root_timeout_s``; values heard below it are then collected for one more
``root_timeout_s`` and a value above all of them (the live root, still counting) becomes the new
baseline. A dead root heard only through stale repeats never rises above that window's maximum,
so it stays dead.

Tree neighbours are the parent plus the children (live neighbours that declare this agent as
their parent).
"""

from __future__ import annotations

from collections.abc import Container

from swarmgp.protocol.messages import NO_PARENT, TreeState

__all__ = ["SpanningTree"]

#: Beacon periods of relay lag allowed per hop when judging a root's freshness (one period of
#: waiting for the relay's next beacon, plus a half for link latency and jitter).
RELAY_LAG_BEACONS = 1.5


class SpanningTree:
    """One agent's view of the spanning tree.

    Parameters
    ----------
    me : int
        This agent's id.
    incarnation : int
        This agent's incarnation.
    max_dist : int
        Distance cap.
    root_timeout_s : float
        A root whose beacon counter does not advance this long is dead.
    heartbeat_s : float or None
        Beacon period; bounds how fast a root's counter may grow (None: no growth cap).
    """

    def __init__(
        self,
        me: int,
        incarnation: int,
        max_dist: int,
        root_timeout_s: float,
        heartbeat_s: float | None = None,
    ) -> None:
        self.me, self.incarnation = me, incarnation
        self.max_dist, self.root_timeout_s = max_dist, root_timeout_s
        self.heartbeat_s = heartbeat_s
        self._beacon = 0
        self._nbr: dict[int, TreeState] = {}
        # root id -> (incarnation, beacon seq, time it last advanced)
        self._fresh: dict[int, tuple[int, int, float]] = {}
        # root id -> (window start, largest (inc, seq) heard in it) while its best claim is stale
        self._window: dict[int, tuple[float, tuple[int, int]]] = {}
        # root id -> hops of the claim that last advanced its freshness (relay lag allowance)
        self._hops: dict[int, int] = {}
        self.state = TreeState(me, incarnation, 0, 0, NO_PARENT)
        # memo of recompute/neighbors (simulator hot path): valid while nothing was observed,
        # forgotten or beaconed (_ver), for the same frozen live set, and (recompute) before
        # the first alive root's freshness can time out
        self._ver = 0
        # (ver, live, since, until, root -> alive as that recompute found it)
        self._memo: tuple[int, frozenset[int], float, float, dict[int, bool]] | None = None
        self._nbrs_memo: tuple[int, frozenset[int], int, frozenset[int]] | None = None
        self._fresh_moved: set[int] = set()  # roots re-advertised since the last recompute

    @property
    def is_root(self) -> bool:
        """Whether this agent is currently a root."""
        return self.state.root == self.me

    def beacon(self) -> None:
        """Advance this agent's beacon counter (once per heartbeat)."""
        self._beacon += 1  # (no new _ver: a memo hit of recompute takes the new counter)
        if self.is_root:
            self.state = TreeState(self.me, self.incarnation, self._beacon, 0, NO_PARENT)

    def observe(
        self, nbr: int, st: TreeState, now: float, max_root_inc: int | None = None
    ) -> str | None:
        """Record the state neighbour ``nbr`` advertised (call :meth:`recompute` after).

        Guards against forged root freshness (see the module notes): an implausible claim is
        not taken as the root's freshness (the neighbour's position is still recorded).

        Returns
        -------
        str or None
            ``"root_inc_future"`` or ``"root_seq_jump"`` when the freshness claim was refused.
        """
        old = self._nbr.get(nbr)
        self._nbr[nbr] = st
        r, v = st.root, (st.root_inc, st.root_seq)
        if old is None or (old.root, old.dist, old.parent) != (r, st.dist, st.parent):
            self._ver += 1
        else:
            self._same_place(r)  # only the root's freshness may have moved
        if max_root_inc is not None and st.root_inc > max_root_inc:
            return "root_inc_future"
        f = self._fresh.get(r)
        if f is None:
            self._fresh[r] = (*v, now)
            self._hops[r] = st.dist + 1
            return None
        if v > (f[0], f[1]):
            if self.heartbeat_s is not None and v[0] == f[0]:
                growth = self.max_dist + 4 + 2 * (now - f[2]) / self.heartbeat_s
                if v[1] > f[1] + growth:
                    return "root_seq_jump"
            self._fresh[r] = (*v, now)
            self._hops[r] = st.dist + 1
            self._window.pop(r, None)
            return None
        if now - f[2] <= self.root_timeout_s:
            return None
        # the best claim is stale: does the root live on below it?
        w = self._window.get(r)
        if w is None:
            self._window[r] = (now, v)
        elif now - w[0] <= self.root_timeout_s:
            if v > w[1]:
                self._window[r] = (w[0], v)
        elif v > w[1]:
            self._fresh[r] = (*v, now)  # rose above a whole window of claims: a new baseline
            self._hops[r] = st.dist + 1
            del self._window[r]
        return None

    def _same_place(self, r: int) -> None:
        """A neighbour re-advertised its position with (perhaps) newer freshness of root r.

        The choice of :meth:`recompute` is unchanged unless r's aliveness was part of it and
        could change: freshness only grows, so a root found alive stays alive (its memo bound
        is taken again after the update, in :meth:`recompute`) and a root no candidate checked
        does not matter; a root found dead may come back, so the memo is dropped.
        """
        memo = self._memo
        if memo is not None and memo[0] == self._ver and memo[4].get(r, True) is False:
            self._ver += 1
        self._fresh_moved.add(r)

    def forget(self, nbr: int) -> None:
        """Drop what ``nbr`` advertised (it expired, left, or restarted)."""
        self._nbr.pop(nbr, None)
        self._ver += 1

    def root_alive(self, root: int, now: float) -> bool:
        """Whether ``root``'s beacon advanced within the root timeout plus the relay lag.

        A beacon travels one hop per relay beacon at worst, and the lag of a path changes when
        relays switch between triggered and periodic beacons (fusion traffic starts or stops):
        the counter seen ``h`` hops away may then stall for up to ``h`` beacon periods although
        the root is alive. So the timeout grows by ``RELAY_LAG_BEACONS`` periods per hop of the
        claim that last advanced it (frozen at that advance: a dead root's stale claims cannot
        extend it, so there is no count to infinity).
        """
        if root == self.me:
            return True
        f = self._fresh.get(root)
        if f is None:
            return False
        lag = 0.0
        if self.heartbeat_s is not None:
            hops = min(self._hops.get(root, 0), self.max_dist)
            lag = RELAY_LAG_BEACONS * self.heartbeat_s * hops
        return now - f[2] <= self.root_timeout_s + lag

    def recompute(self, now: float, live: Container[int]) -> bool:
        """Choose root, distance and parent from the live neighbours' states.

        Returns
        -------
        bool
            Whether ``(root, dist, parent)`` changed.
        """
        memo, moved = self._memo, self._fresh_moved
        if memo is not None and memo[0] == self._ver and memo[1] is live and memo[2] <= now:
            until = memo[3]
            for r in moved:  # a root found alive, its freshness perhaps moved: its new bound
                if memo[4].get(r):
                    until = min(until, self._alive_until(r))
            moved.clear()
            if now < until:  # same choice; no alive root can have timed out yet
                if until != memo[3]:
                    self._memo = (*memo[:3], until, memo[4])
                self._refresh_counter()
                return False
        moved.clear()
        me, cur = self.me, self.state
        best: tuple[int, int, int, int] | None = None
        alive: dict[int, bool] = {}  # root_alive per root, once per call (neighbours share roots)
        until = float("inf")  # before this time, every root found alive is still alive
        for b, st in self._nbr.items():
            if st.root >= me or st.parent == me or st.dist + 1 > self.max_dist or b not in live:
                continue
            ok = alive.get(st.root)
            if ok is None:
                ok = alive[st.root] = self.root_alive(st.root, now)
                if ok:
                    until = min(until, self._alive_until(st.root))
            if not ok:
                continue
            key = (st.root, st.dist + 1, 0 if b == cur.parent else 1, b)
            if best is None or key < best:
                best = key
        if best is None:
            new = TreeState(me, self.incarnation, self._beacon, 0, NO_PARENT)
        else:
            r, d, _, b = best
            f = self._fresh[r]
            new = TreeState(r, f[0], f[1], d, b)
        self.state = new
        if isinstance(live, frozenset):
            self._memo = (self._ver, live, now, until, alive)
        return (new.root, new.dist, new.parent) != (cur.root, cur.dist, cur.parent)

    def _refresh_counter(self) -> None:
        """The state's beacon counter as a full recompute would set it (same position)."""
        st = self.state
        if st.root == self.me:
            v = (self.incarnation, self._beacon)
        else:
            f = self._fresh[st.root]
            v = (f[0], f[1])
        if v != (st.root_inc, st.root_seq):
            self.state = TreeState(st.root, v[0], v[1], st.dist, st.parent)

    def _alive_until(self, root: int) -> float:
        # a margin below the exact bound of root_alive (floating point): at worst one more
        # full recompute near the boundary
        f = self._fresh[root]
        lag = 0.0
        if self.heartbeat_s is not None:
            lag = RELAY_LAG_BEACONS * self.heartbeat_s * min(self._hops.get(root, 0), self.max_dist)
        return f[2] + self.root_timeout_s + lag - 1e-6

    def neighbors(self, live: Container[int]) -> frozenset[int]:
        """Tree neighbours: the parent and the live neighbours declaring ``me`` as parent."""
        parent = self.state.parent
        memo = self._nbrs_memo
        if memo is not None and memo[0] == self._ver and memo[1] is live and memo[2] == parent:
            return memo[3]
        out = {b for b, st in self._nbr.items() if st.parent == self.me and b in live}
        if parent != NO_PARENT:
            out.add(parent)
        res = frozenset(out)
        if isinstance(live, frozenset):
            self._nbrs_memo = (self._ver, live, parent, res)
        return res
