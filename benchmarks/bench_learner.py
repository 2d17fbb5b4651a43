"""Latency of one learner step (COOL-GP hyperparameter SGA, digest Sec. 6).

Usage::

    python benchmarks/bench_learner.py [--m 100] [--batch 20] [--d 4] [--reps 300] [--threads 1]

Prints one JSON line per configuration with p50 / p95 / mean in milliseconds. The target
(DESIGN.md Sec. 5 / learner brief) is p50 under 20 ms at m=100, batch 20, d=4 on a 2-core CPU.
The importance-sample count M plays no part in the learner step.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from swarmgp.agents.learner import Learner, LearnerConfig, batch_elbo
from swarmgp.fusion.encoding import EncodingSpec, make_encoding
from swarmgp.fusion.hyper import Hyperparameters


def _setup(m: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    enc = make_encoding(EncodingSpec(d, m))
    hyper = Hyperparameters(
        np.eye(d) + 0.1 * rng.normal(size=(d, d)), np.full((d, d), math.log(0.1)), 0.0, -1.0
    )
    X = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    mean = 0.5 * rng.normal(size=m)
    B = rng.normal(size=(m, m)) / math.sqrt(m)
    cov = 0.3 * B @ B.T + 0.5 * np.eye(m)
    return enc, hyper, X, y, mean, cov


def _time(fn, reps: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t0
    return {
        "p50_ms": float(np.percentile(ts, 50) * 1e3),
        "p95_ms": float(np.percentile(ts, 95) * 1e3),
        "mean_ms": float(ts.mean() * 1e3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=100)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    enc, hyper, X, y, mean, cov = _setup(args.m, args.batch, args.d)
    base = {"m": args.m, "batch": args.batch, "d": args.d, "threads": args.threads}
    for opt in ("adam", "sga"):
        learner = Learner(LearnerConfig(optimizer=opt))
        res = _time(lambda lr=learner: lr.step(X, y, hyper, enc, mean, cov, 100.0), args.reps)
        print(json.dumps({"what": f"Learner.step[{opt}]", **base, **res}))
    res = _time(lambda: batch_elbo(X, y, hyper, enc, mean, cov, 100.0), args.reps)
    print(json.dumps({"what": "batch_elbo[numpy]", **base, **res}))


if __name__ == "__main__":
    main()
