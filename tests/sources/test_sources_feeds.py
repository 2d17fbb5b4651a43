"""Push feeds on loopback: ZeroMQ PUB -> SUB, and MQTT through a real mosquitto broker.

Handshake instead of sleeps: the publisher resends a ``sync`` control message until the
source reports ``synced`` (with a deadline), then sends the data and an ``eos``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sources_helpers import expected, json_line, make_rows

from swarmgp.agents.sources import ColumnSchema, Observation, control_payload, open_source

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 20.0
BAD_PAYLOADS = [
    b"\xff\xfe not utf-8",
    b"{not json",
    b"[1, 2]",
    json.dumps({"control": "reboot"}).encode(),
    json.dumps({"agent": "S0", "t": 1.0, "x": [1.0], "y": 1.0}).encode(),  # wrong dimension
    json.dumps({"agent": "S0", "t": 1.0, "x": [1.0, "a"], "y": 1.0}).encode(),
    json.dumps({"agent": "S0", "t": 1.0, "x": [1.0, 2.0]}).encode(),
]
BAD_COUNTS = {"malformed": 4, "wrong_dimension": 1, "non_numeric": 1, "missing_column": 1}


def _consume(src: object) -> tuple[list[Observation], threading.Thread, list[BaseException]]:
    out: list[Observation] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.extend(src)  # type: ignore[call-overload]
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return out, th, errors


def _handshake(send_sync: Callable[[], None], synced: threading.Event) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not synced.is_set():
        assert time.monotonic() < deadline, "subscriber never received the sync message"
        send_sync()
        synced.wait(0.02)


@pytest.mark.zmq
def test_zmq_pub_sub_delivers_in_order_and_rejects_bad_payloads() -> None:
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    rows = make_rows(40)
    src = open_source(f"zmq+sub://127.0.0.1:{port}/sensors", context=ctx, idle_timeout_s=DEADLINE_S)
    try:
        got, th, errors = _consume(src)
        _handshake(lambda: pub.send_multipart([b"sensors", control_payload("sync")]), src.synced)  # type: ignore[attr-defined]
        pub.send_multipart([b"other", json_line(rows[0]).encode()])  # not subscribed
        for i, r in enumerate(rows):
            pub.send_multipart([b"sensors/" + r["station"].encode(), json_line(r).encode()])
            if i < len(BAD_PAYLOADS):
                pub.send_multipart([b"sensors", BAD_PAYLOADS[i]])
        pub.send_multipart([b"sensors", b"a", b"b"])  # three frames
        pub.send_multipart([b"sensors", control_payload("eos")])
        th.join(DEADLINE_S)
        assert not th.is_alive() and not errors
        assert got == expected(rows)
        want = dict(BAD_COUNTS)
        want["malformed"] += 1
        assert dict(src.stats.rejected) == want
    finally:
        src.close()
        pub.close(0)
        ctx.term()


@pytest.mark.zmq
def test_zmq_topic_names_the_agent() -> None:
    zmq = pytest.importorskip("zmq")
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    schema = ColumnSchema(agent=None, time="t", inputs=("x",), target="y")
    src = open_source(
        f"zmq+sub://127.0.0.1:{port}/", schema=schema, context=ctx, idle_timeout_s=DEADLINE_S
    )
    try:
        got, th, errors = _consume(src)
        _handshake(lambda: pub.send_multipart([b"s", control_payload("sync")]), src.synced)  # type: ignore[attr-defined]
        pub.send_multipart([b"buoy7", b'{"t": 1, "x": [0.5], "y": 2}'])
        pub.send_multipart([b"s", control_payload("eos")])
        th.join(DEADLINE_S)
        assert not errors and [(o.agent, o.y) for o in got] == [("buoy7", 2.0)]
    finally:
        src.close()
        pub.close(0)
        ctx.term()


# --- MQTT ------------------------------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not (os.path.exists(MOSQUITTO) or shutil.which("mosquitto")):
        pytest.skip(f"mosquitto broker not installed ({MOSQUITTO} absent)")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed")
    exe = MOSQUITTO if os.path.exists(MOSQUITTO) else shutil.which("mosquitto")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert proc.poll() is None, "mosquitto exited at start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start listening"
                threading.Event().wait(0.02)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_mqtt_broker_delivers_in_order(broker: int) -> None:
    import paho.mqtt.client as mqtt

    rows = make_rows(40)
    schema = ColumnSchema(agent=None, time="t", inputs=("x",), target="y")
    src = open_source(
        f"mqtt://127.0.0.1:{broker}/swarm/#", schema=schema, idle_timeout_s=DEADLINE_S
    )
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker)
    pub.loop_start()
    try:
        got, th, errors = _consume(src)
        _handshake(lambda: pub.publish("swarm/ctl", control_payload("sync"), qos=1), src.synced)  # type: ignore[attr-defined]
        for i, r in enumerate(rows):
            body = {"t": r["t"], "x": [r["x1"], r["x2"]], "y": r["y"]}
            pub.publish(f"swarm/{r['station']}", json.dumps(body), qos=1)
            if i < len(BAD_PAYLOADS):
                pub.publish("swarm/S0", BAD_PAYLOADS[i], qos=1)
        info = pub.publish("swarm/ctl", control_payload("eos"), qos=1)
        info.wait_for_publish(DEADLINE_S)
        th.join(DEADLINE_S)
        assert not th.is_alive() and not errors
        assert got == expected(rows)
        assert dict(src.stats.rejected) == BAD_COUNTS
        assert src.dropped == 0  # type: ignore[attr-defined]
    finally:
        src.close()
        pub.disconnect()
        pub.loop_stop()
