"""Simulations sharded over MPI (issue 12): ``mpirun -n K`` gives the single-process report.

Every case runs ``launch.py sim`` once without MPI and under ``mpirun -n 1, 2, 3``, and compares
the reports without their cost fields (``swarmgp.sim.mpi.COST_KEYS``). Skipped with a message
where ``mpirun`` or mpi4py cannot be had (``pip install -e ".[mpi]"``, Debian's openmpi-bin).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swarmgp.sim.mpi import COST_KEYS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = str(ROOT / "launch.py")
MPIRUN = shutil.which("mpirun")

BASE = ["--agents", "12", "--inducing", "10", "--batches", "3", "--quiet", "--report", "r.json"]
CASES = {
    "paper-loss": "--mode paper --no-learn --loss 0.2".split(),
    "paper-faults": (
        "--mode paper --no-learn --loss 0.1 --duplicate 0.1 --reorder 0.2 --topology geometric "
        "--churn-rate 0.5"
    ).split(),
    "collective": "--mode collective --loss 0.2".split(),
}


def _mpi_missing() -> str:
    if MPIRUN is None:
        return "mpirun not found (apt-get install openmpi-bin)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py not installed (pip install -e '.[mpi]')"
    return ""


pytestmark = pytest.mark.skipif(bool(_mpi_missing()), reason=_mpi_missing() or "ok")


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMPI_", "PMI_", "PMIX_"))  # not a rank of an outer MPI job
    }
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    return env


def _run(args: list[str], ranks: int, cwd: Path) -> dict:
    cwd.mkdir()
    cmd = [sys.executable, LAUNCH, "sim", *BASE, *args]
    if ranks:
        mpi = [MPIRUN, "--oversubscribe", "-n", str(ranks)]
        if os.geteuid() == 0:
            mpi.append("--allow-run-as-root")
        cmd = [*mpi, *cmd]
    p = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads((cwd / "r.json").read_text())


def _comparable(report: dict) -> str:
    return json.dumps({k: v for k, v in report.items() if k not in COST_KEYS}, sort_keys=True)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("case", list(CASES))
def test_mpi_ranks_give_the_single_process_report(case: str, tmp_path: Path) -> None:
    args = CASES[case]
    single = _run(args, 0, tmp_path / "single")
    assert single["ranks"] == 1
    ref = _comparable(single)
    for k in (1, 2, 3):
        rep = _run(args, k, tmp_path / f"n{k}")
        assert rep["ranks"] == k
        assert _comparable(rep) == ref, f"mpirun -n {k} differs from the single-process run"
