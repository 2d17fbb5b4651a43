"""Online hyperparameter learning: stochastic gradient ascent on the newest batch's ELBO.

COOL-GP (Hoang, Hoang, Low & How, AAAI 2019, Sec. 3.2; digest Sec. 6) learns the
hyperparameters ``theta = (mu, log sigma, log s, log sigma_n)`` of the model
``f(x) = s * u(W x)``, ``y = f(x) + N(0, sigma_n^2)``, ``q(W) = prod_ij N(mu_ij, sigma_ij^2)``,
by stochastic gradient ascent on

.. math::

    \\hat L(\\theta) = N' \\, L_{D_*}(q) - \\mathrm{KL}(q(W) \\| p(W)),

where ``D_*`` is the newest batch, ``N'`` the (expected) number of batches of the stream and
``q(u_I)`` is held fixed at the agent's current (fused, when available: COOL-GP Remark 3)
posterior. The per-batch term is (digest Sec. 6, Titsias & Lazaro-Gredilla 2013)

.. math::

    L_D = \\sum_{x \\in D} \\Big\\{ -\\tfrac12 \\log(2\\pi\\sigma_n^2) - \\frac{1}{2\\sigma_n^2}
        \\big[ y^2 - 2 y \\psi_1(x) K^{-1} m + s^2 - \\mathrm{tr}(K^{-1}\\Psi_2(x))
        + \\mathrm{tr}(K^{-1}(m m^T + S) K^{-1} \\Psi_2(x)) \\big] \\Big\\}.

swarmgp keeps q(u_I) in whitened coordinates ``v = L^{-1} u_I`` (``L L^T = K``), with
``q(v) = N(mean_v, cov_v)``. Then ``K^{-1} m = L^{-T} mean_v`` and the two trace terms merge into
one fixed matrix

.. math::

    A = K^{-1}(m m^T + S)K^{-1} - K^{-1} = L^{-T}(mean_v mean_v^T + cov_v - I) L^{-1},

which is far better conditioned than either term alone (``cov_v -> I`` where the data say
nothing). ``A`` and ``a = L^{-T} mean_v`` are computed once per call; only the psi-statistics
depend on ``theta``.

This module (with :mod:`reference_gp`) is the only place in the learning path that imports
torch. Everything crosses its boundary as numpy float64.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.linalg as sla
import torch

from swarmgp.fusion.encoding import Encoding
from swarmgp.fusion.errors import (
    EmptyBatchError,
    NonFiniteError,
    NumericalWarning,
    ShapeError,
    SwarmGPError,
)
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.linalg import as_float64
from swarmgp.fusion.psi import psi1, psi2_quadform

__all__ = [
    "Learner",
    "LearnerConfig",
    "batch_elbo",
    "elbo_and_grad",
    "robbins_monro_lr",
    "warm_start",
]

#: Relative symmetry tolerance accepted for the covariance of q(v).
COV_SYMMETRY_RTOL = 1e-8
#: Names of the learned parameter blocks, in the order of the flat parameter vector.
PARAM_NAMES: tuple[str, ...] = ("mu", "log_sigma", "log_s", "log_sn")
_LOG_2PI = math.log(2.0 * math.pi)
_DT = torch.float64


# --------------------------------------------------------------------------------------------
# configuration and schedule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnerConfig:
    """Settings of the online hyperparameter learner.

    Attributes
    ----------
    lr0 : float
        Base step size of the Robbins-Monro schedule.
    tau : float
        Schedule time constant (in gradient steps): ``lr_t = lr0 / (1 + t / tau)^kappa``.
    kappa : float
        Schedule exponent, in (0.5, 1] so that ``sum lr_t = inf`` and ``sum lr_t^2 < inf``.
    steps_per_batch : int
        Gradient steps taken per call of :meth:`Learner.step` (q(u) held fixed throughout).
    stream_length : int or None
        Expected number of batches ``N'`` of the stream, used when ``step`` gets
        ``n_scale=None``; ``None`` then uses the running count of batches seen.
    normalize : bool
        Divide the gradient by ``n_scale * n`` (per-datum ELBO) before clipping and stepping,
        so that ``lr0`` does not depend on stream or batch size. It rescales the step, not
        its direction, and so keeps the Robbins-Monro conditions.
    clip_norm : float or None
        Clip the (normalized) gradient to this global Euclidean norm; ``None`` disables.
    optimizer : {"adam", "sga"}
        Plain stochastic gradient ascent, or Adam with the Robbins-Monro step size.
    adam_beta1, adam_beta2, adam_eps : float
        Adam moment decay rates and denominator guard.
    mu_abs_max : float
        Bound on ``|mu_ij|``.
    log_sigma_bounds, log_s_bounds, log_sn_bounds : tuple of float
        Closed intervals the log standard deviations of q(W), the log signal scale and the
        log noise scale are projected onto after each step.
    frozen : tuple of str
        Parameter blocks (of ``"mu", "log_sigma", "log_s", "log_sn"``) left unchanged.
    """

    lr0: float = 0.05
    tau: float = 50.0
    kappa: float = 0.6
    steps_per_batch: int = 1
    stream_length: int | None = None
    normalize: bool = True
    clip_norm: float | None = 10.0
    optimizer: Literal["adam", "sga"] = "adam"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    mu_abs_max: float = 50.0
    log_sigma_bounds: tuple[float, float] = (math.log(1e-3), math.log(2.0))
    log_s_bounds: tuple[float, float] = (math.log(1e-3), math.log(1e3))
    log_sn_bounds: tuple[float, float] = (math.log(1e-3), math.log(1e2))
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (self.lr0 > 0 and math.isfinite(self.lr0)):
            raise SwarmGPError(f"learner config: expected lr0 > 0, got {self.lr0!r}")
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise SwarmGPError(f"learner config: expected tau > 0, got {self.tau!r}")
        if not (0.5 < self.kappa <= 1.0):
            raise SwarmGPError(f"learner config: expected kappa in (0.5, 1], got {self.kappa!r}")
        if not (isinstance(self.steps_per_batch, int) and self.steps_per_batch >= 1):
            raise SwarmGPError(
                f"learner config: expected steps_per_batch >= 1, got {self.steps_per_batch!r}"
            )
        if self.stream_length is not None and not (
            isinstance(self.stream_length, int) and self.stream_length >= 1
        ):
            raise SwarmGPError(
                f"learner config: expected stream_length >= 1 or None, got {self.stream_length!r}"
            )
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise SwarmGPError(f"learner config: expected clip_norm > 0, got {self.clip_norm!r}")
        if self.optimizer not in ("adam", "sga"):
            raise SwarmGPError(f"learner config: unknown optimizer {self.optimizer!r}")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1 and self.adam_eps > 0):
            raise SwarmGPError("learner config: expected Adam betas in [0, 1) and eps > 0")
        if not self.mu_abs_max > 0:
            raise SwarmGPError("learner config: expected mu_abs_max > 0")
        for name in ("log_sigma_bounds", "log_s_bounds", "log_sn_bounds"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise SwarmGPError(f"learner config: {name} must be finite with lo < hi")
        object.__setattr__(self, "frozen", tuple(self.frozen))
        bad = set(self.frozen) - set(PARAM_NAMES)
        if bad:
            raise SwarmGPError(f"learner config: unknown frozen blocks {sorted(bad)}")


def robbins_monro_lr(t: int, lr0: float, tau: float, kappa: float) -> float:
    """Robbins-Monro step size ``lr_t = lr0 / (1 + t / tau)^kappa`` (digest Sec. 6).

    Parameters
    ----------
    t : int
        Zero-based gradient step count.
    lr0, tau, kappa : float
        Base step, time constant and exponent (kappa in (0.5, 1]).

    Returns
    -------
    float
    """
    return float(lr0 / (1.0 + t / tau) ** kappa)


# --------------------------------------------------------------------------------------------
# validation and the fixed q(u) terms
# --------------------------------------------------------------------------------------------


def _check_inputs(
    X: object,
    y: object,
    hyper: Hyperparameters,
    encoding: Encoding,
    q_mean: object,
    q_cov: object,
    n_scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate everything before any state is touched; return float64 arrays."""
    if not isinstance(hyper, Hyperparameters):
        raise ShapeError(f"learner: expected Hyperparameters, got {type(hyper).__name__}")
    if not isinstance(encoding, Encoding):
        raise ShapeError(f"learner: expected an Encoding, got {type(encoding).__name__}")
    d, m = encoding.d, encoding.m
    if hyper.d != d:
        raise ShapeError(f"learner: hyperparameters have d={hyper.d}, encoding has d={d}")
    Xa = as_float64(X, "batch inputs X", (None, d))
    ya = as_float64(y, "batch outputs y", (Xa.shape[0],))
    if Xa.shape[0] == 0:
        raise EmptyBatchError("learner: expected a batch with at least one observation, got 0")
    mean = as_float64(q_mean, "q(v) mean", (m,))
    cov = as_float64(q_cov, "q(v) covariance", (m, m))
    scale = float(np.max(np.abs(cov)))
    if float(np.max(np.abs(cov - cov.T))) > COV_SYMMETRY_RTOL * max(scale, 1e-300):
        raise ShapeError("q(v) covariance: expected a symmetric matrix, it is not")
    if np.any(np.diag(cov) < 0):
        raise ShapeError("q(v) covariance: expected a non-negative diagonal")
    ns = float(n_scale)
    if not (math.isfinite(ns) and ns > 0):
        raise NonFiniteError(f"learner: expected a finite n_scale > 0, got {n_scale!r}")
    return Xa, ya, mean, 0.5 * (cov + cov.T)


