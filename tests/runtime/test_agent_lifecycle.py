"""``launch.py agent`` on loopback: a job that finishes, one line per launch error, no orphans.

* three agents with ``--until consistent`` exit 0, each with a report of one collective model,
  and ``status --wait`` prints ``consistent: max rel diff``;
* a second process claiming a live agent's id exits 1 with one line;
* neighbours that never publish: exit 1 with one line, or run alone with ``--join-alone``;
* an agent whose parent dies during the rendezvous wait does not outlive it;
* ``--log-format json`` writes one JSON object per line; ``status`` shows consistency as a
  number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarmgp.agents.runtime.report import check_report

pytestmark = [pytest.mark.slow, pytest.mark.zmq]

LAUNCH = str(Path(__file__).resolve().parents[2] / "launch.py")
SMALL = [
    "--mode",
    "paper",
    "--no-learn",
    "--inducing",
    "10",
    "--batches",
    "2",
    "--batch-size",
    "20",
]


def agent(rdv: Path, i: int, world: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        LAUNCH,
        "agent",
        "--id",
        str(i),
        "--world",
        str(world),
        "--rendezvous",
        str(rdv),
        *SMALL,
        *extra,
    ]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(120)
def test_until_consistent_reports_and_status_wait(tmp_path: Path) -> None:
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    report = str(tmp_path / "r-{id}.json")
    procs = [
        subprocess.Popen(
            agent(rdv, i, 3, "--report", report, "--log-format", "json"),
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    st = subprocess.run(
        [sys.executable, LAUNCH, "status", "--rendezvous", str(rdv), "--wait", "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert st.returncode == 0 and st.stdout.startswith("consistent: max rel diff"), st
    reports = [json.loads((tmp_path / f"r-{i}.json").read_text()) for i in range(3)]
    for i, r in enumerate(reports):
        check_report(r)
        assert r["agent_id"] == i and r["fused_n_agents"] == 3 and r["n_obs"] == 3 * 40
        assert r["consistency_max_rel_err"] <= 1e-9
        assert r["rmse_fused"] <= r["rmse_local"] * 1.5
    objs = [json.loads(line) for line in errs[0].splitlines()]  # --log-format json
    assert all(o["agent"] == 0 and o["level"] for o in objs)
    assert {"start", "data_done", "swarm_consistent", "report"} <= {o.get("event") for o in objs}


@pytest.mark.timeout(60)
def test_duplicate_id_and_rendezvous_timeout_are_one_line_errors(tmp_path: Path) -> None:
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    first = subprocess.Popen(
        agent(rdv, 0, 2, "--rendezvous-timeout", "30"), env=_env(), stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while not (rdv / "agent-0.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(
            agent(rdv, 0, 2, "--log-level", "ERROR"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "agent id 0 is already taken" in lines[0], second.stderr
    finally:
        first.kill()
        first.communicate()
    (tmp_path / "rdv2").mkdir()
    alone = subprocess.run(
        agent(tmp_path / "rdv2", 0, 2, "--rendezvous-timeout", "0.5", "--log-level", "ERROR"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert alone.returncode == 1
    assert "did not publish" in alone.stderr and len(alone.stderr.strip().splitlines()) == 1
    rdv3 = tmp_path / "rdv3"
    rdv3.mkdir()
    p = subprocess.Popen(
        agent(rdv3, 0, 2, "--rendezvous-timeout", "0.5", "--join-alone", "--until", "never"),
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    assert p.poll() is None  # it runs alone
    p.terminate()
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0 and "join_alone" in err


@pytest.mark.timeout(60)
def test_parent_death_during_rendezvous_wait_stops_the_agent(tmp_path: Path) -> None:
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    # a parent shell that starts the agent (waiting for a neighbour that never comes) and dies
    cmd = " ".join(agent(rdv, 0, 2, "--rendezvous-timeout", "60")) + " & echo $!; sleep 2"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 15
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(pid), "the agent outlived its parent during the rendezvous wait"


@pytest.mark.timeout(90)
def test_status_shows_consistency_as_a_number(tmp_path: Path) -> None:
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    procs = [
        subprocess.Popen(
            agent(rdv, i, 2, "--until", "never"), env=_env(), stderr=subprocess.DEVNULL
        )
        for i in range(2)
    ]
    try:
        st = subprocess.run(
            [
                sys.executable,
                LAUNCH,
                "status",
                "--rendezvous",
                str(rdv),
                "--wait",
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=70,
        )
        assert st.returncode == 0, st
        plain = subprocess.run(
            [sys.executable, LAUNCH, "status", "--rendezvous", str(rdv)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert plain.returncode == 0, plain
        lines = plain.stdout.strip().splitlines()
        assert len(lines) == 3 and "fingerprint" not in plain.stdout
        assert all("rel diff" in x for x in lines[:2]) and lines[2].startswith("consistent:")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.communicate(timeout=20)
    assert [p.returncode for p in procs] == [0, 0]
