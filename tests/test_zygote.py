"""`launch.py local` forks its agents from a pre-imported zygote (or, `--no-zygote`, not)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import launch  # noqa: E402
from swarmgp.agents.runtime.local import LocalSwarm  # noqa: E402
from swarmgp.agents.runtime.zygote import Forked  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.zmq]

N = 4
RING = {i: ((i - 1) % N, (i + 1) % N) for i in range(N)}
FLAGS = ["local", "--mode", "paper", "--no-learn", "--inducing", "10", "--batches", "1",
         "--batch-size", "10", "--heartbeat", "0.05", "--seed", "1"]  # fmt: skip


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in pids if not gone(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


def test_flag_defaults_on_and_no_zygote_parses() -> None:
    assert launch.parse_config(FLAGS)[1].process.zygote is True
    assert launch.parse_config([*FLAGS, "--no-zygote"])[1].process.zygote is False


@pytest.mark.timeout(60)
def test_forked_agents_are_sessions_of_their_own_under_a_threadless_zygote(tmp_path: Path) -> None:
    sw = LocalSwarm(launch.parse_config(FLAGS)[1], RING, tmp_path / "z")
    try:
        sw.start(timeout_s=30)
        _, err, _ = sw.wait_consistent(timeout_s=30)
        assert err <= 1e-9
        assert sw.zygote is not None
        zpid = sw.zygote.proc.pid
        for p in sw.procs.values():
            assert isinstance(p, Forked) and p.poll() is None
            assert os.getsid(p.pid) == p.pid  # own session and process group
            with open(f"/proc/{p.pid}/stat") as fh:
                assert int(fh.read().rsplit(")", 1)[1].split()[1]) == zpid
        # the zygote made no ZeroMQ context (its I/O threads) nor any other thread
        assert len(os.listdir(f"/proc/{zpid}/task")) == 1
        sw.kill(1, signal.SIGTERM)  # exit status reported by the zygote
        assert 1 not in sw.procs and sw.alive() == [0, 2, 3]
    finally:
        sw.stop()
    assert all(p.poll() is not None for p in sw.all_procs)
    assert wait_gone([zpid, *(p.pid for p in sw.all_procs)]) == []


@pytest.mark.timeout(60)
def test_no_zygote_starts_plain_processes(tmp_path: Path) -> None:
    sw = LocalSwarm(launch.parse_config([*FLAGS, "--no-zygote"])[1], RING, tmp_path / "p")
    try:
        sw.start(timeout_s=30)
        assert sw.zygote is None
        assert all(isinstance(p, subprocess.Popen) for p in sw.procs.values())
        _, err, _ = sw.wait_consistent(timeout_s=30)
        assert err <= 1e-9
    finally:
        sw.stop()
    assert all(p.poll() is not None for p in sw.all_procs)


@pytest.mark.timeout(60)
def test_launcher_sigkilled_leaves_no_zygote_nor_agents(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        import launch
        from swarmgp.agents.runtime.local import LocalSwarm
        ring = {RING!r}
        sw = LocalSwarm(launch.parse_config({FLAGS!r})[1], ring, {str(tmp_path / "k")!r})
        sw.start(timeout_s=30)
        print(sw.zygote.proc.pid, *(p.pid for p in sw.procs.values()), flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(x) for x in proc.stdout.readline().split()]
        assert len(pids) == N + 1 and not any(gone(p) for p in pids)
        proc.kill()
        proc.wait()
        assert wait_gone(pids) == []  # zygote hung up on; agents' watchdogs fired
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
