"""The opt-in per-agent offset (site effect) of the collective model against direct references."""

from __future__ import annotations

import numpy as np
import pytest
from reference import RTOL_EXACT, collapsed_bound_site_direct, site_posterior_direct

from swarmgp.fusion.collapsed import (
    CollectiveParams,
    SiteStats,
    batch_stats,
    features,
    initial_params,
    predict_site,
    refit_scale_site,
    site_adjust,
    site_bound,
    site_bound_and_grads,
    site_local_contribution,
    site_pooled_bound_and_grad,
    sum_site_stats,
    theta_bounds,
)

M, D = 7, 2
SIZES = [7, 40, 1, 30, 42]


def _params(rng, tau=0.6):
    return CollectiveParams(
        np.log(rng.uniform(0.6, 1.5, D)), rng.normal(size=(M, D)), np.log(1.2), np.log(0.4),
        np.log(0.7), log_tau=np.log(tau),
    )  # fmt: skip


def _parts(rng, sizes=SIZES):
    out = []
    for k in sizes:
        X = rng.normal(size=(k, D))
        y = np.sin(2.0 * X[:, 0]) + 0.3 * rng.normal(size=k) + 0.6 * rng.normal() + 0.8
        out.append((X, y))
    return out


def _adj(parts, p):
    return sum_site_stats(site_adjust(batch_stats(X, y, p), p) for X, y in parts)


@pytest.mark.parametrize("tau", [1e-3, 0.6, 3.0])
def test_site_bound_from_stats_equals_block_covariance_reference(tau):
    rng = np.random.default_rng(11)
    p = _params(rng, tau)
    parts = _parts(rng)
    got = site_bound(_adj(parts, p), p)
    want = collapsed_bound_site_direct(
        parts, p.Z, np.exp(p.log_ell), p.s, p.sn, p.sb, p.tau, p.jitter
    )
    assert got == pytest.approx(want, rel=RTOL_EXACT)


def _torch_bound(theta, parts, jitter):
    """The block-covariance bound in torch (autograd gives the pooled gradient)."""
    torch = pytest.importorskip("torch")
    d, m = D, M
    log_ell, Z = theta[:d], theta[d : d + m * d].reshape(m, d)
    log_s, log_sn, log_sb, log_tau = theta[-4], theta[-3], theta[-2], theta[-1]
    w = torch.exp(-log_ell)

    def k(A, B):
        diff = (A * w)[:, None, :] - (B * w)[None, :, :]
        return torch.exp(-0.5 * (diff**2).sum(-1))

    X = torch.as_tensor(np.concatenate([a for a, _ in parts]))
    y = torch.as_tensor(np.concatenate([b for _, b in parts]))
    n = X.shape[0]
    Kzz = k(Z, Z) + jitter * torch.eye(m, dtype=torch.float64)
    Kxz = k(X, Z)
    Qk = Kxz @ torch.linalg.solve(Kzz, Kxz.T)
    s2, sn2 = torch.exp(2 * log_s), torch.exp(2 * log_sn)
    C = s2 * Qk + torch.exp(2 * log_sb) * torch.ones(n, n, dtype=torch.float64)
    blocks = torch.block_diag(*[torch.ones(len(b), len(b), dtype=torch.float64) for _, b in parts])
    C = C + sn2 * torch.eye(n, dtype=torch.float64) + torch.exp(2 * log_tau) * blocks
    L = torch.linalg.cholesky(C)
    alpha = torch.cholesky_solve(y[:, None], L)[:, 0]
    ll = -0.5 * (n * np.log(2 * np.pi) + 2 * torch.log(torch.diagonal(L)).sum() + y @ alpha)
    return ll - s2 * (n - torch.trace(Qk)) / (2 * sn2)


def test_distributed_site_gradient_equals_pooled_autograd_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    p = _params(rng)
    parts = _parts(rng)
    # all-reduce 1: every agent's adjusted statistics under theta
    fused = _adj(parts, p)
    bound, dG, dg, tc, direct = site_bound_and_grads(fused, p.log_s, p.log_sn, p.log_sb)
    # all-reduce 2: every agent's contribution through its own rows (one site each)
    k = D * (1 + M)
    tot = sum(site_local_contribution(X, y, p, dG, dg, tc) for X, y in parts)
    grad = np.concatenate([tot[:k], [direct[0], direct[1] + tot[k], direct[2], tot[k + 1]]])
    assert grad.shape == p.to_vector().shape
    b2, g2 = site_pooled_bound_and_grad(parts, p)
    assert b2 == bound and np.array_equal(g2, grad)

    theta = torch.tensor(p.to_vector(), dtype=torch.float64, requires_grad=True)
    ref = _torch_bound(theta, parts, p.jitter)
    ref.backward()
    g_ref = theta.grad.numpy()
    assert bound == pytest.approx(float(ref.detach()), rel=RTOL_EXACT)
    assert np.max(np.abs(grad - g_ref)) <= RTOL_EXACT * np.max(np.abs(g_ref))


