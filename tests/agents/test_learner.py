"""The online hyperparameter learner: gradients, ascent, schedule, learning, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swarmgp.agents import learner as learner_mod
from swarmgp.agents.learner import (
    Learner,
    LearnerConfig,
    batch_elbo,
    elbo_and_grad,
    robbins_monro_lr,
    warm_start,
)
from swarmgp.fusion.encoders import AnalyticEncoder
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.errors import (
    EmptyBatchError,
    NonFiniteError,
    ShapeError,
    SwarmGPError,
)
from swarmgp.fusion.hyper import Hyperparameters

#: Central-difference step on every parameter.
FD_STEP = 1e-6
#: Autograd vs central differences: |g - fd| <= FD_RTOL * max(1, |g|).
FD_RTOL = 1e-5
#: Torch and numpy values of the same ELBO.
VALUE_RTOL = 1e-10
#: warm_start must recover each lengthscale within this factor.
LENGTHSCALE_FACTOR = 1.5


def _problem(seed: int, d: int = 3, m: int = 20, n: int = 7):
    rng = np.random.default_rng(seed)
    enc = make_encoding(EncodingSpec(d, m, seed=seed))
    hyper = Hyperparameters(
        np.eye(d) + 0.3 * rng.normal(size=(d, d)),
        np.log(0.1 + 0.3 * rng.random((d, d))),
        0.2,
        -1.2,
    )
    X = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    mean = 0.7 * rng.normal(size=m)
    B = rng.normal(size=(m, m)) / math.sqrt(m)
    cov = 0.3 * B @ B.T + 0.4 * np.eye(m)
    return enc, hyper, X, y, mean, cov


def _perturbed(hyper: Hyperparameters, name: str, idx, delta: float) -> Hyperparameters:
    kw = {
        "mu": hyper.mu.copy(),
        "log_sigma": hyper.log_sigma.copy(),
        "log_s": hyper.log_s,
        "log_sn": hyper.log_sn,
    }
    if idx is None:
        kw[name] += delta
    else:
        kw[name][idx] += delta
    return Hyperparameters(**kw)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_central_differences(seed):
    enc, hyper, X, y, mean, cov = _problem(seed)
    n_scale = 13.0
    val, grad = elbo_and_grad(X, y, hyper, enc, mean, cov, n_scale)
    assert val == pytest.approx(batch_elbo(X, y, hyper, enc, mean, cov, n_scale), rel=VALUE_RTOL)
    d = hyper.d
    entries = [("log_s", None), ("log_sn", None)]
    entries += [("mu", (i, j)) for i in range(d) for j in range(d)]
    entries += [("log_sigma", (i, j)) for i in range(d) for j in range(d)]
    for name, idx in entries:
        fp = batch_elbo(X, y, _perturbed(hyper, name, idx, FD_STEP), enc, mean, cov, n_scale)
        fm = batch_elbo(X, y, _perturbed(hyper, name, idx, -FD_STEP), enc, mean, cov, n_scale)
        fd = (fp - fm) / (2 * FD_STEP)
        g = grad[name] if idx is None else grad[name][idx]
        assert abs(g - fd) <= FD_RTOL * max(1.0, abs(g)), (name, idx, g, fd)


def test_batch_elbo_matches_explicit_formula():
    """The whitened A-matrix form equals the digest's K^{-1} form (digest Sec. 6)."""
    from swarmgp.fusion.psi import psi1, psi2_stack

    enc, hyper, X, y, mean, cov = _problem(3, d=2, m=8, n=5)
    L = enc.L
    Kinv = np.linalg.inv(enc.K)
    Linv = np.linalg.inv(L)
    m_u = L @ mean  # u = L v
    S_u = L @ cov @ L.T
    P1 = psi1(X, enc.Z, hyper)
    P2 = psi2_stack(X, enc.Z, hyper)
    total = 0.0
    for i in range(X.shape[0]):
        br = (
            y[i] ** 2
            - 2 * y[i] * P1[i] @ Kinv @ m_u
            + hyper.s**2
            - np.trace(Kinv @ P2[i])
            + np.trace(Kinv @ (np.outer(m_u, m_u) + S_u) @ Kinv @ P2[i])
        )
        total += -0.5 * math.log(2 * math.pi * hyper.sn2) - br / (2 * hyper.sn2)
    expected = 4.0 * total - hyper.kl_w()
    assert Linv.shape == L.shape
    got = batch_elbo(X, y, hyper, enc, mean, cov, 4.0)
    assert got == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("optimizer", ["sga", "adam"])
