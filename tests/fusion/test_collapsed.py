"""The collective mode's numerical core against slow, direct references (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import (
    RTOL_EXACT,
    collapsed_bound_direct,
    se_kernel_ard,
    sgpr_bias_predict,
)
from scipy.optimize import minimize

from swarmgp.fusion import (
    CollectiveParams,
    EmptyBatchError,
    NonFiniteError,
    NotPositiveDefinite,
    ShapeError,
    Stats,
    add_stats,
    assemble_grad,
    batch_stats,
    bound_and_stat_grads,
    collapsed_bound,
    feature_parts,
    features,
    fit_pooled,
    inducing_grad,
    initial_params,
    kernel_factors,
    local_grad_contribution,
    penalized_bound,
    pooled_bound_and_grad,
    posterior,
    predict_collective,
    refit_scale_noise,
    sum_stats,
)
from swarmgp.fusion.linalg import right_solve_lower
from swarmgp.fusion.metrics import nlpd

M, D = 7, 2


def _params(rng, m=M, d=D, log_sb=-0.35667494393873245):  # log(0.7)
    return CollectiveParams(
        np.log(rng.uniform(0.6, 1.5, d)),
        rng.normal(size=(m, d)),
        np.log(1.2),
        np.log(0.4),
        log_sb,
    )


def _data(rng, n, d=D):
    X = rng.normal(size=(n, d))
    y = np.sin(2.0 * X[:, 0]) + 0.5 * X[:, -1] + 0.3 * rng.normal(size=n) + 0.8
    return X, y


def _split(X, y, sizes):
    cuts = np.cumsum(sizes)[:-1]
    return list(zip(np.split(X, cuts), np.split(y, cuts), strict=True))


def _ell(p):
    return np.exp(p.log_ell)


# ---------------------------------------------------------------------------- features, stats


def test_features_match_direct_nystrom():
    rng = np.random.default_rng(0)
    p = _params(rng)
    X, y = _data(rng, 40)
    Phi = features(X, p)
    assert Phi.shape == (40, M + 1)
    assert np.array_equal(Phi[:, M], np.ones(40))
    Kzz = se_kernel_ard(p.Z, p.Z, _ell(p)) + p.jitter * np.eye(M)
    Kxz = se_kernel_ard(X, p.Z, _ell(p))
    Q = Kxz @ np.linalg.inv(Kzz) @ Kxz.T
    np.testing.assert_allclose(Phi[:, :M] @ Phi[:, :M].T, Q, rtol=0, atol=1e-10)
    st = batch_stats(X, y, p)
    st.validate()
    np.testing.assert_allclose(st.G, Phi.T @ Phi, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.g, Phi.T @ y, rtol=1e-12, atol=1e-12)
    assert st.yy == pytest.approx(float(y @ y), rel=1e-14) and st.n == 40
    assert st.G[M, M] == 40.0


def test_stats_sum_is_exact_commutative_and_associative():
    rng = np.random.default_rng(1)
    p = _params(rng)
    X, y = _data(rng, 90)
    a, b, c = (batch_stats(Xi, yi, p) for Xi, yi in _split(X, y, [20, 30, 40]))
    pooled = batch_stats(X, y, p)
    ab_c = add_stats(add_stats(a, b), c)
    a_bc = add_stats(a, add_stats(b, c))
    assert np.array_equal(add_stats(a, b).G, add_stats(b, a).G)
    for s in (ab_c, a_bc, sum_stats([c, a, b]), sum_stats([a, b, c], m=M)):
        np.testing.assert_allclose(s.G, pooled.G, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.g, pooled.g, rtol=1e-12, atol=1e-12)
        assert s.yy == pytest.approx(pooled.yy, rel=1e-13) and s.n == 90
    zero = Stats.zeros(M)
    assert np.array_equal(add_stats(a, zero).G, a.G)
    assert sum_stats([], m=M).n == 0
    with pytest.raises(EmptyBatchError):
        sum_stats([])
    with pytest.raises(ShapeError):
        add_stats(a, Stats.zeros(M + 1))


def test_pack_unpack_round_trip_is_bit_exact():
    rng = np.random.default_rng(2)
    p = _params(rng)
    st = batch_stats(*_data(rng, 33), p)
    v = st.pack()
    assert v.dtype == np.float64 and v.shape == ((M + 1) * (M + 2) // 2 + M + 3,)
    back = Stats.unpack(v, M)
    assert np.array_equal(back.G, st.G) and np.array_equal(back.g, st.g)
    assert back.yy == st.yy and back.n == st.n
    with pytest.raises(ShapeError):
        Stats.unpack(v[:-1], M)
    bad = v.copy()
    bad[-1] = 2.5
    with pytest.raises(ShapeError):
        Stats.unpack(bad, M)


def test_validate_rejects_bad_statistics():
    rng = np.random.default_rng(3)
    p = _params(rng)
    st = batch_stats(*_data(rng, 25), p)
    G_nan = st.G.copy()
    G_nan[1, 2] = G_nan[2, 1] = np.nan
    with pytest.raises(NonFiniteError):
        Stats(G_nan, st.g, st.yy, st.n).validate()
    G_asym = st.G.copy()
    G_asym[0, 1] += 1e-3
    with pytest.raises(NotPositiveDefinite):
        Stats(G_asym, st.g, st.yy, st.n).validate()
    G_big = st.G.copy()
    G_big[0, 1] = G_big[1, 0] = 10.0 * np.sqrt(st.G[0, 0] * st.G[1, 1]) + 1.0
    with pytest.raises(NotPositiveDefinite):
        Stats(G_big, st.g, st.yy, st.n).validate()
    with pytest.raises(ShapeError):
        Stats(st.G[:-1, :-1], st.g, st.yy, st.n).validate()
    with pytest.raises(ShapeError):
        Stats(st.G, st.g, st.yy, -1).validate()
    with pytest.raises(ShapeError):
        Stats(st.G, st.g, st.yy, st.n + 1).validate()  # bias entry G[m, m] must equal n
    with pytest.raises(NonFiniteError):
        Stats(st.G, st.g, np.inf, st.n).validate()
    with pytest.raises(ShapeError):
        batch_stats(np.zeros((3, D + 1)), np.zeros(3), p)
    with pytest.raises(NonFiniteError):
        batch_stats(np.full((3, D), np.nan), np.zeros(3), p)


# ---------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("sb", [1e-9, 0.7, 3.0])
def test_bound_from_stats_equals_direct_reference(sb):
    rng = np.random.default_rng(4)
    p = _params(rng, log_sb=np.log(sb))
    X, y = _data(rng, 80)
    got = collapsed_bound(batch_stats(X, y, p), p)
    ref_sb = 0.0 if sb < 1e-6 else sb  # "without bias": sigma_b -> 0
    want = collapsed_bound_direct(X, y, p.Z, _ell(p), p.s, p.sn, ref_sb, p.jitter)
    assert got == pytest.approx(want, rel=RTOL_EXACT)
    assert bound_and_stat_grads(batch_stats(X, y, p), p.log_s, p.log_sn, p.log_sb)[0] == got


def test_distributed_gradient_equals_pooled_and_finite_differences():
    rng = np.random.default_rng(5)
    p = _params(rng)
    X, y = _data(rng, 120)
    parts = _split(X, y, [7, 40, 1, 30, 42])
    # all-reduce 1: statistics; every agent then holds the same fused statistics
    fused = sum_stats(batch_stats(Xa, ya, p) for Xa, ya in parts)
    bound, dG, dg, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb)
    # all-reduce 2: gradient contributions through each agent's own features
    contrib = sum(local_grad_contribution(Xa, ya, p, dG, dg) for Xa, ya in parts)
    grad = np.concatenate([contrib, direct])

    b_pool, g_pool = pooled_bound_and_grad(X, y, p)
    assert bound == pytest.approx(b_pool, rel=1e-12)
    assert grad.shape == p.to_vector().shape
    assert np.max(np.abs(grad - g_pool)) <= RTOL_EXACT * np.max(np.abs(g_pool))

    theta = p.to_vector()
    fd = np.empty_like(theta)
    eps = 1e-6
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        hi = pooled_bound_and_grad(X, y, CollectiveParams.from_vector(theta + e, M, D))[0]
        lo = pooled_bound_and_grad(X, y, CollectiveParams.from_vector(theta - e, M, D))[0]
        fd[i] = (hi - lo) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.max(np.abs(fd)))


@pytest.mark.parametrize("static", [False, True])
def test_the_path_through_L_from_fused_statistics_equals_the_per_agent_sum(static):
    """The warm-up's gradient round: each agent back-propagates through its cross kernel
    only, and the path through L = chol(K_ZZ) is added once from the fused statistics."""
    rng = np.random.default_rng(15)
    kw = {"static_dims": (0,), "m_static": 3} if static else {}
    p0 = initial_params(np.full(D, -2.0), np.full(D, 2.0), M + 3, 4, **kw)
    p = p0.like(p0.to_vector() + 0.1 * rng.normal(size=p0.to_vector().shape))
    X, y = _data(rng, 90)
    parts = _split(X, y, [5, 40, 1, 44])
    fs = kernel_factors(p)
    fused = sum_stats(batch_stats(Xa, ya, p, fs) for Xa, ya in parts)
    _, dG, dg, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb, p.static)
    per_agent = sum(local_grad_contribution(Xa, ya, p, dG, dg) for Xa, ya in parts)
    cross = sum(
        local_grad_contribution(Xa, ya, p, dG, dg, factors=fs, through_L=False) for Xa, ya in parts
    )
    split = cross + inducing_grad(fused, p, dG, dg, fs)
    assert np.max(np.abs(split - per_agent)) <= RTOL_EXACT * np.max(np.abs(per_agent))
    assert np.max(np.abs(cross - per_agent)) > 1e-3 * np.max(np.abs(per_agent))  # L matters
    _, g_pool = pooled_bound_and_grad(X, y, p)
    grad = assemble_grad(p, split, direct)
    assert np.max(np.abs(grad - g_pool)) <= RTOL_EXACT * np.max(np.abs(g_pool))


@pytest.mark.parametrize("static", [False, True])
def test_shared_feature_parts_give_the_same_numbers(static):
    """The warm-up passes the statistics round's feature parts to the gradient round: the
    results are bit-identical to computing them twice; parts of other rows are refused."""
    rng = np.random.default_rng(16)
    kw = {"static_dims": (0,), "m_static": 3} if static else {}
    p = initial_params(np.full(D, -2.0), np.full(D, 2.0), M + 3, 4, **kw)
    X, y = _data(rng, 30)
    fs = kernel_factors(p)
    parts = feature_parts(X, p, fs)
    a, b = batch_stats(X, y, p, fs), batch_stats(X, y, p, parts=parts)
    assert np.array_equal(a.G, b.G) and np.array_equal(a.g, b.g)
    _, dG, dg, _ = bound_and_stat_grads(a, p.log_s, p.log_sn, p.log_sb, p.static)
    g1 = local_grad_contribution(X, y, p, dG, dg, factors=fs, through_L=False)
    g2 = local_grad_contribution(X, y, p, dG, dg, factors=fs, through_L=False, parts=parts)
    assert np.array_equal(g1, g2)
    with pytest.raises(ShapeError):
        batch_stats(X[:5], y[:5], p, parts=parts)


def test_check_finite_false_skips_only_the_nan_scan():
    """``check_finite=False`` (the warm-up's own, validated buffer) gives the same numbers;
    NaN then passes, the default refuses it; shapes are checked either way."""
    rng = np.random.default_rng(18)
    p = initial_params(np.full(D, -2.0), np.full(D, 2.0), M, 4)
    X, y = _data(rng, 20)
    a, b = batch_stats(X, y, p), batch_stats(X, y, p, check_finite=False)
    assert np.array_equal(a.G, b.G) and np.array_equal(a.g, b.g)
    _, dG, dg, _ = bound_and_stat_grads(a, p.log_s, p.log_sn, p.log_sb, p.static)
    g1 = local_grad_contribution(X, y, p, dG, dg)
    g2 = local_grad_contribution(X, y, p, dG, dg, check_finite=False)
    assert np.array_equal(g1, g2)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        feature_parts(Xn, p)
    assert np.isnan(feature_parts(Xn, p, check_finite=False)[0][2][0]).all()
    with pytest.raises(ShapeError):
        batch_stats(np.hstack([X, X[:, :1]]), y, p, check_finite=False)


@pytest.mark.parametrize("trans", [True, False])
def test_right_solve_lower_against_a_dense_solve(trans):
    rng = np.random.default_rng(17)
    A = rng.normal(size=(9, 9))
    L = np.linalg.cholesky(A @ A.T + 9 * np.eye(9))
    B = rng.normal(size=(4, 9))
    X = right_solve_lower(L, B, trans=trans)
    ref = B @ np.linalg.inv(L.T if trans else L)  # the slow, obvious reference
    assert X.flags.c_contiguous and X.shape == (4, 9)
    np.testing.assert_allclose(X, ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(X @ (L.T if trans else L), B, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------- posterior, predict


def test_fused_predictive_equals_sgpr_with_bias():
    rng = np.random.default_rng(6)
    p = _params(rng)
    X, y = _data(rng, 100)
    Xs = rng.normal(size=(30, D)) * 1.5
    fused = sum_stats(batch_stats(Xa, ya, p) for Xa, ya in _split(X, y, [25, 25, 50]))
    mean, var_f = predict_collective(Xs, fused, p)
    ref_mean, ref_var = sgpr_bias_predict(X, y, Xs, p.Z, _ell(p), p.s, p.sn, p.sb, p.jitter)
    np.testing.assert_allclose(mean, ref_mean, rtol=RTOL_EXACT, atol=RTOL_EXACT)
    np.testing.assert_allclose(var_f, ref_var, rtol=RTOL_EXACT, atol=RTOL_EXACT)
    w, L_P = posterior(fused, p)
    assert w.shape == (M + 1,) and np.allclose(L_P, np.tril(L_P))
    Dv = np.r_[np.full(M, p.s), p.sb]
    np.testing.assert_allclose(features(Xs, p) @ (Dv * w), mean, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- optimizers


#: The O(m) (s, sigma_n) bound against the O(m^3) one: two factorizations of the same P.
SCALE_NOISE_RTOL = 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scale_noise_bound_equals_the_full_bound_and_its_derivatives(seed):
    """The refit's arrowhead evaluation (one eigh, O(m) per point) gives the value and the
    (log s, log sigma_n) derivatives of bound_and_stat_grads, from tiny to large scales."""
    from swarmgp.fusion.collapsed import _ScaleNoiseBound

    rng = np.random.default_rng(seed)
    p0 = _params(rng)
    X, y = _data(rng, 120)
    st = batch_stats(X, y, p0)
    f = _ScaleNoiseBound(st, p0.log_sb)
    for log_s, log_sn in [(0.0, -1.0), (-5.0, 0.5), (3.0, -4.0), (p0.log_s, p0.log_sn)]:
        v, ds, dn = f(log_s, log_sn)
        v0, _, _, d = bound_and_stat_grads(st, log_s, log_sn, p0.log_sb)
        scale = abs(v0) + st.n  # derivatives are sums over the n rows
        assert abs(v - v0) <= SCALE_NOISE_RTOL * scale
        assert abs(ds - d[0]) <= SCALE_NOISE_RTOL * scale
        assert abs(dn - d[1]) <= SCALE_NOISE_RTOL * scale


def test_refit_scale_noise_maximizes_the_pooled_bound():
    rng = np.random.default_rng(7)
    p0 = _params(rng)
    X, y = _data(rng, 150)
    fused = sum_stats(batch_stats(Xa, ya, p0) for Xa, ya in _split(X, y, [50, 50, 50]))
    p = refit_scale_noise(fused, p0)
    again = refit_scale_noise(fused, p0)
    assert (again.log_s, again.log_sn) == (p.log_s, p.log_sn)  # bit-identical
    assert p.hash() == p0.hash()  # the frozen encoding is untouched

    def neg(x):
        return -collapsed_bound_direct(
            X, y, p0.Z, _ell(p0), np.exp(x[0]), np.exp(x[1]), p0.sb, p0.jitter
        )

    ref = minimize(
        neg,
        [0.0, np.log(0.5)],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 2000},
    )
    np.testing.assert_allclose([p.log_s, p.log_sn], ref.x, atol=1e-5)
    _, _, _, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb)
    assert np.max(np.abs(direct[:2])) < 1e-5 * fused.n


def test_map_refit_maximizes_the_penalized_pooled_bound():
    """With a prior on log s the refit is the maximizer of bound + log prior (MAP)."""
    rng = np.random.default_rng(11)
    p0 = _params(rng)
    X, y = _data(rng, 120)
    fused = sum_stats(batch_stats(Xa, ya, p0) for Xa, ya in _split(X, y, [40, 80]))
    sd = 0.3
    p = refit_scale_noise(fused, p0, s_prior_sd=sd)
    assert p.hash() == p0.hash()

    def neg(x):
        b = collapsed_bound_direct(
            X, y, p0.Z, _ell(p0), np.exp(x[0]), np.exp(x[1]), p0.sb, p0.jitter
        )
        return -(b - 0.5 * x[0] ** 2 / sd**2)

    ref = minimize(
        neg, [0.0, np.log(0.5)], method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 2000},
    )  # fmt: skip
    np.testing.assert_allclose([p.log_s, p.log_sn], ref.x, atol=1e-5)
    np.testing.assert_allclose(penalized_bound(fused, p, sd), -ref.fun, rtol=1e-9)
    ml = refit_scale_noise(fused, p0)
    assert abs(p.log_s) <= abs(ml.log_s) + 1e-12  # the prior pulls log s toward 0
    with pytest.raises(ShapeError):
        refit_scale_noise(fused, p0, s_prior_sd=0.0)


def test_noise_only_refit_keeps_s_and_maximizes_over_sigma_n():
    rng = np.random.default_rng(12)
    p0 = _params(rng)
    X, y = _data(rng, 100)
    fused = batch_stats(X, y, p0)
    p = refit_scale_noise(fused, p0, fit_scale=False)
    assert p.log_s == p0.log_s and p.hash() == p0.hash()
    grid = np.linspace(p.log_sn - 0.05, p.log_sn + 0.05, 41)
    vals = [collapsed_bound(fused, p0.with_scale_noise(p0.log_s, v)) for v in grid]
    assert collapsed_bound(fused, p) >= max(vals) - 1e-9
    _, _, _, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb)
    assert abs(direct[1]) < 1e-5 * fused.n


def test_refit_rejects_empty_statistics():
    p = _params(np.random.default_rng(8))
    with pytest.raises(EmptyBatchError):
        refit_scale_noise(Stats.zeros(M), p)


def test_params_vector_round_trip_bounds_and_hash():
    lo, hi = np.array([-1.0, 0.0, 5.0]), np.array([1.0, 4.0, 6.0])
    p = initial_params(lo, hi, 12, seed=3)
    assert p.m == 12 and p.d == 3
    assert (p.Z >= lo).all() and (p.Z < hi).all()
    np.testing.assert_allclose(np.exp(p.log_ell), 0.5 * (hi - lo))
    assert (p.s, p.sb) == (1.0, 1.0) and p.sn == pytest.approx(0.5)
    q = CollectiveParams.from_vector(p.to_vector(), 12, 3)
    assert np.array_equal(q.to_vector(), p.to_vector()) and q.hash() == p.hash()
    assert p.with_scale_noise(0.3, -1.0).hash() == p.hash()
    assert initial_params(lo, hi, 12, seed=4).hash() != p.hash()
    bumped = CollectiveParams(p.log_ell, p.Z, p.log_s, p.log_sn, p.log_sb + 1e-12)
    assert bumped.hash() != p.hash()
    with pytest.raises(ShapeError):
        initial_params(lo, lo, 5)
    with pytest.raises(ShapeError):
        CollectiveParams.from_vector(p.to_vector()[:-1], 12, 3)


def _synthetic_task(seed, n=2000, n_test=1000):
    """y from the model itself at a fixed true theta: f = Phi D w, w ~ N(0, I), 6 x 6 grid Z."""
    rng = np.random.default_rng(seed)
    g = np.linspace(-2.0, 2.0, 6)
    Z = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)  # spacing < ell
    true = CollectiveParams(np.log([0.7, 1.1]), Z, 0.0, np.log(0.3), np.log(0.5))
    X = rng.uniform(-2.0, 2.0, size=(n + n_test, 2))
    Dv = np.r_[np.full(true.m, true.s), true.sb]
    f = features(X, true) @ (Dv * rng.standard_normal(true.m + 1))
    y = f + true.sn * rng.standard_normal(n + n_test)
    return true, X[:n], y[:n], X[n:], y[n:]


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_on_synthetic_task_matches_true_model_nlpd(seed):
    true, X, y, Xt, yt = _synthetic_task(seed)
    mean, var_f = predict_collective(Xt, batch_stats(X, y, true), true)
    nlpd_true = nlpd(yt, mean, var_f + true.sn**2)

    p0 = initial_params(X.min(0), X.max(0), 36, seed=0)
    parts = _split(X, y, [400] * 5)

    def evaluate(v):  # the swarm's two all-reduces, simulated over five agents
        p = CollectiveParams.from_vector(v, 36, 2)
        st = sum_stats(batch_stats(Xa, ya, p) for Xa, ya in parts)
        b, dG, dg, direct = bound_and_stat_grads(st, p.log_s, p.log_sn, p.log_sb)
        contrib = sum(local_grad_contribution(Xa, ya, p, dG, dg) for Xa, ya in parts)
        return b, np.concatenate([contrib, direct])

    res = fit_pooled(evaluate, p0, max_evals=100)
    assert res.bound > evaluate(p0.to_vector())[0]
    fused = sum_stats(batch_stats(Xa, ya, res.params) for Xa, ya in parts)
    p = refit_scale_noise(fused, res.params)
    mean, var_f = predict_collective(Xt, fused, p)
    nlpd_fit = nlpd(yt, mean, var_f + p.sn**2)
    assert nlpd_fit < nlpd_true + 0.05, (nlpd_fit, nlpd_true)
    assert p.sn == pytest.approx(true.sn, rel=0.1)


def test_fit_pooled_is_deterministic():
    rng = np.random.default_rng(9)
    X, y = _data(rng, 200)
    p0 = initial_params(X.min(0), X.max(0), 10, seed=1)

    def evaluate(v):
        return pooled_bound_and_grad(X, y, CollectiveParams.from_vector(v, 10, D))

    a = fit_pooled(evaluate, p0, max_evals=25)
    b = fit_pooled(evaluate, p0, max_evals=25)
    assert np.array_equal(a.params.to_vector(), b.params.to_vector()) and a.bound == b.bound
    assert a.n_evals <= 25 + 1
