"""Fused summaries of many agents equal the pooled posterior; the deterministic-W limit is DTC."""

from __future__ import annotations

import numpy as np
import pytest
from reference import RTOL_EXACT, dtc_predictive_mean, posterior_u_paper

from swarmgp.fusion.encoders import AnalyticEncoder
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.predict import predict
from swarmgp.fusion.psi import psi1, psi2_sum
from swarmgp.fusion.summary import fuse


@pytest.mark.parametrize("A", [2, 10, 100])
def test_fused_equals_pooled_posterior(A):
    rng = np.random.default_rng(A)
    d, m = 2, 30
    enc = make_encoding(EncodingSpec(d=d, m=m, seed=3))
    hyper = Hyperparameters.initial(d, lengthscale=0.7, sigma=0.2, sn=0.2)
    X = rng.normal(size=(A * 7, d))
    y = np.sin(X @ np.array([1.0, -0.5])) + 0.1 * rng.normal(size=A * 7)
    locals_ = []
    for a in range(A):
        e = AnalyticEncoder(enc)
        sl = slice(7 * a, 7 * (a + 1))
        e.add_batch(X[sl][:3], y[sl][:3], hyper)
        e.add_batch(X[sl][3:], y[sl][3:], hyper)
        locals_.append(e.summary())
    fused = fuse(locals_, m, enc.hash)
    pooled = AnalyticEncoder(enc)
    pooled.add_batch(X, y, hyper)
    assert fused.max_rel_diff(pooled.summary()) <= RTOL_EXACT
    assert (fused.n_obs, fused.n_agents) == (A * 7, A)

    # and against the paper's eq. (2), in the original coordinates, by explicit inverses
    m_u, S_u = posterior_u_paper(
        enc.K, psi2_sum(X, enc.Z, hyper), psi1(X, enc.Z, hyper).T @ y, hyper.sn2
    )
    mom = fused.moments()
    np.testing.assert_allclose(enc.L @ mom.mean, m_u, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(enc.L @ mom.cov() @ enc.L.T, S_u, rtol=1e-6, atol=1e-8)


def test_deterministic_w_limit_is_dtc():
    rng = np.random.default_rng(7)
    d, m = 2, 25
    enc = make_encoding(EncodingSpec(d=d, m=m, design="grid", scale=2.5, jitter=1e-8))
    W = np.array([[1.3, 0.2], [-0.4, 0.9]])
    hyper = Hyperparameters(W, np.full((d, d), -40.0), np.log(1.5), np.log(0.1))
    X = rng.uniform(-1.5, 1.5, size=(60, d))
    y = np.cos(X[:, 0]) * X[:, 1] + 0.1 * rng.normal(size=60)
    e = AnalyticEncoder(enc)
    e.add_batch(X, y, hyper)
    Xs = rng.uniform(-1.5, 1.5, size=(20, d))
    mean, _ = predict(Xs, e.summary(), enc, hyper)

    # input-space inducing points W^-1 z; f kernel s^2 exp(-|W(x - x')|^2 / 2), k_fu = s k(Wx, z)
    Zx = np.linalg.solve(W, enc.Z.T).T

    def kern(A_, B_):
        TA, TB = A_ @ W.T, B_ @ W.T
        return hyper.s**2 * np.exp(-0.5 * ((TA[:, None] - TB[None]) ** 2).sum(-1))

    # DTC with u_f = s u(I): same model, so the predictive means agree
    ref = dtc_predictive_mean(X, y, Xs, Zx, kern, hyper.sn2)
    np.testing.assert_allclose(mean, ref, rtol=1e-6, atol=1e-6)
