"""Back-pressure, drop policy, async iteration, batching, and flat memory over 100k rows."""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from swarmgp.agents.sources import (
    BadRowError,
    Batcher,
    BoundedQueue,
    Observation,
    QueueClosed,
    SourceConfigError,
    SourcePump,
    iter_agent_batches,
    iter_batches,
    iter_queue,
    open_source,
)

pytestmark = pytest.mark.timeout(60)
DEADLINE_S = 10.0


def _poll(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.005)


def test_producer_blocks_when_learner_lags_and_nothing_is_dropped() -> None:
    q: BoundedQueue[int] = BoundedQueue(4)
    pump = SourcePump(range(100), q)
    pump.start()
    _poll(lambda: q.blocked >= 1 and len(q) == 4, "the producer to block")
    assert pump.is_alive() and q.n_put == 4  # held back, not dropped
    got = list(iter_queue(q, chunk=3))
    pump.join(DEADLINE_S)
    assert got == list(range(100))
    c = q.counters()
    assert c["dropped"] == 0 and c["high_water"] == 4 and c["got"] == 100


def test_drop_oldest_counts_drops() -> None:
    q: BoundedQueue[int] = BoundedQueue(3, policy="drop-oldest")
    for i in range(10):
        assert q.put(i)
    q.close()
    assert list(iter_queue(q)) == [7, 8, 9]
    assert q.dropped == 7 and q.n_put == 10


def test_put_timeout_and_closed_queue() -> None:
    q: BoundedQueue[int] = BoundedQueue(1)
    assert q.put(1) and not q.put(2, timeout=0.01)
    with pytest.raises(TimeoutError):
        BoundedQueue[int](1).get(timeout=0.0)
    q.close()
    with pytest.raises(QueueClosed):
        q.put(3)
    assert q.get() == 1  # drained after close
    with pytest.raises(QueueClosed):
        q.get()


def test_close_unblocks_a_waiting_producer() -> None:
    q: BoundedQueue[int] = BoundedQueue(1)
    pump = SourcePump(range(10), q)
    pump.start()
    _poll(lambda: q.blocked >= 1, "the producer to block")
    pump.stop(DEADLINE_S)
    assert not pump.is_alive()


def test_producer_error_reaches_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise BadRowError("malformed", "boom")

    q: BoundedQueue[int] = BoundedQueue(8)
    SourcePump(broken(), q).start()
    it = iter_queue(q)
    assert next(it) == 1
    with pytest.raises(BadRowError, match="boom"):
        next(it)


def test_bad_queue_config() -> None:
    with pytest.raises(SourceConfigError):
        BoundedQueue(0)
    with pytest.raises(SourceConfigError):
        BoundedQueue(2, policy="drop-newest")


def test_async_iteration_matches_sync() -> None:
    uri = "synthetic:agents=3,d=2,n=400,seed=5"
    want = list(open_source(uri))

    async def collect() -> list[Observation]:
        return [o async for o in open_source(uri)]

    got = asyncio.run(collect())
    assert got == want and len(got) == 1200


# --- batching -----------------------------------------------------------------------------


def _obs(agent: str, i: int, d: int = 2) -> Observation:
    return Observation(agent, float(i), np.full(d, float(i)), float(-i))


def test_batcher_groups_in_order() -> None:
    stream = [_obs("a", i) for i in range(7)]
    batches = list(iter_batches(stream, 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[0].X.shape == (3, 2) and batches[0].X.dtype == np.float64
    np.testing.assert_array_equal(batches[1].y, [-3.0, -4.0, -5.0])
    assert batches[2].now == 6.0 and batches[0].agent == "a"
    assert [len(b) for b in iter_batches(stream, 3, keep_partial=False)] == [3, 3]


def test_batches_are_not_overwritten_later() -> None:
    b = Batcher(2)
    b.add(_obs("a", 0))
    first = b.add(_obs("a", 1))
    b.add(_obs("a", 2))
    b.add(_obs("a", 3))
    assert first is not None
    np.testing.assert_array_equal(first.y, [0.0, -1.0])


def test_agent_batches_split_interleaved_stream() -> None:
    stream = [_obs("ab"[i % 2], i) for i in range(9)]
    out = [(b.agent, b.t.tolist()) for b in iter_agent_batches(stream, 2)]
    assert out == [
        ("a", [0.0, 2.0]),
        ("b", [1.0, 3.0]),
        ("a", [4.0, 6.0]),
        ("b", [5.0, 7.0]),
        ("a", [8.0]),
    ]


def test_batcher_rejects_wrong_dimension() -> None:
    b = Batcher(4)
    b.add(_obs("a", 0, d=2))
    with pytest.raises(BadRowError, match="wrong_dimension"):
        b.add(_obs("a", 1, d=3))
    with pytest.raises(SourceConfigError):
        Batcher(0)


@pytest.mark.timeout(120)
def test_100k_observations_through_queue_and_batcher_keep_memory_flat() -> None:
    n_total = 100_000
    src = open_source("synthetic:agents=4,d=3,n=25000,seed=1")
    q: BoundedQueue[Observation] = BoundedQueue(256)
    tracemalloc.start()
    try:
        pump = SourcePump(src, q)
        pump.start()
        n = 0
        rows = 0
        baseline = None
        for batch in iter_agent_batches(iter_queue(q), 50):
            n += 1
            rows += len(batch)
            if rows == 5_000:  # warmed up: every buffer allocated once
                baseline = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pump.join(DEADLINE_S)
    assert rows == n_total and n == n_total // 50 and q.dropped == 0
    assert baseline is not None
    growth = peak - baseline
    # Holding the stream would need > 20 MB; a bounded pipeline stays well under 2 MB.
    print(f"tracemalloc peak growth over 100k observations: {growth} bytes")
    assert growth < 2_000_000, f"peak grew by {growth} bytes"
