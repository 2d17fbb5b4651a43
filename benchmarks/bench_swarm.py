#!/usr/bin/env python3
"""Benchmark real swarms of agent processes over ZeroMQ on this machine.

Measures, at m = 100 with learning off:

- the fusion message: size on the wire, encode and decode time (median);
- for N local agent processes on ring and geometric graphs: time from the last observation
  anywhere to consistency (the last moment any agent's collective model moved, read from the
  agents' own clocks, so status polling does not blur it), messages and bytes sent until
  consistency, start-up time, and resident memory per agent process. The heartbeat is
  ``launch.py local``'s: ``--heartbeat`` when given, else 0.1 s raised to the floor that keeps
  a large swarm's beacons within half of this machine's cores (``heartbeat_s`` in the results).

    python benchmarks/bench_swarm.py --agents 8 32 64 --topologies ring geometric --out b.json
    python benchmarks/bench_swarm.py --agents 16 32 --fusion tree rounds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import launch  # noqa: E402
from swarmgp.agents.runtime.local import LocalSwarm, swarm_heartbeat  # noqa: E402
from swarmgp.agents.topology import neighbour_graph  # noqa: E402
from swarmgp.fusion.summary import Summary  # noqa: E402
from swarmgp.protocol.codec import decode, encode  # noqa: E402
from swarmgp.protocol.messages import Fuse, TreeState  # noqa: E402


def bench_codec(m: int = 100, reps: int = 3000) -> dict[str, float]:
    r = np.random.default_rng(0)
    B = r.standard_normal((m, m))
    s = Summary(np.eye(m) + B @ B.T / m, r.standard_normal(m), 1000, 10, "h" * 16)
    msg = Fuse(1, 2, 3, 4, 5, TreeState(0, 1, 2, 3, 4), s)
    frames = encode(msg, "h" * 16, m)
    enc, dec = [], []
    for _ in range(reps):
        t = time.perf_counter()
        frames = encode(msg, "h" * 16, m)
        t1 = time.perf_counter()
        decode(frames, m, "h" * 16)
        t2 = time.perf_counter()
        enc.append(t1 - t)
        dec.append(t2 - t1)
    sizes = [memoryview(f).nbytes for f in frames]
    return {
        "m": m,
        "message_bytes": sum(sizes),
        "array_bytes": sizes[2],
        "header_bytes": sizes[1],
        "encode_us_median": 1e6 * statistics.median(enc),
        "decode_us_median": 1e6 * statistics.median(dec),
    }


def bench_swarm(
    n: int, topology: str, m: int, heartbeat: float | None, timeout: float, fusion: str = "rounds"
) -> dict:
    batches = 2
    flags = [] if heartbeat is None else ["--heartbeat", str(heartbeat)]
    _, cfg = launch.parse_config(
        [
            "local",
            "--mode",
            "paper",
            "--agents",
            str(n),
            "--topology",
            topology,
            "--inducing",
            str(m),
            "--no-learn",
            "--batches",
            str(batches),
            "--batch-size",
            "50",
            *flags,
            "--seed",
            "1",
            "--fusion",
            fusion,
        ]
    )
    assert cfg is not None
    adj = neighbour_graph(topology, None, n, cfg.seed)
    hb, hb_note = swarm_heartbeat(cfg, adj)  # as launch.py local: the floor unless given
    cfg = cfg.replace(heartbeat=hb)
    with tempfile.TemporaryDirectory(prefix="swarmgp-bench-") as d:
        sw = LocalSwarm(cfg, adj, Path(d))
        try:
            t0 = time.time()
            sw.start(timeout_s=300)
            t_started = time.time() - t0
            replies, err, _ = sw.wait_consistent(timeout_s=timeout, poll_s=0.2)
            last_obs = max(r.info["last_observation_wall"] for r in replies.values())
            last_move = max(r.info["last_fused_change_wall"] for r in replies.values())
            c = [r.info["counters"] for r in replies.values()]
            rss = [r.info["peak_rss_mb"] for r in replies.values()]
            diam_edges = sum(len(v) for v in adj.values()) // 2
            fuse_msgs = int(sum(x.get("tx.fuse", 0) for x in c))
            # every Fuse message at this m has the same size (a few header bytes aside)
            fuse_size = bench_codec(m, reps=1)["message_bytes"]
            # ideal: one Fuse message per direction per tree edge per round (a batch round)
            ideal = 2 * (n - 1) * batches
            return {
                "agents": n,
                "topology": topology,
                "edges": diam_edges,
                "m": m,
                "heartbeat_s": hb,
                "heartbeat_note": hb_note,
                "fusion": fusion,
                "startup_s": t_started,
                "consistency_after_last_obs_s": last_move - last_obs,
                "max_rel_err": err,
                "messages": int(sum(x.get("net.tx_msgs", 0) for x in c)),
                "fuse_messages": fuse_msgs,
                "fuse_bytes": fuse_msgs * fuse_size,
                "fuse_ideal_messages": ideal,
                "fuse_over_ideal": round(fuse_msgs / ideal, 2),
                "bytes": int(sum(x.get("net.tx_bytes", 0) for x in c)),
                "rss_mb_per_agent_mean": float(np.mean(rss)),
                "rss_mb_per_agent_max": float(np.max(rss)),
                "root": min(replies),
            }
        finally:
            sw.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[8, 32])
    p.add_argument("--topologies", nargs="+", default=["ring", "geometric"])
    p.add_argument("--inducing", type=int, default=100)
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="beacon period (default: as launch.py local, 0.1 s or the floor of a large swarm)",
    )
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument(
        "--fusion",
        nargs="+",
        default=["rounds"],
        help="fusion protocols (rounds, the default of launch.py; tree)",
    )
    p.add_argument("--out", help="write results as JSON here")
    a = p.parse_args()
    res = {"codec": bench_codec(a.inducing), "swarms": []}
    print(json.dumps(res["codec"]), flush=True)
    for n in a.agents:
        for topo in a.topologies:
            for fusion in a.fusion:
                r = bench_swarm(n, topo, a.inducing, a.heartbeat, a.timeout, fusion)
                res["swarms"].append(r)
                print(json.dumps(r), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
