"""Benchmark of the numerical core at m=100, M=20, batch 20, d=4 (issue: COOL-GP core).

Prints p50 and p95 in milliseconds of: the per-batch encoder update (analytic and importance),
the re-weighting after a q(W) step, one learner step, fusing two summaries, and predicting
1000 points; and the per-batch update time after 10, 1,000 and 100,000 observations.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_core.py [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from swarmgp.fusion.encoders import AnalyticEncoder, ImportanceEncoder  # noqa: E402
from swarmgp.fusion.encoding import EncodingSpec, make_encoding  # noqa: E402
from swarmgp.fusion.hyper import Hyperparameters  # noqa: E402
from swarmgp.fusion.predict import predict  # noqa: E402
from swarmgp.fusion.summary import combine  # noqa: E402

M_IND, M_SAMPLES, BATCH, D = 100, 20, 20, 4


def timeit(fn: Callable[[], object], reps: int) -> dict[str, float]:
    """p50 and p95 of ``fn`` over ``reps`` calls, in milliseconds."""
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": float(np.percentile(ts, 50)), "p95_ms": float(np.percentile(ts, 95))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    enc = make_encoding(EncodingSpec(d=D, m=M_IND))
    hyper = Hyperparameters.initial(D, lengthscale=1.5, sigma=0.3)
    X = rng.normal(size=(BATCH, D))
    y = np.sin(X.sum(1))
    out: dict[str, object] = {"m": M_IND, "M": M_SAMPLES, "batch": BATCH, "d": D}

    # fresh batches each call: repeating one batch makes the summary artificially singular
    Xb = rng.normal(size=(2 * args.reps + 2, BATCH, D))
    yb = np.sin(Xb.sum(2))
    k = iter(range(10**9))

    def fresh() -> tuple[np.ndarray, np.ndarray]:
        i = next(k) % Xb.shape[0]
        return Xb[i], yb[i]

    an = AnalyticEncoder(enc)
    out["analytic_update"] = timeit(
        lambda: (an.add_batch(*fresh(), hyper), an.summary()), args.reps
    )
    im = ImportanceEncoder(enc, M_SAMPLES, np.random.default_rng(1))
    out["importance_update"] = timeit(lambda: im.add_batch(*fresh()), args.reps)
    moved = [
        Hyperparameters(hyper.mu + 1e-3 * k, hyper.log_sigma, hyper.log_s, hyper.log_sn)
        for k in range(args.reps + 1)
    ]
    it = iter(moved)
    out["importance_reweight"] = timeit(lambda: im.summary(next(it)), args.reps)

    a, b = an.summary(), im.summary(hyper)
    out["fuse_two"] = timeit(lambda: combine(a, b), args.reps * 5)
    Xs = rng.normal(size=(1000, D))
    out["predict_1000"] = timeit(lambda: predict(Xs, a, enc, hyper), 30)

    try:
        from swarmgp.agents.learner import Learner, LearnerConfig

        learner = Learner(LearnerConfig())
        mom = a.moments()
        cov = mom.cov()
        out["learner_step"] = timeit(
            lambda: learner.step(X, y, hyper, enc, mom.mean, cov, 100.0), 50
        )
    except ImportError as exc:  # the learner is optional for this benchmark
        out["learner_step"] = f"unavailable: {exc}"

    # flat cost with history: time one batch update after n observations already encoded
    flat = {}
    for n_hist in (10, 1_000, 100_000):
        for name, e in (
            ("analytic", AnalyticEncoder(enc)),
            ("importance", ImportanceEncoder(enc, M_SAMPLES, np.random.default_rng(2))),
        ):
            Xh = rng.normal(size=(n_hist, D))
            for lo in range(0, n_hist, 1000):  # bulk history, then measure single batches
                e.add_batch(Xh[lo : lo + 1000], np.sin(Xh[lo : lo + 1000].sum(1)), hyper)
            flat[f"{name}_after_{n_hist}"] = timeit(
                lambda e=e: (e.add_batch(*fresh(), hyper), e.summary(hyper)), 50
            )
    out["update_vs_history"] = flat
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
