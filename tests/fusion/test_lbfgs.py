"""The ask/tell box L-BFGS against scipy's L-BFGS-B on a few functions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from swarmgp.fusion.lbfgs import BoxLBFGS


def rosen(x):
    f = float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return f, g


_A = np.random.default_rng(0).standard_normal((6, 6))
_Q = _A @ _A.T + 0.5 * np.eye(6)
_b = np.random.default_rng(1).standard_normal(6)


def quad(x):
    return float(0.5 * x @ _Q @ x - _b @ x), _Q @ x - _b


def logsumexp_reg(x):
    z = np.array([x.sum(), x[0] - x[1], -x[2]])
    mx = z.max()
    lse = mx + np.log(np.exp(z - mx).sum())
    p = np.exp(z - lse)
    J = np.zeros((3, x.size))
    J[0] = 1.0
    J[1, 0], J[1, 1] = 1.0, -1.0
    J[2, 2] = -1.0
    return float(lse + 0.1 * x @ x), J.T @ p + 0.2 * x


def drive(fun, x0, lo, hi, max_evals):
    opt = BoxLBFGS(x0, lo, hi, max_evals=max_evals)
    while (x := opt.ask()) is not None:
        opt.tell(*fun(x))
    return opt


@pytest.mark.parametrize(
    ("fun", "x0", "lo", "hi", "evals", "tol"),
    [
        (rosen, np.array([-1.2, 1.0, 0.5, -0.3]), -np.inf, np.inf, 300, 1e-6),
        (quad, np.zeros(6), -np.inf, np.inf, 60, 1e-9),
        (quad, np.zeros(6), -0.3, 0.3, 60, 1e-9),  # several bounds active
        (logsumexp_reg, np.ones(3), -np.inf, np.inf, 60, 1e-9),
        (rosen, np.array([0.0, 0.0]), np.array([-2.0, -2.0]), np.array([0.5, 2.0]), 200, 1e-7),
    ],
)
def test_reaches_scipy_minimum(fun, x0, lo, hi, evals, tol):
    opt = drive(fun, x0, lo, hi, evals)
    n = x0.size
    bounds = list(zip(np.broadcast_to(lo, n), np.broadcast_to(hi, n), strict=True))
    bounds = [
        (None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in bounds
    ]
    ref = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000},
    )
    assert opt.n_evals <= evals
    assert opt.f_best <= ref.fun + tol * max(1.0, abs(ref.fun))
    assert (opt.x_best >= np.broadcast_to(lo, n)).all() and (
        opt.x_best <= np.broadcast_to(hi, n)
    ).all()


def test_deterministic_and_bounded():
    a = drive(rosen, np.array([-1.2, 1.0]), -np.inf, np.inf, 25)
    b = drive(rosen, np.array([-1.2, 1.0]), -np.inf, np.inf, 25)
    assert a.n_evals == b.n_evals <= 25
    assert np.array_equal(a.x_best, b.x_best) and a.f_best == b.f_best


def test_non_finite_values_backtrack():
    def f(x):
        if x[0] > 1.5:
            return np.inf, np.full_like(x, np.nan)
        return float((x[0] - 2.0) ** 2 + x[1] ** 2), np.array([2 * (x[0] - 2.0), 2 * x[1]])

    opt = drive(f, np.array([0.0, 1.0]), -np.inf, np.inf, 80)
    assert np.isfinite(opt.f_best) and opt.x_best[0] <= 1.5


def test_snapshot_restore_and_fingerprint_follow_the_state():
    """An optimizer that takes another's snapshot after every tell behaves exactly as it:
    the same asks, the same end, the same fingerprint; other tells give other fingerprints."""
    x0, lo, hi = np.full(4, -1.2), np.full(4, -2.0), np.full(4, 2.0)
    a, b = BoxLBFGS(x0, lo, hi, max_evals=40), BoxLBFGS(x0, lo, hi, max_evals=40)
    assert a.fingerprint == b.fingerprint != BoxLBFGS(x0 + 0.1, lo, hi, 40).fingerprint
    while (x := a.ask()) is not None:
        xb = b.ask()
        assert xb is not None and np.array_equal(x, xb)
        f, g = rosen(x)
        assert a.fingerprint_after(f, g) != a.fingerprint_after(f + 1e-9, g)
        want = a.fingerprint_after(f, g)
        a.tell(f, g)
        assert a.fingerprint == want
        b.restore(a.snapshot())
    assert b.ask() is None and b.done and b.n_evals == a.n_evals
    assert np.array_equal(a.x_best, b.x_best) and a.f_best == b.f_best
    c = BoxLBFGS(x0, lo, hi, max_evals=40)  # the reference: told directly, never restored
    while (x := c.ask()) is not None:
        c.tell(*rosen(x))
    assert np.array_equal(c.x_best, a.x_best) and c.fingerprint == a.fingerprint