def test_one_small_step_increases_batch_elbo(optimizer):
    enc, hyper, X, y, mean, cov = _problem(5)
    learner = Learner(LearnerConfig(lr0=1e-3, optimizer=optimizer))
    before = batch_elbo(X, y, hyper, enc, mean, cov, 10.0)
    new = learner.step(X, y, hyper, enc, mean, cov, 10.0)
    after = batch_elbo(X, y, new, enc, mean, cov, 10.0)
    assert after > before
    assert learner.t == 1 and learner.n_batches == 1
    # inputs are untouched
    assert new is not hyper
    np.testing.assert_array_equal(hyper.mu, _problem(5)[1].mu)


def test_robbins_monro_schedule_is_decreasing_and_validated():
    lrs = [robbins_monro_lr(t, 0.1, 10.0, 0.7) for t in range(200)]
    assert lrs[0] == pytest.approx(0.1)
    assert all(b < a for a, b in zip(lrs, lrs[1:], strict=False))
    learner = Learner(LearnerConfig(lr0=0.1, tau=10.0, kappa=0.7))
    assert learner.lr(5) == pytest.approx(lrs[5])
    for bad in (0.5, 0.3, 1.2):
        with pytest.raises(SwarmGPError):
            LearnerConfig(kappa=bad)
    with pytest.raises(SwarmGPError):
        LearnerConfig(lr0=-1.0)
    with pytest.raises(SwarmGPError):
        LearnerConfig(frozen=("nope",))


def _model_data(seed: int, n: int, lengthscales, s: float, sn: float):
    rng = np.random.default_rng(seed)
    d = len(lengthscales)
    X = rng.normal(size=(n, d))
    D = (((X[:, None, :] - X[None, :, :]) / np.asarray(lengthscales)) ** 2).sum(-1)
    f = s * np.linalg.cholesky(np.exp(-0.5 * D) + 1e-8 * np.eye(n)) @ rng.normal(size=n)
    return X, f + sn * rng.normal(size=n)


def test_learning_on_model_data_reduces_loss_and_moves_noise_to_truth():
    d, m, n_batches, bs, sn_true = 2, 50, 30, 20, 0.1
    enc = make_encoding(EncodingSpec(d, m, scale=2.5))
    X, y = _model_data(7, n_batches * bs, (0.7, 1.5), 1.0, sn_true)

    def full_loss(h: Hyperparameters) -> float:
        e = AnalyticEncoder(enc)
        e.add_batch(X, y, h)
        mo = e.summary().moments()
        return -batch_elbo(X, y, h, enc, mo.mean, mo.cov(), 1.0) / X.shape[0]

    h0 = Hyperparameters.initial(d, sn=0.5)
    h = h0
    learner = Learner(LearnerConfig(lr0=0.05))
    enc_online = AnalyticEncoder(enc)
    for b in range(n_batches):
        Xb, yb = X[b * bs : (b + 1) * bs], y[b * bs : (b + 1) * bs]
        enc_online.add_batch(Xb, yb, h)
        mo = enc_online.summary().moments()
        h = learner.step(Xb, yb, h, enc, mo.mean, mo.cov(), float(n_batches))
    assert learner.t == n_batches
    assert full_loss(h) < full_loss(h0) - 0.3
    err0 = abs(h0.log_sn - math.log(sn_true))
    err1 = abs(h.log_sn - math.log(sn_true))
    assert err1 < 0.5 * err0


def test_steps_per_batch_frozen_blocks_and_bounds():
    enc, hyper, X, y, mean, cov = _problem(2)
    cfg = LearnerConfig(steps_per_batch=3, frozen=("mu",), log_sn_bounds=(-1.25, -1.15), lr0=0.5)
    learner = Learner(cfg)
    new = learner.step(X, y, hyper, enc, mean, cov, 5.0)
    assert learner.t == 3 and learner.n_batches == 1
    np.testing.assert_array_equal(new.mu, hyper.mu)
    assert -1.25 <= new.log_sn <= -1.15
    assert not np.array_equal(new.log_sigma, hyper.log_sigma)


def test_deterministic_and_n_scale_default():
    enc, hyper, X, y, mean, cov = _problem(4)
    a = Learner().step(X, y, hyper, enc, mean, cov, 3.0)
    b = Learner().step(X, y, hyper, enc, mean, cov, 3.0)
    np.testing.assert_array_equal(a.mu, b.mu)
    assert a.log_sn == b.log_sn
    # n_scale=None: running count (1 at the first batch) or the configured stream length
    c = Learner(LearnerConfig(optimizer="sga")).step(X, y, hyper, enc, mean, cov, None)
    c1 = Learner(LearnerConfig(optimizer="sga")).step(X, y, hyper, enc, mean, cov, 1.0)
    np.testing.assert_array_equal(c.mu, c1.mu)
    cfg = LearnerConfig(optimizer="sga", stream_length=7)
    e = Learner(cfg).step(X, y, hyper, enc, mean, cov, None)
    e7 = Learner(cfg).step(X, y, hyper, enc, mean, cov, 7.0)
    np.testing.assert_array_equal(e.log_sigma, e7.log_sigma)


