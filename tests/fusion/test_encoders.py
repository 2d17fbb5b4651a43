"""Online encoders: importance sampling is unbiased and matches the analytic encoder."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.fusion.encoders import AnalyticEncoder, ImportanceEncoder
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.errors import EmptyBatchError, NonFiniteError, ShapeError
from swarmgp.fusion.hyper import Hyperparameters

PRIOR = Hyperparameters(np.zeros((2, 2)), np.zeros((2, 2)), 0.0, np.log(0.5))


def _data(seed, n=15):
    r = np.random.default_rng(seed)
    X = 0.5 * r.normal(size=(n, 2))
    return X, np.sin(X[:, 0]) + 0.1 * r.normal(size=n)


def test_importance_equals_analytic_when_q_is_prior_and_samples_many():
    enc = make_encoding(EncodingSpec(d=2, m=12, seed=1))
    X, y = _data(0)
    an = AnalyticEncoder(enc)
    an.add_batch(X, y, PRIOR)
    im = ImportanceEncoder(enc, 20_000, np.random.default_rng(0))
    im.add_batch(X[:7], y[:7])
    im.add_batch(X[7:], y[7:])
    assert im.ess(PRIOR) == pytest.approx(20_000)
    assert im.summary(PRIOR).max_rel_diff(an.summary()) < 0.02


def test_importance_estimator_is_unbiased():
    # q(W) away from the prior: average the raw estimates of C over independent sample sets
    enc = make_encoding(EncodingSpec(d=2, m=6, seed=2))
    X, y = _data(1, n=5)
    q = Hyperparameters(
        np.array([[0.5, 0.0], [0.2, 0.6]]), np.log(np.full((2, 2), 0.8)), 0.0, np.log(0.5)
    )
    an = AnalyticEncoder(enc)
    an.add_batch(X, y, q)
    exact = an.summary()
    reps = [ImportanceEncoder(enc, 50, np.random.default_rng(100 + r)) for r in range(400)]
    for e in reps:
        e.add_batch(X, y)
    ests = np.stack([e.summary(q).pack() for e in reps])  # [reps, k]
    mean = ests.mean(0)
    se = ests.std(0, ddof=1) / np.sqrt(len(reps))
    z = (mean - exact.pack()) / np.maximum(se, 1e-12)
    # unbiased: the standardized error is within 4.5 standard errors on every entry
    assert np.max(np.abs(z)) < 4.5


def test_reweighting_cost_does_not_touch_history_and_caches():
    enc = make_encoding(EncodingSpec(d=2, m=8))
    im = ImportanceEncoder(enc, 10, np.random.default_rng(0))
    X, y = _data(2)
    im.add_batch(X, y)
    s1 = im.summary(PRIOR)
    assert im.summary(PRIOR) is s1
    moved = Hyperparameters(0.1 * np.ones((2, 2)), np.zeros((2, 2)), 0.0, np.log(0.5))
    s2 = im.summary(moved)
    assert s2 is not s1 and s2.max_rel_diff(s1) > 0
    assert 1.0 <= im.ess(moved) <= 10.0


@pytest.mark.parametrize(
    "X, y, exc",
    [
        (np.zeros((0, 2)), np.zeros(0), EmptyBatchError),
        (np.zeros((3, 3)), np.zeros(3), ShapeError),
        (np.zeros((3, 2)), np.zeros(4), ShapeError),
        (np.full((3, 2), np.nan), np.zeros(3), NonFiniteError),
        (np.zeros((3, 2)), np.array([0.0, np.inf, 1.0]), NonFiniteError),
        (np.array([["a", "b"]]), np.zeros(1), ShapeError),
    ],
)
def test_bad_batches_raise_and_leave_state_unchanged(X, y, exc):
    enc = make_encoding(EncodingSpec(d=2, m=8))
    for e in (AnalyticEncoder(enc), ImportanceEncoder(enc, 5, np.random.default_rng(0))):
        e.add_batch(*_data(3), PRIOR)
        before = e.summary(PRIOR).pack().copy()
        with pytest.raises(exc):
            e.add_batch(X, y, PRIOR)
        assert np.array_equal(e.summary(PRIOR).pack(), before)
        assert e.n_obs == 15
