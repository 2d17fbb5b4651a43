"""Predictive moments against Monte Carlo; numerical stress without NaN or failed factorizations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from reference import mc_predictive

from swarmgp.fusion.encoders import AnalyticEncoder
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.errors import NumericalWarning
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.predict import predict
from swarmgp.fusion.summary import fuse

#: Relative tolerance of predictive moments against Monte Carlo with 20,000 W samples.
RTOL_PRED_MC = 0.03


def test_predictive_moments_match_monte_carlo(rng):
    d, m = 2, 15
    enc = make_encoding(EncodingSpec(d=d, m=m, seed=4))
    h = Hyperparameters(
        np.array([[0.8, 0.1], [-0.2, 0.7]]), np.log(np.full((d, d), 0.25)), np.log(1.2), -1.5
    )
    X = rng.normal(size=(40, d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=40)
    e = AnalyticEncoder(enc)
    e.add_batch(X, y, h)
    s = e.summary()
    Xs = rng.normal(size=(6, d))
    mean, var = predict(Xs, s, enc, h)
    mom = s.moments()
    m_u = enc.L @ mom.mean
    S_u = enc.L @ mom.cov() @ enc.L.T
    mc_mean, mc_var = mc_predictive(
        Xs, m_u, S_u, enc.K, enc.Z, h.mu, h.sigma2, h.s, 20_000, np.random.default_rng(1)
    )
    scale = np.sqrt(mc_var).max()
    np.testing.assert_allclose(mean, mc_mean, atol=RTOL_PRED_MC * scale)
    np.testing.assert_allclose(var, mc_var, rtol=0.1, atol=RTOL_PRED_MC * scale**2)


@pytest.mark.parametrize("m, sn", [(400, 1e-6), (100, 1e-6), (50, 1e-3)])
def test_stress_duplicates_clusters_tiny_noise(m, sn):
    rng = np.random.default_rng(m)
    d = 2
    enc = make_encoding(EncodingSpec(d=d, m=m, seed=0))
    h = Hyperparameters.initial(d, lengthscale=0.5, sigma=0.05, sn=sn)
    base = rng.normal(size=(10, d))
    X = np.concatenate([np.repeat(base, 20, 0), base[0] + 1e-9 * rng.normal(size=(50, d))])
    y = np.sin(X.sum(1)) + sn * rng.normal(size=X.shape[0])
    summaries = []
    with warnings.catch_warnings():
        # a handled round-off clip may warn; anything else must not
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", NumericalWarning)
        for _ in range(3):
            e = AnalyticEncoder(enc)
            for lo in range(0, X.shape[0], 25):
                e.add_batch(X[lo : lo + 25], y[lo : lo + 25], h)
            summaries.append(e.summary())
        f = fuse(summaries, m, enc.hash)
        f.validate()
        mean, var = predict(rng.normal(size=(30, d)), f, enc, h)
    assert np.isfinite(mean).all() and np.isfinite(var).all() and (var > 0).all()
