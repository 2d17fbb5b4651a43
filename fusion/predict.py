"""Predictive moments at test inputs from a (fused) summary and an agent's own q(W), s, sigma_n.

With ``q(v) = N(m_v, S_v)`` in whitened coordinates and ``a = L^{-T} m_v`` (= ``K^{-1} m_u``):

.. math::

    \\mu(x) = \\psi_1(x) a

    \\sigma_f^2(x) = s^2 + \\mathrm{tr}(Q \\Psi_2(x)) - \\mu(x)^2,
    \\quad Q = L^{-T} (m_v m_v^T + S_v - I) L^{-1}

which is the Titsias & Lazaro-Gredilla (2013) predictive (digest Sec. 2.4) rewritten in the
whitened coordinates. Add ``sigma_n^2`` for the variance of a noisy observation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from swarmgp.fusion.encoding import Encoding
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.linalg import as_float64
from swarmgp.fusion.psi import psi1, psi2_quadform, psi2_quadforms
from swarmgp.fusion.summary import Summary

__all__ = ["PredictiveCache", "predict", "predict_many", "predictive_cache"]

#: Floor on the predictive variance of f, against round-off making it slightly negative.
MIN_VARIANCE = 1e-12


class PredictiveCache:
    """Quantities of a summary that do not depend on the test inputs: ``a`` (m,), ``Q`` (m, m)."""

    def __init__(self, a: np.ndarray, Q: np.ndarray, encoding_hash: str) -> None:
        self.a = a
        self.Q = Q
        self.encoding_hash = encoding_hash


def predictive_cache(summary: Summary, encoding: Encoding) -> PredictiveCache:
    """Factorize the summary once: ``a = L^-T m_v`` and ``Q = L^-T (m m^T + S - I) L^-1``."""
    encoding.require_same(summary.encoding_hash)
    mom = summary.moments()
    M = np.outer(mom.mean, mom.mean) + mom.cov()  # [m, m]
    M[np.diag_indices_from(M)] -= 1.0
    Linv_T_M = sla.solve_triangular(encoding.L, M, lower=True, trans="T", check_finite=False)
    Q = sla.solve_triangular(encoding.L, Linv_T_M.T, lower=True, trans="T", check_finite=False)
    return PredictiveCache(encoding.unwhiten_mean(mom.mean), 0.5 * (Q + Q.T), summary.encoding_hash)


def predict(
    X: np.ndarray,
    summary: Summary | PredictiveCache,
    encoding: Encoding,
    hyper: Hyperparameters,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance of f at test inputs.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    summary : Summary or PredictiveCache
        The (fused) natural parameters, or their cached factorization.
    encoding : Encoding
    hyper : Hyperparameters
        The predicting agent's own q(W), s, sigma_n.

    Returns
    -------
    mean : ndarray of shape (n,)
    var_f : ndarray of shape (n,)
        Variance of the latent f; add ``hyper.sn2`` for y.
    """
    X = as_float64(X, "test inputs", (None, encoding.d))
    cache = summary if isinstance(summary, PredictiveCache) else predictive_cache(summary, encoding)
    encoding.require_same(cache.encoding_hash)
    mean = psi1(X, encoding.Z, hyper) @ cache.a
    var = hyper.s**2 + psi2_quadform(X, encoding.Z, hyper, cache.Q, encoding.pairs) - mean**2
    return mean, np.maximum(var, MIN_VARIANCE)


def predict_many(
    X: np.ndarray, caches: list[PredictiveCache], encoding: Encoding, hyper: Hyperparameters
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict` for many summaries under one q(W): the Psi statistics of X once.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    caches : list of k PredictiveCache
    encoding : Encoding
    hyper : Hyperparameters

    Returns
    -------
    mean, var_f : ndarray of shape (k, n)
    """
    X = as_float64(X, "test inputs", (None, encoding.d))
    for c in caches:
        encoding.require_same(c.encoding_hash)
    mean = (psi1(X, encoding.Z, hyper) @ np.stack([c.a for c in caches], 1)).T  # [k, n]
    quad = psi2_quadforms(X, encoding.Z, hyper, np.stack([c.Q for c in caches]), encoding.pairs)
    var = hyper.s**2 + quad.T - mean**2
    return mean, np.maximum(var, MIN_VARIANCE)
