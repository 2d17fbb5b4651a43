"""Benchmark of the streaming-source path (issue: streaming sensor data).

Prints observations per second of:

- CSV parsing alone (``csv:`` source, every row validated into an ``Observation``);
- CSV -> per-agent batcher (batch S);
- CSV -> bounded queue (pump thread, back-pressure) -> batcher;
- CSV -> shared standardising transform -> batcher -> one ``LocalModel`` at m=100, with
  learning off and on (skipped when ``swarmgp.agents.local_model`` is not available).

Data: ``../shared/data/ireland_wind.csv`` when present, else a generated CSV of the same
shape (12 stations, lon/lat/t inputs).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_sources.py [--batch 20] [--model-batches 150]
[--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from swarmgp.agents.sources import (  # noqa: E402
    BoundedQueue,
    ColumnSchema,
    FeatureConfig,
    FeatureTransform,
    SourcePump,
    agent_filter,
    fit_config,
    iter_agent_batches,
    iter_batches,
    iter_queue,
    open_source,
)

REAL = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "ireland_wind.csv"
SCHEMA = ColumnSchema(agent="station", time="t", inputs=("lon", "lat", "t"), target="wind_knots")


def _generated_csv(n: int = 78_888) -> Path:
    rng = np.random.default_rng(0)
    fd, name = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "w") as fh:
        fh.write("station,lon,lat,t,wind_knots\n")
        for i in range(n):
            s = i % 12
            fh.write(
                f"S{s},{-10 + s * 0.3:.4f},{52 + s * 0.1:.4f},{i // 12},"
                f"{abs(rng.normal(10, 4)):.2f}\n"
            )
    return Path(name)


def rate(label: str, fn: Callable[[], int], reps: int = 3) -> dict[str, float]:
    """Best-of-``reps`` observations per second of ``fn`` (which returns its count)."""
    best = 0.0
    n = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    print(f"{label:<58s} {n:>8d} obs  {best:>12,.0f} obs/s")
    return {"n": n, "obs_per_s": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--model-batches", type=int, default=150)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    path = REAL if REAL.exists() else _generated_csv()
    uri = f"csv:{path}"
    print(f"data: {path} (cpus: {os.cpu_count()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    out: dict[str, object] = {"data": str(path), "batch": args.batch}

    out["csv_parse"] = rate(
        "CSV parse -> Observation", lambda: sum(1 for _ in open_source(uri, schema=SCHEMA))
    )

    def batched() -> int:
        return sum(len(b) for b in iter_agent_batches(open_source(uri, schema=SCHEMA), args.batch))

    out["csv_batcher"] = rate(f"CSV -> per-agent batcher (S={args.batch})", batched)

    def queued() -> int:
        q = BoundedQueue(1024)
        pump = SourcePump(open_source(uri, schema=SCHEMA), q)
        pump.start()
        n = sum(len(b) for b in iter_agent_batches(iter_queue(q), args.batch))
        pump.join()
        return n

    out["csv_queue_batcher"] = rate(
        f"CSV -> bounded queue (1024) -> batcher (S={args.batch})", queued
    )

    cfg = fit_config(
        FeatureConfig(("lon", "lat", "t"), standardize=True, prefix=5000),
        open_source(uri, schema=SCHEMA),
    )
    tr = FeatureTransform(cfg)

    def transformed() -> int:
        src = tr(open_source(uri, schema=SCHEMA))
        return sum(len(b) for b in iter_agent_batches(src, args.batch))

    out["csv_transform_batcher"] = rate("CSV -> standardise (per obs) -> batcher", transformed)

    def transformed_batches() -> int:
        src = iter_agent_batches(open_source(uri, schema=SCHEMA), args.batch)
        return sum(len(b) for b in tr.batches(src))

    out["csv_batcher_transform"] = rate(
        "CSV -> batcher -> standardise (per batch)", transformed_batches
    )

    try:
        from swarmgp.agents.local_model import LocalModel, LocalModelConfig
        from swarmgp.fusion.encoding import EncodingSpec, make_encoding
    except ImportError as exc:
        print(f"LocalModel part skipped: {exc}")
        out["local_model"] = None
    else:
        enc = make_encoding(EncodingSpec(d=3, m=100))
        station = "VAL" if path == REAL else "S0"
        for learn in (False, True):

            def modelled(learn: bool = learn) -> int:
                model = LocalModel(enc, LocalModelConfig(learn=learn), np.random.default_rng(0))
                src = open_source(uri, schema=SCHEMA, keep=agent_filter(key=station))
                n = 0
                stream = tr.batches(iter_batches(src, args.batch, keep_partial=False))
                for i, b in enumerate(stream):
                    if i >= args.model_batches:
                        break
                    model.observe(b.X, b.y)
                    n += len(b)
                return n

            key = f"local_model_learn_{'on' if learn else 'off'}"
            out[key] = rate(
                f"CSV -> batcher -> LocalModel m=100 learn={'on' if learn else 'off'}"
                f" ({args.model_batches} batches)",
                modelled,
                reps=1,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if path != REAL:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
