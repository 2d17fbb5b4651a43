"""The collective mode: shared hyperparameters, scale-free statistics, the collapsed bound.

Model (DESIGN.md Sec. 1, "The collective mode"). On standardized inputs ``x`` (d-vectors),

.. math::

    f(x) = s\\,u(W x) + b, \\quad u \\sim GP(0, \\exp(-|z - z'|^2 / 2)), \\quad
    b \\sim N(0, \\sigma_b^2), \\quad y = f(x) + N(0, \\sigma_n^2),

with diagonal ``W = diag(1 / ell)`` and m inducing inputs ``Z`` in input space. The whitened
features are ``phi(x) = L^{-1} k(Z W, x W)`` with ``L L^T = K_ZZ + jitter I``, and the augmented
row ``phi_aug(x) = [phi(x), 1]`` (bias column). The statistics that travel are scale-free,

.. math::

    G = \\Phi^T \\Phi, \\quad g = \\Phi^T y, \\quad y^T y, \\quad n,

and fuse by a plain sum. With ``D = diag(s, ..., s, sigma_b)`` (m+1 entries),
``P = I + D G D / sigma_n^2`` and ``h = D g / sigma_n^2``, the collapsed bound of Titsias (2009)
with ``Q_ff = s^2 K_fZ K_ZZ^{-1} K_Zf + sigma_b^2 1 1^T = Phi D^2 Phi^T`` is, by Woodbury and the
matrix determinant lemma,

.. math::

    \\mathcal{L} = \\log N(y | 0, Q_{ff} + \\sigma_n^2 I) - tr(K_{ff} - Q_{ff}) / (2 \\sigma_n^2)
      = -\\tfrac12 (n \\log 2\\pi + n \\log \\sigma_n^2 + \\log|P|
                      + y^T y / \\sigma_n^2 - h^T P^{-1} h)
        - \\frac{s^2}{2 \\sigma_n^2} (n - tr G_{[:m, :m]}).

The bias is an exact linear feature, so it adds nothing to the trace term. The posterior over the
whitened weights ``w`` (``f = Phi D w``, ``w ~ N(0, I)``) is ``N(P^{-1} h, P^{-1})``.

Gradients for a distributed L-BFGS split by the chain rule: ``dL/dG``, ``dL/dg`` and the
derivatives in ``(log s, log sigma_n, log sigma_b)`` come from the fused statistics (identical on
every agent, :func:`bound_and_stat_grads`); each agent back-propagates ``dL/dG``, ``dL/dg``
through its own ``Phi`` into ``(log ell, Z)`` (:func:`local_grad_contribution`); the sum of the
agents' contributions is the gradient of the pooled data.

References
----------
Titsias, "Variational learning of inducing variables in sparse Gaussian processes", AISTATS 2009.
Murray, "Differentiation of the Cholesky decomposition", arXiv:1602.07527, 2016.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg as sla

from swarmgp.fusion.design import scaled_design
from swarmgp.fusion.encoding import unit_se_kernel
from swarmgp.fusion.errors import EmptyBatchError, NonFiniteError, NotPositiveDefinite, ShapeError
from swarmgp.fusion.linalg import (
    as_float64,
    cho_solve,
    chol_inverse,
    cholesky,
    identity_plus_psd,
    pack_symmetric,
    packed_size,
    right_solve_lower,
    symmetrize,
    unpack_symmetric,
)

__all__ = [
    "CollectiveParams",
    "FeaturePart",
    "FitResult",
    "KernelFactor",
    "Stats",
    "add_stats",
    "assemble_grad",
    "batch_stats",
    "bound_and_stat_grads",
    "collapsed_bound",
    "feature_parts",
    "features",
    "fit_pooled",
    "inducing_grad",
    "initial_params",
    "kernel_factors",
    "local_grad_contribution",
    "log_scale_prior",
    "penalized_bound",
    "pooled_bound_and_grad",
    "posterior",
    "predict_collective",
    "refit_scale_noise",
    "refit_scale_site",
    "SiteStats",
    "add_site_stats",
    "predict_site",
    "site_adjust",
    "site_bound",
    "site_bound_and_grads",
    "site_local_contribution",
    "site_pooled_bound_and_grad",
    "sum_site_stats",
    "sum_stats",
    "theta_bounds",
]

#: Absolute jitter on the unit diagonal of K_ZZ; part of the frozen encoding and its hash.
DEFAULT_JITTER = 1e-6
#: Smallest noise standard deviation any optimizer here may reach (standardized units).
MIN_NOISE = 1e-4
#: Relative tolerances of :meth:`Stats.validate`.
STATS_RTOL = 1e-8

_LOG_2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CollectiveParams:
    """The shared hyperparameters theta of the collective model.

    Attributes
    ----------
    log_ell : ndarray of shape (d,)
        Log length-scales; ``W = diag(exp(-log_ell))``.
    Z : ndarray of shape (m, d)
        Inducing inputs in (standardized) input space.
    log_s : float
        Log signal scale s (the kernel of u has unit variance).
    log_sn : float
        Log noise standard deviation sigma_n.
    log_sb : float
        Log prior standard deviation sigma_b of the bias.
    jitter : float
        Absolute jitter added to the unit diagonal of ``K_ZZ``; not optimized.
    log_tau : float or None
        Log prior standard deviation tau of the per-agent offset (site effect,
        :func:`site_adjust`); None (default): no site effect.
    static_dims : tuple of int
        Inputs of the static component (the time input left out); () (default): none.
    log_ell_st : ndarray of shape (d_st,) or None
        Log length-scales of the static component over ``static_dims``.
    Z_st : ndarray of shape (m_st, d_st) or None
        Its inducing inputs (in the static inputs' space).
    log_s_st : float
        Its log signal scale.

    With a static component the latent is additive, ``f(x) = s u(W x) + s_st v(W_st x_st) + b``
    with ``x_st = x[static_dims]`` and v an independent unit SE process: a field that does not
    change with time (a station's climate) and so persists where the space-time part, learned
    over a short window, has decayed to its prior. Its whitened features follow the joint
    ones, ``Phi = [Phi_joint (m - m_st), Phi_static (m_st), 1]``; ``m`` counts both.
    """

    log_ell: np.ndarray
    Z: np.ndarray
    log_s: float
    log_sn: float
    log_sb: float
    jitter: float = DEFAULT_JITTER
    log_tau: float | None = None
    static_dims: tuple[int, ...] = ()
    log_ell_st: np.ndarray | None = None
    Z_st: np.ndarray | None = None
    log_s_st: float = 0.0

    def __post_init__(self) -> None:
        log_ell = as_float64(self.log_ell, "log_ell", (None,))
        d = log_ell.shape[0]
        Z = as_float64(self.Z, "Z", (None, d))
        if d < 1 or Z.shape[0] < 1:
            raise ShapeError(f"collective params: expected d >= 1 and m >= 1, got Z {Z.shape}")
        scalars = (self.log_s, self.log_sn, self.log_sb, self.jitter)
        if not all(np.isfinite(float(v)) for v in scalars) or self.jitter < 0:
            raise NonFiniteError("collective params: expected finite scalars and jitter >= 0")
        object.__setattr__(self, "log_ell", log_ell)
        object.__setattr__(self, "Z", Z)
        for name in ("log_s", "log_sn", "log_sb", "jitter"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.log_tau is not None:
            if not np.isfinite(float(self.log_tau)):
                raise NonFiniteError("collective params: expected a finite log_tau")
            object.__setattr__(self, "log_tau", float(self.log_tau))
        self._check_static(d)

    def _check_static(self, d: int) -> None:
        dims = tuple(int(i) for i in self.static_dims)
        object.__setattr__(self, "static_dims", dims)
        if not dims:
            if self.Z_st is not None or self.log_ell_st is not None:
                raise ShapeError("collective params: a static block needs its static_dims")
            return
        if sorted(set(dims)) != list(dims) or dims[0] < 0 or dims[-1] >= d or len(dims) >= d:
            raise ShapeError(
                f"collective params: static_dims must be sorted distinct inputs of 0..{d - 1},"
                f" fewer than d, got {dims}"
            )
        if self.log_tau is not None:
            raise ShapeError("collective params: the site effect and a static block do not combine")
        k = len(dims)
        ell = as_float64(self.log_ell_st, "log_ell_st", (k,))
        Z_st = as_float64(self.Z_st, "Z_st", (None, k))
        if Z_st.shape[0] < 1 or not np.isfinite(float(self.log_s_st)):
            raise ShapeError("collective params: a static block needs m_st >= 1 and a finite scale")
        object.__setattr__(self, "log_ell_st", ell)
        object.__setattr__(self, "Z_st", Z_st)
        object.__setattr__(self, "log_s_st", float(self.log_s_st))

    @property
    def m_static(self) -> int:
        """Inducing inputs of the static component (0 without one)."""
        return 0 if self.Z_st is None else int(self.Z_st.shape[0])

    @property
    def m_joint(self) -> int:
        """Inducing inputs of the space-time (joint) component."""
        return int(self.Z.shape[0])

    @property
    def site(self) -> bool:
        """Whether the model has the per-agent offset (site effect)."""
        return self.log_tau is not None

    @property
    def tau(self) -> float:
        """Prior standard deviation of the per-agent offset (0 without the site effect)."""
        return 0.0 if self.log_tau is None else float(np.exp(self.log_tau))

    @property
    def m(self) -> int:
        """Number of inducing inputs (kernel columns of Phi), both components."""
        return self.m_joint + self.m_static

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.Z.shape[1])

    @property
    def W(self) -> np.ndarray:
        """Diagonal of W, ``1 / ell``, shape (d,)."""
        return np.exp(-self.log_ell)

    @property
    def s(self) -> float:
        """Signal scale."""
        return float(np.exp(self.log_s))

    @property
    def sn(self) -> float:
        """Noise standard deviation."""
        return float(np.exp(self.log_sn))

    @property
    def sb(self) -> float:
        """Bias prior standard deviation."""
        return float(np.exp(self.log_sb))

    @property
    def s_st(self) -> float:
        """Signal scale of the static component (0 without one)."""
        return float(np.exp(self.log_s_st)) if self.m_static else 0.0

    @property
    def static(self) -> tuple[int, float]:
        """``(m_st, log_s_st)``: what the statistics-level functions need of the static block."""
        return self.m_static, self.log_s_st

    def to_vector(self) -> np.ndarray:
        """Flat theta: ``[log_ell (d), Z.ravel() (m_joint d), log_s, log_sn, log_sb(, log_tau)
        (, log_ell_st (d_st), Z_st.ravel() (m_st d_st), log_s_st)]``."""
        tail = [self.log_s, self.log_sn, self.log_sb]
        if self.log_tau is not None:
            tail.append(self.log_tau)
        parts = [self.log_ell, self.Z.ravel(), np.array(tail)]
        if self.Z_st is not None and self.log_ell_st is not None:
            parts += [self.log_ell_st, self.Z_st.ravel(), np.array([self.log_s_st])]
        return np.concatenate(parts)

    @classmethod
    def from_vector(
        cls,
        v: np.ndarray,
        m: int,
        d: int,
        jitter: float = DEFAULT_JITTER,
        site: bool = False,
        static_dims: tuple[int, ...] = (),
        m_static: int = 0,
    ) -> CollectiveParams:
        """Inverse of :meth:`to_vector` (``site``: with ``log_tau``; ``m`` counts both blocks).

        Raises
        ------
        ShapeError
            ``v`` does not hold ``d + m_joint d + 3`` (``+ 1`` with ``site``, ``+ d_st +
            m_st d_st + 1`` with a static block) values.
        """
        k = int(site)
        ds = len(static_dims)
        mj = m - (m_static if ds else 0)
        n_st = ds + m_static * ds + 1 if ds else 0
        v = as_float64(v, "theta", (d + mj * d + 3 + k + n_st,))
        Z = v[d : d + mj * d].reshape(mj, d).copy()
        i = d + mj * d  # the scalars
        if site:
            return cls(v[:d].copy(), Z, v[i], v[i + 1], v[i + 2], jitter, float(v[i + 3]))
        if not ds:
            return cls(v[:d].copy(), Z, v[i], v[i + 1], v[i + 2], jitter)
        j = i + 3
        return cls(
            v[:d].copy(), Z, v[i], v[i + 1], v[i + 2], jitter, None, tuple(static_dims),
            v[j : j + ds].copy(), v[j + ds : j + ds + m_static * ds].reshape(m_static, ds).copy(),
            float(v[-1]),
        )  # fmt: skip

    def like(self, v: np.ndarray) -> CollectiveParams:
        """:meth:`from_vector` in this theta's layout (sizes, jitter, site, static block)."""
        return CollectiveParams.from_vector(
            v, self.m, self.d, self.jitter, self.site, self.static_dims, self.m_static
        )

    def with_scale_noise(
        self, log_s: float, log_sn: float, log_s_st: float | None = None
    ) -> CollectiveParams:
        """A copy with new ``(log s, log sigma_n[, log s_st])``; the frozen encoding is kept."""
        st = self.log_s_st if log_s_st is None else float(log_s_st)
        return replace(self, log_s=float(log_s), log_sn=float(log_sn), log_s_st=st)

    def hash(self) -> str:
        """Content hash of the frozen encoding: W, Z, sigma_b and jitter (not s, sigma_n).

        With the site effect, ``(sigma_n, tau)`` are frozen too (the agents' adjusted
        statistics depend on them) and are hashed.

        Returns
        -------
        str
            16 hexadecimal digits of the SHA-256 of the little-endian float64 bytes.
        """
        h = hashlib.sha256()
        h.update(repr(("collective", self.m, self.d)).encode())
        h.update(self.log_ell.astype("<f8").tobytes())
        h.update(self.Z.astype("<f8").tobytes())
        h.update(np.array([self.log_sb, self.jitter], dtype="<f8").tobytes())
        if self.log_tau is not None:
            h.update(b"site")
            h.update(np.array([self.log_sn, self.log_tau], dtype="<f8").tobytes())
        if self.Z_st is not None and self.log_ell_st is not None:
            h.update(repr(("static", self.static_dims)).encode())
            h.update(self.log_ell_st.astype("<f8").tobytes())
            h.update(self.Z_st.astype("<f8").tobytes())
        return h.hexdigest()[:16]


def theta_bounds(params: CollectiveParams) -> list[tuple[float | None, float | None]]:
    """Box bounds of the theta vector (layout of :meth:`CollectiveParams.to_vector`).

    Standardized units: ``ell`` in ``[1e-3, 1e3]``, Z free, ``s`` in ``[1e-3, 1e3]``,
    ``sigma_n`` in ``[MIN_NOISE, 1e2]``, ``sigma_b`` in ``[1e-4, 1e2]``. They keep L-BFGS away
    from blow-ups (K_ZZ of rank one, vanishing noise) without touching sensible optima.
    """
    le = (float(np.log(1e-3)), float(np.log(1e3)))
    b: list[tuple[float | None, float | None]] = [le] * params.d
    b += [(None, None)] * (params.m_joint * params.d)
    b += [le, (float(np.log(MIN_NOISE)), float(np.log(1e2)))]
    b += [(float(np.log(1e-4)), float(np.log(1e2)))]
    if params.site:
        b += [(float(np.log(1e-4)), float(np.log(1e2)))]
    if params.m_static:
        b += [le] * len(params.static_dims) + [(None, None)] * (
            params.m_static * len(params.static_dims)
        )
        b += [le]
    return b


def initial_params(
    lo: np.ndarray,
    hi: np.ndarray,
    m: int,
    seed: int = 0,
    *,
    ell_factor: float = 0.5,
    sn: float = 0.5,
    s: float = 1.0,
    sb: float = 1.0,
    jitter: float = DEFAULT_JITTER,
    tau: float | None = None,
    static_dims: tuple[int, ...] = (),
    m_static: int = 0,
) -> CollectiveParams:
    """Shared starting theta from the agreed input box only (no data-dependent tuning).

    ``Z`` is the scrambled Halton design of m points over ``[lo, hi)`` with the shared seed;
    ``ell = ell_factor * (hi - lo)`` (half the box width by default); ``s = 1``,
    ``sigma_n = 0.5``, ``sigma_b = 1`` in standardized units; ``tau`` (the site effect's
    offset scale) only if given. With ``static_dims`` and ``m_static > 0`` the last
    ``m_static`` of the m inducing inputs form the static component (their own design over the
    box of ``static_dims``, seed ``seed + 1``), and the two share the signal variance
    (``s = s_st = s / sqrt 2``). Within a short window a field that persists and one that
    drifts slowly fit about equally well, so a fit should start with the static field alone
    (the collective warm-up does: :class:`~swarmgp.agents.collective_model.CollectiveModel`).

    Parameters
    ----------
    lo, hi : ndarray of shape (d,)
        The agreed input box, ``lo < hi``.
    m : int
        Number of inducing inputs.
    seed : int
        Shared design seed.

    Returns
    -------
    CollectiveParams

    Raises
    ------
    ShapeError
        A degenerate box (some ``hi <= lo``) or ``m < 1``.
    """
    lo_a = as_float64(np.atleast_1d(lo), "lo", (None,))
    hi_a = as_float64(np.atleast_1d(hi), "hi", lo_a.shape)
    width = hi_a - lo_a  # [d]
    if not (width > 0).all():
        raise ShapeError(f"initial_params: expected lo < hi, got widths {width}")
    m_st = m_static if static_dims else 0
    if m - m_st < 1 or m_st < 0:
        raise ShapeError(f"initial_params: expected m > m_static >= 0, got {m} and {m_static}")
    Z = scaled_design(m - m_st, lo_a, hi_a, seed)  # [m_joint, d]
    if not m_st:
        return CollectiveParams(
            np.log(ell_factor * width),
            Z,
            float(np.log(s)),
            float(np.log(sn)),
            float(np.log(sb)),
            jitter,
            None if tau is None else float(np.log(tau)),
        )
    dims = tuple(static_dims)
    log_s = log_s_st = float(np.log(s / np.sqrt(2.0)))  # the signal variance shared equally
    Z_st = scaled_design(m_st, lo_a[list(dims)], hi_a[list(dims)], seed + 1)  # [m_st, d_st]
    return CollectiveParams(
        np.log(ell_factor * width), Z, log_s, float(np.log(sn)), float(np.log(sb)), jitter,
        None if tau is None else float(np.log(tau)),
        dims, np.log(ell_factor * width[list(dims)]), Z_st, log_s_st,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# features and statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One SE component: its input columns (None: all), ``W`` (diagonal) and ``Z``."""

    dims: list[int] | None
    W: np.ndarray  # [k]
    Z: np.ndarray  # [m_j, k]


def _blocks(params: CollectiveParams) -> list[_Block]:
    """The joint component, then the static one if any (the column order of Phi)."""
    out = [_Block(None, params.W, params.Z)]
    if params.Z_st is not None and params.log_ell_st is not None:
        out.append(_Block(list(params.static_dims), np.exp(-params.log_ell_st), params.Z_st))
    return out


@dataclass(frozen=True, eq=False)
class KernelFactor:
    """One component's inducing-side terms under theta (data-free, the same on every agent).

    Attributes
    ----------
    ZW : ndarray of shape (m_j, k)
        The scaled inducing inputs ``Z W``.
    Kzz : ndarray of shape (m_j, m_j)
        ``k(ZW, ZW)``.
    L : ndarray of shape (m_j, m_j)
        Lower Cholesky factor of ``K_ZZ + jitter I``.
    zsq : ndarray of shape (m_j,)
        ``|ZW_i|^2``, the inducing side of the cross kernel's squared distances.
    """

    ZW: np.ndarray
    Kzz: np.ndarray
    L: np.ndarray
    zsq: np.ndarray  # [m_j] squared row norms of ZW (for the cross kernel)


def kernel_factors(params: CollectiveParams) -> tuple[KernelFactor, ...]:
    """:class:`KernelFactor` of each component (joint, then static), O(m^3).

    Computed once per theta and passed to :func:`features`, :func:`batch_stats`,
    :func:`local_grad_contribution` and :func:`predict_collective`, which otherwise each
    factorize ``K_ZZ`` again.
    """
    out = []
    for b in _blocks(params):
        ZW = b.Z * b.W  # [m_j, k]
        Kzz = unit_se_kernel(ZW, ZW)  # [m_j, m_j]
        L = cholesky(Kzz + params.jitter * np.eye(b.Z.shape[0]), "K_ZZ")
        out.append(KernelFactor(ZW, Kzz, L, (ZW * ZW).sum(1)))
    return tuple(out)


def _factors_for(
    params: CollectiveParams, factors: tuple[KernelFactor, ...] | None
) -> tuple[KernelFactor, ...]:
    if factors is None:
        return kernel_factors(params)
    if len(factors) != len(_blocks(params)):
        raise ShapeError(f"kernel factors: {len(factors)} components for {params.m} columns")
    return factors


#: One component's ``(XW [n, k], A = k(XW, ZW) [n, m_j], Phi_j = A L^{-T} [n, m_j])``.
FeaturePart = tuple[np.ndarray, np.ndarray, np.ndarray]


def _cross_kernel(XW: np.ndarray, f: KernelFactor) -> np.ndarray:
    """``k(XW, ZW) [n, m_j]``, the same numbers as :func:`unit_se_kernel` in place (hot path)."""
    sq = (XW * XW).sum(1)[:, None] + f.zsq[None, :]  # [n, m_j]
    sq -= (2.0 * XW) @ f.ZW.T
    np.maximum(sq, 0.0, out=sq)
    sq *= -0.5
    return np.exp(sq, out=sq)


def _block_parts(X: np.ndarray, b: _Block, f: KernelFactor) -> FeaturePart:
    """``XW [n, k]``, ``A = k(XW, ZW) [n, m_j]`` and ``Phi_j = A L^{-T} [n, m_j]``."""
    Xb = X if b.dims is None else X[:, b.dims]  # [n, k]
    XW = Xb * b.W  # [n, k]
    A = _cross_kernel(XW, f)  # [n, m_j]
    return XW, A, right_solve_lower(f.L, A, trans=True)


def feature_parts(
    X: np.ndarray,
    params: CollectiveParams,
    factors: tuple[KernelFactor, ...] | None = None,
    check_finite: bool = True,
) -> tuple[FeaturePart, ...]:
    """Each component's ``(XW, A, Phi_j)`` for ``X`` (n, d) under ``params``.

    What :func:`batch_stats` and :func:`local_grad_contribution` both compute: the warm-up
    evaluates one then the other at the same theta on the same rows, and passes these from the
    first to the second (``parts=``) instead of computing them twice. ``check_finite=False``
    skips the NaN/inf scan of ``X`` (rows this process validated itself).
    """
    return _parts(_check_X(X, params, check_finite), params, factors)


def _parts(
    X: np.ndarray, params: CollectiveParams, factors: tuple[KernelFactor, ...] | None
) -> tuple[FeaturePart, ...]:
    """:func:`feature_parts` of an already validated X."""
    fs = _factors_for(params, factors)
    return tuple(_block_parts(X, b, f) for b, f in zip(_blocks(params), fs, strict=True))


def _checked_parts(
    parts: tuple[FeaturePart, ...], params: CollectiveParams, n: int
) -> tuple[FeaturePart, ...]:
    blocks = _blocks(params)
    if len(parts) != len(blocks) or any(
        p[2].shape != (n, b.Z.shape[0]) for p, b in zip(parts, blocks, strict=True)
    ):
        raise ShapeError(f"feature parts: not those of {n} rows under m = {params.m}")
    return parts


def _check_X(X: object, params: CollectiveParams, check_finite: bool = True) -> np.ndarray:
    return as_float64(X, "X", (None, params.d), check_finite)


def features(
    X: np.ndarray, params: CollectiveParams, factors: tuple[KernelFactor, ...] | None = None
) -> np.ndarray:
    """Whitened features with the bias column, ``Phi = [k(XW, ZW) L^{-T}, 1]``.

    With a static component, ``Phi = [Phi_joint, Phi_static, 1]``, each block whitened by its
    own ``L``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    params : CollectiveParams
        Supplies W, Z and the jitter of ``L = chol(k(ZW, ZW) + jitter I)``.
    factors : tuple of KernelFactor, optional
        :func:`kernel_factors` of ``params`` (computed here if None).

    Returns
    -------
    ndarray of shape (n, m + 1)
    """
    X = _check_X(X, params)
    return _phi(_parts(X, params, factors), X.shape[0])


def _phi(parts: tuple[FeaturePart, ...], n: int) -> np.ndarray:
    """``[Phi_1, ..., Phi_J, 1]`` (n, m + 1) from :func:`feature_parts`."""
    return np.hstack([*(p[2] for p in parts), np.ones((n, 1))])


@dataclass(frozen=True, eq=False)
class Stats:
    """Scale-free sufficient statistics of a set of observations under a frozen encoding.

    Attributes
    ----------
    G : ndarray of shape (m + 1, m + 1)
        ``Phi^T Phi`` (symmetric positive semi-definite; ``G[m, m] = n``).
    g : ndarray of shape (m + 1,)
        ``Phi^T y``.
    yy : float
        ``y^T y``.
    n : int
        Number of observations.
    """

    G: np.ndarray
    g: np.ndarray
    yy: float
    n: int

    @property
    def m(self) -> int:
        """Number of inducing inputs (the bias excluded)."""
        return int(self.g.shape[0]) - 1

    @classmethod
    def zeros(cls, m: int) -> Stats:
        """Statistics of no observations, the identity of :func:`add_stats`."""
        return cls(np.zeros((m + 1, m + 1)), np.zeros(m + 1), 0.0, 0)

    def validate(self) -> None:
        """Check shapes, dtypes, finiteness, symmetry, Cauchy-Schwarz consistency and counts.

        Raises
        ------
        ShapeError
            Wrong shapes or dtypes, or a negative or non-integral count.
        NonFiniteError
            NaN or infinite entries.
        NotPositiveDefinite
            G not symmetric, a negative diagonal, or entries that no Gram matrix can hold
            (``|G_ij| > sqrt(G_ii G_jj)``, ``|g_i| > sqrt(G_ii yy)``, ``yy < 0``).
        """
        G, g = self.G, self.g
        k = g.shape[0] if g.ndim == 1 else -1
        if k < 2 or G.shape != (k, k) or G.dtype != np.float64 or g.dtype != np.float64:
            raise ShapeError(
                f"stats: expected float64 G (m+1, m+1) and g (m+1,) with m >= 1, got "
                f"G {G.shape} {G.dtype} and g {g.shape} {g.dtype}"
            )
        if not isinstance(self.n, int | np.integer) or self.n < 0:
            raise ShapeError(f"stats: expected an integer count n >= 0, got {self.n!r}")
        if not (np.isfinite(G).all() and np.isfinite(g).all() and np.isfinite(self.yy)):
            raise NonFiniteError("stats: expected finite G, g and yy, got NaN or inf")
        scale = max(float(np.max(np.abs(G))), 1.0)
        if float(np.max(np.abs(G - G.T))) > STATS_RTOL * scale:
            raise NotPositiveDefinite("stats: expected a symmetric G, it is not")
        dG = np.diag(G)  # [m+1]
        if (dG < -STATS_RTOL * scale).any() or self.yy < -STATS_RTOL * max(abs(self.yy), 1.0):
            raise NotPositiveDefinite("stats: expected a non-negative diagonal of G and yy >= 0")
        root = np.sqrt(np.maximum(dG, 0.0))  # [m+1]
        tol = STATS_RTOL * scale
        if (np.abs(G) > np.outer(root, root) * (1 + STATS_RTOL) + tol).any():
            raise NotPositiveDefinite("stats: G is not a Gram matrix (|G_ij| > sqrt(G_ii G_jj))")
        yy_tol = STATS_RTOL * max(abs(self.yy), 1.0)
        if (np.abs(g) > root * np.sqrt(max(self.yy, 0.0)) * (1 + STATS_RTOL) + tol + yy_tol).any():
            raise NotPositiveDefinite("stats: g is inconsistent with G and yy (Cauchy-Schwarz)")
        if abs(G[-1, -1] - self.n) > STATS_RTOL * max(self.n, 1):
            raise ShapeError(f"stats: bias entry G[m, m] = {G[-1, -1]} differs from n = {self.n}")

    def pack(self) -> np.ndarray:
        """Flat float64 wire vector: upper triangle of G (row-major), g, yy, n.

        Returns
        -------
        ndarray of shape ((m+1)(m+2)/2 + (m+1) + 2,)
        """
        return np.concatenate([pack_symmetric(self.G), self.g, [self.yy, float(self.n)]])

    @classmethod
    def unpack(cls, v: np.ndarray, m: int) -> Stats:
        """Inverse of :meth:`pack`; validates the result.

        Raises
        ------
        ShapeError, NonFiniteError, NotPositiveDefinite
        """
        k = m + 1
        v = as_float64(v, "packed stats", (packed_size(k) + k + 2,))
        n_f = float(v[-1])
        if n_f != np.floor(n_f) or n_f < 0:
            raise ShapeError(f"packed stats: expected an integer count, got {n_f}")
        out = cls(
            unpack_symmetric(v[: packed_size(k)], k),
            v[packed_size(k) : -2].copy(),
            float(v[-2]),
            int(n_f),
        )
        out.validate()
        return out


def _check_y(y: object, n: int, check_finite: bool = True) -> np.ndarray:
    return as_float64(y, "y", (n,), check_finite)


def batch_stats(
    X: np.ndarray,
    y: np.ndarray,
    params: CollectiveParams,
    factors: tuple[KernelFactor, ...] | None = None,
    parts: tuple[FeaturePart, ...] | None = None,
    check_finite: bool = True,
) -> Stats:
    """Statistics of one batch: ``G = Phi^T Phi``, ``g = Phi^T y``, ``y^T y``, n.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    params : CollectiveParams
    factors : tuple of KernelFactor, optional
        :func:`kernel_factors` of ``params`` (computed here if None).
    parts : tuple, optional
        :func:`feature_parts` of ``X`` under ``params`` (computed here if None).
    check_finite : bool
        Scan ``X`` and ``y`` for NaN/inf (default True; False for rows this process
        validated itself).

    Returns
    -------
    Stats
    """
    X = _check_X(X, params, check_finite)
    y = _check_y(y, X.shape[0], check_finite)
    if parts is None:
        parts = _parts(X, params, factors)
    Phi = _phi(_checked_parts(parts, params, X.shape[0]), X.shape[0])  # [n, m+1]
    return Stats(symmetrize(Phi.T @ Phi), Phi.T @ y, float(y @ y), int(X.shape[0]))


def add_stats(a: Stats, b: Stats) -> Stats:
    """Exact sum of two statistics (commutative; associative up to float64 round-off).

    Raises
    ------
    ShapeError
        Different numbers of inducing inputs.
    """
    if a.g.shape != b.g.shape:
        raise ShapeError(f"stats: cannot add m = {a.m} and m = {b.m}")
    return Stats(a.G + b.G, a.g + b.g, a.yy + b.yy, a.n + b.n)


def sum_stats(items: Iterable[Stats], m: int | None = None) -> Stats:
    """Sum of statistics in iteration order.

    Parameters
    ----------
    items : iterable of Stats
    m : int, optional
        Number of inducing inputs, needed only if ``items`` may be empty.

    Raises
    ------
    EmptyBatchError
        ``items`` is empty and ``m`` is not given.
    """
    total: Stats | None = Stats.zeros(m) if m is not None else None
    for s in items:
        total = s if total is None else add_stats(total, s)
    if total is None:
        raise EmptyBatchError("sum_stats: no statistics and no m given")
    return total


# --------------------------------------------------------------------------------------------
# the collapsed bound from statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Natural:
    Dv: np.ndarray  # [m+1] diagonal of D
    beta: float  # 1 / sigma_n^2
    LP: np.ndarray  # [m+1, m+1] chol of P
    h: np.ndarray  # [m+1]
    a: np.ndarray  # [m+1] P^-1 h


def _natural(
    stats: Stats, log_s: float, log_sn: float, log_sb: float, static: tuple[int, float] = (0, 0.0)
) -> _Natural:
    m = stats.m
    Dv = np.full(m + 1, np.exp(log_s))  # [m+1]
    if static[0]:
        Dv[m - static[0] : m] = np.exp(static[1])
    Dv[m] = np.exp(log_sb)
    beta = float(np.exp(-2.0 * log_sn))
    C = beta * (Dv[:, None] * stats.G * Dv[None, :])  # [m+1, m+1]
    P = identity_plus_psd(C, "collective precision P")
    LP = cholesky(P, "collective precision P")
    h = beta * Dv * stats.g  # [m+1]
    a = cho_solve(LP, h)  # [m+1]
    return _Natural(Dv, beta, LP, h, a)


def _residuals(stats: Stats, m_static: int) -> tuple[float, float]:
    """``n - tr G`` over the joint block and over the static block (0 without one).

    ``s_j^2 (n - tr G_jj)`` is ``tr(K_ff - Q_ff)`` of component j: the Nystrom residual of
    the trace term.
    """
    n, m = stats.n, stats.m
    mj = m - m_static
    d = np.diag(stats.G)
    r_st = n - float(d[mj:m].sum()) if m_static else 0.0
    return n - float(d[:mj].sum()), r_st


def _bound_from(
    stats: Stats, nat: _Natural, log_s: float, log_sn: float, static: tuple[int, float] = (0, 0.0)
) -> float:
    n = stats.n
    logdet_P = 2.0 * float(np.log(np.diag(nat.LP)).sum())
    r, r_st = _residuals(stats, static[0])  # n - tr(Q_ff) / s^2 per component
    quad = nat.beta * stats.yy - float(nat.h @ nat.a)
    trace = float(np.exp(2.0 * log_s)) * r + (
        float(np.exp(2.0 * static[1])) * r_st if static[0] else 0.0
    )
    return -0.5 * (n * _LOG_2PI + 2.0 * n * log_sn + logdet_P + quad) - 0.5 * nat.beta * trace


def collapsed_bound(stats: Stats, params: CollectiveParams) -> float:
    """The collapsed (Titsias) bound from statistics (module docstring), O(m^3).

    Parameters
    ----------
    stats : Stats
        Statistics of the data under ``params``' encoding (W, Z, jitter).
    params : CollectiveParams
        Supplies ``s``, ``sigma_n``, ``sigma_b``.

    Returns
    -------
    float
    """
    nat = _natural(stats, params.log_s, params.log_sn, params.log_sb, params.static)
    return _bound_from(stats, nat, params.log_s, params.log_sn, params.static)


def bound_and_stat_grads(
    stats: Stats,
    log_s: float,
    log_sn: float,
    log_sb: float,
    static: tuple[int, float] = (0, 0.0),
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The bound and its derivatives in the statistics and in the scale parameters.

    With ``M = P^{-1}``, ``a = M h``, ``beta = 1 / sigma_n^2``, ``E_m = diag(1, ..., 1, 0)`` and
    ``r = n - tr G_[:m, :m]``:

    .. math::

        dL/dG = -\\tfrac{\\beta}{2} (D M D + (D a)(D a)^T) + \\tfrac{s^2 \\beta}{2} E_m, \\quad
        dL/dg = \\beta D a,

        dL/d\\log s = -\\sum_{i<m} (1 - M_{ii} - a_i^2) - s^2 \\beta r, \\quad
        dL/d\\log \\sigma_b = -(1 - M_{mm} - a_m^2),

        dL/d\\log \\sigma_n = -n + (m + 1 - tr M) + \\beta y^T y - a^T h - a^T a + s^2 \\beta r.

    ``dL/dG`` is the gradient of L as a function of a general matrix argument G (it is
    symmetric), so ``dL/dPhi = 2 Phi dL/dG + y (dL/dg)^T``.

    With a static block (``static = (m_st, log s_st)``) the scale ``s_st`` takes the place of
    ``s`` on the last ``m_st`` kernel columns (of ``D``, of the trace term and of
    ``dL/dlog s``); ``dL/dlog s_st`` is appended to ``direct``.

    Parameters
    ----------
    stats : Stats
        Fused statistics.
    log_s, log_sn, log_sb : float
    static : (int, float)
        ``(m_st, log s_st)``; ``(0, 0.0)`` (default): no static block.

    Returns
    -------
    bound : float
    dB_dG : ndarray of shape (m + 1, m + 1)
    dB_dg : ndarray of shape (m + 1,)
    direct : ndarray of shape (3,) or (4,)
        ``dL/d(log s, log sigma_n, log sigma_b[, log s_st])`` at fixed statistics.
    """
    m, n = stats.m, stats.n
    mj = m - static[0]
    nat = _natural(stats, log_s, log_sn, log_sb, static)
    bound = _bound_from(stats, nat, log_s, log_sn, static)
    beta, Dv, a, h = nat.beta, nat.Dv, nat.a, nat.h
    M = chol_inverse(nat.LP)  # [m+1, m+1], needed whole for dL/dG
    Da = Dv * a  # [m+1]
    s2v = Dv[:m] ** 2  # [m] the component scale of each kernel column
    dG = -0.5 * beta * (Dv[:, None] * M * Dv[None, :] + np.outer(Da, Da))  # [m+1, m+1]
    dG[np.arange(m), np.arange(m)] += 0.5 * beta * s2v
    dg = beta * Da  # [m+1]
    r, r_st = _residuals(stats, static[0])
    s2, s2_st = float(s2v[0]), (float(s2v[mj]) if static[0] else 0.0)
    Md = np.diag(M)  # [m+1]
    e = 1.0 - Md[:m] - a[:m] ** 2  # [m]
    d_log_s = -float(np.sum(e[:mj])) - s2 * beta * r
    d_log_sb = -float(1.0 - Md[m] - a[m] ** 2)
    d_log_sn = (
        -n + (m + 1 - float(Md.sum())) + beta * stats.yy - float(a @ h) - float(a @ a)
    ) + beta * (s2 * r + s2_st * r_st)
    direct = [d_log_s, d_log_sn, d_log_sb]
    if static[0]:
        direct.append(-float(np.sum(e[mj:])) - s2_st * beta * r_st)
    return bound, symmetrize(dG), dg, np.array(direct)


# --------------------------------------------------------------------------------------------
# per-agent back-propagation into (log ell, Z)
# --------------------------------------------------------------------------------------------


def _chol_backward(L: np.ndarray, Lbar: np.ndarray) -> np.ndarray:
    """Symmetric ``dL/dK`` from ``dL/dL`` for ``K = L L^T`` (Murray 2016, eq. 10).

    ``Kbar = sym(L^{-T} Phi(L^T tril(Lbar)) L^{-1})`` with ``Phi`` the lower triangle with the
    diagonal halved. Shapes (m, m).
    """
    S = L.T @ np.tril(Lbar)  # [m, m]
    S = np.tril(S)
    S[np.diag_indices_from(S)] *= 0.5
    T = sla.solve_triangular(L, S, lower=True, trans="T", check_finite=False)  # L^-T S
    T = sla.solve_triangular(L, T.T, lower=True, trans="T", check_finite=False).T  # ... L^-1
    return symmetrize(T)


def local_grad_contribution(
    X: np.ndarray,
    y: np.ndarray,
    params: CollectiveParams,
    dB_dG: np.ndarray,
    dB_dg: np.ndarray,
    *,
    c: float = 0.0,
    trace_coef: float = 0.0,
    factors: tuple[KernelFactor, ...] | None = None,
    through_L: bool = True,
    parts: tuple[FeaturePart, ...] | None = None,
    check_finite: bool = True,
) -> np.ndarray:
    """This agent's part of ``dL/d(log ell, Z)``, through its own ``Phi`` (L included).

    With the site effect (:func:`site_local_contribution`) ``dB_dG, dB_dg`` are the derivatives
    in the adjusted statistics ``Phi^T M Phi``, ``Phi^T M y`` with ``M = I - c 1 1^T``, and
    ``trace_coef`` is ``dL/dG_ii`` (i < m) of the raw trace term; the defaults are the plain
    model (``dB_dG`` then includes the trace term).

    With ``Phibar = 2 Phi dB_dG + y dB_dg^T`` restricted to the m kernel columns and
    ``Phi_m = A L^{-T}``, ``A = k(XW, ZW)``: ``Abar = Phibar L^{-1}``,
    ``Lbar = -Abar^T Phi_m``, ``Kbar`` by the Cholesky backward pass, and then through the
    squared-exponential kernels, ``dk/dlog ell_j = k (w_j (x_j - z_j))^2`` and
    ``dk/dz_j = k w_j^2 (x_j - z_j)``. Summed over agents (an all-reduce) and concatenated with
    the ``direct`` terms of :func:`bound_and_stat_grads`, this is the gradient of the pooled
    bound in the layout of :meth:`CollectiveParams.to_vector`.

    ``through_L=False`` leaves out the path through ``L`` (``Lbar`` onwards): it is linear in
    ``Lbar`` and ``sum_a Lbar_a`` is a function of the fused statistics alone, so
    :func:`inducing_grad` adds it once for the whole swarm (the agent's work is then
    O(n m^2), with no O(m^3) step).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    params : CollectiveParams
    dB_dG : ndarray of shape (m + 1, m + 1)
    dB_dg : ndarray of shape (m + 1,)
    factors : tuple of KernelFactor, optional
        :func:`kernel_factors` of ``params`` (computed here if None).
    through_L : bool
        Include the path through ``L`` (default True).
    parts : tuple, optional
        :func:`feature_parts` of ``X`` under ``params`` (computed here if None).
    check_finite : bool
        Scan the four arrays for NaN/inf (default True; False where this process validated
        them itself: the warm-up checks the shared ``dB_dG, dB_dg`` once per evaluation).

    Returns
    -------
    ndarray of shape (d + m d,), or (d + m_joint d + d_st + m_st d_st,) with a static block
        ``[dL/dlog_ell (d), dL/dZ.ravel() (m_joint d)(, dL/dlog_ell_st, dL/dZ_st.ravel())]``
        (:func:`assemble_grad` puts them in the layout of :meth:`CollectiveParams.to_vector`).
    """
    X = _check_X(X, params, check_finite)
    y = _check_y(y, X.shape[0], check_finite)
    m = params.m
    dB_dG = as_float64(dB_dG, "dB_dG", (m + 1, m + 1), check_finite)
    dB_dg = as_float64(dB_dg, "dB_dg", (m + 1,), check_finite)
    blocks = _blocks(params)
    fs = _factors_for(params, factors)
    if parts is None:
        parts = _parts(X, params, fs)
    parts = _checked_parts(parts, params, X.shape[0])
    Phi_m = np.hstack([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]  # [n, m]
    Gbar = symmetrize(dB_dG)
    # only the kernel columns depend on theta; the bias column is constant
    Pb = 2.0 * (Phi_m @ Gbar[:m, :m] + Gbar[m, :m][None, :]) + np.outer(y, dB_dg[:m])  # [n, m]
    if c != 0.0:  # M = I - c 1 1^T on the rows
        Pb = Pb - c * Pb.sum(0)[None, :]
    if trace_coef != 0.0:
        Pb = Pb + 2.0 * trace_coef * Phi_m
    out, lo = [], 0
    for b, f, (XW, A, Phi_j) in zip(blocks, fs, parts, strict=True):
        mb = b.Z.shape[0]
        # Abar = Pb L^{-1}
        Abar = right_solve_lower(f.L, Pb[:, lo : lo + mb], trans=False)  # [n, m_j]
        g = _cross_backward(b.W, XW, f.ZW, A, Abar)
        if through_L:
            g += _kzz_backward(b.W, f, -Abar.T @ Phi_j)
        out.append(g)
        lo += mb
    return np.concatenate(out)


def inducing_grad(
    stats: Stats,
    params: CollectiveParams,
    dB_dG: np.ndarray,
    dB_dg: np.ndarray,
    factors: tuple[KernelFactor, ...] | None = None,
) -> np.ndarray:
    """The swarm's summed gradient through ``L = chol(K_ZZ + jitter I)``, from fused statistics.

    Agent a's ``Lbar_a = -L^{-T} Phibar_a^T Phi_a`` (:func:`local_grad_contribution`), and
    summed over agents (per component j, on its columns):

    .. math::

        \\sum_a Phibar_a^T Phi_a = 2\\,\\bar G_{jm} G_{mj}
            + 2\\,\\bar G_{j,b} G_{b,j} + \\bar g_j g_j^T,

    with ``m`` the kernel columns, ``b`` the bias column, ``Gbar = dB_dG``, ``gbar = dB_dg``
    and ``G, g`` the fused statistics. The Cholesky backward pass and the K_ZZ kernel's
    derivatives are linear in ``Lbar``, so this plus the agents' summed
    ``local_grad_contribution(..., through_L=False)`` is the pooled gradient (plain model; the
    site effect's per-agent ``M`` keeps the per-agent path).

    Parameters
    ----------
    stats : Stats
        Fused statistics under ``params``.
    params : CollectiveParams
    dB_dG : ndarray of shape (m + 1, m + 1)
    dB_dg : ndarray of shape (m + 1,)
    factors : tuple of KernelFactor, optional

    Returns
    -------
    ndarray
        In the layout of :func:`local_grad_contribution`.
    """
    m = params.m
    if stats.m != m:
        raise ShapeError(f"inducing_grad: stats for m = {stats.m}, params for m = {m}")
    Gbar = symmetrize(as_float64(dB_dG, "dB_dG", (m + 1, m + 1)))
    gbar = as_float64(dB_dg, "dB_dg", (m + 1,))
    G, g = stats.G, stats.g
    out, lo = [], 0
    for b, f in zip(_blocks(params), _factors_for(params, factors), strict=True):
        j = slice(lo, lo + b.Z.shape[0])
        S = 2.0 * (Gbar[j, :m] @ G[:m, j] + np.outer(Gbar[j, m], G[m, j])) + np.outer(
            gbar[j], g[j]
        )  # [m_j, m_j] sum_a Phibar_a^T Phi_a
        Lbar = -sla.solve_triangular(f.L, S, lower=True, trans="T", check_finite=False)
        out.append(_kzz_backward(b.W, f, Lbar))
        lo += b.Z.shape[0]
    return np.concatenate(out)


def _cross_backward(
    w: np.ndarray, XW: np.ndarray, ZW: np.ndarray, A: np.ndarray, Abar: np.ndarray
) -> np.ndarray:
    """``[dL/dlog_ell (k), dL/dZ.ravel() (m_j k)]`` through the cross kernel ``A = k(XW, ZW)``
    from ``Abar = dL/dA [n, m_j]``."""
    C = Abar * A  # [n, m]
    rc, cc = C.sum(1), C.sum(0)  # [n], [m]
    CZ = C @ ZW  # [n, d]
    g_ell = (rc @ (XW * XW)) - 2.0 * (XW * CZ).sum(0) + cc @ (ZW * ZW)  # [d]
    g_Z = w * (C.T @ XW - cc[:, None] * ZW)  # [m, d]
    return np.concatenate([g_ell, g_Z.ravel()])


def _kzz_backward(w: np.ndarray, f: KernelFactor, Lbar: np.ndarray) -> np.ndarray:
    """``[dL/dlog_ell (k), dL/dZ.ravel() (m_j k)]`` through ``L`` and ``K_ZZ`` from
    ``Lbar = dL/dL [m_j, m_j]`` (the jitter is constant)."""
    Kbar = _chol_backward(f.L, Lbar)  # [m, m]
    ZW = f.ZW
    E = Kbar * f.Kzz  # [m, m]
    re = E.sum(1)  # [m]
    EZ = E @ ZW  # [m, d]
    g_ell = 2.0 * (re @ (ZW * ZW)) - 2.0 * (ZW * EZ).sum(0)
    g_Z = -2.0 * w * (re[:, None] * ZW - EZ)
    return np.concatenate([g_ell, g_Z.ravel()])


def pooled_bound_and_grad(
    X: np.ndarray, y: np.ndarray, params: CollectiveParams
) -> tuple[float, np.ndarray]:
    """Bound and full theta gradient when one agent holds all the data.

    Returns
    -------
    bound : float
    grad : ndarray of shape (d + m d + 3,)
        In the layout of :meth:`CollectiveParams.to_vector`.
    """
    st = batch_stats(X, y, params)
    bound, dG, dg, direct = bound_and_stat_grads(
        st, params.log_s, params.log_sn, params.log_sb, params.static
    )
    return bound, assemble_grad(params, local_grad_contribution(X, y, params, dG, dg), direct)


def assemble_grad(params: CollectiveParams, local: np.ndarray, direct: np.ndarray) -> np.ndarray:
    """The theta gradient in the layout of :meth:`CollectiveParams.to_vector`.

    Parameters
    ----------
    local : ndarray
        Summed :func:`local_grad_contribution` (the kernel parameters).
    direct : ndarray of shape (3,) or (4,)
        :func:`bound_and_stat_grads`' scale terms.
    """
    if not params.m_static:
        return np.concatenate([local, direct])
    k = params.d * (1 + params.m_joint)
    return np.concatenate([local[:k], direct[:3], local[k:], direct[3:]])


# --------------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FitResult:
    """Outcome of :func:`fit_pooled`.

    Attributes
    ----------
    params : CollectiveParams
    bound : float
        The bound at ``params`` (as returned by the last evaluation there).
    n_evals : int
        Evaluations used (each is two all-reduces in the swarm).
    converged : bool
        L-BFGS-B reported convergence rather than the evaluation limit.
    """

    params: CollectiveParams
    bound: float
    n_evals: int
    converged: bool


def fit_pooled(
    evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta0: CollectiveParams,
    max_evals: int = 60,
    bounds: list[tuple[float | None, float | None]] | None = None,
) -> FitResult:
    """Maximize the bound with deterministic L-BFGS-B over theta.

    ``evaluate(theta_vector) -> (bound, grad)`` may be :func:`pooled_bound_and_grad` on a vector,
    or two all-reduces in the swarm; identical answers give identical iterates. The objective is
    ``-bound / c`` with ``c = max(1, |bound(theta0)|)`` fixed at the first evaluation, so the
    tolerances are relative. Options are fixed: ``maxcor=10, ftol=1e-12, gtol=1e-9``.

    Parameters
    ----------
    evaluate : callable
    theta0 : CollectiveParams
        Start; supplies m, d and the jitter.
    max_evals : int
        Limit on evaluations (and iterations).
    bounds : list of (low, high), optional
        Defaults to :func:`theta_bounds`.

    Returns
    -------
    FitResult
    """
    from scipy.optimize import minimize  # lazy: keeps `import swarmgp.fusion` light

    x0 = theta0.to_vector()
    bnds = theta_bounds(theta0) if bounds is None else bounds
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bnds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bnds])
    x0 = np.clip(x0, lo, hi)
    scale: list[float] = []
    best: dict[str, object] = {}

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = evaluate(np.array(x, dtype=np.float64))
        if not scale:
            scale.append(max(1.0, abs(float(v))))
        if not np.isfinite(v) or not np.isfinite(g).all():
            raise NonFiniteError("fit_pooled: the bound or its gradient is not finite")
        if "v" not in best or float(v) > float(best["v"]):  # type: ignore[arg-type]
            best["v"], best["x"] = float(v), np.array(x, dtype=np.float64)
        return -float(v) / scale[0], -np.asarray(g, dtype=np.float64) / scale[0]

    res = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bnds,
        options={
            "maxcor": 10,
            "ftol": 1e-12,
            "gtol": 1e-9,
            "maxfun": max_evals,
            "maxiter": max_evals,
        },
    )
    x_best = best["x"]
    assert isinstance(x_best, np.ndarray)
    params = theta0.like(x_best)
    return FitResult(params, float(best["v"]), int(res.nfev), bool(res.success))  # type: ignore[arg-type]


def log_scale_prior(log_s: float, sd: float | None) -> tuple[float, float]:
    """Log density (up to a constant) and derivative of the weak prior ``log s ~ N(0, sd^2)``.

    In standardized units (targets of unit variance) ``s = 1`` says "the signal carries the
    data's variance"; ``sd`` is the prior's width in nats of ``log s`` (``sd = 1``: s within a
    factor e of 1 at one standard deviation). ``sd=None`` is the flat prior (maximum likelihood).

    Returns
    -------
    value, derivative : float
        ``-log_s^2 / (2 sd^2)`` and ``-log_s / sd^2`` (zeros for ``sd=None``).
    """
    if sd is None:
        return 0.0, 0.0
    if not sd > 0:
        raise ShapeError(f"log_scale_prior: expected sd > 0, got {sd}")
    return -0.5 * log_s * log_s / (sd * sd), -log_s / (sd * sd)


def penalized_bound(
    stats: Stats, params: CollectiveParams, s_prior_sd: float | None = None
) -> float:
    """The collapsed bound plus :func:`log_scale_prior` (the objective of a MAP refit)."""
    return collapsed_bound(stats, params) + log_scale_prior(params.log_s, s_prior_sd)[0]


class _ScaleNoiseBound:
    """The collapsed bound as a function of ``(log s, log sigma_n)`` alone, O(m) per evaluation.

    For fixed statistics without a static block, rotate the kernel block by its eigenvectors,
    ``G_[:m, :m] = U diag(lam) U^T`` (one ``eigh``, O(m^3)). With ``b' = U^T G_[:m, m]`` and
    ``beta = 1 / sigma_n^2``, ``P`` becomes an arrowhead matrix,

    .. math::

        P' = \\begin{pmatrix} diag(a) & u \\\\ u^T & d \\end{pmatrix}, \\quad
        a_i = 1 + \\beta s^2 \\lambda_i, \\quad u = \\beta s \\sigma_b b', \\quad
        d = 1 + \\beta \\sigma_b^2 G_{mm},

    whose determinant is ``prod(a) * S`` with the Schur complement ``S = d - sum(u^2 / a)`` and
    whose solves are O(m). The value and the derivatives in ``(log s, log sigma_n)`` are those
    of :func:`collapsed_bound` and :func:`bound_and_stat_grads` (the trace and the squared norm
    of ``P^{-1} h`` are invariant under the rotation).
    """

    def __init__(self, stats: Stats, log_sb: float) -> None:
        m = stats.m
        G = stats.G
        lam, U = np.linalg.eigh(symmetrize(G[:m, :m]))  # [m], [m, m]
        self.lam = np.maximum(lam, 0.0)  # a Gram matrix: rounding below 0 only
        self.b = U.T @ G[:m, m]  # [m]
        self.g1 = U.T @ stats.g[:m]  # [m]
        self.g2, self.c = float(stats.g[m]), float(G[m, m])
        self.n, self.m, self.yy = float(stats.n), m, float(stats.yy)
        self.sb = float(np.exp(log_sb))
        self.r = _residuals(stats, 0)[0]  # n - tr G: the trace term's residual

    def __call__(self, log_s: float, log_sn: float) -> tuple[float, float, float]:
        """Bound and its derivatives in ``log s`` and ``log sigma_n``."""
        s, beta = float(np.exp(log_s)), float(np.exp(-2.0 * log_sn))
        S2 = s * s
        a = 1.0 + beta * S2 * self.lam  # [m]
        u = beta * s * self.sb * self.b  # [m]
        schur = 1.0 + beta * self.sb**2 * self.c - float(np.sum(u * u / a))
        if not schur > 0:
            raise NotPositiveDefinite("collective precision P: Schur complement not positive")
        h1, h2 = beta * s * self.g1, beta * self.sb * self.g2  # h' = [h1, h2]
        t = h1 / a
        x2 = (h2 - float(u @ t)) / schur
        x1 = t - (u / a) * x2  # P'^{-1} h' = [x1, x2]
        hPh = float(h1 @ x1) + h2 * x2
        logdet = float(np.sum(np.log(a))) + float(np.log(schur))
        n = self.n
        bound = -0.5 * (n * _LOG_2PI + 2.0 * n * log_sn + logdet + beta * self.yy - hPh)
        bound -= 0.5 * beta * S2 * self.r
        tr_top = float(np.sum(1.0 / a)) + float(np.sum((u / a) ** 2)) / schur  # sum_{i<m} M_ii
        x1x1 = float(x1 @ x1)
        d_log_s = -(self.m - tr_top - x1x1) - S2 * beta * self.r
        tr_M = tr_top + 1.0 / schur
        d_log_sn = (
            -n + (self.m + 1 - tr_M) + beta * self.yy - hPh - (x1x1 + x2 * x2)
        ) + beta * S2 * self.r
        return bound, d_log_s, d_log_sn


def refit_scale_noise(
    stats: Stats,
    params: CollectiveParams,
    *,
    fit_scale: bool = True,
    s_prior_sd: float | None = None,
) -> CollectiveParams:
    """Maximize the (penalized) collapsed bound over ``(log s, log sigma_n)`` from fused statistics.

    W, Z, sigma_b (the frozen encoding) are kept. The objective is :func:`penalized_bound`:
    the exact collapsed bound plus the weak prior ``log s ~ N(0, s_prior_sd^2)`` (flat when
    ``s_prior_sd`` is None). With ``fit_scale=False`` only ``sigma_n`` moves and ``s`` stays at
    ``params.s`` (the joint warm-up's value). Without a static block each evaluation is O(m)
    after one eigendecomposition (:class:`_ScaleNoiseBound`), with one it is one
    :func:`bound_and_stat_grads` (O(m^3)); L-BFGS-B with fixed options
    (``ftol=1e-15, gtol=1e-10``), started at ``params``, bounds ``s`` in ``[1e-3, 1e3]`` and
    ``sigma_n`` in ``[MIN_NOISE, 1e2]``. Identical input gives bit-identical output.

    Parameters
    ----------
    stats : Stats
        Fused statistics under ``params``' encoding, with ``n >= 1``.
    params : CollectiveParams
    fit_scale : bool
        Refit ``s`` too (default) or only ``sigma_n``.
    s_prior_sd : float or None
        Width of the prior on ``log s`` (:func:`log_scale_prior`).

    Returns
    -------
    CollectiveParams

    Raises
    ------
    EmptyBatchError
        ``stats.n == 0``.
    """
    from scipy.optimize import minimize  # lazy: keeps `import swarmgp.fusion` light

    stats.validate()
    if stats.m != params.m:
        raise ShapeError(f"refit: stats for m = {stats.m}, params for m = {params.m}")
    if stats.n == 0:
        raise EmptyBatchError("refit_scale_noise: no observations")
    log_scale_prior(params.log_s, s_prior_sd)  # validates the width
    c = float(stats.n)
    log_sb = params.log_sb
    s_bnd = (float(np.log(1e-3)), float(np.log(1e3)))
    n_bnd = (float(np.log(MIN_NOISE)), float(np.log(1e2)))
    opts = {"maxcor": 10, "ftol": 1e-15, "gtol": 1e-10, "maxiter": 500, "maxfun": 1000}
    if params.m_static:
        return _refit_static(stats, params, fit_scale, s_prior_sd, opts)

    bound = _ScaleNoiseBound(stats, log_sb)  # one eigh, then O(m) per evaluation

    def full(log_s: float, log_sn: float) -> tuple[float, np.ndarray]:
        v, ds, dn = bound(log_s, log_sn)
        pv, pd = log_scale_prior(log_s, s_prior_sd)
        return v + pv, np.array([ds + pd, dn])

    if fit_scale:

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            v, g = full(float(x[0]), float(x[1]))
            return -v / c, -g / c

        bnds = [s_bnd, n_bnd]
        x0 = np.clip([params.log_s, params.log_sn], [b[0] for b in bnds], [b[1] for b in bnds])
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bnds, options=opts)
        return params.with_scale_noise(float(res.x[0]), float(res.x[1]))

    def fun_n(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = full(params.log_s, float(x[0]))
        return -v / c, -g[1:] / c

    x0 = np.clip([params.log_sn], [n_bnd[0]], [n_bnd[1]])
    res = minimize(fun_n, x0, jac=True, method="L-BFGS-B", bounds=[n_bnd], options=opts)
    return params.with_scale_noise(params.log_s, float(res.x[0]))


def _refit_static(
    stats: Stats,
    params: CollectiveParams,
    fit_scale: bool,
    s_prior_sd: float | None,
    opts: dict[str, float],
) -> CollectiveParams:
    """:func:`refit_scale_noise` with a static block: ``(log s, log s_st, log sigma_n)``.

    The prior on the log scales (:func:`log_scale_prior`) applies to each of them.
    """
    from scipy.optimize import minimize  # lazy: keeps `import swarmgp.fusion` light

    c = float(stats.n)
    s_bnd = (float(np.log(1e-3)), float(np.log(1e3)))
    n_bnd = (float(np.log(MIN_NOISE)), float(np.log(1e2)))
    free = [0, 1, 2] if fit_scale else [2]
    x_all = np.array([params.log_s, params.log_s_st, params.log_sn])

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        z = x_all.copy()
        z[free] = x
        v, _, _, direct = bound_and_stat_grads(
            stats, z[0], z[2], params.log_sb, (params.m_static, z[1])
        )
        p0, d0 = log_scale_prior(z[0], s_prior_sd)
        p1, d1 = log_scale_prior(z[1], s_prior_sd)
        g = np.array([direct[0] + d0, direct[3] + d1, direct[1]])
        return -(v + p0 + p1) / c, -g[free] / c

    bnds = [[s_bnd, s_bnd, n_bnd][i] for i in free]
    x0 = np.clip(x_all[free], [b[0] for b in bnds], [b[1] for b in bnds])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bnds, options=opts)
    z = x_all.copy()
    z[free] = res.x
    return params.with_scale_noise(float(z[0]), float(z[2]), float(z[1]))


# --------------------------------------------------------------------------------------------
# posterior and prediction
# --------------------------------------------------------------------------------------------


def posterior(stats: Stats, params: CollectiveParams) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of the whitened weights ``w`` (``f = Phi D w``, prior ``N(0, I)``).

    ``q(w) = N(P^{-1} h, P^{-1})`` with ``P = I + D G D / sigma_n^2``, ``h = D g / sigma_n^2``.

    Returns
    -------
    mean : ndarray of shape (m + 1,)
        ``P^{-1} h``; the predictive weights on ``phi_aug`` are ``D P^{-1} h``.
    L_P : ndarray of shape (m + 1, m + 1)
        Lower Cholesky factor of P.
    """
    if stats.m != params.m:
        raise ShapeError(f"posterior: stats for m = {stats.m}, params for m = {params.m}")
    nat = _natural(stats, params.log_s, params.log_sn, params.log_sb, params.static)
    return nat.a, nat.LP


def predict_collective(
    Xs: np.ndarray,
    stats: Stats,
    params: CollectiveParams,
    factors: tuple[KernelFactor, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean of y and variance of f at test inputs (DTC/VFE with the bias).

    .. math::

        \\mu(x) = \\phi_{aug}(x)^T D P^{-1} h, \\qquad
        var_f(x) = \\phi_{aug}(x)^T D P^{-1} D \\phi_{aug}(x) + s^2 (1 - |\\phi(x)|^2).

    The second term is the Nystrom residual of the latent (the bias has none); with a static
    block it is ``s^2 (1 - |phi_joint|^2) + s_st^2 (1 - |phi_static|^2)``. The predictive
    variance of y is ``var_f + sigma_n^2``.

    Parameters
    ----------
    Xs : ndarray of shape (n, d)
    stats : Stats
    params : CollectiveParams
    factors : tuple of KernelFactor, optional
        :func:`kernel_factors` of ``params`` (computed here if None).

    Returns
    -------
    mean_y : ndarray of shape (n,)
    var_f : ndarray of shape (n,)
    """
    Phi = features(Xs, params, factors)  # [n, m+1]
    nat = _natural(stats, params.log_s, params.log_sn, params.log_sb, params.static)
    mean = Phi @ (nat.Dv * nat.a)  # [n]
    V = sla.solve_triangular(nat.LP, (Phi * nat.Dv).T, lower=True, check_finite=False)  # [m+1, n]
    mj, m = params.m_joint, params.m
    resid = params.s**2 * np.maximum(1.0 - (Phi[:, :mj] ** 2).sum(1), 0.0)  # [n]
    if params.m_static:
        resid += params.s_st**2 * np.maximum(1.0 - (Phi[:, mj:m] ** 2).sum(1), 0.0)
    return mean, (V * V).sum(0) + resid


# --------------------------------------------------------------------------------------------
# the per-agent offset (site effect), opt-in
# --------------------------------------------------------------------------------------------
#
# Model: y = f(x) + b_a + eps for a row of agent a, b_a ~ N(0, tau^2) independent per agent
# (one offset per agent: an agent holding several sensors shares one offset). The offsets are
# marginalized exactly: with v = sigma_n^2, t = tau^2 and n_a the agent's rows,
# (v I + t 1 1^T)^{-1} = (I - c_a 1 1^T) / v, c_a = t / (v + n_a t), so the bound
#
#   L = log N(y | 0, Phi D^2 Phi^T + blockdiag_a(v I + t 1 1^T)) - s^2 r / (2 v)
#
# (b_a exact latent variables, not approximated by the inducing points: the trace term of
# Titsias' bound keeps the plain noise v and the raw residual r = n - tr G_[:m,:m]) is the
# plain formula with each agent's ADJUSTED statistics G_a - c_a u_a u_a^T,
# g_a - c_a u_a (1^T y_a), yy_a - c_a (1^T y_a)^2 (u_a = Phi_a^T 1 = G_a[:, m], 1^T y_a =
# g_a[m]) plus log(1 + n_a t / v) in the log-determinant. Each agent forms them from its OWN
# statistics; they depend on (sigma_n, tau) nonlinearly through c_a, so fused sums of them
# are exact only for fixed (sigma_n, tau): the warm-up learns (sigma_n, tau) with everything
# else (each evaluation's all-reduce carries the adjusted statistics, the gradient round the
# per-agent terms of d/d(log sigma_n, log tau)), then freezes them; the streaming refit adapts
# only s (the adjusted statistics do not depend on s), exactly.


@dataclass(frozen=True, eq=False)
class SiteStats:
    """Adjusted statistics under the site effect (sums over agents; see the section comment).

    Attributes
    ----------
    G, g, yy, n
        ``sum_a Phi_a^T M_a Phi_a``, ``sum_a Phi_a^T M_a y_a``, ``sum_a y_a^T M_a y_a``, n,
        ``M_a = I - c_a 1 1^T``.
    resid : float
        ``n - tr G_raw[:m, :m]`` of the raw statistics (the Nystrom residual, >= 0).
    logdet : float
        ``sum_a log(1 + n_a tau^2 / sigma_n^2)``.
    """

    G: np.ndarray
    g: np.ndarray
    yy: float
    n: int
    resid: float
    logdet: float

    @property
    def m(self) -> int:
        """Number of inducing inputs (the bias excluded)."""
        return int(self.g.shape[0]) - 1

    @classmethod
    def zeros(cls, m: int) -> SiteStats:
        """The identity of :func:`add_site_stats`."""
        return cls(np.zeros((m + 1, m + 1)), np.zeros(m + 1), 0.0, 0, 0.0, 0.0)

    def pack(self) -> np.ndarray:
        """Flat float64 vector: upper triangle of G, g, yy, n, resid, logdet."""
        return np.concatenate(
            [pack_symmetric(self.G), self.g, [self.yy, float(self.n), self.resid, self.logdet]]
        )

    @classmethod
    def unpack(cls, v: np.ndarray, m: int) -> SiteStats:
        """Inverse of :meth:`pack`.

        Raises
        ------
        ShapeError, NonFiniteError
            Wrong length, a non-integral count, or non-finite values.
        """
        k = m + 1
        v = as_float64(v, "packed site stats", (packed_size(k) + k + 4,))
        if not np.isfinite(v).all():
            raise NonFiniteError("packed site stats: NaN or inf")
        n_f = float(v[-3])
        if n_f != np.floor(n_f) or n_f < 0:
            raise ShapeError(f"packed site stats: expected an integer count, got {n_f}")
        G = unpack_symmetric(v[: packed_size(k)], k)
        return cls(G, v[packed_size(k) : packed_size(k) + k].copy(), float(v[-4]), int(n_f),
                   float(v[-2]), float(v[-1]))  # fmt: skip


def add_site_stats(a: SiteStats, b: SiteStats) -> SiteStats:
    """Exact sum of two adjusted statistics."""
    if a.g.shape != b.g.shape:
        raise ShapeError(f"site stats: cannot add m = {a.m} and m = {b.m}")
    return SiteStats(a.G + b.G, a.g + b.g, a.yy + b.yy, a.n + b.n, a.resid + b.resid,
                     a.logdet + b.logdet)  # fmt: skip


def _site_c(n: int, log_sn: float, log_tau: float) -> tuple[float, float, float, float]:
    """``c = t / (v + n t)``, ``q = dc/dlog tau = 2 t v / (v + n t)^2``, ``log(1 + n t / v)``
    and ``n t / (v + n t)``."""
    v = float(np.exp(2.0 * log_sn))
    t = float(np.exp(2.0 * log_tau))
    den = v + n * t
    return t / den, 2.0 * t * v / (den * den), float(np.log1p(n * t / v)), n * t / den


def site_adjust(stats: Stats, params: CollectiveParams) -> SiteStats:
    """One agent's adjusted statistics from its OWN raw statistics (section comment).

    ``u = G[:, m]`` (``Phi^T 1``: the bias feature is a column of ones) and ``1^T y = g[m]``.

    Raises
    ------
    ShapeError
        ``params`` has no site effect or another m.
    """
    if not params.site:
        raise ShapeError("site_adjust: params without a site effect (log_tau is None)")
    if stats.m != params.m:
        raise ShapeError(f"site_adjust: stats for m = {stats.m}, params for m = {params.m}")
    m = stats.m
    assert params.log_tau is not None
    c, _, logdet, _ = _site_c(stats.n, params.log_sn, params.log_tau)
    u = stats.G[:, m].copy()  # [m+1]
    sy = float(stats.g[m])
    G = stats.G - c * np.outer(u, u)
    resid = stats.n - float(np.trace(stats.G[:m, :m]))
    return SiteStats(symmetrize(G), stats.g - c * sy * u, stats.yy - c * sy * sy, stats.n,
                     max(resid, 0.0), logdet)  # fmt: skip


def site_bound(adj: SiteStats, params: CollectiveParams) -> float:
    """The collapsed bound with the site effect from fused adjusted statistics, O(m^3)."""
    return site_bound_and_grads(adj, params.log_s, params.log_sn, params.log_sb)[0]


def site_bound_and_grads(
    adj: SiteStats, log_s: float, log_sn: float, log_sb: float
) -> tuple[float, np.ndarray, np.ndarray, float, np.ndarray]:
    """Bound and derivatives at fixed adjusted statistics (:func:`bound_and_stat_grads`' terms).

    Returns
    -------
    bound : float
    dB_dG : ndarray (m + 1, m + 1)
        In the adjusted G (the trace term excluded).
    dB_dg : ndarray (m + 1,)
        In the adjusted g.
    trace_coef : float
        ``s^2 / (2 sigma_n^2)``: dL/dG_raw_ii (i < m) of the trace term.
    direct : ndarray (3,)
        ``dL/d(log s, log sigma_n, log sigma_b)`` at fixed adjusted statistics (the per-agent
        dependence of c_a and of the log-determinant on sigma_n is in
        :func:`site_local_contribution`).
    """
    m, n = adj.m, adj.n
    nat = _natural(adj, log_s, log_sn, log_sb)  # type: ignore[arg-type]
    logdet_P = 2.0 * float(np.log(np.diag(nat.LP)).sum())
    quad = nat.beta * adj.yy - float(nat.h @ nat.a)
    s2 = float(np.exp(2.0 * log_s))
    resid = adj.resid
    bound = (
        -0.5 * (n * _LOG_2PI + 2.0 * n * log_sn + logdet_P + quad + adj.logdet)
        - 0.5 * s2 * nat.beta * resid
    )
    beta, Dv, a, h = nat.beta, nat.Dv, nat.a, nat.h
    M = chol_inverse(nat.LP)
    Da = Dv * a
    dG = -0.5 * beta * (Dv[:, None] * M * Dv[None, :] + np.outer(Da, Da))
    dg = beta * Da
    Md = np.diag(M)
    d_log_s = -float(np.sum(1.0 - Md[:m] - a[:m] ** 2)) - s2 * beta * resid
    d_log_sb = -float(1.0 - Md[m] - a[m] ** 2)
    d_log_sn = (
        -n + (m + 1 - float(Md.sum())) + beta * adj.yy - float(a @ h) - float(a @ a)
    ) + s2 * beta * resid
    return bound, symmetrize(dG), dg, 0.5 * s2 * beta, np.array([d_log_s, d_log_sn, d_log_sb])


def site_local_contribution(
    X: np.ndarray,
    y: np.ndarray,
    params: CollectiveParams,
    dB_dG: np.ndarray,
    dB_dg: np.ndarray,
    trace_coef: float,
) -> np.ndarray:
    """One agent's gradient terms under the site effect (its rows are one site).

    ``[dL/dlog_ell (d), dL/dZ (m d), dL/dlog sigma_n (its part), dL/dlog tau (its part)]``.
    With ``u = Phi^T 1``, ``S = 1^T y``, ``dL/dc = -u^T dB_dG u - S dB_dg.u + S^2 / (2 v)``,
    ``dc/dlog tau = -dc/dlog sigma_n = 2 t v / (v + n t)^2`` and the log-determinant's
    ``-1/2 log(1 + n t / v)``. Summed over agents and added to ``direct``
    (:func:`site_bound_and_grads`) this is the pooled gradient.
    """
    X = _check_X(X, params)
    y = _check_y(y, X.shape[0])
    if not params.site:
        raise ShapeError("site_local_contribution: params without a site effect")
    assert params.log_tau is not None
    n = X.shape[0]
    m = params.m
    if n == 0:
        return np.zeros(params.d * (1 + m) + 2)
    c, q, _, frac = _site_c(n, params.log_sn, params.log_tau)
    Phi = features(X, params)  # [n, m+1]
    u = Phi.sum(0)  # [m+1]
    S = float(y.sum())
    beta = float(np.exp(-2.0 * params.log_sn))
    dG = symmetrize(as_float64(dB_dG, "dB_dG", (m + 1, m + 1)))
    dg = as_float64(dB_dg, "dB_dg", (m + 1,))
    dL_dc = -float(u @ dG @ u) - S * float(dg @ u) + 0.5 * beta * S * S
    g_tau = dL_dc * q - frac
    g_sn = -dL_dc * q + frac
    rest = local_grad_contribution(X, y, params, dG, dg, c=c, trace_coef=trace_coef)
    return np.concatenate([rest, [g_sn, g_tau]])


def site_pooled_bound_and_grad(
    parts: Iterable[tuple[np.ndarray, np.ndarray]], params: CollectiveParams
) -> tuple[float, np.ndarray]:
    """Bound and full theta gradient (layout of :meth:`CollectiveParams.to_vector`) of agents'
    data ``[(X_a, y_a), ...]`` under the site effect, assembled as the swarm does."""
    parts = list(parts)
    adj = sum_site_stats(site_adjust(batch_stats(X, y, params), params) for X, y in parts)
    if adj is None:
        adj = SiteStats.zeros(params.m)
    bound, dG, dg, tc, direct = site_bound_and_grads(
        adj, params.log_s, params.log_sn, params.log_sb
    )
    k = params.d * (1 + params.m)
    tot = np.zeros(k + 2)
    for X, y in parts:
        tot += site_local_contribution(X, y, params, dG, dg, tc)
    return bound, np.concatenate([tot[:k], [direct[0], direct[1] + tot[k], direct[2], tot[k + 1]]])


def sum_site_stats(items: Iterable[SiteStats]) -> SiteStats | None:
    """Sum in iteration order (None for no items)."""
    total: SiteStats | None = None
    for s in items:
        total = s if total is None else add_site_stats(total, s)
    return total


def refit_scale_site(
    adj: SiteStats, params: CollectiveParams, s_prior_sd: float | None = None
) -> CollectiveParams:
    """Maximize the site-effect bound over ``log s`` alone from fused adjusted statistics.

    ``(sigma_n, tau)`` stay frozen (the adjusted statistics were formed with them); the
    bound in ``log s`` is exact from the fused sums. Deterministic L-BFGS-B (as
    :func:`refit_scale_noise`), ``s`` in ``[1e-3, 1e3]``.
    """
    from scipy.optimize import minimize

    if adj.n == 0:
        raise EmptyBatchError("refit_scale_site: no observations")
    log_scale_prior(params.log_s, s_prior_sd)
    c = float(adj.n)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, _, _, _, direct = site_bound_and_grads(adj, float(x[0]), params.log_sn, params.log_sb)
        pv, pd = log_scale_prior(float(x[0]), s_prior_sd)
        return -(v + pv) / c, -np.array([direct[0] + pd]) / c

    bnd = (float(np.log(1e-3)), float(np.log(1e3)))
    x0 = np.clip([params.log_s], [bnd[0]], [bnd[1]])
    opts = {"maxcor": 10, "ftol": 1e-15, "gtol": 1e-10, "maxiter": 500, "maxfun": 1000}
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[bnd], options=opts)
    return params.with_scale_noise(float(res.x[0]), params.log_sn)


def predict_site(
    Xs: np.ndarray,
    adj: SiteStats,
    params: CollectiveParams,
    own: Stats | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean of y and variance of ``f + b_site`` under the site effect.

    ``own`` is the raw statistics of the site's agent (already included in ``adj``): the
    offset's posterior given the weights is ``b | w ~ N(c (1^T y - u^T D w), c v)``
    (``c = t / (v + n t)``), so the prediction uses ``phi - c u`` as features, adds
    ``c 1^T y`` to the mean and ``c v`` to the variance. ``own=None`` (or an agent without
    rows) is an unseen site: mean of f, variance ``+ tau^2``. The predictive variance of y is
    the returned variance plus ``sigma_n^2``.
    """
    if not params.site:
        raise ShapeError("predict_site: params without a site effect")
    assert params.log_tau is not None
    Phi = features(Xs, params)  # [n, m+1]
    m = params.m
    resid = np.maximum(1.0 - (Phi[:, :m] ** 2).sum(1), 0.0)
    nat = _natural(adj, params.log_s, params.log_sn, params.log_sb)  # type: ignore[arg-type]
    n_own = 0 if own is None else own.n
    c, _, _, _ = _site_c(n_own, params.log_sn, params.log_tau)
    v = params.sn**2
    off = 0.0
    if own is not None and own.n > 0:
        Phi = Phi - c * own.G[:, m][None, :]
        off = c * float(own.g[m])
    mean = Phi @ (nat.Dv * nat.a) + off
    V = sla.solve_triangular(nat.LP, (Phi * nat.Dv).T, lower=True, check_finite=False)
    return mean, (V * V).sum(0) + params.s**2 * resid + c * v


#: Short names used by the issue and DESIGN.md (``collapsed.add``, ``collapsed.predict``).
add = add_stats
predict = predict_collective
