"""The collective mode's local model: a swarm warm-up, then exact streaming of statistics.

Lifecycle (DESIGN.md Sec. 1, "The collective mode"; issue 9):

1. **WARMUP**: the first ``warmup_batches`` batches are buffered; the local summary is the prior.
   The swarm runs :class:`WarmupProgram` by an all-reduce over its spanning tree
   (:mod:`swarmgp.agents.allreduce`): round 0 agrees on the standardization and the input box
   (sums of n, x, x^2, y, y^2 and the maxima of x and -x: no pre-read of the stream, so live
   feeds work); then, if learning, each L-BFGS evaluation (:class:`~swarmgp.fusion.lbfgs.BoxLBFGS`)
   is two rounds: the packed :class:`~swarmgp.fusion.collapsed.Stats` of every buffer under
   theta, then every agent's :func:`~swarmgp.fusion.collapsed.local_grad_contribution`. The
   root's sums are broadcast, so every agent's optimizer sees the same numbers and ends with
   bit-identical theta. ``--no-learn`` stops after round 0: Halton Z over the agreed box and the
   initial (ell, s, sigma_n, sigma_b).
2. **STREAM**: W, Z, sigma_b frozen (``CollectiveParams.hash()``); the buffer is encoded once and
   dropped; each batch adds its statistics (cost flat in history). Predictions refit
   ``(s, sigma_n)`` from the statistics they use (fused or local) by
   :func:`~swarmgp.fusion.collapsed.refit_scale_noise`, started from the agreed theta, so
   identical fused statistics give identical predictions on every agent (cached per summary).
   With learning off, nothing is refit: the initial ``(s, sigma_n)`` predict.

Statistics travel through the existing fusion machinery: the augmented Gram matrix
``Gaug = [[G, g], [g^T, yy]]`` ((m+2) x (m+2), PSD) becomes a :class:`Summary` of size
``m' = m + 2`` with ``P = I + Gaug`` and ``n_obs = n``, so ``fuse`` yields ``I + sum_a Gaug_a``
exactly and the agent, codec and tree messages are unchanged. ``h`` carries no statistics (they
are all in P); it is ``n * v_theta``, a unit vector drawn from the frozen encoding's hash, so a
fused ``h`` differs from ``n_obs * v_theta`` exactly when statistics of another theta were
mixed in (counted as ``collective.theta_mismatch``; a partition during the warm-up is the one
way this can happen).

Site effect (opt-in, ``CollectiveEncoding.site_effect``, ``--site-effect``): one offset
``b_a ~ N(0, tau^2)`` per AGENT (its rows are one site; an agent holding several sensors shares
one offset). The summary (size ``inducing + 4``) carries the agent's own adjusted statistics
(:func:`~swarmgp.fusion.collapsed.site_adjust`) and, on two more diagonal entries, its Nystrom
residual and ``log(1 + n_a tau^2 / sigma_n^2)``; the warm-up's rounds carry the adjusted
statistics and the per-agent terms of ``d/d(log sigma_n, log tau)``; ``(sigma_n, tau)`` are
then frozen (hashed with the encoding) and the refit adapts only ``s``. ``predict`` is for an
unseen site (``+ tau^2``) unless ``own_site=True`` (this agent's posterior offset).

The input box comes from the warm-up buffers unless ranges are declared
(``CollectiveEncoding.box``, ``--input-range NAME=LO:HI``): on a time-ordered stream an
undeclared time input's later times fall outside it (Z covers only the early times).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from swarmgp.agents.allreduce import AllReduce, AllReduceTiming, TreeView
from swarmgp.fusion.collapsed import (
    CollectiveParams,
    FeaturePart,
    KernelFactor,
    SiteStats,
    Stats,
    add_stats,
    assemble_grad,
    batch_stats,
    bound_and_stat_grads,
    feature_parts,
    inducing_grad,
    initial_params,
    kernel_factors,
    local_grad_contribution,
    predict_collective,
    predict_site,
    refit_scale_noise,
    refit_scale_site,
    site_adjust,
    site_bound_and_grads,
    site_local_contribution,
    theta_bounds,
)
from swarmgp.fusion.encoders import check_batch
from swarmgp.fusion.errors import SwarmGPError
from swarmgp.fusion.lbfgs import BoxLBFGS
from swarmgp.fusion.linalg import as_float64
from swarmgp.fusion.sample import EMPTY_KEY, merge_samples, sample_points, sample_rows
from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import MAX_REDUCE_LEN
from swarmgp.protocol.messages import Reduce

__all__ = [
    "CollectiveEncoding",
    "CollectiveHyper",
    "CollectiveModel",
    "WarmupMemo",
    "WarmupProgram",
]

#: Most L-BFGS evaluations of the warm-up, every start and stage together (each is two
#: all-reduces): five probes of :data:`PROBE_EVALS` and up to 123 for the best, which stops
#: earlier where it converges (:data:`CONVERGED_WINDOW`). A fixed 84 left smooth fits of much
#: data short: 200 agents in 6-D gave RMSE 0.757 at a fixed 84 and 0.669 with this default,
#: which it spends to the end (0.647 with 336, probes of 38).
DEFAULT_MAX_EVALS = 168
#: Share (numerator, denominator) of the warm-up's evaluations left to the best start, rounded
#: down (36 of 84, what the best of three starts had before there were five): more probes must
#: not starve the fit that goes on.
CONTINUATION_SHARE = (3, 7)
#: Evaluations of one probe at most: enough to tell the basins apart; a larger budget goes to
#: the fit that goes on.
PROBE_EVALS = 9
#: The fit that goes on (the best start's continuation, or a single start's second stage)
#: stops before its budget once its last ``CONVERGED_WINDOW`` evaluations raised the bound by
#: less than ``CONVERGED_NATS_PER_EVAL`` nats each on average, and not before it has had as
#: many evaluations as the probes together (it is the fit that matters: at least their share).
#: The bound is a log evidence, so the rule is in absolute nats: an evaluation costs two
#: all-reduces over the tree and must buy about a nat (a likelihood ratio of e) to be worth
#: them. More data make finer differences count, and the fit then goes on longer.
CONVERGED_WINDOW = 8
CONVERGED_NATS_PER_EVAL = 1.0
#: Starts of the warm-up fit (:func:`start_ell_factors`).
DEFAULT_STARTS = 5
#: The longest start's length-scales, as a fraction of the agreed box's widths.
LONGEST_START = 0.5


def start_ell_factors(starts: int, m: int) -> tuple[float, ...]:
    """Initial length-scales of the warm-up's starts, as fractions of the agreed box's widths.

    Geometric from :data:`LONGEST_START` down to ``1 / m``, the spacing of the m inducing
    inputs along one input (a Halton design projects to m distinct values on each axis): the
    finest structure along one input that the inducing inputs resolve. Why several: the bound
    is multimodal in the length-scales. A fit from long ones can settle where the structure is
    explained as noise; a signal common to all sites that repeats many times over the box (a
    season over years of records) is invisible to a length-scale of a tenth of the box, where
    the bound's gradient in it is flat. One from short ones can settle where it is explained.

    Parameters
    ----------
    starts : int
        Number of starts (1: the longest alone).
    m : int
        Inducing inputs of the joint component.

    Returns
    -------
    tuple of float
        ``starts`` factors, decreasing, the first :data:`LONGEST_START` (one where ``m <= 2``:
        the inducing spacing is then no shorter than the longest start).
    """
    lo = min(LONGEST_START, 1.0 / max(m, 1))
    if starts <= 1 or lo >= LONGEST_START:  # m <= 2: the starts would all coincide
        return (LONGEST_START,)
    r = (lo / LONGEST_START) ** (1.0 / (starts - 1))
    return tuple(LONGEST_START * r**i for i in range(starts))


#: The joint component's scale when the second warm-up stage switches it on (standardized
#: units: half the targets' standard deviation).
JOINT_RESTART_SCALE = 0.5
#: Starting prior standard deviation of the per-agent offset (standardized units).
SITE_TAU0 = 0.5
_NEG = -1e300  # neutral element of the maxima (finite: the codec refuses inf)


@dataclass(frozen=True)
class CollectiveEncoding:
    """What every agent of a collective-mode run shares before the warm-up.

    ``m`` is the *summary* size ``inducing + 2`` (what :class:`AgentConfig` and the codec get);
    ``hash`` identifies the run's collective settings on the wire (the frozen theta's own hash,
    known after the warm-up, is :attr:`CollectiveModel.theta_hash`).
    """

    d: int
    inducing: int
    warmup_batches: int = 2
    learn: bool = True
    seed: int = 0
    max_evals: int = DEFAULT_MAX_EVALS
    #: Declared input ranges in raw units, one (lo, hi) per input, NaN where none (() if none):
    #: they replace the warm-up's observed box (a time input's future is then covered).
    box: tuple[tuple[float, float], ...] = ()
    #: Per-agent offset b_a ~ N(0, tau^2) (``--site-effect``): the summary carries the agent's
    #: adjusted statistics and two more diagonal entries (Nystrom residual, log-determinant).
    site_effect: bool = False
    #: The static component (:class:`~swarmgp.fusion.collapsed.CollectiveParams`): the inputs
    #: other than time, and how many of the ``inducing`` inputs it gets; () / 0: none.
    static_dims: tuple[int, ...] = ()
    static_inducing: int = 0
    #: Starting inducing inputs: "data", a hash sample of the warm-up's inputs (round 0 merges
    #: every agent's bottom-k rows, :mod:`swarmgp.fusion.sample`), the Halton design filling
    #: what the data cannot; "halton": the Halton design over the agreed box alone.
    inducing_init: str = "halton"
    #: Starts of the warm-up fit (:func:`start_ell_factors`): each is probed with a share of
    #: ``max_evals``, then the best probe goes on with the rest (1: one fit from the first).
    warmup_starts: int = DEFAULT_STARTS

    @property
    def m_static(self) -> int:
        """Inducing inputs of the static component (0 without one)."""
        return self.static_inducing if self.static_dims else 0

    def theta_from_vector(self, v: np.ndarray) -> CollectiveParams:
        """Theta of this encoding's layout from its flat vector."""
        return CollectiveParams.from_vector(
            v, self.inducing, self.d, site=self.site_effect, static_dims=self.static_dims,
            m_static=self.m_static,
        )  # fmt: skip

    @property
    def theta_size(self) -> int:
        """Length of the flat theta vector."""
        ds = len(self.static_dims) if self.m_static else 0
        mj = self.inducing - self.m_static
        static = ds * (1 + self.m_static) + 1 if ds else 0
        return self.d * (1 + mj) + 3 + int(self.site_effect) + static

    @property
    def m(self) -> int:
        """Summary size m' = m + 2 (inducing inputs, bias, targets; + 2 with the site effect)."""
        return self.inducing + (4 if self.site_effect else 2)

    @property
    def hash(self) -> str:
        """16 hex digits identifying the run's collective settings."""
        key: tuple[object, ...] = ("collective-v2", self.d, self.inducing, self.warmup_batches)
        key += (self.learn,)
        key += (self.seed, self.max_evals)
        if self.box:
            key += (self.box,)
        if self.site_effect:
            key += ("site",)
        if self.m_static:
            key += ("static", self.static_dims, self.m_static)
        if self.inducing_init != "halton":
            key += ("z-init", self.inducing_init)
        if self.warmup_starts != 1:  # (one start: the hash of earlier versions)
            # the starts' length-scales (start_ell_factors, not the older 0.5, 0.2, 0.1) and the
            # continuation's share: a swarm of mixed versions must not agree on an encoding
            key += ("starts", self.warmup_starts, "geometric", CONTINUATION_SHARE, PROBE_EVALS)
        # the fit that goes on stops when it converges (not at the budget alone)
        key += ("converged", CONVERGED_WINDOW, CONVERGED_NATS_PER_EVAL)
        return hashlib.sha256(repr(key).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CollectiveHyper:
    """The local prediction's scale and noise in the caller's units (for gPoE / rBCM)."""

    s: float
    sn2: float


@dataclass(frozen=True)
class _Standard:
    mx: np.ndarray  # [d]
    sx: np.ndarray  # [d]
    my: float
    sy: float
    lo: np.ndarray  # [d] standardized box
    hi: np.ndarray  # [d]

    def vector(self) -> np.ndarray:
        return np.concatenate([self.mx, self.sx, [self.my, self.sy], self.lo, self.hi])

    @classmethod
    def from_vector(cls, v: np.ndarray, d: int) -> _Standard:
        return cls(v[:d], v[d : 2 * d], float(v[2 * d]), float(v[2 * d + 1]),
                   v[2 * d + 2 : 3 * d + 2], v[3 * d + 2 : 4 * d + 2])  # fmt: skip


def _standard_from_sums(r: np.ndarray, d: int) -> _Standard:
    """Agreed standardization and box from round 0's combined vector."""
    n = float(r[0])
    if n < 1:
        return _Standard(np.zeros(d), np.ones(d), 0.0, 1.0, -2.0 * np.ones(d), 2.0 * np.ones(d))
    sx, sxx = r[1 : 1 + d], r[1 + d : 1 + 2 * d]
    sy, syy = float(r[1 + 2 * d]), float(r[2 + 2 * d])
    mx = sx / n
    vx = np.maximum(sxx / n - mx * mx, 0.0)
    sdx = np.where(vx > 1e-24, np.sqrt(vx), 1.0)
    my = sy / n
    sdy = float(np.sqrt(max(syy / n - my * my, 0.0))) or 1.0
    lo = (-r[3 + 3 * d : 3 + 4 * d] - mx) / sdx
    hi = (r[3 + 2 * d : 3 + 3 * d] - mx) / sdx
    flat = hi - lo <= 1e-9
    lo, hi = np.where(flat, lo - 1.0, lo), np.where(flat, hi + 1.0, hi)
    return _Standard(mx, sdx, my, sdy, lo, hi)


def _with_box(std: _Standard, box: tuple[tuple[float, float], ...]) -> _Standard:
    """The agreed standardization with declared input ranges as the box (standardized)."""
    if not box:
        return std
    b = np.asarray(box, dtype=np.float64)  # [d, 2]
    have = np.isfinite(b).all(1)
    lo = np.where(have, (b[:, 0] - std.mx) / std.sx, std.lo)
    hi = np.where(have, (b[:, 1] - std.mx) / std.sx, std.hi)
    return _Standard(std.mx, std.sx, std.my, std.sy, lo, hi)


class WarmupMemo:
    """The warm-up's statistics-round evaluations (and the stream's refits), shared by the
    agents of one process.

    Every member of a session receives the bit-identical round result and holds the same theta,
    so :func:`~swarmgp.fusion.collapsed.bound_and_stat_grads` (O(m^3)) gives the same numbers
    on each: the simulator passes one memo to all its agents and each evaluation runs once. A
    real agent process runs one agent and passes none. Keyed by a digest of the theta vector
    and the result; the last ``size`` entries are kept; cached arrays are read-only.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.hits = 0
        self._items: dict[bytes, tuple[Any, ...]] = {}
        self._factors: dict[bytes, tuple[KernelFactor, ...]] = {}
        self._opts: dict[bytes, dict[str, Any]] = {}  # L-BFGS states after a tell
        self._thetas: dict[bytes, CollectiveParams] = {}
        self._refits: dict[bytes, CollectiveParams] = {}
        self._last: tuple[np.ndarray, bytes] | None = None  # the latest round result, digested

    @staticmethod
    def key(*arrays: np.ndarray | bytes) -> bytes:
        """A 16-byte digest of float64 arrays (little-endian) and byte strings, in order."""
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            h.update(a if isinstance(a, bytes) else np.ascontiguousarray(a, "<f8").tobytes())
        return h.digest()

    def _keep(self, table: dict[bytes, Any], key: bytes, value: Any) -> None:
        """Store in one of the memo's tables, dropping the oldest beyond ``size`` entries."""
        table[key] = value
        while len(table) > self.size:
            del table[next(iter(table))]

    def result_key(self, result: np.ndarray) -> bytes:
        """Digest of a round's result vector; the simulator hands every agent the same array
        object, so it is hashed once per round (the memo holds it: its id stays unique)."""
        last = self._last
        if last is not None and last[0] is result:
            return last[1]
        k = self.key(result)
        self._last = (result, k)
        return k

    def tell(self, opt: BoxLBFGS, f: float, g: np.ndarray) -> None:
        """``opt.tell(f, g)``, computed once for all the process's optimizers in one state
        (every member's L-BFGS of a session is; :attr:`BoxLBFGS.fingerprint` says so)."""
        key = opt.fingerprint_after(f, g)
        snap = self._opts.get(key)
        if snap is not None:
            self.hits += 1
            opt.restore(snap)
            return
        opt.tell(f, g)
        self._keep(self._opts, key, opt.snapshot())

    def theta(self, enc: CollectiveEncoding, x: np.ndarray) -> CollectiveParams:
        """``enc.theta_from_vector(x)``, once per point (its arrays read-only)."""
        key = x.tobytes()
        th = self._thetas.get(key)
        if th is None:
            th = enc.theta_from_vector(x)
            for v in vars(th).values():
                if isinstance(v, np.ndarray):
                    v.flags.writeable = False
            self._keep(self._thetas, key, th)
        return th

    def refit(
        self,
        st: Stats | SiteStats,
        p: CollectiveParams,
        fit: Callable[[Stats | SiteStats, CollectiveParams], CollectiveParams],
    ) -> CollectiveParams:
        """``fit(st, p)``, the streaming refit of ``p`` to fused statistics ``st``, once per
        distinct pair: agents that hold the same fused model refit to the same numbers (a
        failed fit raises and is not kept)."""
        key = self.key(b"refit", p.hash().encode(), st.pack())
        q = self._refits.get(key)
        if q is None:
            q = fit(st, p)
            for v in vars(q).values():  # shared by every agent that asks: read-only
                if isinstance(v, np.ndarray):
                    v.flags.writeable = False
            self._keep(self._refits, key, q)
        else:
            self.hits += 1
        return q

    def get(self, key: bytes) -> tuple[Any, ...] | None:
        ev = self._items.get(key)
        self.hits += ev is not None
        return ev

    def put(self, key: bytes, ev: tuple[Any, ...]) -> None:
        for a in ev:
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        self._keep(self._items, key, ev)

    def factors(self, theta: CollectiveParams) -> tuple[KernelFactor, ...]:
        """:func:`~swarmgp.fusion.collapsed.kernel_factors` of ``theta``, once per theta."""
        key = self.key(theta.to_vector(), np.array([theta.jitter]))
        fs = self._factors.get(key)
        if fs is None:
            fs = kernel_factors(theta)
            for f in fs:
                for a in (f.ZW, f.Kzz, f.L, f.zsq):
                    a.flags.writeable = False
            self._keep(self._factors, key, fs)
        return fs


def _refit(st: Stats | SiteStats, p: CollectiveParams) -> CollectiveParams:
    """The streaming refit of ``p`` to fused statistics ``st`` (with the site effect
    ``(sigma_n, tau)`` stay frozen and ``s`` alone is refit, exactly)."""
    if isinstance(st, SiteStats):
        return refit_scale_site(st, p)
    return refit_scale_noise(st, p)


def factors_of(theta: CollectiveParams, memo: WarmupMemo | None) -> tuple[KernelFactor, ...]:
    """``theta``'s K_ZZ factors, shared through ``memo`` (the simulator's) when there is one."""
    return kernel_factors(theta) if memo is None else memo.factors(theta)


@dataclass(eq=False)
class _Leg:
    """One L-BFGS fit of the warm-up: a probe from its own start, or the continuation.

    Legs of one group run in lock-step (their statistics and gradients share the rounds), so
    three probes cost the rounds of one; each leg sees exactly the numbers it would alone.
    """

    opt: BoxLBFGS
    index: int  # probe number (its start), len(starts) for the continuation
    stage: int  # 1: the static field alone (a static component's first stage), 2: all free
    budget: int  # evaluations of the leg, both stages
    theta: CollectiveParams | None = None  # the point under evaluation
    factors: tuple[KernelFactor, ...] | None = None  # of theta
    # this agent's feature_parts under theta: the statistics round's, for the gradient round
    parts: tuple[FeaturePart, ...] | None = None
    # (bound, dG, dg, direct, inducing_grad) or, with the site effect,
    # (bound, dG, dg, trace_coef, direct); None: this evaluation failed
    ev: tuple[Any, ...] | None = None
    scale: float = 1.0  # |bound| at the leg's (or stage's) first evaluation
    scale_unset: bool = True
    evals_before: int = 0  # evaluations of a finished first stage
    # the best bound after each evaluation of the current stage (the convergence rule)
    history: list[float] = field(default_factory=list)

    @property
    def evals(self) -> int:
        return self.evals_before + self.opt.n_evals

    @property
    def best_bound(self) -> float:
        """The best bound found, unscaled (-inf before a finite one)."""
        f = self.opt.f_best
        return -f * self.scale if np.isfinite(f) else -np.inf


class WarmupProgram:
    """The warm-up as an all-reduce program (see the module docstring); one per agent."""

    def __init__(self, model: CollectiveModel) -> None:
        self.model = model
        self.enc = model.encoding
        self._std: _Standard | None = None
        self._last_std: _Standard | None = None  # from an earlier session (fallback)
        self._X = np.zeros((0, self.enc.d))
        self._y = np.zeros(0)
        self._theta0: CollectiveParams | None = None
        self._Xs = self._ys = np.zeros(0)  # the snapshot, in the session's standardization
        self._lo = self._hi = np.zeros(0)
        self._r0: np.ndarray | None = None  # round 0's result (the samples of --inducing-init)
        self._legs: list[_Leg] = []  # the legs of this group, in lock-step
        self._next_probe = 0  # the next probe leg to start
        self._probes: list[_Leg] = []  # finished probes
        self._done: _Leg | None = None  # the leg whose best is the result
        self._evals_done = 0  # evaluations of finished legs
        self._sections = self._sample_sections(self.enc)  # fixed by the encoding

    # sizes
    def _stats_len(self) -> int:
        k = self.enc.inducing + 1
        return k * (k + 1) // 2 + k + (4 if self.enc.site_effect else 2)

    def _grad_len(self) -> int:
        enc = self.enc
        ds = len(enc.static_dims) if enc.m_static else 0
        static = ds * (1 + enc.m_static)
        joint = enc.d * (1 + enc.inducing - enc.m_static)
        return joint + static + (2 if enc.site_effect else 0)

    def _initial(
        self, std: _Standard, r0: np.ndarray | None = None, ell_factor: float = 0.5
    ) -> CollectiveParams:
        """Initial theta: :func:`initial_params` over the agreed box; with round 0's result
        ``r0`` (``inducing_init="data"``), its sampled inputs, standardized, replace the first
        Halton points of each component (the design fills what the sample cannot)."""
        enc = self.enc
        tau = SITE_TAU0 if enc.site_effect else None
        theta = initial_params(
            std.lo, std.hi, enc.inducing, enc.seed, ell_factor=ell_factor, tau=tau,
            static_dims=enc.static_dims, m_static=enc.m_static,
        )  # fmt: skip
        if r0 is None or not self._sections:
            return theta
        Z, Z_st = theta.Z.copy(), None if theta.Z_st is None else theta.Z_st.copy()
        for (off, k, dims), target in zip(self._sections, (Z, Z_st), strict=False):
            if target is None:
                continue
            cols = list(dims)
            pts = sample_points(r0[off : off + k * (1 + len(cols))], k, len(cols))
            target[: pts.shape[0]] = (pts - std.mx[cols]) / std.sx[cols]
        return replace(theta, Z=Z, Z_st=Z_st)

    @staticmethod
    def _sample_sections(enc: CollectiveEncoding) -> list[tuple[int, int, tuple[int, ...]]]:
        """Round 0's sample sections ``(offset, slots, input columns)``: the joint component's
        inputs, then the static component's (its inputs only: one row per site)."""
        if enc.inducing_init != "data":
            return []
        off, d = 3 + 4 * enc.d, enc.d
        out = [(off, enc.inducing - enc.m_static, tuple(range(d)))]
        if enc.m_static:
            out.append((off + out[0][1] * (1 + d), enc.m_static, tuple(enc.static_dims)))
        return out

    def _round0_len(self) -> int:
        return 3 + 4 * self.enc.d + sum(k * (1 + len(c)) for _, k, c in self._sections)

    def _from_vector(self, v: np.ndarray) -> CollectiveParams:
        memo = self.model.warmup_memo
        return self.enc.theta_from_vector(v) if memo is None else memo.theta(self.enc, v)

    def restart(self) -> int:
        if self._std is not None:
            self._last_std = self._std
        self._std, self._legs, self._probes, self._done = None, [], [], None
        return self._round0_len()

    def ready(self, now: float) -> bool:
        return len(self.model._buffer) >= self.enc.warmup_batches

    def neutral(self, rnd: int, size: int) -> np.ndarray:
        v = np.zeros(size)
        if rnd == 0:
            v[3 + 2 * self.enc.d : 3 + 4 * self.enc.d] = _NEG
            for off, k, cols in self._sections:
                v[off : off + k * (1 + len(cols)) : 1 + len(cols)] = EMPTY_KEY
        return v

    def combine(self, rnd: int, parts: list[np.ndarray]) -> np.ndarray:
        total = parts[0].copy()
        for p in parts[1:]:
            total += p
        if rnd == 0:
            k, e = 3 + 2 * self.enc.d, 3 + 4 * self.enc.d
            total[k:e] = np.max(np.stack([p[k:e] for p in parts]), axis=0)
            for off, n, cols in self._sections:
                end = off + n * (1 + len(cols))
                total[off:end] = merge_samples([p[off:end] for p in parts], n, len(cols))
        return total

    def contribution(self, rnd: int) -> np.ndarray:
        d = self.enc.d
        if rnd == 0:  # snapshot the warm-up data of this session
            batches = self.model._buffer[: self.enc.warmup_batches]
            self._X = np.concatenate([b[0] for b in batches]) if batches else np.zeros((0, d))
            self._y = np.concatenate([b[1] for b in batches]) if batches else np.zeros(0)
            X, y = self._X, self._y
            if X.shape[0] == 0:
                return self.neutral(0, self._round0_len())
            seed = self.enc.seed
            return np.concatenate(
                [[X.shape[0]], X.sum(0), (X * X).sum(0), [y.sum(), y @ y], X.max(0), (-X).max(0)]
                + [sample_rows(X[:, list(c)], k, seed + j) for j, (_, k, c) in
                   enumerate(self._sections)]
            )  # fmt: skip
        assert self._std is not None and self._legs
        if rnd % 2 == 1:  # statistics under each leg's theta
            return np.concatenate([self._leg_stats(leg) for leg in self._legs])
        parts = [self._leg_grad(leg) for leg in self._legs if leg.ev is not None]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _leg_stats(self, leg: _Leg) -> np.ndarray:
        Xs, ys, th = self._Xs, self._ys, leg.theta
        assert th is not None
        if Xs.shape[0] == 0:
            return np.zeros(self._stats_len())
        # the standardized buffer was validated when it was observed: no NaN/inf scans
        leg.parts = feature_parts(Xs, th, self._leg_factors(leg), check_finite=False)
        st = batch_stats(Xs, ys, th, parts=leg.parts, check_finite=False)
        if self.enc.site_effect:  # this agent's rows are one site: adjusted statistics
            return site_adjust(st, th).pack()
        return st.pack()

    def _leg_grad(self, leg: _Leg) -> np.ndarray:
        Xs, ys, th, ev = self._Xs, self._ys, leg.theta, leg.ev
        assert th is not None and ev is not None
        if Xs.shape[0] == 0:
            return np.zeros(self._grad_len())
        if self.enc.site_effect:
            _, dG, dg, tc, _ = ev
            return site_local_contribution(Xs, ys, th, dG, dg, tc)
        _, dG, dg = ev[:3]
        # the path through L is added once, from the fused statistics (inducing_grad)
        return local_grad_contribution(
            Xs, ys, th, dG, dg, factors=self._leg_factors(leg), through_L=False,
            parts=leg.parts, check_finite=False,
        )  # fmt: skip

    def _leg_factors(self, leg: _Leg) -> tuple[KernelFactor, ...]:
        """K_ZZ factors of the leg's theta (one Cholesky per evaluation, both rounds)."""
        assert leg.theta is not None
        if leg.factors is None:
            leg.factors = factors_of(leg.theta, self.model.warmup_memo)
        return leg.factors

    def apply(self, rnd: int, result: np.ndarray) -> int | None:
        enc = self.enc
        if rnd == 0:
            self._std = _with_box(_standard_from_sums(result, enc.d), enc.box)
            Xs, ys = self.model._standardize(self._X, self._y, self._std)
            # scanned for NaN/inf once here, not in every evaluation (check_finite=False)
            self._Xs = as_float64(Xs, "standardized X", (None, enc.d))
            self._ys = as_float64(ys, "standardized y", (Xs.shape[0],))
            self._theta0 = self._initial(self._std, result)
            if not enc.learn or result[0] < 1 or enc.max_evals < 1:
                return None
            bnds = theta_bounds(self._theta0)
            self._lo = np.array([-np.inf if b[0] is None else b[0] for b in bnds])
            self._hi = np.array([np.inf if b[1] is None else b[1] for b in bnds])
            self._r0 = result
            self._legs, self._probes, self._done = [], [], None
            self._next_probe, self._evals_done = 0, 0
            return self._ask()
        assert self._legs
        if rnd % 2 == 1:
            S, ok = self._stats_len(), 0
            memo = self.model.warmup_memo
            rkey = memo.result_key(result) if memo is not None else b""
            for i, leg in enumerate(self._legs):
                ok += self._evaluate(leg, result[i * S : (i + 1) * S], rkey + bytes([i]))
            return ok * self._grad_len()
        K, j = self._grad_len(), 0
        for leg in self._legs:
            if leg.ev is not None:
                self._tell(leg, result[j * K : (j + 1) * K])
                j += 1
        return self._ask()

    def _evaluate(self, leg: _Leg, result: np.ndarray, rkey: bytes) -> bool:
        """The bound and its statistics gradients at the leg's theta from the fused
        statistics ``result`` (shared through the simulator's memo, ``rkey`` naming the
        round's result and the leg's part of it); False if it failed."""
        enc, th = self.enc, leg.theta
        assert th is not None
        memo = self.model.warmup_memo
        key = memo.key(th.to_vector(), rkey) if memo is not None else b""
        cached = memo.get(key) if memo is not None else None
        try:
            ev: tuple[Any, ...]
            if cached is not None:
                ev = cached  # checked below before it was kept
            elif enc.site_effect:
                sst = SiteStats.unpack(result, enc.inducing)
                ev = site_bound_and_grads(sst, th.log_s, th.log_sn, th.log_sb)
            else:
                st = Stats.unpack(result, enc.inducing)
                bound, dG, dg, direct = bound_and_stat_grads(
                    st, th.log_s, th.log_sn, th.log_sb, th.static
                )
                ind = inducing_grad(st, th, dG, dg, self._leg_factors(leg))
                ev = (bound, dG, dg, direct, ind)
            if cached is None:
                # checked once per evaluation, not by every agent's gradient round
                # (check_finite=False there)
                if not (
                    np.isfinite(ev[0]) and np.isfinite(ev[1]).all() and np.isfinite(ev[2]).all()
                ):
                    raise SwarmGPError("non-finite bound or statistics gradients")
                if memo is not None:
                    memo.put(key, ev)
        except SwarmGPError:  # the leg backtracks; it sits out the gradient round
            leg.ev = None
            leg.opt.tell(np.inf, np.full(th.to_vector().shape, np.nan))
            return False
        if leg.scale_unset:
            leg.scale = max(1.0, abs(float(ev[0])))
            leg.scale_unset = False
        leg.ev = ev
        return True

    def _tell(self, leg: _Leg, result: np.ndarray) -> None:
        """Assemble the leg's gradient from the fused contributions and tell its L-BFGS."""
        assert leg.ev is not None and leg.theta is not None
        bound = leg.ev[0]
        if self.enc.site_effect:
            direct = leg.ev[-1]
            k = self.enc.d * (1 + self.enc.inducing)
            tail = [direct[0], direct[1] + result[k], direct[2], result[k + 1]]
            grad = np.concatenate([result[:k], tail])
        else:
            direct, ind = leg.ev[3], leg.ev[4]
            grad = assemble_grad(leg.theta, result + ind, direct)
        memo = self.model.warmup_memo
        if memo is None:
            leg.opt.tell(-bound / leg.scale, -grad / leg.scale)
        else:
            memo.tell(leg.opt, -bound / leg.scale, -grad / leg.scale)
        leg.history.append(leg.best_bound)

    @property
    def _i_s(self) -> int:
        """Index of log s (the joint component's scale) in the theta vector."""
        return self.enc.d * (1 + self.enc.inducing - self.enc.m_static)

    @property
    def _starts(self) -> tuple[float, ...]:
        """Length-scale factors of the probe legs (:func:`start_ell_factors`)."""
        return start_ell_factors(self.enc.warmup_starts, self.enc.inducing - self.enc.m_static)

    def _group(self) -> int:
        """Probes run together: all of them, unless their statistics would not fit one
        Reduce message (``MAX_REDUCE_LEN``; only for a very large m)."""
        return max(1, min(len(self._starts), MAX_REDUCE_LEN // self._stats_len()))

    def _leg_budget(self, index: int) -> int:
        """Evaluations of leg ``index``: a probe's, or what the probes left for the last."""
        k, enc = len(self._starts), self.enc
        if k == 1:
            return enc.max_evals
        # the best keeps CONTINUATION_SHARE of the budget however many starts are probed (a
        # smooth fit is budget-limited), the probes share the rest
        num, den = CONTINUATION_SHARE
        last = enc.max_evals * num // den
        probe = max(2, min(PROBE_EVALS, (enc.max_evals - last) // k))
        return probe if index < k else max(1, enc.max_evals - k * probe)

    def _new_leg(self, index: int) -> _Leg:
        """Leg ``index``: a probe from its own start (the two-stage fit), or, after every
        probe, the continuation of the best probe with everything free."""
        assert self._theta0 is not None and self._std is not None
        budget = self._leg_budget(index)
        if index < len(self._starts):
            theta = self._theta0
            if index > 0:
                theta = self._initial(self._std, self._r0, self._starts[index])
            x0, lo, hi, i = theta.to_vector(), self._lo.copy(), self._hi.copy(), self._i_s
            if theta.m_static and budget >= 2:
                # stage 1 fits the static field alone (the joint scale pinned at its floor):
                # what persists is explained first, the joint part then explains what changes
                x0[i] = lo[i]
                hi[i] = lo[i]
                return _Leg(BoxLBFGS(x0, lo, hi, max_evals=budget // 2), index, 1, budget)
            return _Leg(BoxLBFGS(x0, self._lo, self._hi, max_evals=budget), index, 2, budget)
        best = max(sorted(self._probes, key=lambda g: g.index), key=lambda g: g.best_bound)
        x_best = best.opt.x_best
        return _Leg(BoxLBFGS(x_best, self._lo, self._hi, max_evals=budget), index, 2, budget)

    def _leg_ask(self, leg: _Leg) -> np.ndarray | None:
        """The leg's next point (switching a finished first stage to the second), or None."""
        x = leg.opt.ask()
        if x is None and leg.stage == 1 and np.isfinite(leg.opt.f_best):
            # stage 2: everything free, from stage 1's best with the joint part switched on
            x0 = leg.opt.x_best.copy()
            x0[self._i_s] = float(np.log(JOINT_RESTART_SCALE))
            leg.evals_before += leg.opt.n_evals
            leg.stage = 2
            leg.opt = BoxLBFGS(x0, self._lo, self._hi, max(1, leg.budget - leg.evals_before))
            leg.scale_unset = True
            leg.history = []
            x = leg.opt.ask()
        if x is not None and self._converged(leg):
            return None
        return x

    def _converged(self, leg: _Leg) -> bool:
        """Whether the fit that goes on has converged (:data:`CONVERGED_WINDOW`), after at
        least as many evaluations as the probes had together; probes and first stages run
        their budgets."""
        k = len(self._starts)
        goes_on = leg.index == k or k == 1
        h, w = leg.history, CONVERGED_WINDOW
        floor = k * self._leg_budget(0) if k > 1 else 0  # the probes' evaluations together
        if not goes_on or leg.stage != 2 or len(h) <= max(w, floor):
            return False
        if not np.isfinite(h[-1 - w]):
            return False
        return h[-1] - h[-1 - w] < CONVERGED_NATS_PER_EVAL * w

    def _ask(self) -> int | None:
        """Next points of the active legs (starting the next group, or the continuation,
        when a group ends); the size of the next statistics round, None when finished."""
        k = len(self._starts)
        while True:
            active = []
            for leg in self._legs:
                x = self._leg_ask(leg)
                if x is None:  # the leg ended
                    self._evals_done += leg.evals
                    self._done = leg
                    if leg.index < k and k > 1 and np.isfinite(leg.opt.f_best):
                        self._probes.append(leg)
                    continue
                leg.theta, leg.factors, leg.ev = self._from_vector(x), None, None
                leg.parts = None
                active.append(leg)
            self._legs = active
            if active:
                return len(active) * self._stats_len()
            if self._next_probe < k:  # the next group of probes
                n = min(self._group(), k - self._next_probe)
                self._legs = [self._new_leg(self._next_probe + i) for i in range(n)]
                self._next_probe += n
            elif k > 1 and self._probes and self._done is not None and self._done.index < k:
                self._legs = [self._new_leg(k)]  # the continuation of the best probe
            else:
                return None

    def _pack(
        self, std: _Standard, theta: CollectiveParams, learned: bool, evals: int
    ) -> np.ndarray:
        return np.concatenate([[float(learned), float(evals)], std.vector(), theta.to_vector()])

    def final_state(self) -> np.ndarray:
        assert self._std is not None and self._theta0 is not None
        if self._done is None:
            return self._pack(self._std, self._theta0, False, 0)
        theta = self._from_vector(self._done.opt.x_best)
        return self._pack(self._std, theta, True, self._evals_done)

    def fallback_state(self) -> np.ndarray:
        std = self._std or self._last_std
        if std is None:  # no agreed standardization ever: this root's own buffer
            b = self.model._buffer[: self.enc.warmup_batches]
            self._X = np.concatenate([x for x, _ in b]) if b else np.zeros((0, self.enc.d))
            self._y = np.concatenate([y for _, y in b]) if b else np.zeros(0)
            std = _standard_from_sums(self.contribution(0), self.enc.d)
        legs = [g for g in self._legs + self._probes if np.isfinite(g.opt.f_best)]
        if legs and self._std is not None:
            theta = self._from_vector(max(legs, key=lambda g: g.best_bound).opt.x_best)
        else:
            theta = self._initial(std)
        return self._pack(std, theta, False, -1)

    def adopt(self, state: np.ndarray, now: float) -> None:
        d = self.enc.d
        std = _Standard.from_vector(state[2 : 2 + 4 * d + 2], d)
        theta = self._from_vector(state[2 + 4 * d + 2 :])
        self.model._start_stream(std, theta, learned=bool(state[0]), evals=int(state[1]))


class CollectiveModel:
    """An agent's model in the collective mode (module docstring).

    Parameters
    ----------
    encoding : CollectiveEncoding
    timing : AllReduceTiming, optional

    Attributes
    ----------
    params : CollectiveParams or None
        The agreed theta (None during the warm-up).
    phase : {"warmup", "stream"}
    counters : collections.Counter
        ``collective.*`` counts (shared with the agent's counters once it steps).
    """

    def __init__(
        self,
        encoding: CollectiveEncoding,
        timing: AllReduceTiming | None = None,
        warmup_memo: WarmupMemo | None = None,
    ) -> None:
        self.encoding = encoding
        #: shared by the agents of one process (the simulator's), None in a real agent process
        self.warmup_memo = warmup_memo
        self.encoder = None  # no paper-mode encoder (the simulator's ESS report skips it)
        self.params: CollectiveParams | None = None
        self.std: _Standard | None = None
        self.phase = "warmup"
        self.learned = False
        self.warmup_evals = 0
        self.counters: Counter[str] = Counter()
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._stats: Stats | None = None
        self._version = 0
        self._summary: Summary | None = None
        self._summary_version = -1
        self._v_theta: np.ndarray | None = None
        self._refits: dict[tuple[str, int], tuple[object, CollectiveParams]] = {}
        self._factors: tuple[KernelFactor, ...] | None = None  # K_ZZ factors of the frozen theta
        self.allreduce = AllReduce(WarmupProgram(self), timing or AllReduceTiming())

    # ------------------------------------------------------------------ properties

    @property
    def n_obs(self) -> int:
        """Observations held (buffered or encoded)."""
        if self._stats is not None:
            return self._stats.n
        return int(sum(y.shape[0] for _, y in self._buffer))

    @property
    def theta_hash(self) -> str | None:
        """Hash of the frozen encoding (W, Z, sigma_b, jitter) once agreed."""
        return None if self.params is None else self.params.hash()

    @property
    def hyper(self) -> CollectiveHyper:
        """Scale and noise of the local prediction, in the caller's units."""
        p, sy = self._params_for(None), (self.std.sy if self.std is not None else 1.0)
        if p is None:
            return CollectiveHyper(sy, sy * sy)
        return CollectiveHyper(float(np.hypot(p.s, p.s_st)) * sy, (p.sn * sy) ** 2)

    # ------------------------------------------------------------------ local-model interface

    def observe(self, X: object, y: object, fused: Summary | None = None) -> None:
        """Buffer (warm-up) or add the batch's statistics (stream)."""
        Xa, ya = check_batch(X, y, self.encoding.d)
        if self.params is None or self.std is None:
            self._buffer.append((Xa.copy(), ya.copy()))
            return
        Xs, ys = self._standardize(Xa, ya, self.std)
        st = batch_stats(Xs, ys, self.params, self._frozen_factors())
        self._stats = st if self._stats is None else add_stats(self._stats, st)
        self._version += 1

    def summary(self) -> Summary:
        """``P = I + Gaug``, ``h = n v_theta`` of size m + 2 (the prior during the warm-up)."""
        if self._summary is not None and self._summary_version == self._version:
            return self._summary
        m2 = self.encoding.m
        P = np.eye(m2)
        h = np.zeros(m2)
        n = 0
        if self._stats is not None and self._v_theta is not None:
            st: Stats | SiteStats = self._stats
            k = self.encoding.inducing + 1
            if self.encoding.site_effect:  # this agent's own adjusted contribution
                assert self.params is not None
                st = site_adjust(self._stats, self.params)
                P[k + 1, k + 1] += st.resid
                P[k + 2, k + 2] += st.logdet
            P[:k, :k] += st.G
            P[:k, k] += st.g
            P[k, :k] += st.g
            P[k, k] += st.yy
            n = st.n
            h = n * self._v_theta
        self._summary = Summary(P, h, n, 1, self.encoding.hash)
        self._summary_version = self._version
        return self._summary

    def predict(
        self, X: object, fused: Summary | None = None, own_site: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance of y in the caller's units.

        Parameters
        ----------
        X : array_like of shape (n, d)
        fused : Summary or None
            The collective model; None predicts from this agent's own statistics.
        own_site : bool
            Site effect only: X is at this agent's own site, so its offset's posterior (from
            its own statistics) is used. False (default): an unseen site, the offset's prior
            (mean 0, variance tau^2 added) -- a query does not say where its rows come from.
        """
        Xa = np.asarray(X, dtype=np.float64)
        if self.params is None or self.std is None:  # warm-up: the prior
            return np.zeros(Xa.shape[0]), np.ones(Xa.shape[0])
        st = self._stats_of(fused)
        p = self._params_for(fused)
        assert p is not None
        Xs = (Xa - self.std.mx) / self.std.sx
        if isinstance(st, SiteStats):
            mean, var_f = predict_site(Xs, st, p, self._stats if own_site else None)
        else:
            mean, var_f = predict_collective(Xs, st, p, self._frozen_factors())
        sy = self.std.sy
        return self.std.my + sy * mean, sy * sy * (var_f + p.sn**2)

    # ------------------------------------------------------------------ the agent's hook

    def collective_step(
        self, tv: TreeView, now: float, msg: Reduce | None = None
    ) -> tuple[list[tuple[int, Reduce]], bool]:
        """Run the warm-up all-reduce; return messages and whether the summary changed."""
        self.counters = tv.counters
        v0 = self._version
        out = self.allreduce.step(tv, now, msg)
        return out, self._version != v0

    def collective_deadline(self) -> float:
        """When the agent must next call :meth:`collective_step` without a message."""
        return self.allreduce.next_deadline()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _standardize(X: np.ndarray, y: np.ndarray, std: _Standard) -> tuple[np.ndarray, np.ndarray]:
        return (X - std.mx) / std.sx, (y - std.my) / std.sy

    def _start_stream(
        self, std: _Standard, theta: CollectiveParams, learned: bool, evals: int
    ) -> None:
        self.std, self.params = std, theta
        self.learned, self.warmup_evals = learned, evals
        self.phase = "stream"
        rng = np.random.default_rng(int(theta.hash(), 16))
        v = rng.standard_normal(self.encoding.m)
        self._v_theta = v / np.linalg.norm(v)
        self._stats = Stats.zeros(theta.m)
        fs = self._factors = factors_of(theta, self.warmup_memo)
        for X, y in self._buffer:  # encode the buffer once, then drop it
            Xs, ys = self._standardize(X, y, std)
            self._stats = add_stats(self._stats, batch_stats(Xs, ys, theta, fs))
        self._buffer = []
        self._version += 1
        self.counters["collective.stream_started"] += 1

    def _frozen_factors(self) -> tuple[KernelFactor, ...]:
        """K_ZZ factors of the frozen encoding, computed once when the stream starts (a refit
        changes only s and sigma_n, not W, Z or the jitter)."""
        assert self._factors is not None
        return self._factors

    def _stats_of(self, fused: Summary | None) -> Stats | SiteStats:
        assert self._stats is not None
        if self.encoding.site_effect:
            if fused is None:
                assert self.params is not None
                return site_adjust(self._stats, self.params)
            return site_stats_from_summary(fused, self._v_theta, self.counters)
        if fused is None:
            return self._stats
        return stats_from_summary(fused, self._v_theta, self.counters)

    def _params_for(self, fused: Summary | None) -> CollectiveParams | None:
        p = self.params
        if p is None or not self.encoding.learn:
            return p
        key: tuple[str, int] = ("f", id(fused)) if fused is not None else ("l", self._version)
        hit = self._refits.get(key)
        if hit is not None and (fused is None or hit[0] is fused):
            return hit[1]
        st = self._stats_of(fused)
        try:
            memo = self.warmup_memo
            if st.n == 0:
                q = p
            elif memo is not None:  # the simulator's agents share it
                q = memo.refit(st, p, _refit)
            else:
                q = _refit(st, p)
        except SwarmGPError:
            self.counters["collective.refit_failed"] += 1
            q = p
        if len(self._refits) >= 4:
            self._refits.pop(next(iter(self._refits)))
        self._refits[key] = (fused, q)
        return q

    # --- durable agents (issue 10): state() / restore() for --state-dir -------------------

    def state(self) -> dict[str, Any]:
        """The warm-up buffer, or the agreed theta (with its hash) and the statistics.

        Arrays and scalars for ``agents/runtime/snapshot.py``; a restored streaming model needs
        no warm-up again.
        """
        st: dict[str, Any] = {"kind": "collective", "encoding": self.encoding.hash}
        if self.params is None or self.std is None or self._stats is None:
            st["phase"] = "warmup"
            st["buffer"] = len(self._buffer)
            for i, (X, y) in enumerate(self._buffer):
                st[f"buffer.{i}.X"], st[f"buffer.{i}.y"] = X.copy(), y.copy()
            return st
        final = self.allreduce.final
        if final is None:
            final = np.concatenate(
                [[float(self.learned), float(self.warmup_evals)], self.std.vector(),
                 self.params.to_vector()]
            )  # fmt: skip
        st.update(
            {
                "phase": "stream",
                "final": np.asarray(final, dtype=np.float64).copy(),
                "theta_hash": self.params.hash(),
                "stats": self._stats.pack(),
                "n_obs": int(self._stats.n),
            }
        )
        return st

    def restore(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state` back; all-or-nothing.

        Raises
        ------
        SwarmGPError
            Another encoding, a theta whose hash differs, statistics that are not a Gram
            matrix, or batches of the wrong shape (the model is unchanged).
        """
        enc = self.encoding
        d, m = enc.d, enc.inducing
        if state.get("kind") != "collective" or state.get("encoding") != enc.hash:
            raise SwarmGPError(
                f"state of a {state.get('kind')!r} model of encoding {state.get('encoding')!r}"
            )
        phase = state.get("phase")
        if phase == "warmup":
            k = state["buffer"]
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= 1 << 20:
                raise SwarmGPError(f"state buffer: expected a count, got {k!r}")
            buffer = [
                check_batch(state[f"buffer.{i}.X"], state[f"buffer.{i}.y"], d) for i in range(k)
            ]
            self._buffer = [(X.copy(), y.copy()) for X, y in buffer]
            return
        if phase != "stream":
            raise SwarmGPError(f"state phase {phase!r}")
        final = np.asarray(state["final"], dtype=np.float64)
        k = 2 + 4 * d + 2
        nt = enc.theta_size
        if final.shape != (k + nt,) or not np.isfinite(final).all():
            raise SwarmGPError(f"state final: expected {k + nt} values")
        std = _Standard.from_vector(final[2:k].copy(), d)
        theta = enc.theta_from_vector(final[k:])
        if theta.hash() != state.get("theta_hash"):
            raise SwarmGPError(
                f"state theta hash {state.get('theta_hash')!r} differs from {theta.hash()}"
            )
        if not (np.all(std.sx > 0) and std.sy > 0):
            raise SwarmGPError("state standardization: non-positive scales")
        stats = Stats.unpack(np.asarray(state["stats"], dtype=np.float64), m)
        if stats.n != state.get("n_obs"):
            raise SwarmGPError(f"state n_obs {state.get('n_obs')!r} differs from {stats.n}")
        # everything checked: apply
        self._buffer = []
        self._start_stream(std, theta, learned=bool(final[0]), evals=int(final[1]))
        self._stats = stats
        self._version += 1
        self.allreduce.final = final.copy()
        self.allreduce.finished = True

    # --- end durable agents ----------------------------------------------------------------


def stats_from_summary(
    s: Summary, v_theta: np.ndarray | None = None, counters: Counter[str] | None = None
) -> Stats:
    """Statistics back from a (fused) collective summary: ``Gaug = P - I``.

    Counts ``collective.theta_mismatch`` when ``h`` shows statistics of another theta.
    """
    k = s.m - 1
    Gaug = s.P - np.eye(s.m)
    G = 0.5 * (Gaug[:k, :k] + Gaug[:k, :k].T)
    if v_theta is not None and counters is not None:
        if np.max(np.abs(s.h - s.n_obs * v_theta)) > 1e-8 * max(1, s.n_obs):
            counters["collective.theta_mismatch"] += 1
    return Stats(G, 0.5 * (Gaug[:k, k] + Gaug[k, :k]), float(Gaug[k, k]), int(s.n_obs))


def site_stats_from_summary(
    s: Summary, v_theta: np.ndarray | None = None, counters: Counter[str] | None = None
) -> SiteStats:
    """Adjusted statistics back from a (fused) site-effect summary (size inducing + 4)."""
    k = s.m - 3
    Gaug = s.P - np.eye(s.m)
    G = 0.5 * (Gaug[:k, :k] + Gaug[:k, :k].T)
    if v_theta is not None and counters is not None:
        if np.max(np.abs(s.h - s.n_obs * v_theta)) > 1e-8 * max(1, s.n_obs):
            counters["collective.theta_mismatch"] += 1
    g = 0.5 * (Gaug[:k, k] + Gaug[k, :k])
    return SiteStats(G, g, float(Gaug[k, k]), int(s.n_obs), float(Gaug[k + 1, k + 1]),
                     float(Gaug[k + 2, k + 2]))  # fmt: skip


def describe(model: Any) -> dict[str, Any]:
    """Warm-up facts of a collective model for reports."""
    return {
        "phase": model.phase,
        "learned": model.learned,
        "warmup_evals": model.warmup_evals,
        "theta_hash": model.theta_hash,
    }
