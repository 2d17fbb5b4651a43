"""The warm-up all-reduce: bit-identical agreement on trees, rings and random graphs, under
loss, with a member leaving mid-warm-up, and with newcomers after it."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.fusion.collapsed import (
    CollectiveParams,
    batch_stats,
    initial_params,
    pooled_bound_and_grad,
)
from tests.agents._collective import CollectiveSwarm
from tests.agents._swarm import ring


def tree_edges(n: int) -> list[tuple[int, int]]:
    return [(i, (i - 1) // 2) for i in range(1, n)]


def random_edges(n: int, seed: int = 5) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    edges = {(i, int(rng.integers(0, i))) for i in range(1, n)}  # connected
    while len(edges) < 2 * n:
        a, b = sorted(int(x) for x in rng.choice(n, 2, replace=False))
        edges.add((b, a))
    return sorted(edges)


def assert_agreed(sw: CollectiveSwarm) -> None:
    th = sw.thetas()
    first = next(iter(th.values()))
    assert all(np.array_equal(v, first) for v in th.values())  # bit-identical
    hashes = {a.model.theta_hash for a in sw.agents.values()}
    assert len(hashes) == 1
    std = [a.model.std.vector() for a in sw.agents.values()]
    assert all(np.array_equal(s, std[0]) for s in std)


@pytest.mark.parametrize(
    ("name", "edges", "loss"),
    [
        ("tree", tree_edges(7), 0.0),
        ("ring", ring(6), 0.0),
        ("random", random_edges(8), 0.0),
        ("tree", tree_edges(7), 0.3),
        ("ring", ring(6), 0.3),
        ("random", random_edges(8), 0.3),
    ],
)
def test_bit_identical_theta_on_every_agent(name, edges, loss):
    n = max(max(e) for e in edges) + 1
    sw = CollectiveSwarm(n, edges, loss=loss, seed=3)
    sw.run_warmup(200.0)
    assert_agreed(sw)
    m0 = next(iter(sw.agents.values())).model
    assert m0.learned and m0.warmup_evals >= 2
    if loss > 0:
        assert sw.net.stats["lost"] > 0
    # every agent encoded its buffer: n_obs = its own rows
    for i, a in sw.agents.items():
        assert a.model.n_obs == sum(y.shape[0] for _, y in sw.data[i])


def test_learned_theta_matches_pooled_optimization():
    """Without loss no session restarts: the swarm's L-BFGS saw the pooled bound and gradient."""
    sw = CollectiveSwarm(5, tree_edges(5), seed=4, max_evals=6)
    sw.run_warmup(100.0)
    a0 = sw.agents[0]
    assert a0.counters["allreduce.restarts"] == 0
    std, p = a0.model.std, a0.model.params
    X = np.concatenate([X for i in sorted(sw.data) for X, _ in sw.data[i]])
    y = np.concatenate([y for i in sorted(sw.data) for _, y in sw.data[i]])
    Xs, ys = (X - std.mx) / std.sx, (y - std.my) / std.sy
    # the standardization is the pooled one
    assert np.allclose(std.mx, X.mean(0), rtol=1e-12) and np.isclose(std.sy, y.std(), rtol=1e-10)
    p0 = initial_params(std.lo, std.hi, sw.enc.inducing, sw.enc.seed)
    b0, _ = pooled_bound_and_grad(Xs, ys, p0)
    b1, _ = pooled_bound_and_grad(Xs, ys, p)
    assert b1 > b0  # the agreed theta improves the pooled bound


def test_member_leaving_mid_warmup_does_not_hang():
    sw = CollectiveSwarm(7, tree_edges(7), seed=6, max_evals=8)
    # run into the optimization, then kill a leaf
    while sw.agents[0].counters["allreduce.rounds"] < 4:
        sw.step()
    sw.kill(6)
    sw.run_warmup(200.0)
    assert_agreed(sw)
    assert sorted(sw.agents) == [0, 1, 2, 3, 4, 5]
    assert sw.agents[0].counters["allreduce.restarts"] >= 1


def test_newcomer_after_warmup_adopts_the_agreed_theta():
    sw = CollectiveSwarm(5, ring(5), seed=7, max_evals=4)
    sw.kill(4)
    sw.run_warmup(100.0)
    sw.net.down.discard(4)
    sw.start(4, feed=False)  # joins late with no data
    sw.run_warmup(50.0)
    assert_agreed(sw)
    X, y = sw.data[4][0]
    sw.agents[4].observe(X, y, sw.t)
    assert sw.agents[4].model.n_obs == y.shape[0]


def test_no_learn_stops_after_the_standardization_round():
    sw = CollectiveSwarm(4, ring(4), seed=8, learn=False)
    sw.run_warmup(50.0)
    assert_agreed(sw)
    a = sw.agents[0].model
    assert not a.learned and a.warmup_evals == 0
    p0 = initial_params(a.std.lo, a.std.hi, sw.enc.inducing, sw.enc.seed)
    assert np.array_equal(a.params.to_vector(), p0.to_vector())


def test_isolated_agent_warms_up_alone():
    sw = CollectiveSwarm(1, [], seed=9, max_evals=3)
    sw.run_warmup(20.0)
    assert sw.agents[0].model.phase == "stream"
    assert isinstance(sw.agents[0].model.params, CollectiveParams)
    st = batch_stats(np.zeros((1, 2)), np.zeros(1), sw.agents[0].model.params)
    assert st.n == 1
