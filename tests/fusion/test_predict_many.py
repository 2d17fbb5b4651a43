"""predict_many (one Psi pass for many summaries under one q(W)) equals predict (issue 12)."""

from __future__ import annotations

import numpy as np

from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.predict import predict, predict_many, predictive_cache
from swarmgp.fusion.psi import pair_features, psi2_quadform, psi2_quadforms
from swarmgp.fusion.summary import Summary


def test_predict_many_equals_predict(rng):
    d, m = 3, 20
    enc = make_encoding(EncodingSpec(d=d, m=m))
    hyper = Hyperparameters.initial(d)
    sums = []
    for _ in range(5):
        B = rng.normal(size=(m, 3))
        sums.append(Summary(np.eye(m) + B @ B.T, rng.normal(size=m), 10, 1, enc.hash))
    X = rng.normal(size=(300, d))
    caches = [predictive_cache(s, enc) for s in sums]
    mean, var = predict_many(X, caches, enc, hyper)
    for i, s in enumerate(sums):
        m1, v1 = predict(X, s, enc, hyper)
        np.testing.assert_allclose(mean[i], m1, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(var[i], v1, rtol=1e-10, atol=1e-14)
    Qs = np.stack([c.Q for c in caches])
    many = psi2_quadforms(X, enc.Z, hyper, Qs, pair_features(enc.Z))
    for i in range(len(caches)):
        one = psi2_quadform(X, enc.Z, hyper, Qs[i])
        np.testing.assert_allclose(many[:, i], one, rtol=1e-12, atol=1e-12 * np.abs(one).max())
