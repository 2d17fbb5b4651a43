#!/usr/bin/env python3
"""CPU cost of one heartbeat on one directed link of a swarm of agent processes.

Two measures (m = 100, ``--mode paper``, learning off, as ``bench_swarm.py``):

- the bare path (default): two real agents on two ZeroMQ transports in this process, wired
  as neighbours; agent 0 builds a beacon, its transport encodes and sends it, agent 1's
  receives and decodes it and agent 1 handles it, one beacon at a time (so each crosses the
  I/O threads by itself, as in a swarm). CPU time is the process's, every thread included;
- ``--swarm N:TOPOLOGY:HEARTBEAT ...``: a real ``launch.py local`` swarm (``LocalSwarm``) is
  started, left to agree, then the CPU time of all its agent processes (``/proc``) over
  ``--seconds`` is divided by the beacons they sent meanwhile: what one beacon costs the
  machine, the receiving process's waking up and each agent's own ticking included.

The second is ``HEARTBEAT_CPU_S`` of ``agents/factory.py`` (the heartbeat floor of
``launch.py local``).

    python benchmarks/bench_heartbeat.py --beacons 20000
    python benchmarks/bench_heartbeat.py --swarm 32:ring:0.1 32:geometric:0.1 64:geometric:0.7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarmgp.agents.factory import agent_seeds, build_agent, common_encoding  # noqa: E402
from swarmgp.agents.run_config import RunConfig  # noqa: E402
from swarmgp.agents.runtime.local import LocalSwarm  # noqa: E402
from swarmgp.agents.topology import neighbour_graph  # noqa: E402
from swarmgp.protocol.messages import Heartbeat  # noqa: E402
from swarmgp.protocol.zmq_transport import ZmqTransport  # noqa: E402


def bench(beacons: int, m: int) -> dict[str, float]:
    cfg = RunConfig.make("local", mode="paper", inducing=m, learn=False, agents=2)
    enc = common_encoding(cfg, 2)
    tr = [ZmqTransport(i, enc.m, enc.hash) for i in range(2)]
    t0 = time.monotonic()
    ag = [
        build_agent(
            cfg,
            i,
            [1 - i],
            enc,
            incarnation=1 + i,
            now=t0,
            seeds=agent_seeds(0, i, 0),
            max_dist=2,
            endpoint=tr[i].endpoint,
        )
        for i in range(2)
    ]
    for i in range(2):
        tr[i].connect(1 - i, tr[1 - i].endpoint)
    for i in range(2):  # hellos and first beacons, both ways, until each hears the other
        for dest, msg in ag[i].start(time.monotonic()):
            tr[i].send(dest, msg)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(a.peers.live() for a in ag):
        for i in range(2):
            msg = tr[i].recv(0.01)
            if msg is not None:
                ag[i].on_message(msg, time.monotonic())
    for i in range(2):  # what the handshake left in flight
        while (msg := tr[i].recv(0.05)) is not None:
            ag[i].on_message(msg, time.monotonic())
    per: list[float] = []
    chunk = 1000
    for _ in range(max(beacons // chunk, 1)):
        c0 = time.process_time()
        for _ in range(chunk):
            now = time.monotonic()
            ag[0]._hb_due = now  # a beacon is due (as on_tick makes it every period)
            out = ag[0]._emit(now)
            assert any(isinstance(msg, Heartbeat) for _, msg in out), out
            for dest, msg in out:
                if isinstance(msg, Heartbeat):
                    tr[0].send(dest, msg)
            while tr[0].flush():  # a full pipe (credit not yet back from the I/O thread)
                time.sleep(1e-4)
            got = tr[1].recv(1.0)
            assert isinstance(got, Heartbeat), (got, dict(tr[0].stats), dict(tr[1].stats))
            ag[1].on_message(got, time.monotonic())
        per.append((time.process_time() - c0) / chunk)
    for t in tr:
        t.close()
    return {
        "m": m,
        "beacons": len(per) * chunk,
        "cpu_us_per_beacon_median": 1e6 * statistics.median(per),
        "cpu_us_per_beacon_min": 1e6 * min(per),
        "cpu_us_per_beacon_mean": 1e6 * float(np.mean(per)),
    }


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux ``/proc``)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / tick


def bench_idle_swarm(n: int, topology: str, heartbeat: float, m: int, seconds: float) -> dict:
    cfg = RunConfig.make(
        "local",
        mode="paper",
        agents=n,
        topology=topology,
        inducing=m,
        learn=False,
        batches=2,
        batch_size=50,
        heartbeat=heartbeat,
        seed=1,
    )
    adj = neighbour_graph(topology, None, n, cfg.seed)
    with tempfile.TemporaryDirectory(prefix="swarmgp-bench-") as d:
        sw = LocalSwarm(cfg, adj, Path(d))
        try:
            sw.start(timeout_s=300)
            sw.wait_consistent(timeout_s=180, poll_s=0.5)
            time.sleep(2.0)  # the last acknowledgements
            ids, pids = sorted(sw.procs), [p.pid for p in sw.procs.values()]

            def beacons() -> int:
                got = sw.status(ids, timeout_s=5.0)
                return sum(int(r.info["counters"].get("tx.heartbeat", 0)) for r in got.values())

            b0, c0, t0 = beacons(), _cpu_s(pids), time.monotonic()
            time.sleep(seconds)
            b1, c1, t1 = beacons(), _cpu_s(pids), time.monotonic()
        finally:
            sw.stop()
    return {
        "agents": n,
        "topology": topology,
        "links": sum(len(v) for v in adj.values()),
        "heartbeat_s": heartbeat,
        "cores_busy": (c1 - c0) / (t1 - t0),
        "beacons_per_s": (b1 - b0) / (t1 - t0),
        "cpu_us_per_beacon": 1e6 * (c1 - c0) / max(b1 - b0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--beacons", type=int, default=20000)
    p.add_argument("--inducing", type=int, default=100)
    p.add_argument("--swarm", nargs="+", metavar="N:TOPOLOGY:HEARTBEAT", help="idle swarms")
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args()
    if not a.swarm:
        print(json.dumps(bench(a.beacons, a.inducing)))
    for spec in a.swarm or ():
        n, topo, hb = spec.split(":")
        print(json.dumps(bench_idle_swarm(int(n), topo, float(hb), a.inducing, a.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
