"""Online encoders: turn a stream of batches into a local summary ``R_a = (P, h)``.

Two encoders share one interface (``add_batch``, ``summary``, ``n_obs``):

* :class:`AnalyticEncoder` adds each batch's exact contribution under the q(W), s and
  sigma_n current at its arrival, using the closed-form psi-statistics. Cost per batch
  O(n m^2 d); the history is never revisited.
* :class:`ImportanceEncoder` is the paper's estimator (COOL-GP eqs. 5-6): M samples of W drawn
  once from the prior, per-sample running sums ``A_k = sum_n Kt_k^T Kt_k`` and
  ``b_k = sum_n Kt_k^T y`` (digest Sec. 4.3), re-weighted by ``q(W_k) / p(W_k)`` whenever the
  summary is asked for. Cost per batch O(M n m^2); a re-weighting costs O(M m^2 + m^3),
  independent of the history. The effective sample size is reported because plain importance
  weights from the prior degenerate once q(W) leaves it (digest Sec. 4.5).
"""

from __future__ import annotations

import warnings

import numpy as np

from swarmgp.fusion.encoding import Encoding
from swarmgp.fusion.errors import EmptyBatchError, NumericalWarning, ShapeError
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.linalg import as_float64, identity_plus_psd
from swarmgp.fusion.psi import psi1, psi2_sum
from swarmgp.fusion.summary import Summary

__all__ = ["AnalyticEncoder", "ImportanceEncoder", "check_batch", "importance_log_weights"]

#: Below this fraction of M effective samples, ImportanceEncoder.summary warns.
ESS_WARN_FRACTION = 0.05
#: Largest log importance weight used before clipping (exp(700) is near float64's limit).
MAX_LOG_WEIGHT = 700.0


