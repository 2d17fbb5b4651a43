"""Collective mode vs the baselines on the shared station data (issue 9). Not a test.

One agent per station, m = 100, random-row and time-ordered hold-out, seeds 0 and 1: RMSE and
NLPD (target units) of the fused model, local, gPoE, pooled GPyTorch SGPR, the training-mean
predictor, and the collective --no-learn run; warm-up messages and bytes; per-batch update time
at 10, 1e3 and 1e5 observations. Then a time-ordered stream of every row (seed 0, no SGPR):
the live use, where the warm-up sees only the first days, once as is and once with the
deployment window declared (``--input-range t=LO:HI``, the file's time span, which an operator
knows in advance) so that the inducing box covers the later times. Reads ``../shared/data``;
skips a data set that is absent.

    python benchmarks/bench_collective.py [--quick] [--variants] [--only TEXT] [--out FILE]

``--variants`` adds other shapes of the same data (:data:`VARIANTS`: spatial inputs only, m = 50,
little and much data per agent, a time input only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from swarmgp.agents.collective_model import CollectiveEncoding, CollectiveModel, _Standard
from swarmgp.agents.run_config import RunConfig
from swarmgp.fusion.collapsed import initial_params
from swarmgp.sim.swarm import Swarm, run_simulation

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "wind": ("ireland_wind.csv", "wind_knots", 10, 50),
    "ozone": ("midwest_ozone.csv", "ozone_ppb", 8, 10),
}
#: Other shapes of the same phenomenon (random-row hold-out, seed 0): inputs, data per agent and
#: m unlike the main cases, so that no setting is judged on two configurations only.
#: name -> (data set, inputs, batches, batch size, m)
VARIANTS = {
    "ozone-space-only": ("ozone", ("lon", "lat"), 8, 10, 100),
    "ozone-m50": ("ozone", ("lon", "lat", "t"), 8, 10, 50),
    "wind-small": ("wind", ("lon", "lat", "t"), 3, 20, 100),
    "wind-big-batches": ("wind", ("lon", "lat", "t"), 10, 200, 100),
    "wind-time-only": ("wind", ("t",), 10, 50, 100),
}


def mean_predictor(sw: Swarm) -> dict[str, float]:
    """Predict every test target by the pooled training mean and variance (target units)."""
    st = sw.streams
    y = np.concatenate([y for bl in st.batches for _, y in bl])
    mu, var = st.to_units(np.full(1, y.mean()), np.full(1, y.var()))
    r, n = [], []
    for a in range(st.n_agents):
        yt = st.y_units(st.y_test(a))
        r.append(float(np.sqrt(np.mean((yt - mu) ** 2))))
        n.append(float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (yt - mu) ** 2 / var)))
    return {"rmse": float(np.mean(r)), "nlpd": float(np.mean(n))}


def time_span(path: Path) -> str:
    """``t=LO:HI``, the span of the ``t`` column of a station table (the declared window)."""
    with path.open() as f:
        head = f.readline().strip().split(",")
        t = np.loadtxt(f, delimiter=",", usecols=[head.index("t")], dtype=np.float64)
    return f"t={t.min():g}:{t.max():g}"


def one(
    name: str,
    holdout: str,
    seed: int,
    learn: bool,
    sgpr: bool,
    every_row: bool = False,
    declared: bool = False,
    shape: tuple[tuple[str, ...], int, int, int] | None = None,
) -> dict[str, object]:
    """One run; ``every_row``: stream every row of every station (no ``--batches`` cap);
    ``declared``: declare the file's time span as the input range of ``t``; ``shape``:
    ``(inputs, batches, batch size, m)`` in place of the data set's defaults."""
    fname, target, batches, size = SETS[name]
    inputs, m = ("lon", "lat", "t"), 100
    if shape is not None:
        inputs, batches, size, m = shape
    span = (time_span(DATA / fname),) if declared else ()
    order = "time" if holdout == "time" else "random"
    batches = None if every_row else batches
    base = ("local", "oracle", "gpoe") + (("sgpr_pooled",) if sgpr else ())
    cfg = RunConfig.make(
        "sim", data=f"csv:{DATA / fname}", agent_column="station", inputs=inputs,
        target=target, batches=batches, batch_size=size, holdout=holdout, order=order,
        inducing=m, learn=learn, seed=seed, baselines=base, mode="collective",
        input_range=span,
    )  # fmt: skip
    keep: list[Swarm] = []
    t0 = time.perf_counter()
    r = run_simulation(cfg, keep=keep)
    c = r["agent_counters"]
    out = {
        "rmse_fused": r["rmse_fused"], "nlpd_fused": r["nlpd_fused"],
        "baselines": r["baselines"], "mean_predictor": mean_predictor(keep[0]),
        "consistent": r["consistent"], "messages": r["messages"], "bytes": r["bytes"],
        "warmup_messages": c.get("tx.reduce", 0),
        "warmup_bytes": r["network"]["bytes_by_type"].get("Reduce", 0),
        "warmup_rounds": c.get("allreduce.rounds", 0),
        "restarts": c.get("allreduce.restarts", 0), "wall_s": time.perf_counter() - t0,
    }  # fmt: skip
    return out


