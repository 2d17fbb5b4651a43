"""A simulation sharded over MPI ranks against one rank (issue 12). Not a test.

Runs the ``b_c`` case of ``bench_sim.py`` (geometric, m = 50, 5 batches of 20, learning off,
the collective mode; 10,000 agents unless ``--agents``) as ``mpirun -n K python launch.py sim``
for each K of ``--ranks``, and records per K the wall time, the CPU seconds of all ranks
together (``RUSAGE_CHILDREN`` of this process after ``mpirun`` returns), the largest rank's
peak RSS (the report's ``peak_rss_mb``) and whether the report equals the first K's without
its cost fields (``swarmgp.sim.mpi.COST_KEYS``). On a shared machine wall time is the noisy
figure; the load average at the start of each run is kept beside it.

    python benchmarks/bench_mpi.py [--agents 10000] [--ranks 1 2] [--out results_mpi.json]

Needs ``mpirun`` (Debian's openmpi-bin) and mpi4py (``pip install -e ".[mpi]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sim import CASES  # noqa: E402

from swarmgp.sim.mpi import COST_KEYS  # noqa: E402


def run(ranks: int, agents: int, workdir: Path) -> dict[str, Any]:
    """One ``mpirun -n ranks`` of the case; its costs and its report."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("bench_mpi: mpirun not found (apt-get install openmpi-bin)")
    args = list(CASES["b_c"])
    args[args.index("--agents") + 1] = str(agents)
    cwd = workdir / f"n{ranks}"  # each run in its own folder: the report's path is in it
    cwd.mkdir()
    report = cwd / "report.json"
    cmd = [mpirun, "--oversubscribe", "-n", str(ranks)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += [sys.executable, str(ROOT / "launch.py"), "sim", "--quiet", *args]
    cmd += ["--report", report.name]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI_", "PMIX_"))}
    env["OMP_NUM_THREADS"] = "1"
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        tail = (p.stdout + p.stderr)[-3000:]
        raise SystemExit(f"bench_mpi: mpirun -n {ranks} failed:\n{tail}")
    rep = json.loads(report.read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "ranks": rep["ranks"],
        "wall_s": round(wall, 2),
        "cpu_s_all_ranks": round(cpu, 2),
        "peak_rss_mb_largest_rank": rep["peak_rss_mb"],
        "load_avg_at_start": load,
        "messages": rep["messages"],
        "consistency_max_rel_err": rep["consistency_max_rel_err"],
        "rmse_fused": rep["rmse_fused"],
        "_comparable": json.dumps(
            {k: v for k, v in rep.items() if k not in COST_KEYS}, sort_keys=True
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=10_000)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results_mpi.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in a.ranks:
            r = run(k, a.agents, Path(tmp))
            print(
                f"mpirun -n {k}: wall {r['wall_s']} s, cpu {r['cpu_s_all_ranks']} s, "
                f"peak rss {r['peak_rss_mb_largest_rank']:.0f} MB (largest rank), "
                f"load {r['load_avg_at_start']:.2f}",
                flush=True,
            )
            rows.append(r)
    ref = rows[0].pop("_comparable")
    for r in rows[1:]:
        r["same_report_as_first"] = r.pop("_comparable") == ref
    rows[0]["same_report_as_first"] = True
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup_wall"] = round(base / r["wall_s"], 2)
    out = {
        "case": f"b_c at {a.agents} agents",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": rows,
    }
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
