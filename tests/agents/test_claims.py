"""Forged and inflated claims on an unsecured in-memory swarm: each attack is refused or
recovered from, and the swarm is consistent again within a bounded virtual time."""

from __future__ import annotations

import numpy as np
from _swarm import HASH, Swarm, random_summary, ring

from swarmgp.agents.peers import Admit, Limits, PeerTable, incarnation_limit
from swarmgp.agents.tree import SpanningTree
from swarmgp.protocol.messages import Fuse, Goodbye, Heartbeat, Hello, StatusRequest, TreeState

N = 6


def converged_swarm(seed: int = 3) -> Swarm:
    sw = Swarm(N, ring(N), seed=seed)
    sw.run_until_consistent(5.0)
    return sw


def inject(sw: Swarm, victim: int, msg) -> None:
    sw._send(victim, sw.agents[victim].on_message(msg, sw.t))


def bound(sw: Swarm) -> float:
    t = sw.timing
    return 3 * t.peer_timeout_s + 2 * t.root_timeout_s + (N + 4) * t.heartbeat_s


def test_incarnation_limit_both_clocks() -> None:
    lim = Limits()
    assert incarnation_limit(3, 0.0, 1.0, lim) < 2**40  # simulator counters
    ns = 1_700_000_000 * 10**9
    assert ns + 10**9 < incarnation_limit(ns, 0.0, 1.0, lim) < ns + 10**12
    t = PeerTable(1.0)
    t.add(1)
    assert t.admit(1, 2**64 - 1, 0.0, 1, limit=100) is Admit.FUTURE
    assert t.get(1).incarnation == -1


def test_inflated_incarnation_refused_and_recovered() -> None:
    sw = converged_swarm()
    victim, name = 2, 1
    inject(sw, victim, Hello(name, 2**64 - 1, 1))  # far beyond any clock: refused
    assert sw.agents[victim].counters["rejected.incarnation_future"] == 1
    assert sw.agents[victim].peers.get(name).incarnation == sw.agents[name].config.incarnation
    # an inflation within the bound supersedes the real life only until it falls silent
    inject(sw, victim, Hello(name, sw.agents[name].config.incarnation + 1000, 1))
    for _ in range(int(bound(sw) / sw.dt)):
        sw.step()
    assert sw.agents[victim].peers.get(name).incarnation == sw.agents[name].config.incarnation
    assert sw.run_until_consistent(bound(sw)) < bound(sw)


def test_forged_root_freshness_recovers() -> None:
    sw = converged_swarm()
    victim, name = 3, 2
    real = sw.agents[name]
    p = sw.agents[victim].peers.get(name)
    forged = TreeState(0, sw.agents[0].config.incarnation, 2**63 - 1, 1, 0)
    inject(sw, victim, Heartbeat(name, real.config.incarnation, p.state_seq + 1, forged))
    assert sw.agents[victim].counters["rejected.root_seq_jump"] == 1  # the growth cap
    # with no history to cap against (a fresh view), the claim sticks only for a while
    forged2 = TreeState(0, sw.agents[0].config.incarnation, 2**62, 1, 0)
    sw.agents[victim].tree._fresh.pop(0)
    inject(sw, victim, Heartbeat(name, real.config.incarnation, 2**62, forged2))
    took = sw.run_until_consistent(bound(sw))
    assert took < bound(sw)
    for _ in range(int(3 * sw.timing.root_timeout_s / sw.dt)):
        sw.step()
    assert sw.consistent() and all(a.tree.state.root == 0 for a in sw.agents.values())


def test_spoofed_goodbye() -> None:
    sw = converged_swarm()
    victim, name = 1, 2
    inc = sw.agents[name].config.incarnation
    inject(sw, victim, Goodbye(name, inc + 7, 10**9))  # not the peer's incarnation
    assert sw.agents[victim].counters["drop.goodbye_mismatch"] == 1
    assert name in sw.agents[victim].peers.live()
    inject(sw, victim, Goodbye(name, inc, 2**62))  # right incarnation: isolates briefly
    assert name not in sw.agents[victim].peers.live()
    took = sw.run_until_consistent(bound(sw))
    assert took < bound(sw) and name in sw.agents[victim].peers.live()


def test_hello_flood_bounded() -> None:
    sw = converged_swarm()
    victim = 0
    for k in range(3000):
        inject(sw, victim, Hello(1000 + k, 1, 1, f"tcp://10.0.0.1:{k}"))
    a = sw.agents[victim]
    assert len(a.peers) <= a.limits.max_peers
    assert a.counters["drop.peer_table_full"] > 0
    took = sw.run_until_consistent(bound(sw))
    assert took < bound(sw)
    for _ in range(int(12 * sw.timing.peer_timeout_s / sw.dt)):
        sw.step()
    assert len(a.peers) == 2 and len(a.take_removed_peers()) > 0  # fakes pruned
    assert sw.consistent()


def test_implausible_counts_and_huge_status_request() -> None:
    sw = converged_swarm()
    victim = 1
    a = sw.agents[victim]
    nb = 0 if 0 in a.tree_neighbors else 2
    p = a.peers.get(nb)
    bad = random_summary(np.random.default_rng(5), sw.m)
    bad = type(bad)(bad.P, bad.h, 10**9, 10**7, HASH)
    fp = a.fused_summary.n_agents
    inject(
        sw,
        victim,
        Fuse(nb, p.incarnation, p.max_seq + 1, victim, 99, sw.agents[nb].tree.state, bad),
    )
    assert a.counters["rejected.implausible_counts"] == 1 and a.fused_summary.n_agents == fp
    X = np.zeros((a.limits.max_status_rows + 1, 1))
    out = a.on_message(StatusRequest(1 << 62, 0, 1, 7, X), sw.t)
    assert out[0][1].info["predict_error"] and not out[0][1].predictions
    assert a.counters["rejected.status_rows"] == 1
    assert sw.run_until_consistent(bound(sw)) < bound(sw)


def test_duplicate_id_detected(caplog) -> None:
    sw = converged_swarm()
    victim, name = 1, 2
    real = sw.agents[name].config.incarnation
    inject(sw, victim, Hello(name, real + 1, 1))  # a second process with the same id
    for _ in range(int(2 * sw.timing.peer_timeout_s / sw.dt)):
        sw.step()  # the real one keeps talking with its older incarnation
        inject(
            sw,
            victim,
            Heartbeat(name, real + 1, 10**6 + int(sw.t * 1000), sw.agents[name].tree.state),
        )
    assert sw.agents[victim].counters["duplicate_id"] > 0
    assert "DUPLICATE ID" in caplog.text


def test_tree_window_rebaseline_keeps_dead_root_dead() -> None:
    t = SpanningTree(5, 1, 16, 1.0, heartbeat_s=0.1)
    t.observe(1, TreeState(0, 1, 10, 1, 0), 0.0)
    # the root dies: its stale value is repeated, never rising above the window's max
    for k in range(40):
        t.observe(1, TreeState(0, 1, 10, 1, 0), 0.1 * k)
    assert not t.root_alive(0, 4.0)
