"""Deterministic scrambled Halton designs, written here so that fusion never imports scipy.stats.

The Halton sequence takes, in dimension j, the radical inverse of the point index in the j-th
prime base ``b_j``:

.. math::

    x_j(i) = \\sum_{k \\ge 1} \\pi_{j,k}(a_k(i)) \\, b_j^{-k}, \\qquad i = \\sum_k a_k(i) b_j^{k-1},

where ``a_k(i)`` are the base-``b_j`` digits of ``i``. Scrambling applies an independent random
permutation ``pi_{j,k}`` of ``{0, ..., b_j - 1}`` to every digit position k of every dimension j
(random digit permutation, as in Owen's "random linear/permutation" family restricted to one
permutation per position). All digits are permuted up to float64 resolution, the trailing zero
digits included, so every point is a random point of its finest elementary interval and the
first point is not pinned to the origin. Permutations come from ``numpy.random.default_rng(seed)``
in a fixed order, so a design is a pure function of ``(n, d, seed)``.

References
----------
Halton, "On the efficiency of certain quasi-random sequences of points", Numer. Math. 1960.
Owen, "A randomized Halton algorithm in R", 2017 (arXiv:1706.02808).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from swarmgp.fusion.errors import ShapeError

__all__ = ["first_primes", "halton", "scaled_design"]


def first_primes(d: int) -> list[int]:
    """The first ``d`` primes, by trial division (d is a handful, at most a few hundred)."""
    primes: list[int] = []
    c = 2
    while len(primes) < d:
        if all(c % p for p in primes if p * p <= c):
            primes.append(c)
        c += 1
    return primes


def _radical_inverse_scrambled(
    idx: np.ndarray, base: int, perms: np.ndarray, n_digits: int
) -> np.ndarray:
    """Scrambled radical inverse of integer indices in one base.

    Parameters
    ----------
    idx : ndarray of shape (n,), int64
    base : int
    perms : ndarray of shape (n_digits, base), int64
        Digit permutation of each digit position.
    n_digits : int

    Returns
    -------
    ndarray of shape (n,)
        Values in [0, 1).
    """
    out = np.zeros(idx.shape[0], dtype=np.float64)  # [n]
    rest = idx.copy()
    scale = 1.0
    for k in range(n_digits):
        scale /= base
        digit = rest % base  # [n]
        rest //= base
        out += perms[k][digit] * scale
    return out


def halton(n: int, d: int, seed: int | Sequence[int] = 0) -> np.ndarray:
    """The first ``n`` points of a scrambled Halton sequence in ``[0, 1)^d``.

    Dimension j uses the j-th prime base; each digit position of each dimension has its own
    random digit permutation drawn from ``default_rng(seed)`` (module docstring).

    Parameters
    ----------
    n : int
        Number of points, ``n >= 0``.
    d : int
        Dimension, ``d >= 1``.
    seed : int or sequence of int
        Seed (or entropy sequence) of ``numpy.random.default_rng`` for the digit permutations.

    Returns
    -------
    ndarray of shape (n, d)
        Points in ``[0, 1)``, float64.

    Raises
    ------
    ShapeError
        ``n < 0`` or ``d < 1``.
    """
    if not (isinstance(n, int | np.integer) and n >= 0):
        raise ShapeError(f"halton: expected n >= 0, got {n!r}")
    if not (isinstance(d, int | np.integer) and d >= 1):
        raise ShapeError(f"halton: expected d >= 1, got {d!r}")
    key = (int(seed),) if isinstance(seed, int | np.integer) else tuple(int(s) for s in seed)
    # every agent of a swarm draws the same design (shared seed): compute it once per process
    return _halton(int(n), int(d), key).copy()


@lru_cache(maxsize=64)
def _halton(n: int, d: int, key: tuple[int, ...]) -> np.ndarray:
    """:func:`halton` for a validated ``(n, d)`` and the seed as a tuple (cached, read-only;
    ``default_rng(s)`` and ``default_rng([s])`` are the same generator)."""
    rng = np.random.default_rng(list(key))
    idx = np.arange(n, dtype=np.int64)  # [n]
    out = np.empty((n, d), dtype=np.float64)  # [n, d]
    for j, base in enumerate(first_primes(d)):
        # digits down to float64 resolution (2^-53), so scrambling reaches the last bit
        n_digits = max(1, math.ceil(53.0 / math.log2(base)))
        perms = np.stack([rng.permutation(base) for _ in range(n_digits)])  # [n_digits, base]
        out[:, j] = _radical_inverse_scrambled(idx, base, perms, n_digits)
    # the digit sum is < 1 exactly; rounding may reach 1.0, which the half-open box excludes
    out = np.minimum(out, np.nextafter(1.0, 0.0))
    out.flags.writeable = False
    return out


def scaled_design(
    n: int, lo: np.ndarray, hi: np.ndarray, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Scrambled Halton points mapped affinely onto the box ``[lo, hi)``.

    ``x = lo + (hi - lo) * u`` with ``u = halton(n, d, seed)``.

    Parameters
    ----------
    n : int
    lo, hi : ndarray of shape (d,)
        Box corners with ``lo < hi`` (``lo == hi`` gives a degenerate, constant coordinate).
    seed : int

    Returns
    -------
    ndarray of shape (n, d)

    Raises
    ------
    ShapeError
        ``lo`` and ``hi`` are not finite vectors of one length with ``lo <= hi``.
    """
    lo_a = np.atleast_1d(np.asarray(lo, dtype=np.float64))
    hi_a = np.atleast_1d(np.asarray(hi, dtype=np.float64))
    if lo_a.ndim != 1 or lo_a.shape != hi_a.shape or lo_a.shape[0] < 1:
        raise ShapeError(
            f"design box: expected lo, hi of shape (d,), got {lo_a.shape}, {hi_a.shape}"
        )
    if not (np.isfinite(lo_a).all() and np.isfinite(hi_a).all() and (hi_a >= lo_a).all()):
        raise ShapeError("design box: expected finite lo <= hi")
    u = halton(n, int(lo_a.shape[0]), seed)  # [n, d]
    return lo_a + (hi_a - lo_a) * u
