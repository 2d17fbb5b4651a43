"""The fusion algebra: associative, commutative, prior as identity; packing; validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import RTOL_EXACT

from swarmgp.fusion.errors import IncompatibleEncoding, NotPositiveDefinite, ShapeError
from swarmgp.fusion.summary import Summary, combine, fuse, prior_summary, subtract

HASH = "enc0"


def random_summary(seed: int, m: int = 5, n_obs: int = 3) -> Summary:
    r = np.random.default_rng(seed)
    B = r.normal(size=(m, m))
    return Summary(np.eye(m) + B @ B.T, r.normal(size=m), n_obs, 1, HASH)


def close(a: Summary, b: Summary) -> bool:
    return a.max_rel_diff(b) <= RTOL_EXACT and (a.n_obs, a.n_agents) == (b.n_obs, b.n_agents)


seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(seeds, seeds, seeds)
def test_combine_is_associative(a, b, c):
    A, B, C = random_summary(a), random_summary(b), random_summary(c)
    assert close(combine(combine(A, B), C), combine(A, combine(B, C)))


@settings(max_examples=60, deadline=None)
@given(seeds, seeds)
def test_combine_is_commutative_with_prior_identity(a, b):
    A, B = random_summary(a), random_summary(b)
    assert close(combine(A, B), combine(B, A))
    assert close(combine(A, prior_summary(5, HASH)), A)
    assert close(subtract(combine(A, B), B), A)


@settings(max_examples=30, deadline=None)
@given(st.lists(seeds, min_size=0, max_size=8))
def test_fuse_equals_folded_combine(ss):
    parts = [random_summary(s) for s in ss]
    folded = prior_summary(5, HASH)
    for p in parts:
        folded = combine(folded, p)
    assert close(fuse(parts, 5, HASH), folded)
    assert close(fuse(reversed(parts), 5, HASH), folded)


def test_pack_roundtrip_and_size():
    s = random_summary(1, m=100)
    v = s.pack()
    assert v.shape == (100 * 103 // 2,)
    back = Summary.unpack(v, 100, s.n_obs, 1, HASH)
    assert np.array_equal(back.P, s.P) and np.array_equal(back.h, s.h)


def test_incompatible_encodings_refuse_to_fuse():
    a = random_summary(1)
    b = Summary(a.P, a.h, 1, 1, "other")
    with pytest.raises(IncompatibleEncoding, match="enc0"):
        combine(a, b)


def test_validate_rejects_bad_summaries():
    good = random_summary(2)
    good.validate()
    bad_p = good.P.copy()
    bad_p[0, 1] += 1.0
    with pytest.raises(NotPositiveDefinite, match="symmetric"):
        Summary(bad_p, good.h, 1, 1, HASH).validate()
    with pytest.raises(NotPositiveDefinite):
        Summary(-good.P, good.h, 1, 1, HASH).validate()
    with pytest.raises(ShapeError):
        Summary(good.P, np.zeros(4), 1, 1, HASH).validate()
    h = good.h.copy()
    h[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Summary(good.P, h, 1, 1, HASH).validate()
