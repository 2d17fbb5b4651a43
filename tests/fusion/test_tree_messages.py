"""Tree message passing gives every node the exact sum after diameter rounds."""

from __future__ import annotations

import numpy as np
import pytest
from reference import RTOL_EXACT

from swarmgp.fusion.summary import Summary, fuse, prior_summary
from swarmgp.fusion.tree import tree_fused, tree_message

HASH = "t"


def random_tree(n, rng):
    parent = [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
    adj = {i: [] for i in range(n)}
    for i in range(1, n):
        adj[i].append(parent[i])
        adj[parent[i]].append(i)
    return adj


def diameter(adj):
    def far(s):
        dist = {s: 0}
        stack = [s]
        while stack:
            u = stack.pop()
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    stack.append(v)
        node = max(dist, key=dist.get)
        return node, dist[node]

    return far(far(0)[0])[1]


@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (7, 2), (60, 3), (1000, 4)])
def test_synchronous_rounds_reach_exact_sum_after_diameter(n, seed):
    rng = np.random.default_rng(seed)
    m = 3
    adj = random_tree(n, rng)
    locals_ = []
    for _ in range(n):
        B = rng.normal(size=(m, m))
        locals_.append(Summary(np.eye(m) + B @ B.T, rng.normal(size=m), 2, 1, HASH))
    exact = fuse(locals_, m, HASH)
    prior = prior_summary(m, HASH)
    inbox = {a: {b: prior for b in adj[a]} for a in range(n)}  # M^0 = nothing known
    for _ in range(diameter(adj) if n > 1 else 0):
        out = {a: {b: tree_message(locals_[a], inbox[a], b) for b in adj[a]} for a in range(n)}
        inbox = {a: {b: out[b][a] for b in adj[a]} for a in range(n)}
    for a in range(n):
        f = tree_fused(locals_[a], inbox[a])
        assert f.max_rel_diff(exact) <= RTOL_EXACT
        assert f.n_agents == n and f.n_obs == 2 * n
