"""Simulator benchmarks (DESIGN.md section 5): scale and accuracy of simulated swarms.

Cases:

* ``a``: 1000 agents, m = 100, 30 batches of 20 per agent, learning on, random geometric
  graph, 6-D synthetic data: wall time and peak memory (targets: < 10 min, < 8 GB).
* ``b``: 10,000 agents, m = 50, 5 batches of 20 per agent, learning off, random geometric
  graph (targets: < 10 min, < 16 GB).
* ``c``: accuracy with learning on: ``rmse_fused`` vs centralized SGPR on the pooled data
  (target: within 5 %), NLPD vs gPoE and rBCM, on synthetic data and both shared real data
  sets (ozone: one agent per station; wind: one per station), when ``../shared/data`` exists.

Every case is one :func:`swarmgp.sim.swarm.run_simulation`; results are merged into a JSON
file (default ``benchmarks/results_sim.json``) with the machine description. Sizes can be
scaled down (``--agents``, ``--batches``) for a quick look.

Usage::

    python benchmarks/bench_sim.py a
    python benchmarks/bench_sim.py b --agents 2000
    python benchmarks/bench_sim.py c
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from swarmgp.sim.cli import Progress
from swarmgp.agents.runtime.report import summary_lines
from swarmgp.sim.swarm import SimSettings, run_simulation

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

KEYS = (
    "agents",
    "topology",
    "inducing",
    "samples",
    "batches_per_agent",
    "batch_size",
    "learn",
    "encoder",
    "rmse_local",
    "nlpd_local",
    "rmse_fused",
    "nlpd_fused",
    "rmse_oracle",
    "consistency_max_rel_err",
    "baselines",
    "messages",
    "bytes",
    "wall_s",
    "peak_rss_mb",
    "virtual_time_s",
    "settle_s",
    "diameter",
    "scored_agents",
    "observations",
)


def machine() -> dict[str, Any]:
    """CPU count, platform and Python of this machine."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def case_a(args: argparse.Namespace) -> list[tuple[str, SimSettings]]:
    n = args.agents or 1000
    return [
        (
            f"a_{n}_agents_m100_learn",
            SimSettings(
                agents=n,
                topology="geometric",
                inducing=100,
                samples=20,
                batches=args.batches or 30,
                batch_size=20,
                learn=True,
                encoder=args.encoder,
                dim=6,
                groups=8,
                n_test=200,
                seed=0,
                heartbeat_s=1.0,
                fuse_interval_s=0.2,
                resend_s=2.0,
                score_agents=200,
                series_agents=16,
                series_test=100,
                baselines=("local", "oracle", "gpoe", "rbcm", "dpitc"),
            ),
        )
    ]


def case_b(args: argparse.Namespace) -> list[tuple[str, SimSettings]]:
    n = args.agents or 10000
    return [
        (
            f"b_{n}_agents_m50_nolearn",
            SimSettings(
                agents=n,
                topology="geometric",
                inducing=50,
                samples=20,
                batches=args.batches or 5,
                batch_size=20,
                learn=False,
                encoder="analytic",
                dim=6,
                groups=8,
                n_test=100,
                seed=0,
                heartbeat_s=1.0,
                fuse_interval_s=0.2,
                resend_s=2.0,
                score_agents=200,
                series_agents=8,
                series_test=50,
                baselines=("local", "oracle", "gpoe", "rbcm", "dpitc"),
            ),
        )
    ]


def case_c(args: argparse.Namespace) -> list[tuple[str, SimSettings]]:
    full = ("local", "oracle", "gpoe", "rbcm", "dpitc", "sgpr_pooled")
    out = [
        (
            "c_synthetic",
            SimSettings(
                agents=args.agents or 32,
                topology="geometric",
                inducing=50,
                batches=args.batches or 10,
                batch_size=20,
                learn=True,
                dim=2,
                groups=1,
                n_test=500,
                seed=0,
                baselines=full,
            ),
        )
    ]
    if (SHARED / "midwest_ozone.csv").exists():
        out.append(
            (
                "c_ozone",
                SimSettings(
                    agents=100,
                    topology="geometric",
                    data=f"csv:{SHARED / 'midwest_ozone.csv'}",
                    inducing=50,
                    batches=args.batches or 6,
                    batch_size=20,
                    learn=True,
                    n_test=1000,
                    seed=0,
                    baselines=full,
                ),
            )
        )
    if (SHARED / "ireland_wind.csv").exists():
        out.append(
            (
                "c_wind",
                SimSettings(
                    agents=12,
                    topology="geometric",
                    data=f"csv:{SHARED / 'ireland_wind.csv'}",
                    inducing=50,
                    batches=args.batches or 30,
                    batch_size=20,
                    learn=True,
                    n_test=1000,
                    seed=0,
                    baselines=full,
                ),
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=("a", "b", "c"))
    p.add_argument("--agents", type=int, default=None, help="override the number of agents")
    p.add_argument("--batches", type=int, default=None, help="override batches per agent")
    p.add_argument("--encoder", choices=("analytic", "importance"), default="analytic")
    p.add_argument("--out", default=str(Path(__file__).with_name("results_sim.json")))
    args = p.parse_args(argv)
    cases = {"a": case_a, "b": case_b, "c": case_c}[args.case](args)
    try:
        results = json.loads(Path(args.out).read_text())
    except (OSError, ValueError):
        results = {}
    for name, settings in cases:
        bar = Progress()
        report = run_simulation(settings, progress=bar)
        bar.close()
        for line in summary_lines(report):
            print(line)
        row = {k: report.get(k) for k in KEYS}
        row["machine"] = machine()
        fused, base = report["rmse_fused"], report["baselines"]
        if "sgpr_pooled" in base:
            row["fused_vs_sgpr_rel"] = fused / base["sgpr_pooled"]["rmse"] - 1.0
        row["nlpd_fused_better_than"] = {
            k: report["nlpd_fused"] < base[k]["nlpd"] for k in ("gpoe", "rbcm") if k in base
        }
        results[name] = row
        Path(args.out).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"  -> {args.out} [{name}]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
