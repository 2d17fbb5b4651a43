"""A small deterministic ask/tell L-BFGS with box bounds (pure numpy).

scipy's L-BFGS-B owns its loop: it calls the objective. A swarm evaluates the objective by two
all-reduces over the spanning tree, one message round at a time, so the optimizer must be driven
from outside: :meth:`BoxLBFGS.ask` returns the next point to evaluate, :meth:`BoxLBFGS.tell`
takes ``(f, grad)`` there. Identical answers give bit-identical iterates on every agent.

Method: the L-BFGS two-loop recursion (Nocedal & Wright, Algorithm 7.4) on the free variables
(those not held at a bound by their gradient), the step projected onto the box, a backtracking
Armijo line search (halving), curvature pairs kept only when ``s^T y > 0``; a failed search
resets the memory and retries along the projected steepest descent once before stopping.
It minimizes; pass ``-bound`` to maximize.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from swarmgp.fusion.errors import ShapeError

__all__ = ["BoxLBFGS"]

#: Armijo sufficient-decrease constant.
ARMIJO = 1e-4
#: Halvings of one line search before it is declared failed.
MAX_BACKTRACK = 20


class BoxLBFGS:
    """Ask/tell L-BFGS minimizer on a box.

    Parameters
    ----------
    x0 : ndarray of shape (n,)
        Start (clipped into the box).
    lo, hi : ndarray of shape (n,)
        Bounds; ``-inf`` / ``inf`` for free coordinates.
    max_evals : int
        Hard limit on evaluations (``tell`` calls).
    memory : int
        Curvature pairs kept.
    gtol : float
        Stop when the projected gradient's max-norm falls below this.
    ftol : float
        Stop when an accepted step decreases f by less than ``ftol * max(1, |f|)``.

    Attributes
    ----------
    n_evals : int
    done : bool
    x_best, f_best : the best point told so far and its value.
    fingerprint : bytes
        A digest of the settings, the start and every ``(f, g)`` told: two optimizers with
        the same fingerprint are in the same state (see :meth:`snapshot`).
    """

    def __init__(
        self,
        x0: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        max_evals: int = 35,
        memory: int = 10,
        gtol: float = 1e-9,
        ftol: float = 1e-12,
    ) -> None:
        x0 = np.asarray(x0, dtype=np.float64)
        self.lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), x0.shape).copy()
        self.hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), x0.shape).copy()
        if x0.ndim != 1 or (self.lo > self.hi).any():
            raise ShapeError("BoxLBFGS: expected a 1-D start and lo <= hi")
        self.max_evals, self.memory, self.gtol, self.ftol = max_evals, memory, gtol, ftol
        self.n_evals = 0
        self.done = max_evals < 1
        self.x_best = np.clip(x0, self.lo, self.hi)
        self.f_best = np.inf
        self._x = self.x_best.copy()  # accepted iterate
        self._f = np.inf
        self._g = np.zeros_like(x0)
        self._S: list[np.ndarray] = []
        self._Y: list[np.ndarray] = []
        self._trial = self._x.copy()  # point being evaluated
        self._d = np.zeros_like(x0)
        self._t = 1.0
        self._backtracks = 0
        self._reset_once = False
        self._started = False
        h = hashlib.blake2b(repr((max_evals, memory, gtol, ftol)).encode(), digest_size=16)
        for a in (self._x, self.lo, self.hi):
            h.update(a.tobytes())
        self.fingerprint = h.digest()

    # ------------------------------------------------------------------ interface

    def fingerprint_after(self, f: float, g: np.ndarray) -> bytes:
        """The :attr:`fingerprint` that ``tell(f, g)`` will leave (nothing changes here)."""
        h = hashlib.blake2b(self.fingerprint, digest_size=16)
        h.update(np.float64(f).tobytes())
        h.update(np.ascontiguousarray(g, dtype=np.float64).tobytes())
        return h.digest()

    def snapshot(self) -> dict[str, Any]:
        """The whole state, to :meth:`restore` into another optimizer of the same settings.

        Arrays are shared and made read-only (none is ever changed in place here); the
        curvature lists are copied.
        """
        out = dict(vars(self))
        for v in out.values():
            if isinstance(v, np.ndarray):
                v.flags.writeable = False
        out["_S"], out["_Y"] = tuple(self._S), tuple(self._Y)
        return out

    def restore(self, snap: dict[str, Any]) -> None:
        """Take the state of :meth:`snapshot` (this optimizer then behaves exactly as that)."""
        vars(self).update(snap)
        self._S, self._Y = list(snap["_S"]), list(snap["_Y"])

    def ask(self) -> np.ndarray | None:
        """The next point to evaluate, or None when finished."""
        return None if self.done else self._trial.copy()

    def tell(self, f: float, g: np.ndarray) -> None:
        """The objective and its gradient at the point last returned by :meth:`ask`."""
        if self.done:
            return
        self.fingerprint = self.fingerprint_after(f, g)
        self.n_evals += 1
        g = np.asarray(g, dtype=np.float64)
        ok = bool(np.isfinite(f)) and bool(np.isfinite(g).all())
        if ok and f < self.f_best:
            self.f_best, self.x_best = float(f), self._trial.copy()
        if not self._started:
            if not ok:
                self.done = True
                return
            self._started = True
            self._accept(float(f), g, first=True)
        elif ok and f <= self._f + ARMIJO * float(self._g @ (self._trial - self._x)):
            old_f = self._f
            self._accept(float(f), g, first=False)
            if not self.done and old_f - self._f <= self.ftol * max(1.0, abs(self._f)):
                self.done = True
        else:
            self._backtrack()
        if self.n_evals >= self.max_evals:
            self.done = True

    # ------------------------------------------------------------------ internals

    def _free(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        at_lo = (x <= self.lo) & (g > 0)
        at_hi = (x >= self.hi) & (g < 0)
        return ~(at_lo | at_hi)

    def _accept(self, f: float, g: np.ndarray, first: bool) -> None:
        if not first:
            s, y = self._trial - self._x, g - self._g
            sy = float(s @ y)
            if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
                self._S.append(s)
                self._Y.append(y)
                if len(self._S) > self.memory:
                    self._S.pop(0)
                    self._Y.pop(0)
        self._x, self._f, self._g = self._trial.copy(), f, g.copy()
        self._reset_once = False
        self._new_direction()

    def _two_loop(self, q: np.ndarray, free: np.ndarray) -> np.ndarray:
        """``H q`` on the free coordinates (Nocedal & Wright, Alg. 7.4); pairs with
        ``s^T y <= 0`` there are skipped. The masked history is formed once: [k, n] each."""
        q = q * free
        k = len(self._S)
        if k == 0:
            return q * free
        S = np.array(self._S) * free  # [k, n]
        Y = np.array(self._Y) * free  # [k, n]
        sy = np.einsum("ij,ij->i", S, Y)  # [k]
        alphas = np.zeros(k)
        for i in range(k - 1, -1, -1):
            if sy[i] <= 0:
                continue
            a = float(S[i] @ q) / float(sy[i])
            alphas[i] = a
            q = q - a * Y[i]
        yy = float(Y[-1] @ Y[-1])
        gamma = float(sy[-1]) / yy if yy > 0 and sy[-1] > 0 else 1.0
        r = gamma * q
        for i in range(k):
            if sy[i] <= 0:
                continue
            b = float(Y[i] @ r) / float(sy[i])
            r = r + (alphas[i] - b) * S[i]
        return r * free

    def _new_direction(self) -> None:
        x, g = self._x, self._g
        free = self._free(x, g)
        pg = np.where(free, g, 0.0)
        if float(np.max(np.abs(pg), initial=0.0)) <= self.gtol:
            self.done = True
            return
        d = -self._two_loop(g, free)
        if not float(g @ d) < 0:  # not a descent direction: forget the curvature
            self._S.clear()
            self._Y.clear()
            d = -pg
        self._d = d
        if self._S:
            self._t = 1.0
        else:  # first step or after a reset: a unit-length move in the largest coordinate
            self._t = min(1.0, 1.0 / float(np.max(np.abs(d))))
        self._backtracks = 0
        self._trial = np.clip(x + self._t * d, self.lo, self.hi)

    def _backtrack(self) -> None:
        self._backtracks += 1
        if self._backtracks > MAX_BACKTRACK:
            if self._reset_once or not self._S:
                self.done = True
                return
            self._reset_once = True
            self._S.clear()
            self._Y.clear()
            self._new_direction()
            return
        self._t *= 0.5
        self._trial = np.clip(self._x + self._t * self._d, self.lo, self.hi)
