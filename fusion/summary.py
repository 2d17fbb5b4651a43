"""Local and fused summaries: natural parameters of q(u_I) and their fusion algebra.

A :class:`Summary` holds the natural parameters ``R = (P, h)`` of a Gaussian over the
whitened inducing outputs ``v`` (see :mod:`swarmgp.fusion.encoding`): ``P`` is the precision
(m x m, symmetric positive definite) and ``h = P @ mean``. The prior is ``R_0 = (I, 0)``.

Fusion (COOL-GP eqs. 7-12): ``R_ab = R_a + R_b - R_0`` and ``R_F = sum_a R_a - (A - 1) R_0``.
:func:`combine` is associative and commutative with the prior (zero counts) as identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from swarmgp.fusion.errors import FusionError, IncompatibleEncoding, ShapeError
from swarmgp.fusion.linalg import check_spd, cho_solve, pack_symmetric, symmetrize, unpack_symmetric

__all__ = ["Moments", "Summary", "combine", "fuse", "prior_summary", "subtract"]


@dataclass(frozen=True, eq=False)
class Summary:
    """Natural parameters of q(v) with the counts of what they cover.

    Attributes
    ----------
    P : ndarray of shape (m, m)
        Precision, prior included.
    h : ndarray of shape (m,)
        Precision times mean.
    n_obs : int
        Observations covered.
    n_agents : int
        Agents covered (0 for the prior, 1 for a local summary).
    encoding_hash : str
        Hash of the common encoding the parameters refer to.
    """

    P: np.ndarray
    h: np.ndarray
    n_obs: int
    n_agents: int
    encoding_hash: str

    @property
    def m(self) -> int:
        """Number of inducing inputs."""
        return int(self.h.shape[0])

    def validate(self) -> None:
        """Check shapes, finiteness, symmetry and positive definiteness.

        Raises
        ------
        ShapeError, NonFiniteError, NotPositiveDefinite
        """
        m = self.h.shape[0] if self.h.ndim == 1 else -1
        if self.P.shape != (m, m) or self.P.dtype != np.float64 or self.h.dtype != np.float64:
            raise ShapeError(
                f"summary: expected float64 P (m, m) and h (m,), got P {self.P.shape} "
                f"{self.P.dtype} and h {self.h.shape} {self.h.dtype}"
            )
        if not np.isfinite(self.h).all():
            raise FusionError("summary: h holds NaN or inf") from None
        if self.n_obs < 0 or self.n_agents < 0:
            raise ShapeError(f"summary: negative counts ({self.n_obs}, {self.n_agents})")
        check_spd(self.P, "summary precision P")

    def moments(self) -> Moments:
        """Mean and covariance of q(v) by one Cholesky of P.

        Returns
        -------
        Moments
            ``mean`` of shape (m,), ``L_P`` the Cholesky factor of P.
        """
        L = check_spd(self.P, "summary precision P")
        return Moments(mean=cho_solve(L, self.h), L_P=L)

    def pack(self) -> np.ndarray:
        """Transport form: upper triangle of P then h, shape (m(m+1)/2 + m,) = m(m+3)/2."""
        return np.concatenate([pack_symmetric(self.P), self.h])

    @classmethod
    def unpack(
        cls, v: np.ndarray, m: int, n_obs: int, n_agents: int, encoding_hash: str
    ) -> Summary:
        """Inverse of :meth:`pack`. Does not validate: call :meth:`validate`."""
        n = m * (m + 1) // 2
        if v.ndim != 1 or v.shape[0] != n + m:
            raise ShapeError(f"packed summary: expected {n + m} values, got shape {v.shape}")
        return cls(unpack_symmetric(v[:n], m), np.array(v[n:]), n_obs, n_agents, encoding_hash)

    def max_rel_diff(self, other: Summary) -> float:
        """``|self - other| / |other|``, Frobenius norm over P and h stacked."""
        num = np.sqrt(np.sum((self.P - other.P) ** 2) + np.sum((self.h - other.h) ** 2))
        den = np.sqrt(np.sum(other.P**2) + np.sum(other.h**2))
        return float(num / den)


@dataclass(frozen=True, eq=False)
class Moments:
    """Mean of q(v) and the Cholesky factor of its precision (so ``S = (L_P L_P^T)^{-1}``)."""

    mean: np.ndarray
    L_P: np.ndarray

    def cov(self) -> np.ndarray:
        """Covariance ``P^{-1}``, shape (m, m)."""
        return symmetrize(cho_solve(self.L_P, np.eye(self.L_P.shape[0])))


def prior_summary(m: int, encoding_hash: str) -> Summary:
    """``R_0 = (I, 0)`` with zero counts: the identity of :func:`combine`."""
    return Summary(np.eye(m), np.zeros(m), 0, 0, encoding_hash)


def _require_compatible(a: Summary, b: Summary) -> None:
    if a.encoding_hash != b.encoding_hash:
        raise IncompatibleEncoding(
            f"cannot fuse summaries of encodings {a.encoding_hash} and {b.encoding_hash}"
        )
    if a.h.shape != b.h.shape:
        raise ShapeError(f"cannot fuse summaries of sizes {a.m} and {b.m}")


def combine(a: Summary, b: Summary) -> Summary:
    """Pairwise fusion ``R_a + R_b - R_0`` (COOL-GP eq. 10), counts added.

    Raises
    ------
    IncompatibleEncoding
        The summaries refer to different encodings.
    """
    _require_compatible(a, b)
    P = a.P + b.P
    P.flat[:: P.shape[0] + 1] -= 1.0  # minus the whitened prior precision I (the diagonal)
    return Summary(P, a.h + b.h, a.n_obs + b.n_obs, a.n_agents + b.n_agents, a.encoding_hash)


def subtract(a: Summary, b: Summary) -> Summary:
    """Inverse of :func:`combine`: ``R_a - R_b + R_0`` (what a holds beyond b)."""
    _require_compatible(a, b)
    P = a.P - b.P
    P.flat[:: P.shape[0] + 1] += 1.0
    return Summary(P, a.h - b.h, a.n_obs - b.n_obs, a.n_agents - b.n_agents, a.encoding_hash)


def fuse(summaries: Iterable[Summary], m: int, encoding_hash: str) -> Summary:
    """``sum_a R_a - (A - 1) R_0`` (COOL-GP eq. 12) over any number of summaries.

    Parameters
    ----------
    summaries : iterable of Summary
    m : int
        Size, used for the empty fusion (the prior).
    encoding_hash : str

    Returns
    -------
    Summary
    """
    P = np.zeros((m, m))
    h = np.zeros(m)
    n_obs = n_agents = count = 0
    for s in summaries:
        if s.encoding_hash != encoding_hash:
            raise IncompatibleEncoding(
                f"cannot fuse summaries of encodings {encoding_hash} and {s.encoding_hash}"
            )
        if s.h.shape != h.shape:
            raise ShapeError(f"cannot fuse summaries of sizes {m} and {s.m}")
        P += s.P
        h += s.h
        n_obs += s.n_obs
        n_agents += s.n_agents
        count += 1
    P.flat[:: m + 1] -= count - 1.0
    return Summary(P, h, n_obs, n_agents, encoding_hash)
