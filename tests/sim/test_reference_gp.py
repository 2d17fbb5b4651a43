"""Centralized GPyTorch baselines."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.fusion.errors import EmptyBatchError, NonFiniteError, ShapeError
from swarmgp.sim.reference_gp import exact_gp_predict, kmeans_init, sgpr_pooled

#: The baseline must beat predicting the training mean by this factor in RMSE.
RMSE_GAIN = 3.0


def _smooth(X: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * X[:, 0]) * np.cos(X[:, 1])


def _data(seed: int, n: int, t: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y = _smooth(X) + 0.1 * rng.normal(size=n)
    Xs = rng.uniform(-2, 2, (t, 2))
    return X, y, Xs


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_sgpr_pooled_beats_the_mean_and_is_deterministic():
    X, y, Xs = _data(0, 400, 200)
    mean, var = sgpr_pooled(X, y, Xs, 25, iters=100, seed=0)
    assert mean.shape == var.shape == (200,)
    assert mean.dtype == var.dtype == np.float64
    assert np.all(var > 0) and np.all(np.isfinite(mean))
    f = _smooth(Xs)
    assert _rmse(mean, f) * RMSE_GAIN < _rmse(np.full_like(f, y.mean()), f)
    # the noise (0.1^2) is included in var_y
    assert np.median(var) > 0.5 * 0.1**2
    mean2, var2 = sgpr_pooled(X, y, Xs, 25, iters=100, seed=0)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_array_equal(var, var2)


def test_exact_gp_predict_beats_the_mean():
    X, y, Xs = _data(1, 120, 100)
    mean, var = exact_gp_predict(X, y, Xs, iters=80)
    f = _smooth(Xs)
    assert _rmse(mean, f) * RMSE_GAIN < _rmse(np.full_like(f, y.mean()), f)
    assert np.all(var > 0)


def test_kmeans_init_shapes():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 3))
    C = kmeans_init(X, 7, seed=0)
    assert C.shape == (7, 3) and np.isfinite(C).all()
    np.testing.assert_array_equal(C, kmeans_init(X, 7, seed=0))
    assert kmeans_init(X, 60, seed=0).shape == (60, 3)


def test_reference_gp_rejects_bad_inputs():
    X, y, Xs = _data(3, 20, 5)
    with pytest.raises(EmptyBatchError):
        sgpr_pooled(X[:0], y[:0], Xs, 5, iters=1)
    with pytest.raises(ShapeError):
        sgpr_pooled(X, y[:-1], Xs, 5, iters=1)
    with pytest.raises(ShapeError):
        sgpr_pooled(X, y, Xs[:, :1], 5, iters=1)
    with pytest.raises(ShapeError):
        sgpr_pooled(X, y, Xs, 0, iters=1)
    y_nan = y.copy()
    y_nan[0] = np.nan
    with pytest.raises(NonFiniteError):
        exact_gp_predict(X, y_nan, Xs, iters=1)
