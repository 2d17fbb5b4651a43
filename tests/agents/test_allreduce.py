"""The warm-up all-reduce: bit-identical agreement on trees, rings and random graphs, under
loss, with a member leaving mid-warm-up, and with newcomers after it."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.agents.collective_model import CollectiveModel, WarmupMemo, start_ell_factors
from swarmgp.fusion.collapsed import (
    CollectiveParams,
    batch_stats,
    initial_params,
    pooled_bound_and_grad,
    theta_bounds,
)
from swarmgp.fusion.errors import SwarmGPError
from swarmgp.fusion.lbfgs import BoxLBFGS
from swarmgp.fusion.sample import sample_points, sample_rows
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


def _pooled_rows(sw, std):
    """Every agent's rows in id order, raw and standardized by the agreed ``std``."""
    X = np.concatenate([X for i in sorted(sw.data) for X, _ in sw.data[i]])
    y = np.concatenate([y for i in sorted(sw.data) for _, y in sw.data[i]])
    return X, y, (X - std.mx) / std.sx, (y - std.my) / std.sy


def _scaled_lbfgs(Xs, ys, params, x0, lo, hi, n, window=0, nats=0.0, floor=0):
    """BoxLBFGS on the pooled bound as the warm-up runs it: scaled by its first value; with
    ``window``, stopped before the next evaluation once the last ``window`` raised the best
    bound by less than ``nats`` each on average, after more than ``floor`` evaluations."""
    opt, scale, best = BoxLBFGS(x0, lo, hi, max_evals=n), None, []
    while (x := opt.ask()) is not None:
        if (
            window
            and len(best) > max(window, floor)
            and best[-1] - best[-1 - window] < nats * window
        ):
            break
        b, g = pooled_bound_and_grad(Xs, ys, params.like(x))
        scale = max(1.0, abs(b)) if scale is None else scale
        opt.tell(-b / scale, -g / scale)
        best.append(-opt.f_best * scale)
    return opt, scale


@pytest.mark.parametrize(
    ("name", "edges", "loss", "static"),
    [
        ("tree", tree_edges(7), 0.0, False),
        ("ring", ring(6), 0.0, False),
        ("random", random_edges(8), 0.0, False),
        ("tree", tree_edges(7), 0.3, False),
        ("ring", ring(6), 0.3, False),
        ("random", random_edges(8), 0.3, False),
        ("ring", ring(6), 0.0, True),
        ("random", random_edges(8), 0.3, True),
    ],
)
def test_bit_identical_theta_on_every_agent(name, edges, loss, static):
    n = max(max(e) for e in edges) + 1
    sw = CollectiveSwarm(n, edges, loss=loss, seed=3, static=static)
    sw.run_warmup(200.0)
    assert_agreed(sw)
    m0 = next(iter(sw.agents.values())).model
    assert m0.learned and m0.warmup_evals >= 2
    assert m0.params.m_static == (2 if static else 0)
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
    X, y, Xs, ys = _pooled_rows(sw, std)
    # the standardization is the pooled one
    assert np.allclose(std.mx, X.mean(0), rtol=1e-12) and np.isclose(std.sy, y.std(), rtol=1e-10)
    p0 = initial_params(std.lo, std.hi, sw.enc.inducing, sw.enc.seed)
    b0, _ = pooled_bound_and_grad(Xs, ys, p0)
    b1, _ = pooled_bound_and_grad(Xs, ys, p)
    assert b1 > b0  # the agreed theta improves the pooled bound


def test_static_warmup_fits_the_static_field_first_then_everything():
    """Stage 1 holds the joint scale at its floor, stage 2 frees it: the agreed theta equals a
    pooled two-stage L-BFGS run on the same data (no loss, so no restart)."""
    sw = CollectiveSwarm(5, tree_edges(5), seed=4, max_evals=10, static=True)
    sw.run_warmup(100.0)
    a0 = sw.agents[0]
    assert a0.counters["allreduce.restarts"] == 0
    std, p = a0.model.std, a0.model.params
    X, y, Xs, ys = _pooled_rows(sw, std)
    p0 = initial_params(std.lo, std.hi, 8, sw.enc.seed, static_dims=(0,), m_static=2)
    i = p0.d * (1 + p0.m_joint)
    lo = np.array([-np.inf if b[0] is None else b[0] for b in theta_bounds(p0)])
    hi = np.array([np.inf if b[1] is None else b[1] for b in theta_bounds(p0)])
    x0 = p0.to_vector()
    x0[i] = hi[i] = lo[i]

    one, _ = _scaled_lbfgs(Xs, ys, p0, x0, lo, hi, 5)  # per stage, as the model
    x1 = one.x_best.copy()
    x1[i] = np.log(0.5)
    hi[i] = np.log(1e3)
    two, _ = _scaled_lbfgs(Xs, ys, p0, x1, lo, hi, 10 - one.n_evals)
    np.testing.assert_allclose(p.to_vector(), two.x_best, rtol=1e-9, atol=1e-9)
    assert a0.model.warmup_evals == one.n_evals + two.n_evals
    assert p.log_s > lo[i] and p.m_static == 2


