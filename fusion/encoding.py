"""The common encoding: latent inducing inputs shared bit-for-bit by every agent.

COOL-GP (Hoang et al. 2019, Sec. 2) places m inducing inputs ``I`` in the latent space of a
unit squared-exponential GP ``u``. Because that kernel has no hyperparameters, every agent
shares the prior ``p(u_I) = N(0, K)`` with ``K = k(I, I)``, and so summaries of different
agents, learned with different hyperparameters, fuse exactly.

swarmgp works in *whitened* coordinates ``v = L^{-1} u_I`` where ``L L^T = K``: the prior is
``N(0, I_m)``, the prior natural parameters are ``R_0 = (I_m, 0)``, and a batch adds
``(L^{-1} C_II L^{-T} / sigma_n^2, L^{-1} C_ID y / sigma_n^2)``. This is a fixed linear change of
variables shared by all agents, so the fusion algebra ``R_F = sum_a R_a - (A - 1) R_0`` is the
same as the paper's, while the matrices that travel and get factorized are far better
conditioned than the paper's ``K^{-1} C K^{-1}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import scipy.linalg as sla

from swarmgp.fusion.design import halton
from swarmgp.fusion.errors import IncompatibleEncoding, ShapeError
from swarmgp.fusion.linalg import cholesky
from swarmgp.fusion.psi import pair_features

__all__ = ["Design", "Encoding", "EncodingSpec", "make_encoding", "unit_se_kernel"]

Design = Literal["halton", "sobol", "grid", "normal"]

#: Relative jitter added to the diagonal of K; part of the spec, so part of the hash.
DEFAULT_JITTER = 1e-6


def unit_se_kernel(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Unit squared-exponential kernel ``exp(-|a - b|^2 / 2)`` (digest Sec. 2.1).

    Parameters
    ----------
    A : ndarray of shape (n, d)
    B : ndarray of shape (p, d)

    Returns
    -------
    ndarray of shape (n, p)
    """
    sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T  # [n, p]
    return np.exp(-0.5 * np.maximum(sq, 0.0))


@dataclass(frozen=True)
class EncodingSpec:
    """The small spec every agent of a swarm shares; it determines the encoding exactly.

    Attributes
    ----------
    d : int
        Latent (and input) dimension.
    m : int
        Number of inducing inputs.
    design : {"halton", "sobol", "grid", "normal"}
        How the inducing inputs are laid out. "halton" and "sobol" are both our own scrambled
        Halton design (:mod:`swarmgp.fusion.design`) from independent permutation streams.
    seed : int
        Seed of the scrambled low-discrepancy or normal design.
    scale : float
        Half-width of the box ``[-scale, scale]^d`` (or standard deviation for "normal").
    jitter : float
        Diagonal jitter added to K.
    """

    d: int
    m: int
    design: Design = "halton"
    seed: int = 0
    scale: float = 2.0
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if not (isinstance(self.d, int) and self.d >= 1):
            raise ShapeError(f"encoding: expected d >= 1, got {self.d!r}")
        if not (isinstance(self.m, int) and self.m >= 1):
            raise ShapeError(f"encoding: expected m >= 1, got {self.m!r}")
        if self.design not in ("halton", "sobol", "grid", "normal"):
            raise ShapeError(f"encoding: unknown design {self.design!r}")
        if not (self.scale > 0 and self.jitter >= 0):
            raise ShapeError("encoding: expected scale > 0 and jitter >= 0")


def _inducing_inputs(spec: EncodingSpec) -> np.ndarray:
    d, m = spec.d, spec.m
    if spec.design in ("halton", "sobol"):
        # "sobol" is kept as a spec name for old configurations; it now draws our own scrambled
        # Halton design from an independent permutation stream (fusion never imports
        # scipy.stats). The design name is part of the hash, so the two never collide.
        stream = spec.seed if spec.design == "halton" else [spec.seed, 0x50B01]
        u = halton(m, d, stream)  # [m, d]
        return spec.scale * (2.0 * u - 1.0)
    if spec.design == "normal":
        return spec.scale * np.random.default_rng(spec.seed).standard_normal((m, d))
    # grid: the first m points of the smallest full grid, so points stay evenly spread
    k = int(np.ceil(m ** (1.0 / d)))
    axes = [np.linspace(-spec.scale, spec.scale, k)] * d
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    return np.ascontiguousarray(pts[:m])


@dataclass(frozen=True, eq=False)
class Encoding:
    """A built common encoding.

    Attributes
    ----------
    spec : EncodingSpec
    Z : ndarray of shape (m, d)
        Latent inducing inputs.
    K : ndarray of shape (m, m)
        ``k(Z, Z) + jitter * I``.
    L : ndarray of shape (m, m)
        Lower Cholesky factor of K.
    hash : str
        Content hash of the spec and of Z, compared by agents before they fuse.
    """

    spec: EncodingSpec
    Z: np.ndarray
    K: np.ndarray
    L: np.ndarray
    hash: str = field(default="")

    @property
    def m(self) -> int:
        """Number of inducing inputs."""
        return self.spec.m

    @property
    def d(self) -> int:
        """Latent dimension."""
        return self.spec.d

    @cached_property
    def pairs(self) -> np.ndarray:
        """``pair_features(Z)`` for the pair form of Psi_2, shape (m(m+1)/2, 3d + 1).

        Built once on first use and shared by every encoder of this encoding (it depends on Z
        only; 0.77 MB at m = 100, d = 6).
        """
        return pair_features(self.Z)

    def whiten(self, C: np.ndarray) -> np.ndarray:
        """``L^{-1} C L^{-T}`` for symmetric C of shape (m, m), symmetrized."""
        T = sla.solve_triangular(self.L, C, lower=True, check_finite=False)
        T = sla.solve_triangular(self.L, T.T, lower=True, check_finite=False)
        return 0.5 * (T + T.T)

    def whiten_vec(self, c: np.ndarray) -> np.ndarray:
        """``L^{-1} c`` for c of shape (m,) or (m, k)."""
        return sla.solve_triangular(self.L, c, lower=True, check_finite=False)

    def unwhiten_mean(self, v: np.ndarray) -> np.ndarray:
        """``L^{-T} v``: maps a whitened vector to ``K^{-1} u`` coordinates, shape (m,)."""
        return sla.solve_triangular(self.L, v, lower=True, trans="T", check_finite=False)

    def require_same(self, other_hash: str) -> None:
        """Raise :class:`IncompatibleEncoding` unless ``other_hash`` equals this hash."""
        if other_hash != self.hash:
            raise IncompatibleEncoding(
                f"encoding mismatch: expected {self.hash}, got {other_hash}; "
                "agents must share d, m, design, seed, scale and jitter"
            )


def make_encoding(spec: EncodingSpec) -> Encoding:
    """Build the common encoding deterministically from its spec.

    Parameters
    ----------
    spec : EncodingSpec

    Returns
    -------
    Encoding
    """
    Z = np.ascontiguousarray(_inducing_inputs(spec), dtype=np.float64)  # [m, d]
    K = unit_se_kernel(Z, Z) + spec.jitter * np.eye(spec.m)  # [m, m]
    L = cholesky(K, "K(I, I)", max_jitter=1e-3)
    h = hashlib.sha256()
    h.update(repr((spec.d, spec.m, spec.design, spec.seed, spec.scale, spec.jitter)).encode())
    h.update(Z.astype("<f8").tobytes())
    return Encoding(spec=spec, Z=Z, K=K, L=L, hash=h.hexdigest()[:16])
