"""The collective model's static component (an additive field without the time input).

``f(x) = s u(W x) + s_st v(W_st x[static_dims]) + b``: every fast routine of
:mod:`swarmgp.fusion.collapsed` against an O(n^3) reference built from explicit kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import RTOL_EXACT, se_kernel_ard
from scipy.optimize import minimize

from swarmgp.fusion import (
    CollectiveParams,
    ShapeError,
    batch_stats,
    bound_and_stat_grads,
    collapsed_bound,
    features,
    fit_pooled,
    initial_params,
    local_grad_contribution,
    pooled_bound_and_grad,
    predict_collective,
    refit_scale_noise,
    sum_stats,
)
from swarmgp.fusion.collapsed import assemble_grad, theta_bounds

D, MJ, MS, DIMS = 3, 6, 4, (0, 1)


def _params(rng):
    return CollectiveParams(
        np.log(rng.uniform(0.6, 1.5, D)), rng.normal(size=(MJ, D)), np.log(0.9), np.log(0.4),
        np.log(0.7), static_dims=DIMS, log_ell_st=np.log(rng.uniform(0.8, 2.0, len(DIMS))),
        Z_st=rng.normal(size=(MS, len(DIMS))), log_s_st=np.log(0.6),
    )  # fmt: skip


def _data(rng, n):
    X = rng.normal(size=(n, D))
    # a field in the static inputs plus a short-lived space-time part
    y = np.cos(X[:, 0]) + 0.5 * X[:, 1] + np.sin(3 * X[:, 2]) * X[:, 0] + 0.3 * rng.normal(size=n)
    return X, y


def _nystrom(A, B, Z, ell, jitter):
    Kzz = se_kernel_ard(Z, Z, ell) + jitter * np.eye(Z.shape[0])
    return se_kernel_ard(A, Z, ell) @ np.linalg.inv(Kzz) @ se_kernel_ard(Z, B, ell)


def _Q(A, B, p):
    """The additive Nystrom prior covariance plus the bias, by explicit inverses."""
    st = list(p.static_dims)
    Qj = p.s**2 * _nystrom(A, B, p.Z, np.exp(p.log_ell), p.jitter)
    Qs = p.s_st**2 * _nystrom(A[:, st], B[:, st], p.Z_st, np.exp(p.log_ell_st), p.jitter)
    return Qj + Qs + p.sb**2


def _bound_direct(X, y, p):
    n = X.shape[0]
    C = _Q(X, X, p) + p.sn**2 * np.eye(n)
    _, logdet = np.linalg.slogdet(C)
    loglik = -0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.inv(C) @ y)
    Kff = n * (p.s**2 + p.s_st**2 + p.sb**2)
    return loglik - (Kff - np.trace(_Q(X, X, p))) / (2 * p.sn**2)


def _predict_direct(X, y, Xs, p):
    """DTC predictive of the additive model (weights view): mean and var_f, by inverses."""
    n = X.shape[0]
    C = _Q(X, X, p) + p.sn**2 * np.eye(n)
    Ksx = _Q(Xs, X, p)
    mean = Ksx @ np.linalg.solve(C, y)
    Qss = np.diag(_Q(Xs, Xs, p))
    var_q = Qss - np.einsum("ij,ji->i", Ksx, np.linalg.solve(C, Ksx.T))
    resid = p.s**2 + p.s_st**2 + p.sb**2 - Qss  # Nystrom residual of both components
    return mean, var_q + resid


def test_features_are_the_additive_nystrom_factor():
    rng = np.random.default_rng(0)
    p = _params(rng)
    X, _ = _data(rng, 30)
    Phi = features(X, p)
    assert Phi.shape == (30, MJ + MS + 1) and p.m == MJ + MS
    Dv = np.r_[np.full(MJ, p.s), np.full(MS, p.s_st), p.sb]
    np.testing.assert_allclose((Phi * Dv) @ (Phi * Dv).T, _Q(X, X, p), rtol=0, atol=1e-10)


def test_bound_from_stats_equals_direct_reference():
    rng = np.random.default_rng(1)
    p = _params(rng)
    X, y = _data(rng, 70)
    got = collapsed_bound(batch_stats(X, y, p), p)
    assert got == pytest.approx(_bound_direct(X, y, p), rel=RTOL_EXACT)


def test_distributed_gradient_equals_pooled_and_finite_differences():
    rng = np.random.default_rng(2)
    p = _params(rng)
    X, y = _data(rng, 90)
    cuts = np.cumsum([5, 40, 1, 44])[:-1]
    parts = list(zip(np.split(X, cuts), np.split(y, cuts), strict=True))
    fused = sum_stats(batch_stats(Xa, ya, p) for Xa, ya in parts)
    bound, dG, dg, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb, p.static)
    assert direct.shape == (4,)
    contrib = sum(local_grad_contribution(Xa, ya, p, dG, dg) for Xa, ya in parts)
    grad = assemble_grad(p, contrib, direct)
    b_pool, g_pool = pooled_bound_and_grad(X, y, p)
    assert bound == pytest.approx(b_pool, rel=1e-12)
    assert grad.shape == p.to_vector().shape == (len(theta_bounds(p)),)
    assert np.max(np.abs(grad - g_pool)) <= RTOL_EXACT * np.max(np.abs(g_pool))

    theta = p.to_vector()
    fd = np.empty_like(theta)
    eps = 1e-6
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = _bound_direct(X, y, p.like(theta + e)) - _bound_direct(X, y, p.like(theta - e))
        fd[i] /= 2 * eps
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.max(np.abs(fd)))


def test_fused_predictive_equals_direct_additive_predictive():
    rng = np.random.default_rng(3)
    p = _params(rng)
    X, y = _data(rng, 80)
    Xs = rng.normal(size=(25, D)) * 1.5
    fused = sum_stats(batch_stats(X[i::3], y[i::3], p) for i in range(3))
    mean, var_f = predict_collective(Xs, fused, p)
    ref_mean, ref_var = _predict_direct(X, y, Xs, p)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(var_f, ref_var, rtol=1e-8, atol=1e-8)


def test_refit_maximizes_the_pooled_bound_over_both_scales_and_noise():
    rng = np.random.default_rng(4)
    p0 = _params(rng)
    X = rng.normal(size=(120, D))
    # drawn from the model (both components present), so the optimum is interior
    C = _Q(X, X, p0.with_scale_noise(np.log(1.3), np.log(0.3), np.log(0.8)))
    y = np.linalg.cholesky(C + 0.09 * np.eye(120)) @ rng.normal(size=120)
    fused = batch_stats(X, y, p0)
    p = refit_scale_noise(fused, p0)
    assert p.hash() == p0.hash()

    def neg(x):
        return -_bound_direct(X, y, p0.with_scale_noise(x[0], x[2], x[1]))

    ref = minimize(neg, [p0.log_s, p0.log_s_st, p0.log_sn], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000})  # fmt: skip
    np.testing.assert_allclose([p.log_s, p.log_s_st, p.log_sn], ref.x, atol=1e-4)
    _, _, _, direct = bound_and_stat_grads(fused, p.log_s, p.log_sn, p.log_sb, p.static)
    assert np.max(np.abs(direct[[0, 1, 3]])) < 1e-5 * fused.n
    q = refit_scale_noise(fused, p0, fit_scale=False)
    assert (q.log_s, q.log_s_st) == (p0.log_s, p0.log_s_st) and q.log_sn != p0.log_sn


def test_vector_round_trip_hash_and_layout_checks():
    rng = np.random.default_rng(5)
    p = _params(rng)
    v = p.to_vector()
    q = CollectiveParams.from_vector(v, p.m, D, p.jitter, static_dims=DIMS, m_static=MS)
    assert np.array_equal(q.to_vector(), v) and q.hash() == p.hash()
    assert p.like(v).hash() == p.hash()
    # the static block is part of the frozen encoding; its scale is not
    assert p.with_scale_noise(0.0, 0.0, 1.0).hash() == p.hash()
    v2 = v.copy()
    v2[-2] += 1e-3  # a static inducing coordinate
    assert p.like(v2).hash() != p.hash()
    with pytest.raises(ShapeError):
        CollectiveParams.from_vector(v[:-1], p.m, D, static_dims=DIMS, m_static=MS)
    with pytest.raises(ShapeError):  # every input static: not a static component
        initial_params(np.zeros(2), np.ones(2), 8, static_dims=(0, 1), m_static=2)
    with pytest.raises(ShapeError):  # no joint inducing input left
        initial_params(-np.ones(D), np.ones(D), 4, static_dims=DIMS, m_static=4)
    with pytest.raises(ShapeError):  # the site effect does not combine with it
        CollectiveParams(p.log_ell, p.Z, 0.0, 0.0, 0.0, log_tau=0.0, static_dims=DIMS,
                         log_ell_st=p.log_ell_st, Z_st=p.Z_st)  # fmt: skip


def test_static_component_extrapolates_a_persistent_field_in_time():
    """Trained on early times only, the static field still predicts later times; the
    space-time product alone reverts to the bias there (the phenomenon it is for)."""
    rng = np.random.default_rng(6)
    n = 400

    def draw(t_lo, t_hi, k):
        X = np.column_stack(
            [rng.uniform(-2, 2, k), rng.uniform(-2, 2, k), rng.uniform(t_lo, t_hi, k)]
        )
        f = np.sin(1.5 * X[:, 0]) + np.cos(X[:, 1]) + 0.5 * np.sin(4 * X[:, 2])
        return X, f + 0.2 * rng.normal(size=k)

    X, y = draw(-2.0, 1.0, n)  # a window of several time length-scales
    Xs, ys = draw(5.0, 6.0, 300)  # far later: the joint part has decayed there
    lo, hi = X.min(0), X.max(0)
    scores = {}
    for name, ms in (("product", 0), ("additive", 10)):
        p0 = initial_params(lo, hi, 30, 0, static_dims=(0, 1) if ms else (), m_static=ms)

        def fit(start, bounds=None, p0=p0):
            run = fit_pooled(lambda v: pooled_bound_and_grad(X, y, p0.like(v)), start, 30, bounds)
            return run.params

        p = fit(p0)
        if ms:  # as the warm-up does: the static field alone first, then everything
            b = theta_bounds(p0)
            i = p0.d * (1 + p0.m_joint)  # log s of the joint component
            b[i] = (np.log(1e-3), np.log(1e-3))
            p = fit(fit(p0.with_scale_noise(np.log(1e-3), p0.log_sn), b).with_scale_noise(
                np.log(0.5), p0.log_sn))  # fmt: skip
        p = refit_scale_noise(batch_stats(X, y, p), p)
        mu, _ = predict_collective(Xs, batch_stats(X, y, p), p)
        scores[name] = float(np.sqrt(np.mean((mu - ys) ** 2)))
    # the static field alone scores 0.45 there (the time part's variance plus noise), the
    # training mean 0.99
    assert scores["additive"] < 0.55 < 2.0 < scores["product"], scores