def _fixed_terms_np(
    encoding: Encoding, mean: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``a = L^{-T} mean_v`` [m] and ``A = L^{-T}(mean mean^T + cov - I)L^{-1}`` [m, m]."""
    L = encoding.L
    B = np.outer(mean, mean) + cov
    B[np.diag_indices_from(B)] -= 1.0
    T = sla.solve_triangular(L, B, lower=True, trans="T", check_finite=False)
    A = sla.solve_triangular(L, T.T, lower=True, trans="T", check_finite=False)
    return encoding.unwhiten_mean(mean), 0.5 * (A + A.T)


# --------------------------------------------------------------------------------------------
# numpy value (tests, monitoring)
# --------------------------------------------------------------------------------------------


def _batch_ll_np(
    X: np.ndarray,
    y: np.ndarray,
    hyper: Hyperparameters,
    Z: np.ndarray,
    a: np.ndarray,
    A: np.ndarray,
) -> float:
    """``L_D`` (digest Sec. 6) from the fixed terms ``a``, ``A``."""
    n = X.shape[0]
    P1 = psi1(X, Z, hyper)  # [n, m]
    tr = float(psi2_quadform(X, Z, hyper, A).sum())  # sum_x tr(A Psi2(x))
    quad = float(y @ y) - 2.0 * float(y @ (P1 @ a)) + n * hyper.s**2 + tr
    return -0.5 * n * _LOG_2PI - n * hyper.log_sn - 0.5 * quad / hyper.sn2


def batch_elbo(
    X: np.ndarray,
    y: np.ndarray,
    hyper: Hyperparameters,
    encoding: Encoding,
    q_mean: np.ndarray,
    q_cov: np.ndarray,
    n_scale: float,
) -> float:
    """Stochastic ELBO ``n_scale * L_D(q) - KL(q(W) || p(W))`` in numpy (digest Sec. 6).

    The value whose gradient :meth:`Learner.step` ascends; ``KL(q(u) || p(u))`` is omitted
    because q(u) is held fixed.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    hyper : Hyperparameters
    encoding : Encoding
    q_mean : ndarray of shape (m,)
        Whitened mean of q(v).
    q_cov : ndarray of shape (m, m)
        Whitened covariance of q(v).
    n_scale : float
        ``N'``, the number of batches the stream is expected to hold.

    Returns
    -------
    float

    Raises
    ------
    ShapeError, NonFiniteError, EmptyBatchError
    """
    Xa, ya, mean, cov = _check_inputs(X, y, hyper, encoding, q_mean, q_cov, n_scale)
    a, A = _fixed_terms_np(encoding, mean, cov)
    return float(n_scale) * _batch_ll_np(Xa, ya, hyper, encoding.Z, a, A) - hyper.kl_w()


# --------------------------------------------------------------------------------------------
# torch objective
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _EncTensors:
    """Torch views of an encoding, built once per encoding hash.

    ``F`` holds, for each unordered pair ``j <= k`` of inducing inputs (``P = m(m+1)/2``), the
    features ``[z_j * z_k, z_j + z_k, z_j^2 + z_k^2]`` (shape [P, 3d]) so that
    ``log Psi_2(x)[j, k] / s^2 = c(x) + coef(x) . F[jk]`` is one [n, 3d] x [3d, P] product
    (the expansion of :mod:`swarmgp.fusion.psi`); ``pair_factor`` is 1 on the diagonal and 2
    off it, because ``sum_jk A_jk Psi_2[j, k] = sum_{j<=k} pair_factor A_jk Psi_2[j, k]``.
    """

    Z: torch.Tensor  # [m, d]
    Z2: torch.Tensor  # [m, d]
    LT: torch.Tensor  # [m, m], L^T (upper triangular)
    F: torch.Tensor  # [P, 3d]
    iu: tuple[torch.Tensor, torch.Tensor]  # row and column indices of the pairs, [P] each
    pair_factor: torch.Tensor  # [P]


_ENC_CACHE: OrderedDict[str, _EncTensors] = OrderedDict()
_ENC_CACHE_SIZE = 8


def _encoding_tensors(encoding: Encoding) -> _EncTensors:
    """Cached torch tensors of an encoding (:class:`_EncTensors`), keyed by its hash."""
    hit = _ENC_CACHE.get(encoding.hash)
    if hit is not None:
        _ENC_CACHE.move_to_end(encoding.hash)
        return hit
    Zn = np.array(encoding.Z, dtype=np.float64)
    j, k = np.triu_indices(Zn.shape[0])
    Fn = np.concatenate([Zn[j] * Zn[k], Zn[j] + Zn[k], Zn[j] ** 2 + Zn[k] ** 2], axis=1)  # [P, 3d]
    Z = torch.from_numpy(Zn)
    val = _EncTensors(
        Z=Z,
        Z2=Z * Z,
        LT=torch.from_numpy(np.ascontiguousarray(encoding.L.T, dtype=np.float64)),
        F=torch.from_numpy(np.ascontiguousarray(Fn)),
        iu=(torch.from_numpy(j), torch.from_numpy(k)),
        pair_factor=torch.from_numpy(np.where(j == k, 1.0, 2.0)),
    )
    _ENC_CACHE[encoding.hash] = val
    while len(_ENC_CACHE) > _ENC_CACHE_SIZE:
        _ENC_CACHE.popitem(last=False)
    return val


def _fixed_terms_torch(
    encoding: Encoding, mean: np.ndarray, cov: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch ``a = L^{-T} mean_v`` [m] and the pair weights of ``A`` [P].

    ``A = L^{-T}(mean mean^T + cov - I)L^{-1}`` (module docstring); the weights are
    ``pair_factor * A[j, k]`` over the pairs ``j <= k``.
    """
    et = _encoding_tensors(encoding)
    B = np.outer(mean, mean) + cov
    B[np.diag_indices_from(B)] -= 1.0
    Bt = torch.from_numpy(B)
    T = torch.linalg.solve_triangular(et.LT, Bt, upper=True)  # L^{-T} B
    A = torch.linalg.solve_triangular(et.LT, T.T.contiguous(), upper=True)  # L^{-T} B L^{-1}
    A = 0.5 * (A + A.T)
    a = torch.linalg.solve_triangular(et.LT, torch.from_numpy(mean)[:, None], upper=True)[:, 0]
    return a, A[et.iu] * et.pair_factor


def _objective_torch(
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    log_s: torch.Tensor,
    log_sn: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    et: _EncTensors,
    a: torch.Tensor,
    w: torch.Tensor,
    n_scale: float,
) -> torch.Tensor:
    """``n_scale * L_D - KL(q(W)||p(W))`` as a differentiable torch scalar (digest Sec. 6).

    Shapes: mu, log_sigma [d, d]; log_s, log_sn []; X [n, d]; y [n]; a [m]; w [P] (pair
    weights of A). psi-statistics as in :mod:`swarmgp.fusion.psi` (digest Sec. 2.4).
    """
    n = X.shape[0]
    sigma2 = torch.exp(2.0 * log_sigma)
    nu = X @ mu.T  # [n, d]
    v = (X * X) @ sigma2.T  # [n, d]
    # psi_1 / s, expanded so that no [n, m, d] tensor is formed
    a1 = 1.0 + v
    quad1 = ((nu * nu) / a1).sum(1)[:, None] - 2.0 * (nu / a1) @ et.Z.T + (1.0 / a1) @ et.Z2.T
    P1 = torch.exp(-0.5 * torch.log(a1).sum(1)[:, None] - 0.5 * quad1)  # [n, m]
    # Psi_2 / s^2 over pairs j <= k: log = c + b.(z_j z_k) + g.(z_j + z_k) + h.(z_j^2 + z_k^2)
    a2 = 1.0 + 2.0 * v
    c = -0.5 * torch.log(a2).sum(1) - ((nu * nu) / a2).sum(1)  # [n]
    coef = torch.cat([0.5 * (1.0 - 1.0 / a2), nu / a2, -0.25 * (1.0 + 1.0 / a2)], 1)  # [n, 3d]
    E = torch.addmm(c[:, None], coef, et.F.T)  # [n, P]
    tr = (torch.exp(E) @ w).sum()  # sum_x tr(A Psi2(x)) / s^2
    s = torch.exp(log_s)
    sn2 = torch.exp(2.0 * log_sn)
    quad = (y * y).sum() - 2.0 * s * (y @ (P1 @ a)) + n * s * s + s * s * tr
    ll = -0.5 * n * _LOG_2PI - n * log_sn - 0.5 * quad / sn2
    kl = (0.5 * (mu * mu + sigma2 - 1.0) - log_sigma).sum()
    return n_scale * ll - kl


def _params_torch(hyper: Hyperparameters) -> list[torch.Tensor]:
    return [
        torch.tensor(hyper.mu, dtype=_DT, requires_grad=True),
        torch.tensor(hyper.log_sigma, dtype=_DT, requires_grad=True),
        torch.tensor(hyper.log_s, dtype=_DT, requires_grad=True),
        torch.tensor(hyper.log_sn, dtype=_DT, requires_grad=True),
    ]


def _value_and_grad(
    hyper: Hyperparameters,
    Xt: torch.Tensor,
    yt: torch.Tensor,
    encoding: Encoding,
    a: torch.Tensor,
    w: torch.Tensor,
    n_scale: float,
) -> tuple[float, np.ndarray]:
    """Objective value and its gradient, flattened in ``PARAM_NAMES`` order, shape (2d^2+2,)."""
    et = _encoding_tensors(encoding)
    params = _params_torch(hyper)
    mu, log_sigma, log_s, log_sn = params
    obj = _objective_torch(mu, log_sigma, log_s, log_sn, Xt, yt, et, a, w, n_scale)
    grads = torch.autograd.grad(obj, params)
    g = np.concatenate([gr.detach().numpy().ravel() for gr in grads])
    return float(obj.detach()), g


def elbo_and_grad(
    X: np.ndarray,
    y: np.ndarray,
    hyper: Hyperparameters,
    encoding: Encoding,
    q_mean: np.ndarray,
    q_cov: np.ndarray,
    n_scale: float,
) -> tuple[float, dict[str, np.ndarray | float]]:
    """Torch value and autograd gradient of :func:`batch_elbo` (for tests and diagnostics).

    Parameters
    ----------
    X, y, hyper, encoding, q_mean, q_cov, n_scale
        As in :func:`batch_elbo`.

    Returns
    -------
    value : float
        ``n_scale * L_D - KL(q(W)||p(W))``.
    grad : dict
        ``"mu"`` and ``"log_sigma"`` arrays of shape (d, d), ``"log_s"`` and ``"log_sn"`` floats.
    """
    Xa, ya, mean, cov = _check_inputs(X, y, hyper, encoding, q_mean, q_cov, n_scale)
    a, w = _fixed_terms_torch(encoding, mean, cov)
    val, g = _value_and_grad(
        hyper, torch.from_numpy(Xa), torch.from_numpy(ya), encoding, a, w, float(n_scale)
    )
    return val, _unflatten(g, hyper.d)


def _flatten(hyper: Hyperparameters) -> np.ndarray:
    return np.concatenate(
        [hyper.mu.ravel(), hyper.log_sigma.ravel(), [hyper.log_s], [hyper.log_sn]]
    )


def _unflatten(theta: np.ndarray, d: int) -> dict[str, np.ndarray | float]:
    k = d * d
    return {
        "mu": theta[:k].reshape(d, d).copy(),
        "log_sigma": theta[k : 2 * k].reshape(d, d).copy(),
        "log_s": float(theta[2 * k]),
        "log_sn": float(theta[2 * k + 1]),
    }


# --------------------------------------------------------------------------------------------
# the learner
# --------------------------------------------------------------------------------------------


class Learner:
    """Robbins-Monro stochastic gradient ascent on ``N' L_{D*}(q) - KL(q(W)||p(W))``.

    The only state is the gradient-step counter ``t``, the batch counter ``n_batches`` and,
    for Adam, the moment estimates; everything else is an input of :meth:`step`.

    Parameters
    ----------
    config : LearnerConfig, optional
    """

    def __init__(self, config: LearnerConfig | None = None) -> None:
        self.config = config if config is not None else LearnerConfig()
        self.t = 0
        self.n_batches = 0
        self._m1: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self.last_grad_norm = float("nan")
        self.last_objective = float("nan")

    def lr(self, t: int | None = None) -> float:
        """Step size at gradient step ``t`` (default: the next one)."""
        c = self.config
        return robbins_monro_lr(self.t if t is None else t, c.lr0, c.tau, c.kappa)

    def reset(self) -> None:
        """Forget the counters and the optimizer moments."""
        self.t = 0
        self.n_batches = 0
        self._m1 = self._m2 = None

    def _mask(self, d: int) -> np.ndarray:
        k = d * d
        mask = np.ones(2 * k + 2)
        fr = self.config.frozen
        if "mu" in fr:
            mask[:k] = 0.0
        if "log_sigma" in fr:
            mask[k : 2 * k] = 0.0
        if "log_s" in fr:
            mask[2 * k] = 0.0
        if "log_sn" in fr:
            mask[2 * k + 1] = 0.0
        return mask

    def _project(self, theta: np.ndarray, d: int) -> np.ndarray:
        c = self.config
        k = d * d
        out = theta.copy()
        np.clip(out[:k], -c.mu_abs_max, c.mu_abs_max, out=out[:k])
        np.clip(out[k : 2 * k], *c.log_sigma_bounds, out=out[k : 2 * k])
        out[2 * k] = min(max(out[2 * k], c.log_s_bounds[0]), c.log_s_bounds[1])
        out[2 * k + 1] = min(max(out[2 * k + 1], c.log_sn_bounds[0]), c.log_sn_bounds[1])
        return out

    def step(
        self,
        X: np.ndarray,
        y: np.ndarray,
        hyper: Hyperparameters,
        encoding: Encoding,
        q_mean: np.ndarray,
        q_cov: np.ndarray,
        n_scale: float | None = None,
    ) -> Hyperparameters:
        """Take ``steps_per_batch`` ascent steps on ``n_scale * L_D(q) - KL(q(W)||p(W))``.

        The gradient is the unbiased stochastic gradient of COOL-GP Sec. 3.2 (digest Sec. 6)
        with q(u) held fixed at the given whitened moments (the fused posterior when the agent
        has one, COOL-GP Remark 3). Parameters are ``(mu, log sigma, log s, log sigma_n)``.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            The newest batch's (standardized) inputs.
        y : ndarray of shape (n,)
        hyper : Hyperparameters
            Current hyperparameters (not modified).
        encoding : Encoding
        q_mean : ndarray of shape (m,)
            Whitened mean of q(v), ``v = L^{-1} u_I``.
        q_cov : ndarray of shape (m, m)
            Whitened covariance of q(v).
        n_scale : float or None
            ``N'``; ``None`` uses ``config.stream_length`` or else the running batch count.

        Returns
        -------
        Hyperparameters
            The updated hyperparameters.

        Raises
        ------
        ShapeError, NonFiniteError, EmptyBatchError
            Bad inputs, or a non-finite objective or gradient at the first step; the learner's
            counters and moments are then unchanged. A non-finite value at a later inner step
            stops the inner loop with a :class:`NumericalWarning` and keeps the steps taken.
        """
        c = self.config
        if n_scale is None:
            n_scale = float(c.stream_length or (self.n_batches + 1))
        Xa, ya, mean, cov = _check_inputs(X, y, hyper, encoding, q_mean, q_cov, n_scale)
        d = hyper.d
        P = 2 * d * d + 2
        if c.optimizer == "adam" and self._m1 is not None and self._m1.shape[0] != P:
            raise ShapeError(
                f"learner: Adam state holds {self._m1.shape[0]} parameters, "
                f"hyperparameters have {P}; call reset() to change d"
            )
        ns = float(n_scale)
        n = Xa.shape[0]
        a, w = _fixed_terms_torch(encoding, mean, cov)
        Xt, yt = torch.from_numpy(Xa), torch.from_numpy(ya)
        mask = self._mask(d)
        norm = ns * n if c.normalize else 1.0

        # local copies; committed only at the end
        t = self.t
        m1 = self._m1.copy() if self._m1 is not None else np.zeros(P)
        m2 = self._m2.copy() if self._m2 is not None else np.zeros(P)
        theta = _flatten(hyper)
        cur = hyper
        gnorm = float("nan")
        obj = float("nan")
        for k in range(c.steps_per_batch):
            val, g = _value_and_grad(cur, Xt, yt, encoding, a, w, ns)
            if not (math.isfinite(val) and np.isfinite(g).all()):
                if k == 0:
                    raise NonFiniteError("learner: the ELBO or its gradient is not finite")
                warnings.warn(
                    f"learner: non-finite ELBO gradient at inner step {k}; stopping early",
                    NumericalWarning,
                    stacklevel=2,
                )
                break
            obj = val
            g = g * mask / norm
            gnorm = float(np.linalg.norm(g))
            if c.clip_norm is not None and gnorm > c.clip_norm:
                g = g * (c.clip_norm / gnorm)
            lr = robbins_monro_lr(t, c.lr0, c.tau, c.kappa)
            if c.optimizer == "adam":
                m1 = c.adam_beta1 * m1 + (1.0 - c.adam_beta1) * g
                m2 = c.adam_beta2 * m2 + (1.0 - c.adam_beta2) * g * g
                m1h = m1 / (1.0 - c.adam_beta1 ** (t + 1))
                m2h = m2 / (1.0 - c.adam_beta2 ** (t + 1))
                delta = lr * m1h / (np.sqrt(m2h) + c.adam_eps)
            else:
                delta = lr * g
            theta = self._project(theta + delta * mask, d)
            t += 1
            u = _unflatten(theta, d)
            cur = Hyperparameters(u["mu"], u["log_sigma"], u["log_s"], u["log_sn"])

        # commit
        self.t = t
        self.n_batches += 1
        if c.optimizer == "adam":
            self._m1, self._m2 = m1, m2
        self.last_grad_norm = gnorm
        self.last_objective = obj
        return cur


# --------------------------------------------------------------------------------------------
# warm start from an exact GP fit
# --------------------------------------------------------------------------------------------


def warm_start(
    X: np.ndarray,
    y: np.ndarray,
    *,
    iters: int = 100,
    lr: float = 0.1,
    sigma: float = 0.05,
    lengthscale_bounds: tuple[float, float] = (0.05, 50.0),
    seed: int = 0,
) -> Hyperparameters:
    """Initial hyperparameters from an exact ARD GP fitted (GPyTorch) to an agent's first data.

    Fits ``y ~ GP(0, s^2 exp(-sum_i (x_i - x'_i)^2 / (2 l_i^2))) + N(0, sigma_n^2)`` by Adam on
    the exact marginal likelihood, then maps it onto the COOL-GP model (digest Sec. 2.1): with
    ``W = diag(1/l_i)``, ``s^2 k(Wx, Wx')`` is that ARD kernel, so ``mu = diag(1/l)``,
    ``log sigma = log(sigma)``, ``s = sqrt(outputscale)``, ``sigma_n = sqrt(noise)``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Standardized inputs (small n: the fit is O(n^3) per iteration).
    y : ndarray of shape (n,)
    iters : int
        Adam iterations.
    lr : float
        Adam step size.
    sigma : float
        Standard deviation given to every entry of q(W).
    lengthscale_bounds : tuple of float
        Fitted lengthscales are clipped to this interval.
    seed : int
        Seed of a forked torch RNG (the fit itself uses no randomness at small n).

    Returns
    -------
    Hyperparameters

    Raises
    ------
    ShapeError, NonFiniteError, EmptyBatchError
        Bad inputs. A fit that fails numerically warns with :class:`NumericalWarning` and
        returns ``Hyperparameters.initial(d)``.
    """
    import gpytorch

    Xa = as_float64(X, "warm start X", (None, None))
    ya = as_float64(y, "warm start y", (Xa.shape[0],))
    n, d = Xa.shape
    if n == 0:
        raise EmptyBatchError("warm start: expected at least one observation, got 0")
    if d == 0:
        raise ShapeError("warm start: expected d >= 1")
    if not (isinstance(iters, int) and iters >= 0):
        raise ShapeError(f"warm start: expected iters >= 0, got {iters!r}")

    Xt = torch.from_numpy(Xa)
    yt = torch.from_numpy(ya)
    var_y = float(np.var(ya)) if n > 1 else float(ya[0] ** 2)
    var_y = max(var_y, 1e-4)

    class _ExactGP(gpytorch.models.ExactGP):
        def __init__(self, lik: gpytorch.likelihoods.GaussianLikelihood) -> None:
            super().__init__(Xt, yt, lik)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=d)
            )

        def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(seed)
        lik = gpytorch.likelihoods.GaussianLikelihood().to(_DT)
        model = _ExactGP(lik).to(_DT)
        model.covar_module.base_kernel.lengthscale = torch.ones(1, d, dtype=_DT)
        model.covar_module.outputscale = torch.tensor(var_y, dtype=_DT)
        lik.noise = torch.tensor(max(0.1 * var_y, 2e-4), dtype=_DT)
        model.train()
        lik.train()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
        ok = True
        with gpytorch.settings.max_cholesky_size(10**6):
            for _ in range(iters):
                opt.zero_grad()
                loss = -mll(model(Xt), yt)
                if not torch.isfinite(loss):
                    ok = False
                    break
                loss.backward()
                opt.step()
        ls = model.covar_module.base_kernel.lengthscale.detach().numpy().reshape(d)
        os_ = float(model.covar_module.outputscale.detach())
        noise = float(lik.noise.detach().reshape(-1)[0])
    numerical = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if not ok or not (np.isfinite(ls).all() and math.isfinite(os_) and math.isfinite(noise)):
        warnings.warn(
            "warm start: the exact GP fit failed; using the default initial hyperparameters",
            NumericalWarning,
            stacklevel=2,
        )
        return Hyperparameters.initial(d)
    if numerical:
        warnings.warn(
            f"warm start: the exact GP fit reported {len(numerical)} numerical warning(s), "
            f"first: {numerical[0].message}",
            NumericalWarning,
            stacklevel=2,
        )
    ls = np.clip(ls, *lengthscale_bounds)
    return Hyperparameters(
        mu=np.diag(1.0 / ls),
        log_sigma=np.full((d, d), math.log(sigma)),
        log_s=0.5 * math.log(max(os_, 1e-12)),
        log_sn=0.5 * math.log(max(noise, 1e-12)),
    )