def update_times(m: int = 100, d: int = 3, batch: int = 50) -> dict[str, float]:
    """Seconds per batch of ``batch`` rows after 10, 1e3 and 1e5 observations (stream state)."""
    rng = np.random.default_rng(0)
    enc = CollectiveEncoding(d=d, inducing=m)
    model = CollectiveModel(enc)
    std = _Standard(np.zeros(d), np.ones(d), 0.0, 1.0, -2 * np.ones(d), 2 * np.ones(d))
    model._start_stream(std, initial_params(std.lo, std.hi, m, 0), learned=False, evals=0)
    out = {}
    for target in (10, 1000, 100000):
        while model.n_obs < target:
            k = min(5000, target - model.n_obs)
            model.observe(rng.standard_normal((k, d)), rng.standard_normal(k))
        ts = []
        for _ in range(20):
            X, y = rng.standard_normal((batch, d)), rng.standard_normal(batch)
            t = time.perf_counter()
            model.observe(X, y)
            model.summary()
            ts.append(time.perf_counter() - t)
        out[str(target)] = float(np.median(ts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="wind, random hold-out, seed 0 only")
    ap.add_argument("--no-sgpr", action="store_true")
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), help="data sets (default: all)")
    ap.add_argument("--variants", action="store_true", help="also the VARIANTS configurations")
    ap.add_argument("--only", help="run only the cases whose key contains TEXT; merge into --out")
    ap.add_argument("--out", default="benchmarks/results_collective.json")
    a = ap.parse_args()
    out = Path(a.out)
    res: dict[str, object] = json.loads(out.read_text()) if a.only and out.exists() else {}
    want = (lambda key: a.only in key) if a.only else (lambda key: True)
    if want("update_time_s"):
        res["update_time_s"] = update_times()
        print("per-batch update time", res["update_time_s"], flush=True)
    sets = ["wind"] if a.quick else list(a.sets or SETS)
    for name in sets:
        if not (DATA / SETS[name][0]).exists():
            print(f"skip {name}: {DATA / SETS[name][0]} absent")
            continue
        for holdout in ["random"] if a.quick else ["random", "time"]:
            for seed in [0] if a.quick else [0, 1]:
                for learn in (True, False):
                    key = f"{name}/{holdout}/seed{seed}/{'learn' if learn else 'nolearn'}"
                    if not want(key):
                        continue
                    res[key] = one(name, holdout, seed, learn, sgpr=learn and not a.no_sgpr)
                    print(key, json.dumps(res[key]), flush=True)
        if a.quick:
            continue
        # the live use: a time-ordered stream of every row, seed 0, without and with the window
        for case, declared in (("time-all-rows", False), ("time-all-rows-declared", True)):
            for learn in (True, False):
                key = f"{name}/{case}/seed0/{'learn' if learn else 'nolearn'}"
                if not want(key):
                    continue
                res[key] = one(name, "time", 0, learn, False, every_row=True, declared=declared)
                print(key, json.dumps(res[key]), flush=True)
    for vname, (name, *shape) in VARIANTS.items() if a.variants else ():
        if name not in sets or not (DATA / SETS[name][0]).exists():
            continue
        for learn in (True, False):
            key = f"variants/{vname}/{'learn' if learn else 'nolearn'}"
            if not want(key):
                continue
            res[key] = one(name, "random", 0, learn, learn and not a.no_sgpr, shape=tuple(shape))
            print(key, json.dumps(res[key]), flush=True)
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
