"""SimNetwork: loss, duplication, bursty loss, partitions, latency, churn at seeded rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swarmgp.fusion.summary import prior_summary
from swarmgp.protocol.messages import Fuse, Goodbye, TreeState
from swarmgp.sim.clock import ClockError, EventQueue, VirtualClock
from swarmgp.sim.network import (
    DRAWS_PER_MESSAGE,
    HEADER_BYTES,
    ChurnEvent,
    GilbertElliott,
    LinkStreams,
    NetworkConfig,
    NetworkError,
    Partition,
    SimNetwork,
    estimate_size,
    poisson_churn,
)

N = 20000


def _send_many(net: SimNetwork, n: int = N, links: int = 1) -> list[list[float]]:
    msg = Goodbye(0, 0, 1)
    return [net.transmit(0, 1 + (i % links), msg, float(i)) for i in range(n)]


def _within(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_bernoulli_loss_rate(p: float) -> None:
    net = SimNetwork(NetworkConfig(loss=p), seed=7)
    out = _send_many(net)
    lost = sum(1 for o in out if not o)
    assert lost == net.stats.lost
    assert _within(lost, N, p)


def test_duplication_rate_and_independence_from_loss() -> None:
    a = SimNetwork(NetworkConfig(loss=0.3), seed=7)
    b = SimNetwork(NetworkConfig(loss=0.3, duplicate=0.2), seed=7)
    oa, ob = _send_many(a), _send_many(b)
    # the same messages are lost whether or not duplication is on (per-concern generators)
    assert [bool(x) for x in oa] == [bool(x) for x in ob]
    dup = sum(1 for o in ob if len(o) == 2)
    assert _within(dup, N - b.stats.lost, 0.2)


def test_gilbert_elliott_mean_and_bursts() -> None:
    ge = GilbertElliott.from_mean(0.3, burst=5.0)
    assert ge.mean_loss == pytest.approx(0.3)
    net = SimNetwork(NetworkConfig(bursty=ge), seed=3)
    lost = np.array([not o for o in _send_many(net, 50000)])
    assert abs(lost.mean() - 0.3) < 0.02
    # mean run length of losses is the burst length (Bernoulli would give 1/(1-p) = 1.43)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, lost.astype(int), 0]) != 0))[::2]
    assert 4.0 < runs.mean() < 6.0


def test_latency_reordering_and_size_term() -> None:
    cfg = NetworkConfig(base_latency_s=0.01, jitter_s=0.0, bandwidth_bps=1e6, reorder=0.0)
    net = SimNetwork(cfg, seed=0, m=20)
    s = prior_summary(20, "h")
    fuse = Fuse(0, 0, 1, 1, 1, TreeState(0, 0, 0, 0, -1), s)
    size = net.message_size(fuse)
    assert size >= 20 * 23 // 2 * 8
    t = net.transmit(0, 1, fuse, 1.0)
    assert t == [pytest.approx(1.0 + 0.01 + size / 1e6)]
    assert estimate_size(fuse) == HEADER_BYTES + 20 * 23 // 2 * 8
    jit = SimNetwork(NetworkConfig(jitter_s=0.01, reorder=0.5, reorder_delay_s=0.1), seed=1)
    times = [jit.transmit(0, 1, Goodbye(0, 0, i), 0.0)[0] for i in range(2000)]
    assert min(times) >= 0.005 and jit.stats.reordered > 800
    assert any(
        b < a for a, b in zip(times, times[1:], strict=False)
    )  # arrival order differs from send order


def test_partitions_block_both_ways_only_inside_window() -> None:
    part = Partition(10.0, 20.0, (frozenset({0, 1}),))
    net = SimNetwork(NetworkConfig(partitions=(part,)), seed=0)
    msg = Goodbye(0, 0, 1)
    assert net.transmit(0, 2, msg, 12.0) == [] and net.transmit(2, 0, msg, 12.0) == []
    assert net.transmit(0, 1, msg, 12.0) and net.transmit(2, 3, msg, 12.0)
    assert net.transmit(0, 2, msg, 20.0) and net.transmit(0, 2, msg, 9.99)
    assert not net.deliverable(0, 2, 15.0, True)
    assert not net.deliverable(0, 1, 15.0, False)
    assert net.stats.partitioned == 3 and net.stats.dead_dest == 1


def test_reproducible() -> None:
    cfg = NetworkConfig(loss=0.2, duplicate=0.1, reorder=0.2, jitter_s=0.01)
    assert _send_many(SimNetwork(cfg, 11), 3000) == _send_many(SimNetwork(cfg, 11), 3000)
    assert _send_many(SimNetwork(cfg, 11), 3000) != _send_many(SimNetwork(cfg, 12), 3000)


def test_poisson_churn_ends_before_end() -> None:
    ev = poisson_churn(list(range(50)), 2.0, 1.0, 30.0, np.random.default_rng(0), downtime_s=1.5)
    assert len(ev) > 20 and all(1.0 <= e.time <= 30.0 for e in ev)
    down: dict[int, float] = {}
    for e in ev:
        if e.kind in ("crash", "leave"):
            assert e.agent not in down
            down[e.agent] = e.time
        else:
            assert down.pop(e.agent) == pytest.approx(e.time - 1.5)
    assert not down


def test_bad_settings() -> None:
    with pytest.raises(NetworkError):
        NetworkConfig(loss=1.5)
    with pytest.raises(NetworkError):
        Partition(3.0, 2.0, ())
    with pytest.raises(NetworkError):
        ChurnEvent(1.0, 0, "explode")
    with pytest.raises(NetworkError):
        GilbertElliott.from_mean(0.9, burst=1.0)


def test_event_queue_tie_break_and_clock() -> None:
    q = EventQueue()
    for i, t in enumerate([2.0, 1.0, 2.0, 1.0]):
        q.push(t, 0, i)
    assert [q.pop()[3] for _ in range(4)] == [1, 3, 0, 2]
    c = VirtualClock()
    c.advance_to(1.0)
    with pytest.raises(ClockError):
        c.advance_to(0.5)
    with pytest.raises(ClockError):
        q.push(math.inf, 0)


@pytest.mark.parametrize("addressed", [True, False])
def test_link_streams_equal_one_generator_per_link(addressed: bool) -> None:
    # the compact table draws exactly what default_rng(SeedSequence(.., spawn_key + key)) does,
    # whatever the interleaving of links and however far the table grows
    links = LinkStreams(7, (2,))
    if not addressed:
        links._view = None  # the public-state fallback
    ref: dict[tuple[int, int], np.random.Generator] = {}
    order = np.random.default_rng(0).integers(0, 100, 600)
    for i in order:
        key = (int(i) % 13, int(i))
        g = ref.setdefault(
            key, np.random.default_rng(np.random.SeedSequence(7, spawn_key=(2, *key)))
        )
        assert np.array_equal(links.draw(key, DRAWS_PER_MESSAGE), g.random(DRAWS_PER_MESSAGE))
    assert len(links) == len(ref)
