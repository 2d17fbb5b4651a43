"""Durable agents over real processes: SIGKILL an agent halfway through its data, restart it
with the same ``--state-dir``, and the swarm converges to the exact sum over all rows, each
counted once (and, in the paper mode, to the very model of a run without the crash)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import launch  # noqa: E402
from swarmgp.agents.runtime.local import LocalSwarm, plan_local  # noqa: E402
from swarmgp.agents.runtime.snapshot import SNAPSHOT_FILE, read_snapshot  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.zmq]

AGENTS, BATCHES, SIZE = 4, 10, 20
TOTAL = AGENTS * BATCHES * SIZE
VICTIM = 2
MODES = {
    "paper": ["--mode", "paper", "--no-learn"],
    # a short warm-up (24 evaluations over the default starts): the kill must land while rows
    # still stream
    "collective": ["--mode", "collective", "--warmup-evals", "24"],
}


def config(mode: str, state_dir: Path | None, batches: int = BATCHES) -> Any:
    argv = [
        "local",
        *MODES[mode],
        "--agents",
        str(AGENTS),
        "--inducing",
        "12",
        "--batches",
        str(batches),
        "--batch-size",
        str(SIZE),
        "--batch-interval",
        "0.2",
        "--heartbeat",
        "0.05",
        "--seed",
        "5",
    ]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    return launch.parse_config(argv)[1]


def swarm(cfg: Any, workdir: Path) -> LocalSwarm:
    plan = plan_local(cfg)
    return LocalSwarm(cfg, plan.adjacency, workdir, plan.manifest)


def wait_all_rows(sw: LocalSwarm, timeout_s: float, total: int = TOTAL) -> dict[int, Any]:
    """Poll until every agent holds the exact sum over all ``total`` rows."""
    ids = list(range(AGENTS))
    deadline = time.monotonic() + timeout_s
    last = "no replies"
    while time.monotonic() < deadline:
        dead = [i for i in ids if sw.procs[i].poll() is not None]
        assert not dead, f"agents {dead} died; see {sw.dir}"
        replies = sw.status(ids, timeout_s=1.0)
        full, err = sw.check(ids, replies)
        n = sorted({int(r.fused.n_obs) for r in replies.values() if r.fused is not None})
        last = f"full={full} err={err:.3g} n_obs={n}"
        if full and err <= 1e-9 and n == [total]:
            return replies
        time.sleep(0.05)
    raise AssertionError(f"not converged to all {total} rows in {timeout_s} s: {last}")


def run_with_crash(
    cfg: Any, workdir: Path, state_dir: Path, rows: int = TOTAL // AGENTS // 2, phase: str = ""
) -> dict[int, Any]:
    total = cfg.data.batches * SIZE * AGENTS
    """SIGKILL the victim once it learned ``rows`` rows (in the collective ``phase``), restart."""
    sw = swarm(cfg, workdir)
    try:
        sw.start(timeout_s=30)
        deadline = time.monotonic() + 30
        learned, streaming = 0, False
        while learned < rows or (phase == "stream" and not streaming):
            assert time.monotonic() < deadline, f"the victim never learned {rows} rows ({phase})"
            r = sw.status([VICTIM], timeout_s=1.0).get(VICTIM)
            c = r.info["counters"] if r is not None else {}
            learned = int(c.get("observations", 0))
            if phase == "stream" and c.get("collective.stream_started", 0) > 0:
                snap = read_snapshot(state_dir / f"agent-{VICTIM}" / SNAPSHOT_FILE)
                streaming = snap is not None and snap.header["model"]["phase"] == "stream"
            time.sleep(0.02)
        old_inc = r.info["incarnation"]
        sw.kill(VICTIM, signal.SIGKILL)
        snap = read_snapshot(state_dir / f"agent-{VICTIM}" / SNAPSHOT_FILE)
        assert snap is not None
        saved = snap.header["source"]["rows"]
        assert learned <= saved < total // AGENTS  # it died mid-stream, its last batch saved
        if phase:
            assert snap.header["model"]["phase"] == phase
        sw.spawn(VICTIM)
        sw.wait_records([VICTIM], 30)
        replies = wait_all_rows(sw, 40, total)
        info = replies[VICTIM].info
        assert info["incarnation"] > old_inc
        assert info["counters"]["snapshot.restored"] == 1
        assert info["counters"]["observations"] == total // AGENTS  # each row once
        assert info["local_n_obs"] == total // AGENTS
        if phase == "stream":  # restored with the agreed theta: no warm-up again
            assert info["counters"].get("allreduce.spectator", 0) == 0
            assert info["counters"].get("allreduce.sessions", 0) == 0
        return replies
    finally:
        sw.stop()


@pytest.mark.timeout(60)
def test_sigkill_and_restart_paper_mode_equals_a_run_without_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    replies = run_with_crash(config("paper", state), tmp_path / "crash", state)
    ref_sw = swarm(config("paper", None), tmp_path / "ref")
    try:
        ref_sw.start(timeout_s=30)
        ref = wait_all_rows(ref_sw, 30)
    finally:
        ref_sw.stop()
    for i in range(AGENTS):  # every local model is bit-identical to the uncrashed run's
        np.testing.assert_array_equal(replies[i].local.P, ref[i].local.P)
        np.testing.assert_array_equal(replies[i].local.h, ref[i].local.h)
        assert replies[i].fused.max_rel_diff(ref[i].fused) <= 1e-9
        assert replies[i].fused.n_obs == TOTAL


@pytest.mark.timeout(60)
@pytest.mark.parametrize("phase", ["stream", "warmup"])
def test_sigkill_and_restart_collective_mode_counts_every_row_once(
    tmp_path: Path, phase: str
) -> None:
    """Killed with the agreed theta (restored as is), or with its warm-up buffer."""
    state = tmp_path / "state"
    batches = 16  # the learned warm-up takes a few batch intervals
    rows = batches * SIZE // 2 if phase == "stream" else SIZE
    cfg = config("collective", state, batches)
    run_with_crash(cfg, tmp_path / "crash", state, rows, phase)
