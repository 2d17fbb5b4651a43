"""Live feeds without a pre-read, on real processes (issue 11).

* a ZeroMQ PUB feed and an MQTT feed that never end, into ``local --duration``: every agent
  learns its rows within a bounded time of their arrival, the swarm converges, the report's
  observation count equals the rows the agents received; the ZeroMQ run is scraped over
  loopback on ``--metrics-port``;
* ``jsonl:-`` into ``local`` and into ``agent`` delivers every row once to the agent that
  owns it (the hash of its sensor key).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmgp.agents.sources.split import key_agent

pytestmark = pytest.mark.timeout(120)

LAUNCH = Path(__file__).resolve().parents[2] / "launch.py"
A = 3
#: Ingest lag bound, seconds: the collective warm-up buffers the first batches (a few
#: seconds on loopback), streaming after it learns a batch within milliseconds.
LAG_BOUND_S = 20.0
MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keys(n_per_agent: int = 2) -> list[str]:
    """Sensor keys covering every agent ``n_per_agent`` times under the hash mapping."""
    per: dict[int, list[str]] = {a: [] for a in range(A)}
    k = 0
    while any(len(v) < n_per_agent for v in per.values()):
        key = f"s{k}"
        a = key_agent(key, A)
        if len(per[a]) < n_per_agent:
            per[a].append(key)
        k += 1
    return sorted(k for v in per.values() for k in v)


def _row(rng: random.Random, n: int, key: str | None) -> dict[str, Any]:
    x = [rng.uniform(0.0, 5.0), rng.uniform(0.0, 5.0)]
    row: dict[str, Any] = {"t": n * 0.01, "x": x, "y": math.sin(x[0]) + 0.3 * math.cos(x[1])}
    if key is not None:
        row["agent"] = key
    return row


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _check_live_report(r: dict[str, Any], duration: float) -> None:
    assert r["rows_received"] > 0
    assert r["n_obs"] == r["rows_received"] == sum(r["agents_rows_received"])
    assert all(n > 0 for n in r["agents_rows_received"]), r["agents_rows_received"]
    assert r["consistency_max_rel_err"] <= 1e-9
    assert all(lag is not None and lag < LAG_BOUND_S for lag in r["agents_ingest_lag_max_s"])
    assert 0.0 < r["ingest_lag_mean_s"] <= r["ingest_lag_max_s"] < LAG_BOUND_S
    assert r["wall_s"] >= duration
    assert r["rmse_fused"] is None and "live feed" in r["scores_note"]


class _Publisher(threading.Thread):
    """Publishes rows at ``rate`` per second until stopped (a feed that never ends)."""

    def __init__(self, send: Any, rate: float = 400.0) -> None:
        super().__init__(daemon=True)
        self.send, self.rate = send, rate
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.is_set():
            self.send(self.sent)
            self.sent += 1
            time.sleep(max(0.0, t0 + self.sent / self.rate - time.monotonic()))


def _scrape(port: int, deadline_s: float = 20.0) -> str:
    """The metrics text at ``port`` once it reports observations."""
    deadline = time.monotonic() + deadline_s
    text = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
            if "swarmgp_observations_total" in text and "swarmgp_ingest_lag_seconds" in text:
                return text
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no metrics at port {port}: {text[:200]!r}")


@contextlib.contextmanager
def _zmq_feed(seed: int) -> Iterator[tuple[int, _Publisher]]:
    """A ZeroMQ PUB feed on loopback that never ends (until the block exits): (port, feeder)."""
    zmq = pytest.importorskip("zmq")
    port = _free_port()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(f"tcp://127.0.0.1:{port}")
    keys = _keys()
    rng = random.Random(seed)

    def send(n: int) -> None:
        row = _row(rng, n, keys[n % len(keys)])
        pub.send_multipart([b"obs", json.dumps(row).encode()])

    feeder = _Publisher(send)
    feeder.start()
    try:
        yield port, feeder
    finally:
        feeder.halt.set()
        feeder.join(5)
        pub.close(0)
        ctx.term()


def test_zmq_feed_that_never_ends_into_local_duration(tmp_path: Path) -> None:
    with _zmq_feed(0) as (port, feeder):
        metrics_port = _free_port()
        report = tmp_path / "r.json"
        duration = 5.0
        cmd = [
            sys.executable, str(LAUNCH), "local",
            "--data", f"zmq+sub://127.0.0.1:{port}/obs?d=2&hwm=100000",
            "--agents", str(A), "--agent-column", "agent", "--batch-size", "20",
            "--duration", str(duration), "--timeout", "60",
            "--metrics-port", str(metrics_port), "--report", str(report),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
        try:
            text = _scrape(metrics_port)  # agent 0, scraped over loopback while ingesting
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err[-2000:]
    for name in (
        "swarmgp_observations_total",
        "swarmgp_messages_total",
        "swarmgp_bytes_total",
        "swarmgp_peers_live",
        "swarmgp_consistency_age_seconds",
        "swarmgp_ingest_lag_seconds",
    ):
        assert f'{name}{{agent="0"' in text, name
    r = json.loads(report.read_text())
    _check_live_report(r, duration)
    assert r["rows_received"] <= feeder.sent


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    exe = MOSQUITTO if os.path.exists(MOSQUITTO) else shutil.which("mosquitto")
    if not exe:
        pytest.skip(f"mosquitto broker not installed ({MOSQUITTO} absent)")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "mosquitto exited at start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                time.sleep(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_mqtt_feed_that_never_ends_into_local_duration(broker: int, tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker)
    client.loop_start()
    rng = random.Random(1)

    def send(n: int) -> None:  # the sensor is the topic's last level; no agent column
        client.publish(f"swarm/s{n % 7}", json.dumps(_row(rng, n, None)), qos=1)

    feeder = _Publisher(send, rate=300.0)
    feeder.start()
    report = tmp_path / "r.json"
    duration = 5.0
    cmd = [
        sys.executable, str(LAUNCH), "local",
        "--data", f"mqtt://127.0.0.1:{broker}/swarm/+?qos=1&d=2",
        "--agents", str(A), "--batch-size", "20",
        "--duration", str(duration), "--timeout", "60", "--report", str(report),
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=90)
    finally:
        feeder.halt.set()
        feeder.join(5)
        client.loop_stop()
        client.disconnect()
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(report.read_text())
    _check_live_report(r, duration)
    assert r["rows_received"] <= feeder.sent


def _jsonl(path: Path, n: int) -> tuple[Path, Counter[int]]:
    """``n`` rows in the documented layout, and how many each agent owns."""
    rng = random.Random(2)
    keys = _keys()
    owned: Counter[int] = Counter()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            key = keys[i % len(keys)]
            owned[key_agent(key, A)] += 1
            fh.write(json.dumps(_row(rng, i, key)) + "\n")
    return path, owned


def test_jsonl_stdin_into_local_reaches_each_owner_once(tmp_path: Path) -> None:
    rows, owned = _jsonl(tmp_path / "rows.jsonl", 900)
    report = tmp_path / "r.json"
    cmd = [
        sys.executable, str(LAUNCH), "local", "--data", "jsonl:-?d=2",
        "--agents", str(A), "--agent-column", "agent", "--batch-size", "25",
        "--timeout", "60", "--report", str(report),
    ]  # fmt: skip
    with open(rows, "rb") as fh:
        done = subprocess.run(cmd, stdin=fh, env=_env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(report.read_text())
    assert r["stdin_rows"] == {"rows": 900, "unparsed": 0, "oversized": 0}
    assert r["agents_rows_received"] == [owned[a] for a in range(A)]
    assert r["n_obs"] == r["rows_received"] == 900
    assert r["consistency_max_rel_err"] <= 1e-9


def test_jsonl_stdin_into_agents_keeps_each_row_once(tmp_path: Path) -> None:
    """Every agent reads the whole stream on its own stdin and keeps its own rows."""
    rows, owned = _jsonl(tmp_path / "rows.jsonl", 900)
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    procs = []
    for i in range(A):
        cmd = [
            sys.executable, str(LAUNCH), "agent", "--id", str(i), "--world", str(A),
            "--rendezvous", str(rdv), "--data", "jsonl:-?d=2", "--agent-column", "agent",
            "--batch-size", "25", "--report", str(tmp_path / "r-{id}.json"),
        ]  # fmt: skip
        with open(rows, "rb") as fh:
            procs.append(
                subprocess.Popen(cmd, stdin=fh, env=_env(), stderr=subprocess.PIPE, text=True)
            )
    try:
        errs = [p.communicate(timeout=90)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * A, [e[-800:] for e in errs]
    for i in range(A):
        r = json.loads((tmp_path / f"r-{i}.json").read_text())
        assert r["local_n_obs"] == r["rows_received"] == owned[i]
        assert r["n_obs"] == 900
        if owned[i]:
            assert r["ingest_lag_max_s"] < LAG_BOUND_S


def test_zmq_feed_recorded_by_sim_duration(tmp_path: Path) -> None:
    # sim takes the same live source: it records the feed for --duration seconds, then
    # simulates it; a live feed without --duration is one line and exit 1 (it never ends)
    with _zmq_feed(1) as (port, _):
        _sim_records_the_feed(tmp_path, port)


def _sim_records_the_feed(tmp_path: Path, port: int) -> None:
    report = tmp_path / "sim.json"
    uri = f"zmq+sub://127.0.0.1:{port}/obs?d=2&hwm=100000"
    base = [
        sys.executable, str(LAUNCH), "sim", "--data", uri, "--agents", str(A),
        "--agent-column", "agent", "--batch-size", "20", "--mode", "paper", "--no-learn",
        "--inducing", "10", "--quiet",
    ]  # fmt: skip
    p = subprocess.run(
        [*base, "--duration", "3", "--report", str(report)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(report.read_text())
    assert r["agents"] == A and r["n_obs"] > 0
    assert r["consistency_max_rel_err"] <= 1e-9
    q = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=60)
    assert q.returncode == 1 and "--duration" in q.stderr
    assert len(q.stderr.strip().splitlines()) == 1, q.stderr
