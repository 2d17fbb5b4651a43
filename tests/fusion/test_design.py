"""Our own scrambled Halton design: deterministic, in [0, 1), evenly spread, no scipy.stats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from swarmgp.fusion import EncodingSpec, ShapeError, make_encoding
from swarmgp.fusion.design import first_primes, halton, scaled_design


def test_first_primes():
    assert first_primes(8) == [2, 3, 5, 7, 11, 13, 17, 19]


def test_halton_is_deterministic_and_seeded():
    a = halton(64, 4, seed=3)
    b = halton(64, 4, seed=3)
    c = halton(64, 4, seed=4)
    assert a.shape == (64, 4) and a.dtype == np.float64
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # a prefix of a longer design is the shorter design (the sequence is extensible)
    assert np.array_equal(halton(100, 4, seed=3)[:64], a)


def test_halton_memo_hands_out_independent_copies():
    """Designs are computed once per process; each caller still gets its own array."""
    a = halton(16, 3, seed=5)
    a[:] = -1.0
    b = halton(16, 3, seed=5)
    assert b.flags.writeable and (b >= 0).all()
    # the memo is keyed by the whole seed: an int is its one-element sequence, nothing else
    assert np.array_equal(halton(16, 3, seed=5), halton(16, 3, seed=[5]))
    assert not np.allclose(halton(16, 3, seed=[5, 1]), halton(16, 3, seed=5))


def test_halton_in_half_open_unit_box():
    u = halton(2000, 6, seed=0)
    assert (u >= 0.0).all() and (u < 1.0).all()


@pytest.mark.parametrize("n", [50, 256, 1000])
def test_halton_projections_are_low_discrepancy(n):
    u = halton(n, 5, seed=11)
    grid = (np.arange(n) + 0.5) / n
    for j in range(5):
        # Kolmogorov-Smirnov distance of each 1-D projection from uniform: far below the
        # ~1.36 / sqrt(n) an i.i.d. sample would reach at the 95 % level.
        ks = np.max(np.abs(np.sort(u[:, j]) - grid)) + 0.5 / n
        assert ks < 0.25 / np.sqrt(n) + 5.0 * np.log(n) / n, (j, ks)


def test_halton_counts_per_elementary_interval():
    # base 2 (first coordinate): each of the 2^k dyadic intervals holds exactly one of the
    # first 2^k points, scrambled or not
    u = halton(256, 2, seed=5)[:, 0]
    assert np.array_equal(np.bincount((u * 256).astype(int), minlength=256), np.ones(256, int))


def test_scaled_design_maps_onto_box():
    lo, hi = np.array([-1.0, 10.0]), np.array([3.0, 10.5])
    x = scaled_design(500, lo, hi, seed=2)
    assert (x >= lo).all() and (x < hi).all()
    assert np.allclose(x, lo + (hi - lo) * halton(500, 2, seed=2), rtol=0, atol=0)
    with pytest.raises(ShapeError):
        scaled_design(5, np.array([1.0]), np.array([0.0]))
    with pytest.raises(ShapeError):
        halton(-1, 2)


@pytest.mark.parametrize("design", ["halton", "sobol"])
def test_encoding_designs_use_our_generator(design):
    enc = make_encoding(EncodingSpec(d=3, m=40, design=design, seed=7))
    assert (np.abs(enc.Z) <= 2.0).all()
    assert np.array_equal(enc.Z, make_encoding(EncodingSpec(d=3, m=40, design=design, seed=7)).Z)


def test_fusion_import_does_not_load_scipy_stats():
    code = "import sys, swarmgp.fusion; print('scipy.stats' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
