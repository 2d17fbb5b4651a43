"""The mergeable bottom-k sample (fusion.sample): a set algebra checked against a slow reference."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.fusion.errors import ShapeError
from swarmgp.fusion.sample import (
    EMPTY_KEY,
    hash_keys,
    merge_samples,
    sample_points,
    sample_rows,
)


def _reference(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Obviously correct: the distinct rows, each with its key, sorted by key, the first k."""
    distinct = {tuple(r): r for r in X + 0.0}
    keyed = sorted((float(hash_keys(r[None, :], seed)[0]), tuple(r)) for r in distinct.values())
    return np.array([r for _, r in keyed[:k]]).reshape(-1, X.shape[1])


@pytest.mark.parametrize("seed", [0, 5])
def test_any_tree_of_merges_gives_the_sample_of_the_union(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 3))
    X = np.concatenate([X, X[:40]])  # duplicates across agents count once
    k = 25
    want = _reference(X, k, seed)
    for trial in range(5):
        order = rng.permutation(X.shape[0])
        parts = np.array_split(X[order], rng.integers(2, 12))
        samples = [sample_rows(p, k, seed) for p in parts]
        while len(samples) > 1:  # a random binary tree of merges
            i = int(rng.integers(0, len(samples) - 1))
            samples[i : i + 2] = [merge_samples(samples[i : i + 2], k, 3)]
        got = sample_points(samples[0], k, 3)
        assert np.array_equal(got, want), trial


def test_merge_is_idempotent_and_commutative_and_pads_with_empty_slots() -> None:
    rng = np.random.default_rng(1)
    a, b = sample_rows(rng.standard_normal((4, 2)), 6, 0), sample_rows(rng.random((3, 2)), 6, 0)
    assert np.array_equal(merge_samples([a, a], 6, 2), a)
    assert np.array_equal(merge_samples([a, b], 6, 2), merge_samples([b, a], 6, 2))
    ab = merge_samples([a, b], 6, 2).reshape(6, 3)
    assert (ab[:, 0] < 1.0).sum() == 6 and np.all(np.diff(ab[:, 0]) >= 0)
    few = sample_rows(np.ones((5, 2)), 4, 0).reshape(4, 3)  # one distinct row, three empty slots
    assert (few[1:, 0] == EMPTY_KEY).all() and sample_points(few, 4, 2).shape == (1, 2)
    empty = sample_rows(np.zeros((0, 2)), 3, 0)
    assert sample_points(empty, 3, 2).shape == (0, 2)


def test_keys_are_uniform_and_a_pure_function_of_row_and_seed() -> None:
    X = np.arange(4000, dtype=np.float64).reshape(2000, 2)
    u = hash_keys(X, 3)
    assert np.array_equal(u, hash_keys(X.copy(), 3)) and not np.array_equal(u, hash_keys(X, 4))
    assert ((0 <= u) & (u < 1)).all()
    # mean and the share below 1/2 within 4.5 standard errors of a uniform sample of 2000
    assert abs(u.mean() - 0.5) < 4.5 * np.sqrt(1 / 12 / 2000)
    assert abs((u < 0.5).mean() - 0.5) < 4.5 * 0.5 / np.sqrt(2000)
    assert hash_keys(np.array([[-0.0, 1.0]]), 0)[0] == hash_keys(np.array([[0.0, 1.0]]), 0)[0]


def test_bad_input_raises_shape_errors() -> None:
    with pytest.raises(ShapeError):
        sample_rows(np.array([[np.nan, 1.0]]), 2, 0)
    with pytest.raises(ShapeError):
        sample_rows(np.ones(3), 2, 0)
    with pytest.raises(ShapeError):
        merge_samples([np.zeros(5)], 2, 2)
    with pytest.raises(ShapeError):
        merge_samples([], 2, 2)
