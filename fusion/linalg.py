"""Small float64 linear-algebra helpers: Cholesky with jitter, solves, symmetric packing.

All functions take and return float64 arrays and never form explicit inverses where a
solve will do.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla
from scipy.linalg import blas

from swarmgp.fusion.errors import NonFiniteError, NotPositiveDefinite, NumericalWarning, ShapeError

__all__ = [
    "as_float64",
    "cho_solve",
    "cholesky",
    "chol_inverse",
    "identity_plus_psd",
    "check_spd",
    "pack_symmetric",
    "right_solve_lower",
    "packed_size",
    "symmetrize",
    "unpack_symmetric",
]

#: Relative symmetry tolerance accepted by :func:`check_spd`.
SYMMETRY_RTOL = 1e-10


def as_float64(
    a: object, name: str, shape: tuple[int | None, ...], check_finite: bool = True
) -> np.ndarray:
    """Convert ``a`` to a C-contiguous float64 array and check its shape and finiteness.

    Parameters
    ----------
    a : array_like
        The input.
    name : str
        Name used in error messages.
    shape : tuple of int or None
        Expected shape; ``None`` entries match any size.
    check_finite : bool
        Scan for NaN and inf (default True). False only for arrays this process validated
        itself (as in ``scipy.linalg``): the dtype and shape are still checked.

    Returns
    -------
    ndarray
        A float64 array (a copy only where needed).

    Raises
    ------
    ShapeError
        Wrong number of dimensions, wrong size, or a non-numeric dtype.
    NonFiniteError
        NaN or infinite entries.
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ShapeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
    ):
        want_s = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"{name}: expected shape {want_s}, got {arr.shape}")
    if check_finite and not np.isfinite(arr).all():
        raise NonFiniteError(f"{name}: expected finite values, got NaN or inf")
    return arr


def symmetrize(A: np.ndarray) -> np.ndarray:
    """Return ``(A + A.T) / 2``; A has shape (m, m)."""
    return 0.5 * (A + A.T)


def cholesky(A: np.ndarray, name: str = "matrix", max_jitter: float = 0.0) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive-definite matrix.

    Parameters
    ----------
    A : ndarray of shape (m, m)
        Symmetric positive definite.
    name : str
        Name used in error messages.
    max_jitter : float
        If positive, retry with diagonal jitter ``mean(diag) * 10**k`` up to this relative
        size, warning with :class:`NumericalWarning`. Zero means no jitter.

    Returns
    -------
    ndarray of shape (m, m)
        Lower-triangular ``L`` with ``L @ L.T == A``.

    Raises
    ------
    NotPositiveDefinite
        The factorization failed (after jitter, if allowed).
    """
    try:
        return np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        pass
    scale = float(np.mean(np.abs(np.diag(A)))) or 1.0
    jitter = 1e-12
    while jitter <= max_jitter:
        try:
            L = np.linalg.cholesky(A + (jitter * scale) * np.eye(A.shape[0]))
        except np.linalg.LinAlgError:
            jitter *= 10.0
            continue
        warnings.warn(
            f"{name}: added relative jitter {jitter:.1e} to factorize", NumericalWarning, 2
        )
        return L
    raise NotPositiveDefinite(f"{name}: expected a positive-definite matrix, Cholesky failed")


def cho_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``(L L^T) X = B`` given the lower Cholesky factor ``L`` of shape (m, m)."""
    return sla.cho_solve((L, True), B, check_finite=False)


def chol_inverse(L: np.ndarray) -> np.ndarray:
    """Symmetric inverse of ``L L^T`` from its lower factor; used only for fixed, small K."""
    m = L.shape[0]
    return symmetrize(cho_solve(L, np.eye(m)))


def right_solve_lower(L: np.ndarray, B: np.ndarray, trans: bool) -> np.ndarray:
    """``B L^{-T}`` (``trans``) or ``B L^{-1}``, for lower-triangular ``L`` (m, m) and B (n, m).

    One BLAS ``trsm`` on the transposed problem ``X^T = L^{-1} B^T`` (or ``L^{-T} B^T``): in
    Fortran order ``B^T`` is B's own C-ordered buffer and ``L^T`` (upper) is L's, so nothing
    is transposed in memory (scipy's ``solve_triangular`` is about twice as slow at the small
    sizes of one agent's batch). Returns a C-ordered (n, m) array.
    """
    # L^{-1} = (L^T)^{-T}: with U = L^T, op(U) = U^T for B L^{-T}, U itself for B L^{-1}
    out = blas.dtrsm(1.0, L.T, B.T, side=0, lower=0, trans_a=1 if trans else 0)
    return np.asarray(out).T