def test_site_gradient_matches_finite_differences():
    rng = np.random.default_rng(13)
    p = _params(rng)
    parts = _parts(rng, [5, 20, 12])
    _, g = site_pooled_bound_and_grad(parts, p)
    th = p.to_vector()
    fd = np.empty_like(th)
    for i in range(th.size):
        e = np.zeros_like(th)
        e[i] = 1e-6
        hi = site_pooled_bound_and_grad(
            parts, CollectiveParams.from_vector(th + e, M, D, site=True)
        )
        lo = site_pooled_bound_and_grad(
            parts, CollectiveParams.from_vector(th - e, M, D, site=True)
        )
        fd[i] = (hi[0] - lo[0]) / 2e-6
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.max(np.abs(fd)))


@pytest.mark.parametrize("agent", [None, 0, 2, 4])
def test_site_predictive_equals_explicit_linear_model(agent):
    rng = np.random.default_rng(14)
    p = _params(rng)
    parts = _parts(rng)
    Xs = rng.normal(size=(9, D)) * 1.5
    own = None if agent is None else batch_stats(*parts[agent], p)
    mean, var = predict_site(Xs, _adj(parts, p), p, own)
    Phi = features(Xs, p)
    nys = p.s**2 * np.maximum(1.0 - (Phi[:, :M] ** 2).sum(1), 0.0)
    rm, rv = site_posterior_direct(
        parts, Xs, agent, p.Z, np.exp(p.log_ell), p.s, p.sn, p.sb, p.tau, p.jitter
    )
    np.testing.assert_allclose(mean, rm, rtol=RTOL_EXACT, atol=RTOL_EXACT)
    np.testing.assert_allclose(var - nys, rv, rtol=RTOL_EXACT, atol=RTOL_EXACT)


def test_unseen_site_adds_tau_squared_and_empty_agent_is_unseen():
    rng = np.random.default_rng(15)
    p = _params(rng)
    parts = _parts(rng)
    Xs = rng.normal(size=(4, D))
    adj = _adj(parts, p)
    m0, v0 = predict_site(Xs, adj, p, None)
    m1, v1 = predict_site(Xs, adj, p, batch_stats(np.zeros((0, D)), np.zeros(0), p))
    np.testing.assert_array_equal(m0, m1)
    np.testing.assert_allclose(v0, v1, rtol=1e-14)
    p0 = CollectiveParams(p.log_ell, p.Z, p.log_s, p.log_sn, p.log_sb, p.jitter, np.log(1e-12))
    _, v_small = predict_site(Xs, _adj(parts, p0), p0, None)
    np.testing.assert_allclose(v0 - v_small, p.tau**2, rtol=0.2)  # tau^2 on top


def test_site_refit_of_scale_maximizes_the_fused_bound():
    rng = np.random.default_rng(16)
    p = _params(rng)
    parts = _parts(rng)
    adj = _adj(parts, p)
    q = refit_scale_site(adj, p)
    assert q.log_sn == p.log_sn and q.log_tau == p.log_tau and q.hash() == p.hash()
    b = site_bound(adj, q)
    for ds in (-1e-3, 1e-3):
        assert site_bound(adj, q.with_scale_noise(q.log_s + ds, q.log_sn)) <= b
    # the adjusted statistics do not depend on s: the refit from fused sums is exact
    b_direct = collapsed_bound_site_direct(
        parts, q.Z, np.exp(q.log_ell), q.s, q.sn, q.sb, q.tau, q.jitter
    )
    assert b == pytest.approx(b_direct, rel=RTOL_EXACT)


def test_site_params_vector_bounds_hash_and_pack():
    rng = np.random.default_rng(17)
    p = _params(rng)
    v = p.to_vector()
    assert v.shape == (D + M * D + 4,)
    q = CollectiveParams.from_vector(v, M, D, site=True)
    assert np.array_equal(q.to_vector(), v) and q.hash() == p.hash()
    assert len(theta_bounds(p)) == v.size
    plain = CollectiveParams(p.log_ell, p.Z, p.log_s, p.log_sn, p.log_sb)
    assert plain.hash() != p.hash() and not plain.site and plain.tau == 0.0
    assert p.hash() != p.with_scale_noise(p.log_s, p.log_sn + 0.1).hash()  # sigma_n frozen
    assert p.hash() == p.with_scale_noise(p.log_s + 0.1, p.log_sn).hash()
    st = _adj(_parts(rng), p)
    back = SiteStats.unpack(st.pack(), M)
    assert np.array_equal(back.pack(), st.pack())
    ip = initial_params(-np.ones(D), np.ones(D), M, tau=0.5)
    assert ip.site and ip.tau == pytest.approx(0.5)
    assert not initial_params(-np.ones(D), np.ones(D), M).site
