"""LocalModel: bad input leaves it unchanged; learning runs; fusing two agents helps."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.agents.local_model import LocalModel, LocalModelConfig
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.errors import EmptyBatchError, NonFiniteError, ShapeError
from swarmgp.fusion.metrics import rmse
from swarmgp.fusion.summary import combine


def _f(X):
    return np.sin(2.0 * X[:, 0]) + 0.5 * np.cos(X[:, 1])


@pytest.mark.parametrize("encoder", ["analytic", "importance"])
def test_bad_batches_leave_model_unchanged(encoder):
    enc = make_encoding(EncodingSpec(d=2, m=20))
    model = LocalModel(enc, LocalModelConfig(encoder=encoder, learn=True), np.random.default_rng(0))
    X = np.random.default_rng(1).normal(size=(10, 2))
    model.observe(X, _f(X))
    before = (model.summary().pack().copy(), model.hyper.mu.copy(), model.batches)
    for bad_X, bad_y, exc in [
        (X, np.full(10, np.nan), NonFiniteError),
        (X[:, :1], _f(X), ShapeError),
        (np.zeros((0, 2)), np.zeros(0), EmptyBatchError),
    ]:
        with pytest.raises(exc):
            model.observe(bad_X, bad_y)
    assert np.array_equal(model.summary().pack(), before[0])
    assert np.array_equal(model.hyper.mu, before[1]) and model.batches == before[2]


def test_learning_and_fusion_improve_accuracy():
    rng = np.random.default_rng(3)
    enc = make_encoding(EncodingSpec(d=2, m=40, scale=2.5))
    Xs = rng.uniform(-2, 2, size=(300, 2))
    models = [
        LocalModel(enc, LocalModelConfig(learn=True, stream_batches=20), np.random.default_rng(a))
        for a in range(2)
    ]
    for _ in range(10):
        for a, mdl in enumerate(models):
            # each agent sees its own half of the domain
            X = rng.uniform(-2, 2, size=(20, 2))
            X[:, 0] = np.abs(X[:, 0]) * (1 if a == 0 else -1)
            mdl.observe(X, _f(X) + 0.1 * rng.normal(size=20))
    fused = combine(models[0].summary(), models[1].summary())
    for mdl in models:
        local = rmse(_f(Xs), mdl.predict(Xs)[0])
        post = rmse(_f(Xs), mdl.predict(Xs, fused)[0])
        assert np.isfinite(mdl.hyper.mu).all()
        assert post < local


def test_warm_start_sets_hyperparameters_from_first_batch():
    rng = np.random.default_rng(5)
    enc = make_encoding(EncodingSpec(d=2, m=20))
    model = LocalModel(enc, LocalModelConfig(learn=True, warm_start=True), np.random.default_rng(0))
    X = rng.uniform(-2, 2, size=(40, 2))
    initial = model.hyper.mu.copy()
    model.observe(X, _f(X) + 0.05 * rng.normal(size=40))
    assert not np.allclose(model.hyper.mu, initial)
    assert np.isfinite(model.predict(X)[0]).all()
