"""Real agent processes over ZeroMQ on loopback: exact consistency, crash/rejoin, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import launch  # noqa: E402
from swarmgp.agents.runtime.identity import resolve_identity  # noqa: E402
from swarmgp.agents.runtime.local import LocalSwarm  # noqa: E402
from swarmgp.agents.runtime.rendezvous import read_records  # noqa: E402
from swarmgp.agents.runtime.report import REQUIRED_KEYS  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.zmq]

N = 8
RING = {i: ((i - 1) % N, (i + 1) % N) for i in range(N)}
CHORDS = [(0, 4), (2, 6), (1, 5), (3, 7), (0, 3)]


def cyclic_graph() -> dict[int, tuple[int, ...]]:
    nb = {i: set(RING[i]) for i in range(N)}
    for a, b in CHORDS:
        nb[a].add(b)
        nb[b].add(a)
    return {i: tuple(sorted(v)) for i, v in nb.items()}


def args(*extra: str):
    return launch.parse_config(
        [
            "local",
            "--mode",
            "paper",
            "--no-learn",
            "--inducing",
            "30",
            "--batches",
            "2",
            "--batch-size",
            "40",
            "--heartbeat",
            "0.05",
            "--seed",
            "3",
            *extra,
        ]
    )[1]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purposes only once reaped by its parent
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except OSError:
        return True


@pytest.fixture
def swarm_factory(tmp_path: Path):
    made: list[LocalSwarm] = []

    def make(adjacency, name: str = "s") -> LocalSwarm:
        sw = LocalSwarm(args(), adjacency, tmp_path / name)
        made.append(sw)
        return sw

    yield make
    for sw in made:
        sw.stop()
        assert all(p.poll() is not None for p in sw.all_procs)


def assert_exact(sw: LocalSwarm, ids, replies, err) -> None:
    assert set(replies) == set(ids)
    assert err <= 1e-9
    for r in replies.values():
        assert r.fused.n_agents == len(ids)
        assert r.info["root"] == min(ids)


@pytest.mark.timeout(90)
def test_ring_converges_then_survives_sigkill_and_rejoin(swarm_factory) -> None:
    sw = swarm_factory(RING, "ring")
    sw.start()
    ids = list(range(N))
    replies, err, _ = sw.wait_consistent(ids, timeout_s=30)
    assert_exact(sw, ids, replies, err)
    old_inc = replies[0].info["incarnation"]

    sw.kill(0)  # SIGKILL the root: survivors must drop it and re-root at 1
    survivors = ids[1:]
    replies, err, _ = sw.wait_consistent(survivors, timeout_s=30)
    assert_exact(sw, survivors, replies, err)
    for r in replies.values():
        assert 0 not in r.info["live_peers"]

    sw.spawn(0)  # restart: new incarnation, new port, same data
    sw.wait_records([0], 30)
    replies, err, _ = sw.wait_consistent(ids, timeout_s=30)
    assert_exact(sw, ids, replies, err)
    assert replies[0].info["incarnation"] > old_inc
    assert sum(r.info["counters"].get("net.reconnects", 0) for r in replies.values()) >= 2


@pytest.mark.timeout(90)
def test_graph_with_cycles_converges_and_inner_crash(swarm_factory) -> None:
    sw = swarm_factory(cyclic_graph(), "cyc")
    sw.start()
    ids = list(range(N))
    replies, err, _ = sw.wait_consistent(ids, timeout_s=30)
    assert_exact(sw, ids, replies, err)
    # the tree uses N - 1 edges of the graph
    assert sum(len(r.info["tree_neighbors"]) for r in replies.values()) == 2 * (N - 1)
    # launch.py status reads the rendezvous dir and prints every agent's state as JSON
    out = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), "status", "--rendezvous", str(sw.dir), "--json"],
        capture_output=True,
        timeout=30,
        check=True,
    )
    rows = json.loads(out.stdout)
    assert sorted(r["id"] for r in rows) == ids
    assert all(r["n_agents"] == N and r["root"] == 0 and "health" in r for r in rows)
    sw.kill(5)
    survivors = [i for i in ids if i != 5]
    replies, err, _ = sw.wait_consistent(survivors, timeout_s=30)
    assert_exact(sw, survivors, replies, err)


def _run_local(tmp_path: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "launch.py"),
            "local",
            "--agents",
            "4",
            "--topology",
            "ring",
            "--no-learn",
            "--inducing",
            "20",
            "--batches",
            "2",
            "--batch-size",
            "30",
            "--heartbeat",
            "0.05",
            "--workdir",
            str(tmp_path / "w"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.timeout(90)
def test_launch_local_report_and_no_orphans(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    p = _run_local(tmp_path, ["--report", str(report), "--timeout", "40"])
    out, err = p.communicate(timeout=80)
    assert p.returncode == 0, err.decode()
    rep = json.loads(report.read_text())
    for key in REQUIRED_KEYS:  # the DESIGN.md section 4 contract, shared with the simulator
        assert key in rep
    assert rep["consistency_max_rel_err"] <= 1e-9 and rep["learn"] is False
    assert abs(rep["rmse_fused"] - rep["rmse_oracle"]) <= 1e-6 * rep["rmse_oracle"]
    pids = [r["pid"] for r in read_records(tmp_path / "w").values()]
    assert len(pids) == 4 and all(gone(pid) for pid in pids)


@pytest.mark.timeout(90)
def test_launch_local_sigint_leaves_no_process(tmp_path: Path) -> None:
    # beacons and fusion rounds 100 s apart: no consistency before we interrupt it
    slow = ["--heartbeat", "100", "--fuse-interval", "100"]
    p = _run_local(tmp_path, ["--batch-interval", "100", "--timeout", "60", *slow])
    deadline = time.monotonic() + 60
    recs = {}
    while time.monotonic() < deadline and len(recs) < 4:
        recs = read_records(tmp_path / "w") if (tmp_path / "w").exists() else {}
        time.sleep(0.05)
    assert len(recs) == 4, "agents never published their endpoints"
    pids = [r["pid"] for r in recs.values()]
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    assert p.returncode == 130
    assert all(gone(pid) for pid in pids)


def test_identity_from_cluster_environment() -> None:
    assert resolve_identity(None, None, {"SLURM_PROCID": "3", "SLURM_NTASKS": "8"}) == (
        3,
        8,
        "slurm",
    )
    assert resolve_identity(
        None, None, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "4"}
    ) == (1, 4, "openmpi")
    assert resolve_identity(None, None, {"RANK": "2", "WORLD_SIZE": "5"}) == (2, 5, "torchrun")
    assert resolve_identity(7, 9, {"RANK": "2"}) == (7, 9, "flags")
    with pytest.raises(ValueError, match="agent id unknown"):
        resolve_identity(None, None, {})


@pytest.mark.timeout(90)
def test_sim_local_and_agent_observe_the_same_first_batches(swarm_factory) -> None:
    # the one synthetic world: the simulator's agent a and process a see the same rows
    from swarmgp.agents.runtime.runner import batch_digest
    from swarmgp.agents.topology import neighbour_graph
    from swarmgp.sim.streams import make_streams

    cfg = args()
    sw = swarm_factory(neighbour_graph("ring", None, 4, cfg.seed), "same-rows")
    sw.start(timeout_s=60)
    replies, _, _ = sw.wait_consistent(timeout_s=60)
    streams = make_streams(cfg.data, agents=4, seed=cfg.seed, test_points=10)
    for a, r in replies.items():
        X, y = streams.batches[a][0]
        assert r.info["first_batch"] == batch_digest(X, y), a
