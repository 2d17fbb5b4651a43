"""A large swarm's warm-up (issue 9): 100 agents on a ring (depth 50), some with fewer batches
than the warm-up asks for, completes without fallback in bounded virtual time."""

from __future__ import annotations

import numpy as np

from tests.agents._collective import CollectiveSwarm
from tests.agents._swarm import ring


def test_hundred_agents_on_a_ring_warm_up_without_fallback() -> None:
    n = 100
    sw = CollectiveSwarm(n, ring(n), m=4, max_evals=3, batches=2, batch_size=4, seed=11)
    # a tenth of the agents hold one batch only (fewer than warmup_batches = 2)
    for i in range(0, n, 10):
        sw.data[i] = sw.data[i][:1]
        model = sw.agents[i].model
        model._buffer = model._buffer[:1]
    took = sw.run_warmup(120.0)
    c = sw.agents[0].counters
    assert c["allreduce.gave_up"] == 0 and c["allreduce.restarts"] == 0
    ms = [a.model for a in sw.agents.values()]
    assert all(m.learned and m.warmup_evals >= 1 for m in ms)  # no fallback anywhere
    th = [m.params.to_vector() for m in ms]
    assert all(np.array_equal(t, th[0]) for t in th)
    assert sum(m.n_obs for m in ms) == sum(y.shape[0] for b in sw.data.values() for _, y in b)
    assert took < 120.0


def test_declared_input_range_sets_the_inducing_box() -> None:
    """A declared range replaces the observed box of that input (raw units -> standardized)."""
    from dataclasses import replace

    from swarmgp.agents.collective_model import CollectiveEncoding, _Standard, _with_box

    std = _Standard(np.array([10.0, 0.0]), np.array([2.0, 1.0]), 0.0, 1.0,
                    np.array([-1.0, -1.0]), np.array([1.0, 1.0]))  # fmt: skip
    b = _with_box(std, ((0.0, 50.0), (float("nan"), float("nan"))))
    assert np.allclose(b.lo, [-5.0, -1.0]) and np.allclose(b.hi, [20.0, 1.0])
    enc = CollectiveEncoding(d=2, inducing=4)
    assert replace(enc, box=((0.0, 1.0), (0.0, 1.0))).hash != enc.hash