def check_spd(A: np.ndarray, name: str) -> np.ndarray:
    """Validate a symmetric positive-definite float64 matrix and return its Cholesky factor.

    Raises
    ------
    ShapeError, NonFiniteError, NotPositiveDefinite
        Not square, not finite, not symmetric (relative tolerance ``SYMMETRY_RTOL``),
        or not positive definite.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ShapeError(f"{name}: expected a square matrix, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise NonFiniteError(f"{name}: expected finite values, got NaN or inf")
    scale = float(np.max(np.abs(A))) if A.size else 0.0
    if scale and float(np.max(np.abs(A - A.T))) > SYMMETRY_RTOL * scale:
        raise NotPositiveDefinite(f"{name}: expected a symmetric matrix, it is not")
    return cholesky(A, name)


def packed_size(m: int) -> int:
    """Number of entries in the upper triangle (with diagonal) of an m x m matrix."""
    return m * (m + 1) // 2


_TRIU_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}
#: m -> (flat C-order positions of the upper triangle, packed position of every full entry)
_FLAT_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _triu(m: int) -> tuple[np.ndarray, np.ndarray]:
    idx = _TRIU_CACHE.get(m)
    if idx is None:
        idx = np.triu_indices(m)
        _TRIU_CACHE[m] = idx
    return idx


def _flat(m: int) -> tuple[np.ndarray, np.ndarray]:
    # one-dimensional take() instead of two-array fancy indexing: 4x (pack) and 7x (unpack)
    # faster at m = 100, the same values in the same places
    idx = _FLAT_CACHE.get(m)
    if idx is None:
        iu = _triu(m)
        full = np.empty((m, m), dtype=np.intp)
        k = np.arange(iu[0].shape[0])
        full[iu] = k
        full[iu[1], iu[0]] = k
        idx = _FLAT_CACHE[m] = (iu[0] * m + iu[1], full.ravel())
    return idx


def pack_symmetric(A: np.ndarray) -> np.ndarray:
    """Upper triangle, row-major, of a symmetric (m, m) matrix as a vector of m(m+1)/2."""
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        return A[_triu(A.shape[0])]
    return A.take(_flat(A.shape[0])[0])


def unpack_symmetric(v: np.ndarray, m: int) -> np.ndarray:
    """Inverse of :func:`pack_symmetric`: an (m, m) symmetric matrix from m(m+1)/2 values.

    Raises
    ------
    ShapeError
        ``v`` does not hold exactly m(m+1)/2 values.
    """
    if v.ndim != 1 or v.shape[0] != packed_size(m):
        raise ShapeError(f"packed matrix: expected {packed_size(m)} values, got shape {v.shape}")
    return np.asarray(v, dtype=np.float64).take(_flat(m)[1]).reshape(m, m)


def identity_plus_psd(C: np.ndarray, name: str) -> np.ndarray:
    """``I + C`` for a whitened data term C that is PSD in exact arithmetic, shape (m, m).

    Whitening ``L^-1 C L^-T`` with an ill-conditioned K (dense inducing inputs, noise near
    zero) can leave round-off eigenvalues below -1. Only then is C projected onto the PSD
    cone by clipping its eigenvalues at zero, with a :class:`NumericalWarning`.
    """
    P = symmetrize(C)
    P[np.diag_indices_from(P)] += 1.0
    try:
        np.linalg.cholesky(P)
        return P
    except np.linalg.LinAlgError:
        pass
    lam, V = np.linalg.eigh(symmetrize(C))
    warnings.warn(
        f"{name}: clipped {int((lam < 0).sum())} negative round-off eigenvalues "
        f"(min {lam.min():.2e}) of the whitened data term",
        NumericalWarning,
        2,
    )
    P = symmetrize((V * np.maximum(lam, 0.0)) @ V.T)
    P[np.diag_indices_from(P)] += 1.0
    return P
