"""Scores of predictions: RMSE, negative log predictive density, consistency."""

from __future__ import annotations

import numpy as np

from swarmgp.fusion.summary import Summary

__all__ = ["consistency_rel_err", "nlpd", "rmse"]


def rmse(y: np.ndarray, mean: np.ndarray) -> float:
    """Root mean squared error; y and mean of shape (n,)."""
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(mean)) ** 2)))


def nlpd(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    """Mean negative log density of y under ``N(mean, var)`` (var of y, noise included)."""
    var = np.asarray(var)
    r = np.asarray(y) - np.asarray(mean)
    return float(np.mean(0.5 * np.log(2.0 * np.pi * var) + 0.5 * r * r / var))


def consistency_rel_err(held: Summary, exact: Summary) -> float:
    """``|R_held - R_exact| / |R_exact|`` (Frobenius over P and h) as in DESIGN.md Sec. 4."""
    return held.max_rel_diff(exact)
