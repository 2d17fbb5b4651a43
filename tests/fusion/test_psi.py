"""psi-statistics against loops and Monte Carlo over q(W)."""

from __future__ import annotations

import numpy as np
from reference import ATOL_MC, psi1_loop, psi2_loop

from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.psi import psi1, psi2_quadform, psi2_stack, psi2_sum

RTOL_CLOSED_FORM = 1e-12


def _hyper(rng, d):
    return Hyperparameters(
        rng.normal(size=(d, d)), np.log(0.2 + 0.5 * rng.random((d, d))), 0.3, -1.0
    )


def test_psi_match_loop_references(rng):
    d, n, m = 3, 6, 8
    X, Z, h = rng.normal(size=(n, d)), rng.normal(size=(m, d)), _hyper(rng, d)
    np.testing.assert_allclose(
        psi1(X, Z, h), psi1_loop(X, Z, h.mu, h.sigma2, h.s), rtol=RTOL_CLOSED_FORM
    )
    ref2 = psi2_loop(X, Z, h.mu, h.sigma2, h.s)
    np.testing.assert_allclose(psi2_sum(X, Z, h), ref2, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(psi2_stack(X, Z, h).sum(0), ref2, rtol=1e-10, atol=1e-14)
    Q = rng.normal(size=(m, m))
    np.testing.assert_allclose(
        psi2_quadform(X, Z, h, Q),
        np.einsum("njk,jk->n", psi2_stack(X, Z, h), Q),
        rtol=1e-10,
        atol=1e-12,
    )


def test_psi_match_monte_carlo(rng):
    d, n, m, S = 2, 4, 5, 200_000
    X, Z, h = rng.normal(size=(n, d)), rng.normal(size=(m, d)), _hyper(rng, d)
    W = h.mu[None] + np.sqrt(h.sigma2)[None] * rng.standard_normal((S, d, d))
    T = np.einsum("nd,sed->sne", X, W)
    K = h.s * np.exp(-0.5 * ((T[:, :, None, :] - Z[None, None]) ** 2).sum(-1))  # [S, n, m]
    np.testing.assert_allclose(psi1(X, Z, h), K.mean(0), atol=ATOL_MC)
    np.testing.assert_allclose(
        psi2_sum(X, Z, h), np.einsum("snj,snk->jk", K, K) / S, atol=2 * ATOL_MC
    )


def test_deterministic_w_reduces_to_kernel_products(rng):
    d, n, m = 3, 5, 6
    X, Z = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    W = rng.normal(size=(d, d))
    h = Hyperparameters(W, np.full((d, d), -40.0), 0.1, 0.0)
    k = h.s * np.exp(-0.5 * (((X @ W.T)[:, None, :] - Z[None]) ** 2).sum(-1))
    np.testing.assert_allclose(psi1(X, Z, h), k, rtol=1e-12)
    np.testing.assert_allclose(psi2_sum(X, Z, h), k.T @ k, rtol=1e-11, atol=1e-15)


def test_pair_form_equals_the_square_form(rng):
    """Psi_2 in the pair-feature form (one GEMM, one exp pass) = the square form to 1e-12."""
    from swarmgp.fusion.encoding import EncodingSpec, make_encoding
    from swarmgp.fusion.psi import PSI2_PAIR_CHUNK, pair_features

    for d, m, n in ((1, 1, 1), (2, 7, 5), (3, 50, 20), (6, 100, 20), (2, 9, PSI2_PAIR_CHUNK + 3)):
        X, Z, h = rng.normal(size=(n, d)), rng.uniform(-2, 2, size=(m, d)), _hyper(rng, d)
        square = psi2_sum(X, Z, h)
        pair = psi2_sum(X, Z, h, pair_features(Z))
        np.testing.assert_allclose(pair, square, rtol=1e-12, atol=1e-12 * np.abs(square).max())
        assert np.array_equal(pair, pair.T)
        Q = rng.normal(size=(m, m))
        qf = psi2_quadform(X, Z, h, Q)
        qp = psi2_quadform(X, Z, h, Q, pair_features(Z))
        np.testing.assert_allclose(qp, qf, rtol=1e-12, atol=1e-12 * np.abs(qf).max())
    enc = make_encoding(EncodingSpec(d=2, m=9))
    assert enc.pairs is enc.pairs  # built once per encoding
    np.testing.assert_array_equal(enc.pairs, pair_features(enc.Z))
