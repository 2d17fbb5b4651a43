"""Baselines scored on the same test sets in the same run as the swarm.

* ``local``: each agent alone (its pre-fusion prediction).
* ``oracle``: each agent predicting from the exact sum of all current local summaries
  (:func:`swarmgp.fusion.summary.fuse`), i.e. what decentralized fusion must reach.
* ``sgpr_pooled``: a centralized GPyTorch SGPR (Titsias 2009) on the pooled data with the same
  number of inducing inputs (``swarmgp.sim.reference_gp.sgpr_pooled``).
* ``gpoe``: generalized product of experts (Cao & Fleet 2014) over the agents' local
  predictions, with uniform weights ``beta_k = 1 / K``.
* ``rbcm``: robust Bayesian committee machine (Deisenroth & Ng 2015):
  ``1/var = sum_k beta_k / var_k + (1 - sum_k beta_k) / var_prior``,
  ``beta_k = (log var_prior - log var_k) / 2``, mean ``var * sum_k beta_k mu_k / var_k``.
* ``dpitc``: server-based summation with shared hyperparameters (dPITC-like): every batch
  that reached an agent is encoded under the same fixed initial hyperparameters and the
  summaries are summed centrally; predictions use those hyperparameters.

gPoE and rBCM aggregate latent-f moments (noise removed) and add the experts' mean noise
variance back for y.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from swarmgp.fusion.encoders import AnalyticEncoder
from swarmgp.fusion.encoding import Encoding
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.predict import predict
from swarmgp.fusion.summary import Summary, fuse
from swarmgp.sim.metrics import score_prediction
from swarmgp.sim.streams import Streams

__all__ = [
    "dpitc_summary",
    "gpoe",
    "oracle_summary",
    "rbcm",
    "score_aggregate",
    "score_dpitc",
    "score_oracle",
    "score_sgpr_pooled",
]


def gpoe(means: np.ndarray, vars_f: np.ndarray, sn2: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized product of experts with uniform weights.

    Parameters
    ----------
    means, vars_f : ndarray of shape (K, n)
        Experts' latent predictive means and variances.
    sn2 : float
        Noise variance added to the aggregated latent variance.

    Returns
    -------
    mean, var_y : ndarray of shape (n,)
    """
    K = means.shape[0]
    prec = (1.0 / K) * (1.0 / vars_f).sum(0)  # [n]
    var = 1.0 / prec
    mean = var * (1.0 / K) * (means / vars_f).sum(0)
    return mean, var + sn2


def rbcm(
    means: np.ndarray, vars_f: np.ndarray, prior_var: float, sn2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Robust Bayesian committee machine (differential-entropy weights).

    Parameters
    ----------
    means, vars_f : ndarray of shape (K, n)
    prior_var : float
        Prior latent variance.
    sn2 : float

    Returns
    -------
    mean, var_y : ndarray of shape (n,)
    """
    beta = 0.5 * (np.log(prior_var) - np.log(vars_f))  # [K, n]
    prec = (beta / vars_f).sum(0) + (1.0 - beta.sum(0)) / prior_var
    # with many confident experts the corrected precision can fall below the prior's; floor it
    prec = np.maximum(prec, 1e-12)
    var = 1.0 / prec
    mean = var * (beta * means / vars_f).sum(0)
    return mean, var + sn2


def score_aggregate(
    streams: Streams,
    ids: Sequence[int],
    local_preds: Sequence[tuple[np.ndarray, np.ndarray, float, float]],
) -> dict[str, dict[str, float]]:
    """gPoE and rBCM of the agents' local predictions, scored against every agent's targets.

    Parameters
    ----------
    streams : Streams
    ids : sequence of int
        Agents, in the order of ``local_preds``.
    local_preds : sequence of (mean (n,), var_f (n,), s2, sn2)
    """
    M = np.stack([p[0] for p in local_preds])
    V = np.stack([p[1] for p in local_preds])
    prior = float(np.mean([p[2] for p in local_preds]))
    sn2 = float(np.mean([p[3] for p in local_preds]))
    out: dict[str, dict[str, float]] = {}
    for name, (mu, var) in (("gpoe", gpoe(M, V, sn2)), ("rbcm", rbcm(M, V, prior, sn2))):
        r, n = zip(*(score_prediction(streams, a, mu, var) for a in ids), strict=False)
        out[name] = {"rmse": float(np.mean(r)), "nlpd": float(np.mean(n))}
    return out


def score_oracle(
    agents: Mapping[int, object], streams: Streams, ids: Sequence[int], oracle: Summary
) -> tuple[float, float]:
    """Mean RMSE and NLPD of the agents predicting from the exact sum ``oracle``."""
    r, n = [], []
    for a in ids:
        mu, var = agents[a].model.predict(streams.X_test, oracle)  # type: ignore[attr-defined]
        ra, na = score_prediction(streams, a, mu, var)
        r.append(ra)
        n.append(na)
    return float(np.mean(r)), float(np.mean(n))


def oracle_summary(agents: Mapping[int, object], m: int, encoding_hash: str) -> Summary:
    """Exact fusion of every running agent's current local summary."""
    return fuse((agents[a].local_summary for a in sorted(agents)), m, encoding_hash)  # type: ignore[attr-defined]


def dpitc_summary(
    encoding: Encoding, hyper: Hyperparameters, X: np.ndarray, y: np.ndarray, chunk: int = 512
) -> Summary:
    """Server-side sum of every batch encoded under the shared hyperparameters ``hyper``.

    Encoding the pooled data in chunks equals the sum of the per-agent encodings (the
    contributions are additive), up to rounding.
    """
    enc = AnalyticEncoder(encoding)
    for i in range(0, X.shape[0], chunk):
        enc.add_batch(X[i : i + chunk], y[i : i + chunk], hyper)
    return enc.summary(hyper)


def score_dpitc(
    streams: Streams,
    ids: Sequence[int],
    encoding: Encoding,
    hyper: Hyperparameters,
    X: np.ndarray,
    y: np.ndarray,
) -> dict[str, float]:
    """Score the dPITC-like server baseline against the agents' targets."""
    if X.shape[0] == 0:
        return {"rmse": float("nan"), "nlpd": float("nan")}
    s = dpitc_summary(encoding, hyper, X, y)
    mu, var_f = predict(streams.X_test, s, encoding, hyper)
    r, n = zip(*(score_prediction(streams, a, mu, var_f + hyper.sn2) for a in ids), strict=False)
    return {"rmse": float(np.mean(r)), "nlpd": float(np.mean(n))}


def score_sgpr_pooled(
    streams: Streams,
    ids: Sequence[int],
    X: np.ndarray,
    y: np.ndarray,
    m: int,
    *,
    iters: int = 200,
    seed: int = 0,
    max_points: int = 20000,
) -> dict[str, float]:
    """Centralized GPyTorch SGPR on the pooled data (subsampled to ``max_points``), same m.

    Returns ``{"rmse", "nlpd", "points"}``; ``{}`` when the reference is unavailable.
    """
    try:
        from swarmgp.sim.reference_gp import sgpr_pooled
    except ImportError:
        return {}
    if X.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_points, replace=False))
        X, y = X[idx], y[idx]
    mu, var = sgpr_pooled(X, y, streams.X_test, m, iters=iters, seed=seed)
    r, n = zip(*(score_prediction(streams, a, mu, var) for a in ids), strict=False)
    return {"rmse": float(np.mean(r)), "nlpd": float(np.mean(n)), "points": int(X.shape[0])}
