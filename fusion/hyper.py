"""An agent's hyperparameters: the factorized Gaussian q(W), signal scale and noise.

The model (COOL-GP Sec. 2) is ``f(x) = s * u(W x)``, ``y = f(x) + eps``, ``eps ~ N(0, sigma_n^2)``,
with ``q(W) = prod_ij N(mu_ij, sigma_ij^2)`` and prior ``p(W) = prod_ij N(0, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swarmgp.fusion.errors import ShapeError
from swarmgp.fusion.linalg import as_float64

__all__ = ["Hyperparameters"]


@dataclass(frozen=True, eq=False)
class Hyperparameters:
    """Parameters of q(W), the signal scale and the noise scale.

    Attributes
    ----------
    mu : ndarray of shape (d, d)
        Means of q(W).
    log_sigma : ndarray of shape (d, d)
        Log standard deviations of q(W).
    log_s : float
        Log signal scale ``log s``.
    log_sn : float
        Log noise standard deviation ``log sigma_n``.
    """

    mu: np.ndarray
    log_sigma: np.ndarray
    log_s: float
    log_sn: float

    def __post_init__(self) -> None:
        mu = as_float64(self.mu, "q(W) mean", (None, None))
        d = mu.shape[0]
        if mu.shape != (d, d):
            raise ShapeError(f"q(W) mean: expected a square (d, d) matrix, got {mu.shape}")
        ls = as_float64(self.log_sigma, "q(W) log std", (d, d))
        if not (np.isfinite(self.log_s) and np.isfinite(self.log_sn)):
            raise ShapeError("hyperparameters: log_s and log_sn must be finite")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "log_sigma", ls)
        object.__setattr__(self, "log_s", float(self.log_s))
        object.__setattr__(self, "log_sn", float(self.log_sn))

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.mu.shape[0])

    @property
    def sigma2(self) -> np.ndarray:
        """Variances of q(W), shape (d, d)."""
        return np.exp(2.0 * self.log_sigma)

    @property
    def s(self) -> float:
        """Signal scale."""
        return float(np.exp(self.log_s))

    @property
    def sn2(self) -> float:
        """Noise variance."""
        return float(np.exp(2.0 * self.log_sn))

    @classmethod
    def initial(
        cls,
        d: int,
        lengthscale: float = 1.0,
        sigma: float = 0.1,
        s: float = 1.0,
        sn: float = 0.3,
    ) -> Hyperparameters:
        """Shared initial values: ``mu = I / lengthscale``, small q(W) spread.

        With inputs standardized, ``W = I / l`` is an isotropic SE kernel of length-scale l.
        """
        return cls(
            mu=np.eye(d) / lengthscale,
            log_sigma=np.full((d, d), np.log(sigma)),
            log_s=float(np.log(s)),
            log_sn=float(np.log(sn)),
        )

    def kl_w(self) -> float:
        """``KL(q(W) || p(W))`` = sum_ij [ (mu^2 + sigma^2 - 1)/2 - log sigma ] (digest Sec. 6)."""
        return float(np.sum(0.5 * (self.mu**2 + self.sigma2 - 1.0) - self.log_sigma))
