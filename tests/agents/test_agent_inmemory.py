"""The sans-I/O Agent over the in-memory network: exact fusion on any graph, under faults."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from _swarm import Swarm, random_summary, ring

from swarmgp.agents.config import TimingConfig
from swarmgp.protocol.messages import NO_PARENT

pytestmark = pytest.mark.timeout(120)


def random_graph(n: int, p: float, seed: int) -> list[tuple[int, int]]:
    """Connected random graph with cycles: a ring plus random chords."""
    rng = np.random.default_rng(seed)
    edges = set(ring(n))
    for a in range(n):
        for b in range(a + 2, n):
            if rng.random() < p:
                edges.add((a, b))
    return sorted(edges)


def tree_ok(sw: Swarm) -> None:
    """Parent pointers form one tree rooted at the smallest live id; edges are symmetric."""
    ids = set(sw.agents)
    root = min(ids)
    for i, a in sw.agents.items():
        st = a.tree.state
        assert st.root == root
        if i == root:
            assert st.parent == NO_PARENT and st.dist == 0
        else:
            assert st.parent in ids and sw.agents[st.parent].tree.state.dist == st.dist - 1
        for k in a.tree_neighbors:
            assert i in sw.agents[k].tree_neighbors
    assert sum(len(a.tree_neighbors) for a in sw.agents.values()) == 2 * (len(ids) - 1)


@pytest.mark.parametrize("graph", ["ring", "random", "line", "complete"])
def test_converges_to_exact_sum(graph: str) -> None:
    n = 9
    edges = {
        "ring": ring(n),
        "random": random_graph(n, 0.3, 1),
        "line": [(i, i + 1) for i in range(n - 1)],
        "complete": [(a, b) for a in range(n) for b in range(a + 1, n)],
    }[graph]
    sw = Swarm(n, edges, seed=3)
    sw.run_until_consistent(5.0)
    tree_ok(sw)
    for a in sw.agents.values():  # local summaries are never replaced
        assert a.local_summary is sw.locals[a.id]
    # stays consistent and quiet: no fusion traffic beyond periodic resends
    before = sum(a.counters["tx.fuse"] for a in sw.agents.values())
    for _ in range(40):
        sw.step()
    assert sw.consistent()
    resend_rounds = 40 * sw.dt / sw.timing.fuse_resend_s + 1
    assert sum(a.counters["tx.fuse"] for a in sw.agents.values()) - before <= (
        2 * (n - 1) * resend_rounds
    )


def _same_fused(clean: Swarm, faulty: Swarm) -> None:
    for i in clean.agents:
        a, b = clean.agents[i].fused_summary, faulty.agents[i].fused_summary
        assert b.max_rel_diff(a) <= 1e-9
        assert (b.n_agents, b.n_obs) == (a.n_agents, a.n_obs)


def test_faults_converge_to_same_result() -> None:
    n = 10
    edges = random_graph(n, 0.25, 7)
    clean = Swarm(n, edges, seed=5)
    clean.run_until_consistent(5.0)
    faulty = Swarm(n, edges, seed=5, loss=0.3, duplicate=0.3, reorder=0.3)
    faulty.run_until_consistent(30.0)
    _same_fused(clean, faulty)
    # then three rounds of new local summaries, the same in both swarms: each converges again
    # exactly, and the faults act on the traffic of every round
    rng = np.random.default_rng(17)
    for _ in range(3):
        for i in range(n):
            new = random_summary(rng, clean.m, n_obs=20 + i)
            for sw in (clean, faulty):
                sw.locals[i] = new
                sw.agents[i].model.set(new)
                sw._send(i, sw.agents[i].set_local_summary(new, sw.t))
        clean.run_until_consistent(5.0)
        faulty.run_until_consistent(30.0)
        _same_fused(clean, faulty)
    st = faulty.net.stats
    assert st["lost"] > 100 and st["duplicated"] > 100 and st["reordered"] > 100
    drops = sum(
        sum(v for k, v in a.counters.items() if k.startswith("drop.stale"))
        for a in faulty.agents.values()
    )
    assert drops > 0  # duplicates and reordering were seen and discarded


def test_local_update_propagates() -> None:
    sw = Swarm(6, ring(6), seed=2)
    sw.run_until_consistent(5.0)
    new = random_summary(np.random.default_rng(99), sw.m, n_obs=123)
    sw.locals[3] = new
    sw.agents[3].model.set(new)
    sw._send(3, sw.agents[3].set_local_summary(new, sw.t))
    took = sw.run_until_consistent(5.0)
    assert took < 1.0
    assert sw.agents[0].fused_summary.n_obs == sum(s.n_obs for s in sw.locals.values())


@pytest.mark.parametrize("victim", [0, 4])  # the root, and an inner agent
def test_crash_and_rejoin(victim: int) -> None:
    n = 8
    sw = Swarm(n, ring(n), seed=11)
    sw.run_until_consistent(5.0)
    sw.kill(victim)
    took = sw.run_until_consistent(10.0)
    # bounded re-formation: peer/root timeout plus a few beacon periods per hop
    assert took < sw.timing.peer_timeout_s + (n + 4) * sw.timing.heartbeat_s
    tree_ok(sw)
    assert all(a.fused_summary.n_agents == n - 1 for a in sw.agents.values())
    sw.start(victim)  # new incarnation, same id and data
    sw.run_until_consistent(10.0)
    tree_ok(sw)
    assert all(a.fused_summary.n_agents == n for a in sw.agents.values())


def test_goodbye_is_fast() -> None:
    n = 6
    sw = Swarm(n, ring(n), seed=4)
    sw.run_until_consistent(5.0)
    a = sw.agents[2]
    sw._send(2, a.stop(sw.t))
    sw.step()
    sw.kill(2)
    took = sw.run_until_consistent(10.0)
    assert took < sw.timing.peer_timeout_s  # no need to wait for expiry


def test_partition_heals() -> None:
    n = 8
    sw = Swarm(n, [(i, i + 1) for i in range(n - 1)], seed=6)  # a line
    sw.run_until_consistent(5.0)
    # cut the middle link by dropping its traffic in both directions
    real = sw.net._deliver

    def cut(src, dest, msg, real=real):
        if {src, dest} == {3, 4}:
            return None
        return real(src, dest, msg)

    sw.net._deliver = cut
    for _ in range(int(2.0 / sw.dt)):
        sw.step()
    left = [sw.agents[i].fused_summary for i in range(4)]
    right = [sw.agents[i].fused_summary for i in range(4, n)]
    ex_l = sw.exact({i: sw.locals[i] for i in range(4)})
    ex_r = sw.exact({i: sw.locals[i] for i in range(4, n)})
    assert max(s.max_rel_diff(ex_l) for s in left) <= 1e-9
    assert max(s.max_rel_diff(ex_r) for s in right) <= 1e-9
    sw.net._deliver = real
    sw.run_until_consistent(10.0)
    tree_ok(sw)


def test_deterministic_replay() -> None:
    def run() -> list[str]:
        sw = Swarm(7, random_graph(7, 0.3, 2), seed=8, loss=0.2, reorder=0.2)
        sw.run_until_consistent(20.0)
        return [repr(sorted(a.counters.items())) for a in sw.agents.values()] + [repr(sw.t)]

    assert run() == run()


def test_quiet_tick_does_nothing() -> None:
    sw = Swarm(3, ring(3), seed=1)
    sw.run_until_consistent(5.0)
    a = sw.agents[1]
    d = a.next_deadline()
    assert a.on_tick(d - 1e-6) == []


def _beats(sw: Swarm, periods: int) -> tuple[int, int]:
    """Heartbeats sent and peers expired over ``periods`` beacon periods."""
    before = sum(a.counters["tx.heartbeat"] for a in sw.agents.values())
    exp0 = sum(a.counters["expired"] for a in sw.agents.values())
    for _ in range(round(periods * sw.timing.heartbeat_s / sw.dt)):
        sw.step()
    sent = sum(a.counters["tx.heartbeat"] for a in sw.agents.values()) - before
    return sent, sum(a.counters["expired"] for a in sw.agents.values()) - exp0


def test_quiet_links_beacon_every_other_period_and_dead_peers_still_expire() -> None:
    """``quiet_every=2``: links off the tree beacon half as often, no live peer is expired,
    and a dead agent is still expired by every neighbour (tree or not) within its timeout
    plus the quiet grace, after which the rest of the swarm fuses exactly."""
    n = 6
    complete = [(a, b) for a in range(n) for b in range(a + 1, n)]  # 15 links, 5 on the tree
    sent = {}
    for k in (1, 2):
        sw = Swarm(n, complete, seed=5, timing=replace(TimingConfig.fast(), quiet_every=k))
        sw.run_until_consistent(5.0)
        sent[k], expired = _beats(sw, 40)
        assert expired == 0  # no false expiry on the quiet links
        assert sw.consistent()
    # 10 of 30 directed links are on the tree: (10 + 20 / 2) / 30 of the beacons
    assert 0.55 < sent[2] / sent[1] < 0.8, sent
    t = sw.timing
    sw.kill(4)  # a leaf of the tree (its parent is the root), a quiet link for the rest
    took = sw.run_until_consistent(t.peer_timeout_s + (t.quiet_every + 4) * t.heartbeat_s)
    assert took > t.peer_timeout_s - t.heartbeat_s  # it took an expiry, not a goodbye
    assert all(4 not in a.peers.live() for a in sw.agents.values())
    tree_ok(sw)