@pytest.mark.parametrize("static", [False, True])
def test_member_leaving_mid_warmup_does_not_hang(static):
    sw = CollectiveSwarm(7, tree_edges(7), seed=6, max_evals=8, static=static)
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


def test_static_stream_state_round_trips():
    """A streaming model with a static component restores its theta and statistics exactly."""
    sw = CollectiveSwarm(3, ring(3), seed=2, max_evals=4, static=True)
    sw.run_warmup(100.0)
    m = sw.agents[1].model
    fresh = CollectiveModel(sw.enc, sw.ar_timing)
    fresh.restore(m.state())
    assert fresh.phase == "stream" and fresh.theta_hash == m.theta_hash
    assert np.array_equal(fresh.params.to_vector(), m.params.to_vector())
    np.testing.assert_array_equal(fresh.summary().P, m.summary().P)
    bad = m.state()
    bad["final"] = bad["final"][:-1]  # the static block's scale cut off
    with pytest.raises(SwarmGPError):
        CollectiveModel(sw.enc, sw.ar_timing).restore(bad)


@pytest.mark.parametrize(("edges", "loss"), [(ring(6), 0.0), (random_edges(8), 0.3)])
def test_data_drawn_inducing_inputs_are_the_pooled_sample_on_every_agent(edges, loss):
    """--inducing-init data: round 0 merges every agent's bottom-k rows; every agent starts
    from the same Z, the standardized sample of the pooled warm-up inputs (and the static
    component's from the pooled sites)."""
    n = max(max(e) for e in edges) + 1
    sw = CollectiveSwarm(
        n, edges, loss=loss, seed=3, static=True, inducing_init="data", learn=False
    )
    sw.run_warmup(200.0)
    assert_agreed(sw)
    m0 = next(iter(sw.agents.values())).model
    X = np.concatenate([x for i in range(n) for x, _ in sw.data[i][:2]])
    k, ks = sw.enc.inducing - sw.enc.m_static, sw.enc.m_static
    pts = sample_points(sample_rows(X, k, sw.enc.seed), k, X.shape[1])
    sites = sample_points(sample_rows(X[:, :1], ks, sw.enc.seed + 1), ks, 1)
    std = m0.std
    np.testing.assert_allclose(m0.params.Z, (pts - std.mx) / std.sx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m0.params.Z_st, (sites - std.mx[:1]) / std.sx[:1], atol=1e-12)


def test_multi_start_warmup_equals_pooled_probes_then_the_best_continued():
    """Three starts (length-scales geometric from half the box to 1/m of it): each probed with
    (max_evals - 3 max_evals // 7) // 3 evaluations, then the best probe's point goes on with the
    rest; the agreed theta equals that schedule run on the pooled data, and every agent holds
    it."""
    sw = CollectiveSwarm(5, tree_edges(5), seed=4, max_evals=15, starts=3)
    sw.run_warmup(200.0)
    assert_agreed(sw)
    a0 = sw.agents[0]
    assert a0.counters["allreduce.restarts"] == 0
    std, p = a0.model.std, a0.model.params
    X, y, Xs, ys = _pooled_rows(sw, std)

    probes, used = [], 0
    assert start_ell_factors(3, 8) == pytest.approx((0.5, 0.25, 0.125))
    for ef in start_ell_factors(3, sw.enc.inducing):
        p0 = initial_params(std.lo, std.hi, sw.enc.inducing, sw.enc.seed, ell_factor=ef)
        bnds = theta_bounds(p0)
        lo = np.array([-np.inf if b[0] is None else b[0] for b in bnds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in bnds])
        opt, scale = _scaled_lbfgs(Xs, ys, p, p0.to_vector(), lo, hi, 3)
        probes.append((-opt.f_best * scale, opt.x_best))
        used += opt.n_evals
    best = max(probes, key=lambda q: q[0])
    last, _ = _scaled_lbfgs(Xs, ys, p, best[1], lo, hi, 15 - 3 * 3)
    np.testing.assert_allclose(p.to_vector(), last.x_best, rtol=1e-9, atol=1e-9)
    assert a0.model.warmup_evals == used + last.n_evals
    assert pooled_bound_and_grad(Xs, ys, p)[0] >= max(q[0] for q in probes) - 1e-9


