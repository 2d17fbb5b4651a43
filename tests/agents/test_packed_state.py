"""The agent keeps its tree messages and fused sum packed (issue 12): same algebra, less memory."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from _swarm import HASH, Swarm, random_summary

from swarmgp.fusion.summary import Summary, subtract
from swarmgp.fusion.tree import tree_fused
from swarmgp.protocol.messages import Fuse

pytestmark = pytest.mark.timeout(120)


def _stored(a, k: int) -> Summary:
    e = a._incoming[k][2]
    return Summary.unpack(e.v, a.config.m, e.n_obs, e.n_agents, HASH)


def _same(x: Summary, y: Summary) -> bool:
    return (
        np.array_equal(x.P, y.P)
        and np.array_equal(x.h, y.h)
        and (x.n_obs, x.n_agents) == (y.n_obs, y.n_agents)
    )


def star(n: int) -> list[tuple[int, int]]:
    return [(0, i) for i in range(1, n)]


@pytest.mark.parametrize("wire", [True, False])
def test_packed_fusion_is_the_summary_algebra(wire: bool) -> None:
    """Fused sums and messages equal tree_fused / subtract of the stored messages, bit for bit,
    through full recomputes and the incremental path (one leaf of a star changing at a time)."""
    n, m = 9, 6
    sw = Swarm(n, star(n), m=m, seed=5, wire=wire)
    sw.run_until_consistent(5.0)
    rng = np.random.default_rng(11)
    for leaf in (3, 7, 3, 1):
        sw.locals[leaf] = random_summary(rng, m, n_obs=100 + leaf)
        sw.agents[leaf].set_local_summary(sw.locals[leaf], sw.t)
        sw.run_until_consistent(5.0)
        for a in sw.agents.values():
            incoming = {k: _stored(a, k) for k in a._incoming}
            f = a.fused_summary  # updated incrementally where only messages changed
            full = tree_fused(a.local_summary, incoming)
            assert f.max_rel_diff(full) <= 1e-14
            assert f.max_rel_diff(sw.exact()) <= 1e-12
            for b, M_ba in incoming.items():
                assert _same(a._message_summary(b), subtract(f, M_ba))
                assert a._incoming[b][2].v.shape == (m * (m + 3) // 2,)  # stored packed
            a.set_local_summary(a.local_summary, sw.t)  # a local change: a full recompute
            assert _same(a.fused_summary, full)
    assert sw.agents[0].counters["rx.fuse"] > 8  # the hub took changes of single leaves


def test_full_fused_summary_is_not_kept() -> None:
    """The full (m, m) fused summary is rebuilt on demand and reused only while it is held."""
    sw = Swarm(4, [(0, 1), (1, 2), (2, 3)], seed=2)
    sw.run_until_consistent(5.0)
    a = sw.agents[1]
    s = a.fused_summary
    assert a.fused_summary is s  # held: the same object
    del s
    gc.collect()
    assert a._fused_ref is not None and a._fused_ref() is None  # dropped: not kept alive


def test_fuse_of_another_encoding_is_rejected_not_fused() -> None:
    sw = Swarm(3, [(0, 1), (1, 2)], seed=4, wire=False)
    sw.run_until_consistent(5.0)
    a = sw.agents[1]
    before = a.fused_summary
    inc = sw.agents[0].config.incarnation
    for s in (
        Summary(np.eye(6), np.zeros(6), 1, 1, "another00000000"),  # another encoding
        Summary(np.eye(5), np.zeros(5), 1, 1, HASH),  # another size
    ):
        msg = Fuse(0, inc, 10**6 + s.m, 1, 10**6, sw.agents[0].tree.state, s)
        a.on_message(msg, sw.t)
    assert a.counters["rejected.encoding_mismatch"] == 2
    assert _same(a.fused_summary, before)
