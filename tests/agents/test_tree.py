"""Self-stabilizing BFS spanning tree: root choice, distances, dead roots, no loops."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.agents.tree import SpanningTree
from swarmgp.protocol.messages import NO_PARENT, TreeState

pytestmark = pytest.mark.timeout(60)


class Net:
    """Synchronous beacon rounds over an adjacency (each round: beacon, exchange, recompute)."""

    def __init__(self, adj: dict[int, set[int]], max_dist: int = 64, timeout: float = 3.0):
        self.adj = {k: set(v) for k, v in adj.items()}
        self.t = {i: SpanningTree(i, 1, max_dist, timeout) for i in adj}
        self.alive = set(adj)
        self.now = 0.0

    def round(self) -> None:
        self.now += 1.0
        for i in self.alive:
            self.t[i].beacon()
        states = {i: self.t[i].state for i in self.alive}
        for i in self.alive:
            live = {j for j in self.adj[i] if j in self.alive}
            for j in self.adj[i]:
                if j in live:
                    self.t[i].observe(j, states[j], self.now)
                else:
                    self.t[i].forget(j)
            self.t[i].recompute(self.now, live)

    def bfs(self, root: int) -> dict[int, int]:
        dist, frontier = {root: 0}, [root]
        while frontier:
            nxt = []
            for u in frontier:
                for v in self.adj[u]:
                    if v in self.alive and v not in dist:
                        dist[v] = dist[u] + 1
                        nxt.append(v)
            frontier = nxt
        return dist

    def is_bfs_tree(self) -> bool:
        root = min(self.alive)
        dist = self.bfs(root)
        for i in self.alive:
            st = self.t[i].state
            if st.root != root or st.dist != dist[i]:
                return False
            if i != root and (st.parent not in self.alive or dist[st.parent] != dist[i] - 1):
                return False
        return True

    def rounds_until_bfs(self, limit: int) -> int:
        for k in range(1, limit + 1):
            self.round()
            if self.is_bfs_tree():
                return k
        raise AssertionError("no BFS tree")


def ring(n: int) -> dict[int, set[int]]:
    return {i: {(i - 1) % n, (i + 1) % n} for i in range(n)}


def random_connected(n: int, seed: int) -> dict[int, set[int]]:
    r = np.random.default_rng(seed)
    adj = {i: set() for i in range(n)}
    for i in range(1, n):  # random spanning tree, then chords
        j = int(r.integers(0, i))
        adj[i].add(j)
        adj[j].add(i)
    for _ in range(n):
        a, b = (int(x) for x in r.integers(0, n, 2))
        if a != b:
            adj[a].add(b)
            adj[b].add(a)
    return adj


def test_single_agent_is_root() -> None:
    t = SpanningTree(7, 1, 8, 1.0)
    assert not t.recompute(0.0, set())
    assert t.is_root and t.state.parent == NO_PARENT and t.neighbors(set()) == frozenset()


@pytest.mark.parametrize("seed", range(5))
def test_forms_bfs_tree_within_diameter_rounds(seed: int) -> None:
    adj = random_connected(20, seed)
    net = Net(adj)
    diam = max(max(net.bfs(s).values()) for s in adj)
    assert net.rounds_until_bfs(diam + 2) <= diam + 2


def test_dead_root_dropped_in_bounded_time_no_count_to_infinity() -> None:
    n = 12
    net = Net(ring(n), max_dist=1000, timeout=3.0)
    net.rounds_until_bfs(n)
    net.alive.discard(0)
    k = net.rounds_until_bfs(40)
    assert k <= 3 + 2 + n // 2 + 2  # root timeout + expiry + new diameter, never max_dist
    assert all(net.t[i].state.dist < n for i in net.alive)


def test_rejoin_of_smaller_id_takes_over() -> None:
    net = Net(ring(8))
    net.rounds_until_bfs(10)
    net.alive.discard(0)
    net.rounds_until_bfs(30)
    net.alive.add(0)
    net.t[0] = SpanningTree(0, 2, 64, 3.0)  # new incarnation
    net.rounds_until_bfs(10)


def test_partition_each_side_roots_at_its_min() -> None:
    adj = {i: set() for i in range(6)}
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]:
        adj[a].add(b)
        adj[b].add(a)
    net = Net(adj)
    net.rounds_until_bfs(10)
    net.adj[2].discard(3)
    net.adj[3].discard(2)
    for _ in range(15):
        net.round()
    assert {net.t[i].state.root for i in (0, 1, 2)} == {0}
    assert {net.t[i].state.root for i in (3, 4, 5)} == {3}


def test_split_horizon_and_tree_neighbours() -> None:
    t = SpanningTree(5, 1, 8, 10.0)
    t.observe(3, TreeState(3, 1, 1, 0, NO_PARENT), 0.0)
    t.observe(4, TreeState(3, 1, 1, 1, 5), 0.0)  # 4 declares 5 as parent: never 5's parent
    t.observe(6, TreeState(3, 1, 1, 2, 5), 0.0)
    assert t.recompute(0.0, {3, 4, 6})
    assert t.state == TreeState(3, 1, 1, 1, 3)
    assert t.neighbors({3, 4, 6}) == {3, 4, 6}
    assert t.neighbors({3, 4}) == {3, 4}  # a dead child is not a tree neighbour


def test_prefers_current_parent_on_ties() -> None:
    t = SpanningTree(9, 1, 8, 10.0)
    t.observe(4, TreeState(0, 1, 1, 2, 1), 0.0)
    t.recompute(0.0, {4})
    t.observe(2, TreeState(0, 1, 1, 2, 1), 0.0)
    assert not t.recompute(0.0, {2, 4}) and t.state.parent == 4


def test_max_dist_caps_distances() -> None:
    n = 10
    adj = {i: set() for i in range(n)}
    for i in range(n - 1):
        adj[i].add(i + 1)
        adj[i + 1].add(i)
    net = Net(adj, max_dist=4)
    for _ in range(20):
        net.round()
    assert net.t[4].state.root == 0 and net.t[5].state.root == 5  # too far: own root


@pytest.mark.parametrize("seed", range(4))
def test_memoized_recompute_equals_the_full_recompute(seed: int) -> None:
    """The simulator's memo (a frozen live set; re-advertisements of the same position do
    not invalidate it) against a twin recomputing from scratch (a plain set) on one
    asynchronous trace: random beacons, observations, a root that dies and comes back,
    and links that go down and up."""
    r = np.random.default_rng(seed)
    n = 12
    adj = random_connected(n, seed + 10)
    fast = {i: SpanningTree(i, 1, 16, 2.0, heartbeat_s=0.5) for i in adj}
    slow = {i: SpanningTree(i, 1, 16, 2.0, heartbeat_s=0.5) for i in adj}
    up = set(adj)
    live = {i: frozenset(adj[i]) for i in adj}
    now = 0.0
    for step in range(3000):
        now += float(r.exponential(0.02))
        i = int(r.integers(0, n))
        if step % 400 == 399:  # the root (agent 0) dies or returns
            up.symmetric_difference_update({0})
        if i not in up:
            continue
        if r.random() < 0.02:  # a link changes: a new frozen live set
            j = int(r.choice(sorted(adj[i])))
            live[i] = live[i] ^ {j}
        if r.random() < 0.2:
            fast[i].beacon()
            slow[i].beacon()
        else:
            j = int(r.choice(sorted(adj[i])))
            if j in up and j in live[i]:
                st = fast[j].state
                assert fast[i].observe(j, st, now, 10) == slow[i].observe(j, st, now, 10)
        a = fast[i].recompute(now, live[i])
        b = slow[i].recompute(now, set(live[i]))
        assert a == b and fast[i].state == slow[i].state, (step, i)
        assert fast[i].neighbors(live[i]) == slow[i].neighbors(set(live[i]))
