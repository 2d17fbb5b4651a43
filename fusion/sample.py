"""A mergeable uniform sample of rows: the k rows with the smallest hash keys (bottom-k).

Every row ``x`` (float64, shape (d,)) gets a key ``u(x) = H(seed, bytes(x)) / 2^52`` in
``[0, 1)`` from a cryptographic hash of its bytes, so the key is a pure function of the row and
the seed. The sample of a multiset of rows is its k *distinct* rows of smallest key. Because

.. math::

    \\operatorname{bottom}_k(A \\cup B) = \\operatorname{bottom}_k(\\operatorname{bottom}_k(A)
    \\cup \\operatorname{bottom}_k(B)),

the merge is associative and commutative and duplicates are idempotent: summed up a spanning
tree in any shape and order, every agent ends with the same sample, which is a uniform random
k-subset of the distinct rows (keys are i.i.d. uniform for distinct rows). The collective
warm-up draws its starting inducing inputs this way, as a centralized sparse GP starts from a
random subset of its data (:mod:`swarmgp.agents.collective_model`).

A sample travels as a fixed-size float64 array of ``k`` slots ``[key, x_1, ..., x_d]``, in
ascending key order; unused slots have key :data:`EMPTY_KEY` and zero inputs (finite, so the
codec carries them).

References
----------
Cohen & Kaplan, "Summarizing data using bottom-k sketches", PODC 2007.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from swarmgp.fusion.errors import ShapeError

__all__ = ["EMPTY_KEY", "hash_keys", "merge_samples", "sample_points", "sample_rows"]

#: Key of an unused slot: above every real key (keys lie in [0, 1)).
EMPTY_KEY = 2.0


def hash_keys(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """Keys in ``[0, 1)`` of the rows of ``X``: blake2b of (seed, the row's float64 bytes).

    ``-0.0`` is mapped to ``0.0`` first, so equal rows get equal keys.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    seed : int

    Returns
    -------
    ndarray of shape (n,)
    """
    Xa = np.ascontiguousarray(np.asarray(X, dtype="<f8") + 0.0)  # + 0.0: -0.0 -> 0.0
    if Xa.ndim != 2:
        raise ShapeError(f"hash_keys: expected X of shape (n, d), got {Xa.shape}")
    salt = int(seed).to_bytes(8, "little", signed=True)
    out = np.empty(Xa.shape[0])
    for i, row in enumerate(Xa):
        h = hashlib.blake2b(row.tobytes(), digest_size=8, key=salt).digest()
        out[i] = (int.from_bytes(h, "little") >> 12) * 2.0**-52  # 52 bits: exact in float64
    return out


def _check_slots(s: np.ndarray, k: int, d: int) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64).reshape(-1)
    if a.shape[0] != k * (1 + d):
        raise ShapeError(f"sample: expected {k} slots of {1 + d} values, got {a.shape[0]} values")
    return a.reshape(k, 1 + d)


def _bottom(keys: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The k distinct smallest-key rows as slots (ties in key broken by the row's values)."""
    d = rows.shape[1]
    out = np.zeros((k, 1 + d))
    out[:, 0] = EMPTY_KEY
    real = keys < 1.0
    keys, rows = keys[real], rows[real]
    if keys.shape[0] == 0:
        return out
    order = np.lexsort((*rows.T[::-1], keys))  # by key, then by the row itself
    keys, rows = keys[order], rows[order]
    first = np.ones(keys.shape[0], dtype=bool)
    first[1:] = (keys[1:] != keys[:-1]) | (rows[1:] != rows[:-1]).any(axis=1)
    keys, rows = keys[first][:k], rows[first][:k]
    out[: keys.shape[0], 0] = keys
    out[: keys.shape[0], 1:] = rows
    return out


def sample_rows(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The bottom-k sample of the rows of ``X`` as ``k`` slots, flattened.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Finite rows.
    k : int
        Slots (>= 0).
    seed : int

    Returns
    -------
    ndarray of shape (k * (1 + d),)
    """
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2 or k < 0 or not np.isfinite(Xa).all():
        raise ShapeError(f"sample_rows: expected finite X of shape (n, d) and k >= 0, k = {k}")
    return _bottom(hash_keys(Xa, seed), Xa + 0.0, k).reshape(-1)


def merge_samples(parts: Sequence[np.ndarray], k: int, d: int) -> np.ndarray:
    """The bottom-k sample of the union of the samples ``parts`` (each ``k`` slots, flattened).

    Associative, commutative and idempotent: any tree of merges gives the same slots.
    """
    if not parts:
        raise ShapeError("merge_samples: nothing to merge")
    slots = np.concatenate([_check_slots(p, k, d) for p in parts])  # [P k, 1 + d]
    return _bottom(slots[:, 0], slots[:, 1:], k).reshape(-1)


def sample_points(slots: np.ndarray, k: int, d: int) -> np.ndarray:
    """The sampled rows (used slots only, in key order), shape (n_used, d) with n_used <= k."""
    s = _check_slots(slots, k, d)
    return s[s[:, 0] < 1.0, 1:].copy()
