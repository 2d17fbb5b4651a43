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
from swarmgp.fusion.linalg import unpack_symmetric

__all__ = [
    "latent_moments",
    "pair_features",
    "psi1",
    "psi2_quadform",
    "psi2_quadforms",
    "psi2_stack",
    "psi2_sum",
]

#: Points per chunk when evaluating Psi_2 for many inputs, to bound memory at n_chunk * m^2.
PSI2_CHUNK = 64
#: Points per chunk of the pair form (a chunk is n_chunk * m(m+1)/2 values).
PSI2_PAIR_CHUNK = 256


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


def pair_features(Z: np.ndarray) -> np.ndarray:
    """Features of the pairs ``j <= k`` of inducing inputs for :func:`psi2_sum`'s pair form.

    Row ``p`` of the result, for the p-th pair ``(j, k)`` of ``numpy.triu_indices(m)``, is
    ``[z_j * z_k, z_j + z_k, z_j^2 + z_k^2, 1]``, so that with the per-point row
    ``[B, u, w, c]`` (see :func:`psi2_sum`) their dot product is ``log(Psi_2(x)[j, k] / s^2)``.
    It depends on Z only: compute it once per encoding
    (:attr:`~swarmgp.fusion.encoding.Encoding.pairs`).

    Parameters
    ----------
    Z : ndarray of shape (m, d)

    Returns
    -------
    ndarray of shape (m(m+1)/2, 3d + 1)
    """
    m, d = Z.shape
    iu, ju = np.triu_indices(m)  # the order of pack_symmetric
    Zj, Zk = Z[iu], Z[ju]  # [P, d]
    F = np.empty((iu.shape[0], 3 * d + 1))  # [P, 3d+1]
    np.multiply(Zj, Zk, out=F[:, :d])
    np.add(Zj, Zk, out=F[:, d : 2 * d])
    np.add(Zj * Zj, Zk * Zk, out=F[:, 2 * d : 3 * d])
    F[:, 3 * d] = 1.0
    return F


def _point_features(X: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """Per-point rows ``[B, u, w, c]`` of the pair form, shape (n, 3d + 1)."""
    nu, v = latent_moments(X, hyper)
    a = 1.0 + 2.0 * v  # [n, d]
    d = a.shape[1]
    A = np.empty((X.shape[0], 3 * d + 1))
    np.multiply(0.5, 1.0 - 1.0 / a, out=A[:, :d])  # B: the z_j^T B z_k term
    np.divide(nu, a, out=A[:, d : 2 * d])  # u: g_j = u.z_j + w.z_j^2
    np.multiply(-0.25, 1.0 + 1.0 / a, out=A[:, 2 * d : 3 * d])  # w
    A[:, 3 * d] = -0.5 * np.log(a).sum(1) - ((nu * nu) / a).sum(1)  # c
    return A


def psi2_sum(
    X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters, pairs: np.ndarray | None = None
) -> np.ndarray:
    """``sum_n Psi_2(x_n)``: the batch's ``C_II = E_q(W)[K_ID K_DI]`` (COOL-GP eq. 2).

    With ``pairs`` (:func:`pair_features` of Z) it is evaluated in the pair form: one GEMM
    ``[n, 3d+1] x [3d+1, m(m+1)/2]`` gives ``log Psi_2 / s^2`` on the upper triangle, one exp
    pass, one sum over the points; half the entries of the square form and no broadcast adds.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters
    pairs : ndarray of shape (m(m+1)/2, 3d + 1) or None
        ``pair_features(Z)``; None evaluates the square (chunk, m, m) form.

    Returns
    -------
    ndarray of shape (m, m), symmetric
    """
    m = Z.shape[0]
    if pairs is not None:
        A = _point_features(X, hyper)  # [n, 3d+1]
        tri = np.zeros(pairs.shape[0])  # [P]
        for lo in range(0, X.shape[0], PSI2_PAIR_CHUNK):
            E = A[lo : lo + PSI2_PAIR_CHUNK] @ pairs.T  # [k, P]
            np.exp(E, out=E)
            tri += E.sum(0)
        tri *= hyper.s**2
        return unpack_symmetric(tri, m)
    out = np.zeros((m, m))
    for E in _psi2_chunks(X, Z, hyper):
        out += E.sum(0)
    out *= hyper.s**2
    return 0.5 * (out + out.T)


def psi2_stack(X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters) -> np.ndarray:
    """``Psi_2(x_n)`` for each point, shape (n, m, m). Memory n * m^2: for tests and small n."""
    return hyper.s**2 * np.concatenate([E.copy() for E in _psi2_chunks(X, Z, hyper)], 0)


def psi2_quadform(
    X: np.ndarray,
    Z: np.ndarray,
    hyper: Hyperparameters,
    Q: np.ndarray,
    pairs: np.ndarray | None = None,
) -> np.ndarray:
    """``sum_jk Q[j, k] Psi_2(x_n)[j, k]`` for each point, without storing all Psi_2.

    With ``pairs`` (:func:`pair_features` of Z), the pair form: one GEMM and one exp pass on the
    upper triangle, then one GEMV with ``Q_jj`` and ``Q_jk + Q_kj`` (Psi_2 is symmetric).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters
    Q : ndarray of shape (m, m)
    pairs : ndarray of shape (m(m+1)/2, 3d + 1) or None

    Returns
    -------
    ndarray of shape (n,)
    """
    if pairs is not None:
        return psi2_quadforms(X, Z, hyper, Q[None], pairs)[:, 0]
    parts = [E.reshape(E.shape[0], -1) @ Q.ravel() for E in _psi2_chunks(X, Z, hyper)]
    return hyper.s**2 * np.concatenate(parts) if parts else np.zeros(0)


def psi2_quadforms(
    X: np.ndarray, Z: np.ndarray, hyper: Hyperparameters, Qs: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """:func:`psi2_quadform` for k matrices at once: Psi_2 once, then one GEMM with all Q.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    Z : ndarray of shape (m, d)
    hyper : Hyperparameters
    Qs : ndarray of shape (k, m, m)
    pairs : ndarray of shape (m(m+1)/2, 3d + 1)
        ``pair_features(Z)``.

    Returns
    -------
    ndarray of shape (n, k)
    """
    m = Z.shape[0]
    iu, ju = np.triu_indices(m)
    q = (Qs[:, iu, ju] + Qs[:, ju, iu]).T  # [P, k]: Psi_2 is symmetric
    q[iu == ju] *= 0.5
    A = _point_features(X, hyper)  # [n, 3d+1]
    out = np.empty((X.shape[0], Qs.shape[0]))
    for lo in range(0, X.shape[0], PSI2_PAIR_CHUNK):
        E = A[lo : lo + PSI2_PAIR_CHUNK] @ pairs.T  # [c, P]
        np.exp(E, out=E)
        np.matmul(E, q, out=out[lo : lo + PSI2_PAIR_CHUNK])
    out *= hyper.s**2
    return out
