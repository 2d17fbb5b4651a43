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

Tree neighbours are the parent plus the children (live neighbours that declare this agent as
their parent).
"""

from __future__ import annotations

from collections.abc import Container

from ..protocol.messages import NO_PARENT, TreeState

__all__ = ["SpanningTree"]


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
    """

    def __init__(self, me: int, incarnation: int, max_dist: int, root_timeout_s: float) -> None:
        self.me, self.incarnation = me, incarnation
        self.max_dist, self.root_timeout_s = max_dist, root_timeout_s
        self._beacon = 0
        self._nbr: dict[int, TreeState] = {}
        # root id -> (incarnation, beacon seq, time it last advanced)
        self._fresh: dict[int, tuple[int, int, float]] = {}
        self.state = TreeState(me, incarnation, 0, 0, NO_PARENT)

    @property
    def is_root(self) -> bool:
        """Whether this agent is currently a root."""
        return self.state.root == self.me

    def beacon(self) -> None:
        """Advance this agent's beacon counter (once per heartbeat)."""
        self._beacon += 1
        if self.is_root:
            self.state = TreeState(self.me, self.incarnation, self._beacon, 0, NO_PARENT)

    def observe(self, nbr: int, st: TreeState, now: float) -> None:
        """Record the state neighbour ``nbr`` advertised (call :meth:`recompute` after)."""
        self._nbr[nbr] = st
        f = self._fresh.get(st.root)
        if f is None or (st.root_inc, st.root_seq) > (f[0], f[1]):
            self._fresh[st.root] = (st.root_inc, st.root_seq, now)

    def forget(self, nbr: int) -> None:
        """Drop what ``nbr`` advertised (it expired, left, or restarted)."""
        self._nbr.pop(nbr, None)

    def root_alive(self, root: int, now: float) -> bool:
        """Whether ``root``'s beacon advanced within the root timeout."""
        if root == self.me:
            return True
        f = self._fresh.get(root)
        return f is not None and now - f[2] <= self.root_timeout_s

    def recompute(self, now: float, live: Container[int]) -> bool:
        """Choose root, distance and parent from the live neighbours' states.

        Returns
        -------
        bool
            Whether ``(root, dist, parent)`` changed.
        """
        me, cur = self.me, self.state
        best: tuple[int, int, int, int] | None = None
        for b, st in self._nbr.items():
            if (
                st.root >= me
                or st.parent == me
                or st.dist + 1 > self.max_dist
                or b not in live
                or not self.root_alive(st.root, now)
            ):
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
        return (new.root, new.dist, new.parent) != (cur.root, cur.dist, cur.parent)

    def neighbors(self, live: Container[int]) -> frozenset[int]:
        """Tree neighbours: the parent and the live neighbours declaring ``me`` as parent."""
        out = {b for b, st in self._nbr.items() if st.parent == self.me and b in live}
        if self.state.parent != NO_PARENT:
            out.add(self.state.parent)
        return frozenset(out)
