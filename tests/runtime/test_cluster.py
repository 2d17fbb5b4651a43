"""Real cluster runs: the README's ``sbatch`` script and ``mpirun`` line, and ``srun ... mpirun``.

A single-node SLURM (munged, slurmctld, slurmd on localhost, started and stopped here; see
:mod:`cluster`) runs the README's batch script as written: six agents across SLURM tasks with
``--bind 'tcp://*:*'``, ``status --wait`` in the script. Open MPI runs the README's ``mpirun``
line (plus ``--allow-run-as-root`` as root), and a nested ``srun -n 2 ... mpirun -n 3`` gives six
distinct ids. Every agent must exit 0 with ``--until consistent`` and write a valid report of one
collective model. Each test skips with the reason where the programs or daemons cannot be had
(``.ci/run`` installs slurm-wlm, munge and openmpi-bin).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _slurm_cluster import Cluster, Unavailable, start_cluster

from swarmgp.agents.runtime.report import check_report

pytestmark = [pytest.mark.slow, pytest.mark.zmq]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
AGENTS = 6


def _readme_blocks() -> list[str]:
    """The fenced bash blocks of the README's "On a cluster" section."""
    text = README.read_text()
    section = re.split(r"\n##+ ", text.split("### On a cluster", 1)[1])[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def _workdir(tmp: Path) -> Path:
    """A directory that looks like the repository root to the README's commands."""
    (tmp / "launch.py").symlink_to(REPO / "launch.py")
    return tmp


def _env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _check_reports(paths: list[Path]) -> None:
    assert len(paths) == AGENTS, paths
    reports = [json.loads(p.read_text()) for p in paths]
    for r in reports:
        check_report(r)
        assert r["agents"] == AGENTS and r["fused_n_agents"] == AGENTS
        assert r["consistency_max_rel_err"] is not None and r["consistency_max_rel_err"] <= 1e-9
        assert r["rmse_fused"] is not None
    assert sorted(r["agent_id"] for r in reports) == list(range(AGENTS))
    assert len({r["n_obs"] for r in reports}) == 1 and reports[0]["n_obs"] > 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        c = start_cluster(tmp_path_factory.mktemp("slurm"))
    except Unavailable as exc:
        pytest.skip(f"no single-node SLURM here: {str(exc).splitlines()[0]}")
    try:
        yield c
    finally:
        c.stop()


def _mpirun() -> str:
    path = shutil.which("mpirun")
    if path is None:
        pytest.skip("mpirun is not installed (apt-get install openmpi-bin)")
    return path


@pytest.mark.timeout(200)
def test_readme_sbatch_script_finishes_consistent(cluster: Cluster, tmp_path: Path) -> None:
    script = next(b for b in _readme_blocks() if b.startswith("#!/bin/bash\n#SBATCH"))
    work = _workdir(tmp_path)
    (work / "swarm.sbatch").write_text(script)
    out = work / "job.out"
    # --overcommit: six tasks on a node of fewer CPUs (the script itself is as in the README)
    p = subprocess.run(
        ["sbatch", "--wait", "--overcommit", f"--output={out}", "swarm.sbatch"],
        cwd=work,
        env=_env(cluster.env()),
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = out.read_text() if out.exists() else ""
    assert p.returncode == 0, f"{p.stdout}{p.stderr}\n{log[-3000:]}\n{cluster.log_tail()}"
    lines = [x for x in log.splitlines() if x.startswith("consistent: max rel diff")]
    assert lines, log[-3000:]
    _check_reports(sorted((work / "reports").glob("agent-*.json")))


@pytest.mark.timeout(150)
def test_readme_mpirun_line_finishes_consistent(tmp_path: Path) -> None:
    _mpirun()
    line = next(b for b in _readme_blocks() if "mpirun" in b).replace("\\\n", " ").strip()
    if os.geteuid() == 0:
        line = line.replace("mpirun ", "mpirun --allow-run-as-root ", 1)
    work = _workdir(tmp_path)
    p = subprocess.run(
        ["bash", "-c", line],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    _check_reports(sorted((work / "reports").glob("mpi-*.json")))


@pytest.mark.timeout(150)
def test_srun_nested_mpirun_gives_unique_ids(cluster: Cluster, tmp_path: Path) -> None:
    _mpirun()
    work = _workdir(tmp_path)
    (work / "rdv").mkdir()
    cmd = [
        "srun",
        "-n",
        "2",
        "--overcommit",
        "mpirun",
        "-n",
        "3",
        "--oversubscribe",
        *(["--allow-run-as-root"] if os.geteuid() == 0 else []),
        "python",
        "launch.py",
        "agent",
        "--rendezvous",
        "rdv",
        "--bind",
        "tcp://*:*",
        "--mode",
        "paper",
        "--no-learn",
        "--inducing",
        "10",
        "--topology",
        "ring",
        "--report",
        "reports/nest-{id}.json",
    ]
    p = subprocess.run(
        cmd, cwd=work, env=_env(cluster.env()), capture_output=True, text=True, timeout=140
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    _check_reports(sorted((work / "reports").glob("nest-*.json")))
    idents = {json.loads(p.read_text())["identity"] for p in (work / "reports").glob("*.json")}
    assert idents == {"slurm+openmpi"}
