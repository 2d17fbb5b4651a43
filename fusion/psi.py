"""Closed-form psi-statistics of ``f(x) = s * u(W x)`` under a factorized Gaussian q(W).

With ``q(W) = prod_ij N(mu_ij, sigma_ij^2)`` the i-th coordinate of ``W x`` is Gaussian with mean
``nu_i = sum_j mu_ij x_j`` and variance ``v_i = sum_j sigma_ij^2 x_j^2`` (digest Sec. 2.4):

.. math::

    \\psi_1(x, z) = s \\prod_i (1 + v_i)^{-1/2} \\exp(-(\\nu_i - z_i)^2 / (2 (1 + v_i)))

    \\Psi_2(x)[z, z'] = s^2 \\prod_i (1 + 2 v_i)^{-1/2}
        \\exp(-(z_i - z'_i)^2 / 4 - (\\nu_i - (z_i + z'_i)/2)^2 / (1 + 2 v_i))

``Psi_2`` is evaluated through the expansion ``log Psi_2(x)[j, k] = c + g_j + g_k + z_j^T B z_k``
(B diagonal), so a batch costs one (m, d) x (d, m) product per point and no (m, m, d) tensor.

References
----------
Titsias & Lazaro-Gredilla, "Variational inference for Mahalanobis distance metrics in Gaussian
process regression", NIPS 2013. Hoang et al., COOL-GP, AAAI 2019, eq. (2).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from swarmgp.fusion.hyper import Hyperparameters

__all__ = ["latent_moments", "psi1", "psi2_quadform", "psi2_stack", "psi2_sum"]

#: Points per chunk when evaluating Psi_2 for many inputs, to bound memory at n_chunk * m^2.
PSI2_CHUNK = 64


def latent_moments(X: np.ndarray, hyper: Hyperparameters) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``W x`` under q(W) for each row of X.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    hyper : Hyperparameters

    Returns
    -------
    nu : ndarray of shape (n, d)
    v : ndarray of shape (n, d)
    """
    nu = X @ hyper.mu.T  # [n, d]
    v = (X * X) @ hyper.sigma2.T  # [n, d]
    return nu, v


def psi1(X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """``psi_1[n, j] = E_q(W)[s k(W x_n, z_j)]``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters

    Returns
    -------
    ndarray of shape (n, m)
    """
    nu, v = latent_moments(X, hyper)
    a = 1.0 + v  # [n, d]
    # sum_i (nu_i - z_i)^2 / a_i, expanded so that no (n, m, d) tensor is formed
    quad = ((nu * nu) / a).sum(1)[:, None] - 2.0 * (nu / a) @ Z.T + (1.0 / a) @ (Z * Z).T  # [n, m]
    log_c = -0.5 * np.log(a).sum(1)  # [n]
    return hyper.s * np.exp(log_c[:, None] - 0.5 * quad)


class _Scratch(threading.local):
    buf: np.ndarray | None = None


_SCRATCH = _Scratch()


def _scratch(shape: tuple[int, int, int]) -> np.ndarray:
    """A per-thread reusable float64 buffer of ``shape``.

    Fresh (k, m, m) temporaries are large enough for malloc to hand them out by mmap, and the
    page faults of zeroing them cost several times the arithmetic; one reused buffer avoids it.
    """
    need = shape[0] * shape[1] * shape[2]
    buf = _SCRATCH.buf
    if buf is None or buf.size < need:
        buf = _SCRATCH.buf = np.empty(need)
    return buf[:need].reshape(shape)


def _psi2_chunks(X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters) -> Iterator[np.ndarray]:
    """Yield ``Psi_2(x) / s^2`` for chunks of points, shape (chunk, m, m).

    The yielded array is a scratch buffer, overwritten by the next chunk: use it before
    asking for the next one.
    """
    nu, v = latent_moments(X, hyper)
    a = 1.0 + 2.0 * v  # [n, d]
    c = -0.5 * np.log(a).sum(1) - ((nu * nu) / a).sum(1)  # [n]
    G = (nu / a) @ Z.T - 0.25 * (1.0 + 1.0 / a) @ (Z * Z).T  # [n, m]
    B = 0.5 * (1.0 - 1.0 / a)  # [n, d]
    m = Z.shape[0]
    for lo in range(0, X.shape[0], PSI2_CHUNK):
        hi = min(lo + PSI2_CHUNK, X.shape[0])
        E = _scratch((hi - lo, m, m))
        ZB = Z[None, :, :] * B[lo:hi, None, :]  # [k, m, d]
        np.matmul(ZB, Z.T, out=E)
        E += G[lo:hi, :, None]
        E += G[lo:hi, None, :]
        E += c[lo:hi, None, None]
        np.exp(E, out=E)
        yield E


def psi2_sum(X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """``sum_n Psi_2(x_n)``: the batch's ``C_II = E_q(W)[K_ID K_DI]`` (COOL-GP eq. 2).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters

    Returns
    -------
    ndarray of shape (m, m), symmetric
    """
    m = Z.shape[0]
    out = np.zeros((m, m))
    for E in _psi2_chunks(X, Z, hyper):
        out += E.sum(0)
    out *= hyper.s**2
    return 0.5 * (out + out.T)


def psi2_stack(X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """``Psi_2(x_n)`` for each point, shape (n, m, m). Memory n * m^2: for tests and small n."""
    return hyper.s**2 * np.concatenate([E.copy() for E in _psi2_chunks(X, Z, hyper)], 0)


def psi2_quadform(
    X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters, Q: np.ndarray
) -> np.ndarray:
    """``sum_jk Q[j, k] Psi_2(x_n)[j, k]`` for each point, without storing all Psi_2.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters
    Q : ndarray of shape (m, m)

    Returns
    -------
    ndarray of shape (n,)
    """
    parts = [E.reshape(E.shape[0], -1) @ Q.ravel() for E in _psi2_chunks(X, Z, hyper)]
    return hyper.s**2 * np.concatenate(parts) if parts else np.zeros(0)