def check_batch(X: object, y: object, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch: X of shape (n, d) and y of shape (n,), n >= 1, finite float64.

    Raises
    ------
    ShapeError, NonFiniteError, EmptyBatchError
    """
    Xa = as_float64(X, "batch inputs X", (None, d))
    ya = as_float64(y, "batch targets y", (Xa.shape[0],))
    if Xa.shape[0] == 0:
        raise EmptyBatchError("batch: expected at least one observation, got 0")
    return Xa, ya


class AnalyticEncoder:
    """Exact per-batch encoder under the q(W) current at each batch's arrival.

    Parameters
    ----------
    encoding : Encoding
        The common encoding.
    """

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        m = encoding.m
        self._C = np.zeros((m, m))  # sum_n C_II^n / sigma_n^2, unwhitened, [m, m]
        self._c = np.zeros(m)  # sum_n C_ID^n y_n / sigma_n^2, unwhitened, [m]
        self.n_obs = 0
        self._cached: Summary | None = None

    def add_batch(self, X: np.ndarray, y: np.ndarray, hyper: Hyperparameters) -> None:
        """Add one batch's contribution ``E^n`` (COOL-GP eq. 3) under ``hyper``.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        hyper : Hyperparameters
        """
        X, y = check_batch(X, y, self.encoding.d)
        P1 = psi1(X, self.encoding.Z, hyper)  # [n, m]
        C = psi2_sum(X, self.encoding.Z, hyper, self.encoding.pairs)  # [m, m], pair form
        self._C += C / hyper.sn2
        self._c += (P1.T @ y) / hyper.sn2
        self.n_obs += X.shape[0]
        self._cached = None

    def summary(self, hyper: Hyperparameters | None = None) -> Summary:
        """The local summary ``(I + L^-1 C L^-T, L^-1 c)``; ``hyper`` is ignored (kept for API)."""
        if self._cached is None:
            P = identity_plus_psd(self.encoding.whiten(self._C), "analytic encoder")
            h = self.encoding.whiten_vec(self._c)
            self._cached = Summary(P, h, self.n_obs, 1, self.encoding.hash)
        return self._cached


def importance_log_weights(W: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """``log q(W_k) - log p(W_k)`` for prior samples W of shape (M, d, d) (digest Sec. 4.3).

    Returns
    -------
    ndarray of shape (M,)
    """
    z = (W - hyper.mu[None]) / np.exp(hyper.log_sigma)[None]  # [M, d, d]
    return (-hyper.log_sigma[None] - 0.5 * z * z + 0.5 * W * W).sum((1, 2))


class ImportanceEncoder:
    """The paper's importance-sampled encoder with per-sample running sums.

    Parameters
    ----------
    encoding : Encoding
    samples : int
        M, the number of prior samples of W, drawn once.
    rng : numpy.random.Generator
        Source of the prior samples.
    """

    def __init__(self, encoding: Encoding, samples: int, rng: np.random.Generator) -> None:
        if samples < 1:
            raise ShapeError(f"importance encoder: expected samples >= 1, got {samples}")
        d, m = encoding.d, encoding.m
        self.encoding = encoding
        self.W = rng.standard_normal((samples, d, d))  # prior samples, [M, d, d]
        self._A = np.zeros((samples, m, m))  # sum_n Kt^T Kt per sample, [M, m, m]
        self._b = np.zeros((samples, m))  # sum_n Kt^T y per sample, [M, m]
        self.n_obs = 0
        self._cache_key: tuple[int, bytes] | None = None
        self._cached: Summary | None = None

    @property
    def samples(self) -> int:
        """M."""
        return int(self.W.shape[0])

    def add_batch(self, X: np.ndarray, y: np.ndarray, hyper: Hyperparameters | None = None) -> None:
        """Add the batch's kernel products for every prior sample (independent of q(W)).

        Parameters
        ----------
        X : ndarray of shape (n, d)
        y : ndarray of shape (n,)
        hyper : ignored; the sums do not depend on q(W).
        """
        X, y = check_batch(X, y, self.encoding.d)
        Z = self.encoding.Z
        T = np.einsum("nd,ked->kne", X, self.W)  # W_k x_n, [M, n, d]
        sq = (
            (T * T).sum(-1)[:, :, None] - 2.0 * T @ Z.T + (Z * Z).sum(1)[None, None, :]
        )  # [M, n, m]
        Kt = np.exp(-0.5 * np.maximum(sq, 0.0))  # unit kernel, s factored out, [M, n, m]
        self._A += np.matmul(Kt.transpose(0, 2, 1), Kt)
        self._b += np.einsum("knm,n->km", Kt, y)
        self.n_obs += X.shape[0]
        self._cached = None

    def weights(self, hyper: Hyperparameters) -> np.ndarray:
        """Plain (not self-normalized) importance weights, shape (M,), clipped at exp(700)."""
        logw = importance_log_weights(self.W, hyper)
        if logw.max() > MAX_LOG_WEIGHT:
            warnings.warn(
                "importance weights overflow: q(W) is far from the prior; clipping",
                NumericalWarning,
                2,
            )
            logw = np.minimum(logw, MAX_LOG_WEIGHT)
        return np.exp(logw)

    def ess(self, hyper: Hyperparameters) -> float:
        """Effective sample size ``(sum w)^2 / sum w^2`` in [1, M]."""
        logw = importance_log_weights(self.W, hyper)
        w = np.exp(logw - logw.max())
        return float(w.sum() ** 2 / (w * w).sum())

    def summary(self, hyper: Hyperparameters) -> Summary:
        """Re-weighted local summary under the current ``hyper`` (COOL-GP eq. 6).

        ``C = s^2/M sum_k w_k A_k``, ``c = s/M sum_k w_k b_k``,
        ``P = I + L^-1 C L^-T / sigma_n^2``, ``h = L^-1 c / sigma_n^2``.
        """
        key = (
            self.n_obs,
            np.concatenate(
                [hyper.mu.ravel(), hyper.log_sigma.ravel(), [hyper.log_s, hyper.log_sn]]
            ).tobytes(),
        )
        if self._cached is not None and self._cache_key == key:
            return self._cached
        w = self.weights(hyper) / self.samples  # [M]
        C = hyper.s**2 * np.tensordot(w, self._A, 1)  # [m, m]
        c = hyper.s * (w @ self._b)  # [m]
        P = identity_plus_psd(self.encoding.whiten(C) / hyper.sn2, "importance encoder")
        h = self.encoding.whiten_vec(c) / hyper.sn2
        self._cached = Summary(P, h, self.n_obs, 1, self.encoding.hash)
        self._cache_key = key
        return self._cached
