"""Simulator benchmarks (DESIGN.md section 5; issue 12): CPU time against a FLOP lower bound.

For every case, one simulation (``run_simulation`` of the ``launch.py sim`` configuration the
case names) is timed in CPU seconds (``time.process_time``, this process only, per phase), and
the same work is counted analytically from the run's own report (batches encoded, learner
steps, Fuse messages built and absorbed, agents scored):

* ``gemm`` flops: Psi_1, the pair-form Psi_2 GEMM, whitening (two triangular solves), the
  Cholesky of each local summary, the learner's moments and the forward + backward Psi passes
  (three times the forward count), prediction caches and test-point Psi statistics;
* ``exp`` evaluations: one per Psi_1 and per upper-triangle Psi_2 entry (and three times that
  in a learner step);
* ``add`` streamed values: m(m+3)/2 per Fuse message built (``R_F - M_ba + R_0``) and per Fuse
  message absorbed into the fused model.

Rates are measured in the same process right before the case, single-threaded as the simulator
runs: dgemm on (m, m) x (m, m) products, ``np.exp`` in place on 1 M values, and an in-place
add of (m, m) arrays. The bound is ``gemm / dgemm_rate + exp / exp_rate + add / add_rate``;
``ratio = cpu_s / bound_s`` (1 would be the arithmetic alone, at the measured rates).

Cases (``--agents`` / ``--batches`` scale them down for a quick look):

* ``s300`` / ``s300l``: 300 agents, ring, m = 100, 10 batches of 20, paper mode, learning off/on
  (the issue's profiling case);
* ``a``: 1000 agents, geometric, m = 100, 30 batches of 20, 6-D, learning on (paper mode);
* ``b``: 10,000 agents, geometric, m = 50, 5 batches of 20, learning off;
* ``b100k``: 100,000 agents, otherwise as ``b``;
* ``<case>_c`` (``s300_c``, ``s300l_c``, ``a_c``, ``b_c``, ``b100k_c``): the same case in the
  collective mode (the default mode of ``launch.py sim``; the cases above force
  ``--mode paper``), with its own work count (:func:`collective_work_count`).

Usage::

    python benchmarks/bench_sim.py s300 s300l
    python benchmarks/bench_sim.py a --agents 200 --batches 5
    python benchmarks/bench_sim.py b b_c
    python benchmarks/bench_sim.py a_c --warmup-evals 84   # key a_c_84

Results are merged into ``benchmarks/results_sim.json`` (``--out``) with the machine and its
load average: on a shared machine CPU seconds are the steady figure, not wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import launch  # noqa: E402
from swarmgp.agents.run_config import RunConfig  # noqa: E402
from swarmgp.sim.swarm import run_simulation, single_threaded  # noqa: E402

BASE = ["sim", "--mode", "paper", "--quiet"]
CASES: dict[str, list[str]] = {
    "s300": [
        "--agents",
        "300",
        "--inducing",
        "100",
        "--batches",
        "10",
        "--batch-size",
        "20",
        "--no-learn",
    ],
    "s300l": [
        "--agents",
        "300",
        "--inducing",
        "100",
        "--batches",
        "10",
        "--batch-size",
        "20",
        "--learn",
    ],
    "a": [
        "--agents",
        "1000",
        "--topology",
        "geometric",
        "--inducing",
        "100",
        "--batches",
        "30",
        "--batch-size",
        "20",
        "--dim",
        "6",
        "--groups",
        "8",
        "--learn",
        "--heartbeat",
        "1.0",
        "--fuse-interval",
        "0.2",
        "--score-agents",
        "200",
        "--test-points",
        "200",
    ],
    "b": [
        "--agents",
        "10000",
        "--topology",
        "geometric",
        "--inducing",
        "50",
        "--batches",
        "5",
        "--batch-size",
        "20",
        "--dim",
        "6",
        "--groups",
        "8",
        "--no-learn",
        "--heartbeat",
        "1.0",
        "--fuse-interval",
        "0.2",
        "--score-agents",
        "200",
        "--test-points",
        "100",
    ],
}
CASES["b100k"] = [*CASES["b"][:1], "100000", *CASES["b"][2:]]
# the collective mode (the default of ``launch.py sim``) on the same cases: ``<case>_c``
for _name in ("s300", "s300l", "a", "b", "b100k"):
    CASES[_name + "_c"] = [*CASES[_name], "--mode", "collective"]


def machine() -> dict[str, Any]:
    """CPU count, platform, Python and the load average (the machine may be shared)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _best(fn: Any, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def measured_rates(m: int) -> dict[str, float]:
    """Single-threaded dgemm (flop/s), exp (values/s) and add (values/s) rates, measured now."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((m, m)), rng.standard_normal((m, m))
    C = np.empty((m, m))
    k = max(1, int(2e8 / (2 * m**3)))

    def gemm() -> None:
        for _ in range(k):
            np.matmul(A, B, out=C)

    x = rng.standard_normal(1 << 20)
    y = np.empty_like(x)

    def exp() -> None:
        for _ in range(10):
            np.exp(x, out=y)

    kk = max(1, int(5e7 / (m * m)))

    def add() -> None:
        for _ in range(kk):
            C.__iadd__(A)

    with single_threaded():
        return {
            "dgemm_flops": 2 * m**3 * k / _best(gemm, 5),
            "exp_values": 10 * x.size / _best(exp, 5),
            "add_values": kk * m * m / _best(add, 5),
        }


def work_count(cfg: RunConfig, r: dict[str, Any], sw: Any = None) -> dict[str, float]:
    """FLOP lower bound of the run's work, from its settings and its report (see the module)."""
    if cfg.model.mode == "collective":
        return collective_work_count(cfg, r, sw)
    m, d, n = cfg.model.inducing, cfg.data.dim, cfg.data.batch_size
    P = m * (m + 3) // 2
    tri = m * (m + 1) // 2
    batches = r["observations"] / n  # batches encoded over all agents
    gemm = exp = add = 0.0
    # encoding a batch: Psi_1 (n x m x d, ~3 flops each), pair-form Psi_2 GEMM, whitening of the
    # accumulated C (two m^3 triangular solves) and the Cholesky of I + C
    enc_gemm = 3 * n * m * d + 2 * n * (3 * d + 1) * tri + 2 * m**3 + m**3 / 3
    enc_exp = n * m + n * tri
    gemm += batches * enc_gemm
    exp += batches * enc_exp
    if cfg.model.learn:
        # a learner step: moments of q (Cholesky + inverse) and Psi forward + backward (3x)
        gemm += batches * (m**3 / 3 + m**3 + 3 * (3 * n * m * d + 2 * n * (3 * d + 1) * tri))
        exp += batches * 3 * enc_exp
    net = r["network"]["by_type"]
    fuse_sent = net.get("Fuse", 0)
    fuse_rx = r["agent_counters"].get("rx.fuse", 0)
    add += (fuse_sent + fuse_rx) * P
    # scoring: per scored agent, the local and fused prediction caches (Cholesky + two solves)
    # and Psi statistics at the test points; the oracle and baselines once more each
    scored = r["scored_agents"] * 2 + len(r.get("baselines", {}))
    t = cfg.scoring.test_points
    gemm += scored * (m**3 / 3 + 2 * m**3 + 3 * t * m * d + 2 * t * (3 * d + 1) * tri)
    exp += scored * (t * m + t * tri)
    return {"gemm_flops": gemm, "exp_values": exp, "add_values": add}


def collective_work_count(cfg: RunConfig, r: dict[str, Any], sw: Any) -> dict[str, float]:
    """The collective mode's own work (agents/collective_model.py, fusion/collapsed.py).

    With ``m`` kernel columns, ``k = m + 1`` features (the bias) and summaries of size
    ``m + 2``:

    * every batch, once (buffered warm-up batches when the stream starts, later ones on
      arrival): features ``Phi = [k(XW, ZW) L^-T, 1]`` (kernel ``3 n m d`` flops and ``n m``
      exps, the triangular solve ``n m^2``), statistics ``G = Phi^T Phi`` (``2 n k^2``) and
      ``g = Phi^T y``; the summary ``P = I + Gaug`` (``(m+2)^2`` adds);
    * every agent, once: ``k(ZW, ZW)`` (``3 m^2 d`` flops, ``m^2`` exps) and its Cholesky
      (``m^3 / 3``) for the frozen theta (the K_ZZ factor is needed once per theta; a
      refactorization per batch is not counted);
    * every warm-up L-BFGS evaluation (learning on), every agent on its ``n_w`` buffered rows:
      the statistics under theta (features, ``2 n_w k^2``) and its gradient contribution through
      its cross kernel (``Phibar = 2 Phi dB/dG``: ``2 n_w k^2``; ``Abar``: ``n_w m^2``; the
      kernel's derivatives ``4 n_w m d``); once per evaluation (the simulator's memo shares it
      among the agents, which hold the same theta and sums): K_ZZ and its Cholesky, the bound's
      derivatives from the summed statistics (Cholesky and inverse of a ``k x k`` matrix,
      ``4 k^3 / 3``) and the path through L (:func:`inducing_grad`: ``2 m^3`` for the summed
      ``Phibar^T Phi`` and ``L^-T``, the Cholesky backward pass ``m^3``, ``4 m^2 d``);
    * Fuse messages: ``m'(m'+3)/2`` adds per message built and absorbed (``m' = m + 2``);
    * scoring, per scored agent (local and fused) and the oracle: features at the test points,
      K_ZZ and its Cholesky, the ``k x k`` Cholesky of the posterior and one solve per point.
    """
    m, d, n = cfg.model.inducing, cfg.data.dim, cfg.data.batch_size
    k, m2 = m + 1, m + 2
    batches = r["observations"] / n
    gemm = exp = add = 0.0

    def feats(rows: float) -> tuple[float, float]:  # (flops, exps) of Phi for `rows` points
        return 3 * rows * m * d + rows * m * m, rows * m

    kzz_gemm, kzz_exp = 3 * m * m * d + m**3 / 3, m * m
    f_g, f_e = feats(n)
    gemm += batches * (f_g + 2 * n * k * k + 2 * n * k)
    exp += batches * f_e
    add += batches * m2 * m2
    agents = r["agents"]
    gemm += agents * kzz_gemm
    exp += agents * kzz_exp
    evals = 0
    n_w = 0.0
    if sw is not None and cfg.model.learn:
        models = [a.model for a in sw.sim.agents.values()]
        evals = max((int(getattr(mo, "warmup_evals", 0)) for mo in models), default=0)
        wb = getattr(getattr(models[0], "encoding", None), "warmup_batches", 2) if models else 2
        n_w = float(min(wb, r.get("batches_per_agent", wb)) * n)
    if evals:
        w_g, w_e = feats(n_w)
        per_agent = w_g + 2 * n_w * k * k + 2 * n_w * k * k + n_w * m * m + 4 * n_w * m * d
        once = kzz_gemm + 4 * k**3 / 3 + 3 * m**3 + 4 * m * m * d
        gemm += evals * (agents * per_agent + once)
        exp += evals * (agents * w_e + kzz_exp)
    net = r["network"]["by_type"]
    add += (net.get("Fuse", 0) + r["agent_counters"].get("rx.fuse", 0)) * m2 * (m2 + 3) / 2
    scored = r["scored_agents"] * 2 + 1
    t = cfg.scoring.test_points
    t_g, t_e = feats(t)
    gemm += scored * (t_g + kzz_gemm + k**3 / 3 + t * k * k)
    exp += scored * (t_e + kzz_exp)
    return {"gemm_flops": gemm, "exp_values": exp, "add_values": add, "warmup_evals": evals}


def run_case(name: str, extra: list[str]) -> dict[str, Any]:
    """Run one case; return its row (CPU per phase, bound, ratio, RSS, bytes)."""
    _, cfg = launch.parse_config([*BASE, *CASES[name], *extra])
    assert cfg is not None
    rates = measured_rates(cfg.model.inducing)
    marks: list[tuple[str, float]] = []

    def progress(phase: str, done: float, total: float) -> None:
        if not marks or marks[-1][0] != phase:
            marks.append((phase, time.process_time()))

    t0 = time.process_time()
    keep: list[Any] = []
    r = run_simulation(cfg, progress=progress, keep=keep)
    cpu = time.process_time() - t0
    phases: dict[str, float] = {}
    bounds = [*marks, ("end", t0 + cpu)]
    phases["build"] = (marks[0][1] if marks else t0 + cpu) - t0
    for (ph, a), (_, b) in zip(bounds, bounds[1:], strict=False):
        phases[ph] = phases.get(ph, 0.0) + b - a
    work = work_count(cfg, r, keep[0] if keep else None)
    keep.clear()
    bound = (
        work["gemm_flops"] / rates["dgemm_flops"]
        + work["exp_values"] / rates["exp_values"]
        + work["add_values"] / rates["add_values"]
    )
    net = r["network"]
    fuse_bytes = net["bytes_by_type"].get("Fuse", 0)
    # ideal: one Fuse message per direction per tree edge per round of changes (a batch round)
    ideal = 2 * (r["agents"] - 1) * cfg.data.batches
    return {
        "mode": cfg.model.mode,
        "fusion": getattr(cfg.timing, "fusion", None),
        "args": [*CASES[name], *extra],
        "cpu_s": round(cpu, 2),
        "cpu_s_by_phase": {k: round(v, 2) for k, v in phases.items()},
        "flop_bound_s": round(bound, 3),
        "ratio": round(cpu / bound, 2),
        "work": work,
        "rates": rates,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "messages": r["messages"],
        "bytes": r["bytes"],
        "fuse_messages": net["by_type"].get("Fuse", 0),
        "fuse_bytes": fuse_bytes,
        "fuse_ideal_messages": ideal,
        "fuse_over_ideal": round(net["by_type"].get("Fuse", 0) / ideal, 2),
        **{k: r.get(k) for k in ("consistency_max_rel_err", "rmse_fused", "settle_s", "diameter")},
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cases", nargs="+", choices=sorted(CASES))
    p.add_argument("--agents", default=None, help="override the number of agents")
    p.add_argument("--batches", default=None, help="override batches per agent")
    p.add_argument("--fusion", default=None, help="fusion protocol: tree or rounds")
    p.add_argument(
        "--warmup-evals", default=None, help="collective cases: the warm-up's evaluation budget"
    )
    p.add_argument("--out", default=str(Path(__file__).with_name("results_sim.json")))
    args = p.parse_args(argv)
    extra = [
        *(["--agents", args.agents] if args.agents else []),
        *(["--batches", args.batches] if args.batches else []),
        *(["--fusion", args.fusion] if args.fusion else []),
        *(["--warmup-evals", args.warmup_evals] if args.warmup_evals else []),
    ]
    try:
        results = json.loads(Path(args.out).read_text())
    except (OSError, ValueError):
        results = {}
    for name in args.cases:
        row = run_case(name, extra)
        key = name + ("_" + "_".join(extra[1::2]) if extra else "")
        results[key] = row
        print(
            f"{key}: cpu {row['cpu_s']} s  flop bound {row['flop_bound_s']} s  "
            f"ratio {row['ratio']}  phases {row['cpu_s_by_phase']}  "
            f"peak rss {row['peak_rss_mb']:.0f} MB  fuse {row['fuse_messages']} msgs "
            f"{row['fuse_bytes'] / 1e6:.1f} MB ({row['fuse_over_ideal']}x ideal)  "
            f"consistency {row['consistency_max_rel_err']:.1e}"
        )
        Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