def test_encoding_tensors_are_cached():
    enc, hyper, X, y, mean, cov = _problem(6)
    Learner().step(X, y, hyper, enc, mean, cov, 2.0)
    first = learner_mod._encoding_tensors(enc)
    Learner().step(X, y, hyper, enc, mean, cov, 2.0)
    assert learner_mod._encoding_tensors(enc) is first


def test_bad_inputs_raise_and_leave_state_unchanged():
    enc, hyper, X, y, mean, cov = _problem(8)
    learner = Learner()
    learner.step(X, y, hyper, enc, mean, cov, 2.0)
    t, nb = learner.t, learner.n_batches
    m1, m2 = learner._m1.copy(), learner._m2.copy()
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    y_inf = y.copy()
    y_inf[1] = np.inf
    cov_asym = cov.copy()
    cov_asym[0, 1] += 1.0
    d = hyper.d
    cases = [
        (NonFiniteError, (X_nan, y, hyper, enc, mean, cov, 2.0)),
        (NonFiniteError, (X, y_inf, hyper, enc, mean, cov, 2.0)),
        (ShapeError, (X[:, :-1], y, hyper, enc, mean, cov, 2.0)),
        (ShapeError, (X, y[:-1], hyper, enc, mean, cov, 2.0)),
        (EmptyBatchError, (X[:0], y[:0], hyper, enc, mean, cov, 2.0)),
        (ShapeError, (X, y, hyper, enc, mean[:-1], cov, 2.0)),
        (ShapeError, (X, y, hyper, enc, mean, cov[:-1], 2.0)),
        (ShapeError, (X, y, hyper, enc, mean, cov_asym, 2.0)),
        (NonFiniteError, (X, y, hyper, enc, mean * np.nan, cov, 2.0)),
        (NonFiniteError, (X, y, hyper, enc, mean, cov, float("nan"))),
        (NonFiniteError, (X, y, hyper, enc, mean, cov, -1.0)),
        (ShapeError, (X, y, Hyperparameters.initial(d + 1), enc, mean, cov, 2.0)),
        (ShapeError, (X.astype(str), y, hyper, enc, mean, cov, 2.0)),
        # sigma_n^2 underflows to 0: the ELBO is not finite
        (
            NonFiniteError,
            (X, y, Hyperparameters(hyper.mu, hyper.log_sigma, 0.0, -800.0), enc, mean, cov, 2.0),
        ),
    ]
    for exc, args in cases:
        with pytest.raises(exc):
            learner.step(*args)
        assert (learner.t, learner.n_batches) == (t, nb)
        np.testing.assert_array_equal(learner._m1, m1)
        np.testing.assert_array_equal(learner._m2, m2)
    with pytest.raises(EmptyBatchError):
        batch_elbo(X[:0], y[:0], hyper, enc, mean, cov, 1.0)


def test_adam_state_rejects_a_change_of_dimension():
    enc, hyper, X, y, mean, cov = _problem(9, d=3)
    learner = Learner()
    learner.step(X, y, hyper, enc, mean, cov, 1.0)
    enc2, hyper2, X2, y2, mean2, cov2 = _problem(9, d=2)
    with pytest.raises(ShapeError):
        learner.step(X2, y2, hyper2, enc2, mean2, cov2, 1.0)
    learner.reset()
    learner.step(X2, y2, hyper2, enc2, mean2, cov2, 1.0)
    assert learner.t == 1


def test_warm_start_recovers_lengthscales():
    lengthscales = (0.5, 2.0)
    X, y = _model_data(11, 150, lengthscales, 1.0, 0.1)
    h = warm_start(X, y, iters=100)
    ls = 1.0 / np.diag(h.mu)
    for got, want in zip(ls, lengthscales, strict=True):
        assert want / LENGTHSCALE_FACTOR < got < want * LENGTHSCALE_FACTOR
    np.testing.assert_array_equal(h.mu, np.diag(np.diag(h.mu)))
    assert np.allclose(h.log_sigma, math.log(0.05))
    assert 0.03 < math.exp(h.log_sn) < 0.3
    # deterministic
    h2 = warm_start(X, y, iters=100)
    np.testing.assert_array_equal(h.mu, h2.mu)
    with pytest.raises(EmptyBatchError):
        warm_start(X[:0], y[:0])
    with pytest.raises(NonFiniteError):
        warm_start(np.full_like(X, np.nan), y)