def test_the_continuation_stops_where_the_pooled_fit_converges():
    """A budget the fit does not need: the probes take PROBE_EVALS each, and the best probe's
    continuation, after as many evaluations as the probes together, stops once its last
    CONVERGED_WINDOW evaluations raised the bound by less than CONVERGED_NATS_PER_EVAL each,
    before its budget; every agent holds the theta of that schedule run on the pooled data."""
    from swarmgp.agents.collective_model import (
        CONVERGED_NATS_PER_EVAL,
        CONVERGED_WINDOW,
        PROBE_EVALS,
    )

    budget = 100
    sw = CollectiveSwarm(5, tree_edges(5), seed=4, max_evals=budget, starts=3)
    sw.run_warmup(400.0)
    assert_agreed(sw)
    a0 = sw.agents[0]
    std, p = a0.model.std, a0.model.params
    _, _, Xs, ys = _pooled_rows(sw, std)
    probes, used = [], 0
    for ef in start_ell_factors(3, sw.enc.inducing):
        p0 = initial_params(std.lo, std.hi, sw.enc.inducing, sw.enc.seed, ell_factor=ef)
        bnds = theta_bounds(p0)
        lo = np.array([-np.inf if b[0] is None else b[0] for b in bnds])
        hi = np.array([np.inf if b[1] is None else b[1] for b in bnds])
        opt, scale = _scaled_lbfgs(Xs, ys, p, p0.to_vector(), lo, hi, PROBE_EVALS)
        probes.append((-opt.f_best * scale, opt.x_best))
        used += opt.n_evals
    best = max(probes, key=lambda q: q[0])
    rest = budget - 3 * PROBE_EVALS
    last, _ = _scaled_lbfgs(
        Xs, ys, p, best[1], lo, hi, rest, CONVERGED_WINDOW, CONVERGED_NATS_PER_EVAL,
        floor=3 * PROBE_EVALS,
    )  # fmt: skip
    assert 3 * PROBE_EVALS < last.n_evals < rest  # stopped by the rule, not the budget
    np.testing.assert_allclose(p.to_vector(), last.x_best, rtol=1e-9, atol=1e-9)
    assert a0.model.warmup_evals == used + last.n_evals


@pytest.mark.parametrize("loss", [0.0, 0.3])
def test_a_shared_warmup_memo_changes_nothing(loss):
    """The simulator's WarmupMemo: each statistics-round evaluation runs once for all agents,
    and every agent ends with the theta it reaches without the memo, bit for bit."""
    runs = {}
    for memo in (None, WarmupMemo()):
        sw = CollectiveSwarm(6, ring(6), loss=loss, seed=3, static=True, starts=3, memo=memo)
        sw.run_warmup(200.0)
        assert_agreed(sw)
        runs[memo is None] = next(iter(sw.agents.values())).model.params.to_vector()
        if memo is not None:
            assert memo.hits >= 5 * sw.agents[0].model.warmup_evals  # 6 agents, one computes
    assert np.array_equal(runs[True], runs[False])


def test_a_round_costs_one_message_per_direction_per_tree_edge():
    """Delayed acknowledgements: on a loss-free tree whose rounds complete within the delay,
    the UP answers the DOWN and the next DOWN answers the UP, so a round costs one Reduce per
    direction per tree edge (explicit acknowledgements would double it)."""
    from swarmgp.protocol.messages import Reduce

    n = 7
    sw = CollectiveSwarm(n, tree_edges(n), seed=2)
    sent = {"reduce": 0}
    send = sw._send

    def counting(i, out):
        out = list(out)
        sent["reduce"] += sum(isinstance(m, Reduce) for _, m in out)
        send(i, out)

    sw._send = counting
    sw.run_warmup(60.0)
    assert_agreed(sw)
    # rounds and repeated censuses are counted at the root only
    c = max((a.counters for a in sw.agents.values()), key=lambda k: k["allreduce.rounds"])
    rounds = c["allreduce.rounds"] + c["allreduce.census_again"] + 1  # + the FINAL
    ideal = 2 * (n - 1) * rounds
    assert sent["reduce"] <= 1.25 * ideal, (sent["reduce"], ideal)
