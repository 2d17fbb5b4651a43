"""ZeroMQ transport on loopback: delivery, identity, rejection counting, non-blocking sends."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import zmq

from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import encode
from swarmgp.protocol.messages import Fuse, Goodbye, Heartbeat, Hello, TreeState
from swarmgp.protocol.zmq_transport import ZmqTransport

pytestmark = [pytest.mark.zmq, pytest.mark.timeout(60)]

H, M = "h" * 16, 4
TS = TreeState(0, 1, 1, 0, -1)


def recv_until(t: ZmqTransport, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = t.recv(0.05)
        if msg is not None:
            return msg
    return None


@pytest.fixture
def pair():
    a, b = ZmqTransport(0, M, H), ZmqTransport(1, M, H)
    a.connect(1, b.endpoint)
    b.connect(0, a.endpoint)
    yield a, b
    a.close()
    b.close()


def raw_dealer(ctx: zmq.Context, rid: bytes, endpoint: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.ROUTING_ID, rid)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def test_roundtrip_and_counters(pair) -> None:
    a, b = pair
    s = Summary(2 * np.eye(M), np.arange(M, dtype=float), 3, 1, H)
    a.send(1, Fuse(0, 1, 1, 1, 1, TS, s))
    msg = recv_until(b)
    assert isinstance(msg, Fuse) and np.array_equal(msg.summary.P, s.P)
    assert a.stats["net.tx_msgs"] == 1 and a.stats["net.tx_bytes"] == b.stats["net.rx_bytes"] > 0
    b.send(0, Heartbeat(1, 1, 2, TS, 1, 3))
    assert isinstance(recv_until(a), Heartbeat)


def test_identity_spoofing_and_garbage_rejected(pair) -> None:
    a, b = pair
    ctx = zmq.Context()
    try:
        spoof = raw_dealer(ctx, b"7", b.endpoint)
        spoof.send_multipart(encode(Goodbye(0, 1, 1), H, M))  # claims to be agent 0
        spoof.send_multipart([b"garbage"])
        spoof.send_multipart([b"SWGP\x01xxxx", b"\x81", b"\x00" * 9])
        deadline = time.monotonic() + 5
        while sum(b.rejected.values()) < 3 and time.monotonic() < deadline:
            assert b.recv(0.05) is None
        assert b.rejected["identity"] == 1 and sum(b.rejected.values()) == 3
        spoof.close(0)
    finally:
        ctx.term()


def test_other_version_refused_with_log(pair, caplog) -> None:
    a, b = pair
    frames = [bytes(f) for f in encode(Goodbye(5, 1, 1), H, M)]
    frames[0] = b"SWGP\x02" + frames[0][5:]
    ctx = zmq.Context()
    try:
        s = raw_dealer(ctx, b"5", b.endpoint)
        with caplog.at_level(logging.WARNING, logger="swarmgp.transport"):
            s.send_multipart(frames)
            s.send_multipart(frames)
            deadline = time.monotonic() + 5
            while b.rejected["version"] < 2 and time.monotonic() < deadline:
                b.recv(0.05)
        assert b.rejected["version"] == 2
        assert sum("speaks swarmgp protocol v2" in r.getMessage() for r in caplog.records) == 1
        s.close(0)
    finally:
        ctx.term()


def test_sends_to_dead_peer_never_block_and_keep_latest() -> None:
    a = ZmqTransport(0, M, H, hwm=2)
    try:
        a.connect(9, "tcp://127.0.0.1:1")  # nobody listens there
        t = time.perf_counter()
        for k in range(200):
            a.send(9, Heartbeat(0, 1, k + 1, TS, 1, 0))
        assert time.perf_counter() - t < 1.0
        assert a.stats["net.deferred"] > 0
        assert a.flush() == 1  # one slot per (peer, kind): the newest heartbeat
        t = time.perf_counter()
    finally:
        a.close()
    assert time.perf_counter() - t < 0.5  # LINGER 0: closing does not wait for the dead peer


def test_hello_with_new_endpoint_reconnects(pair) -> None:
    a, b = pair
    c = ZmqTransport(1, M, H)  # agent 1 restarted on a new port
    try:
        c.connect(0, a.endpoint)
        # resend until it arrives: on a loaded machine the new connection may take a while
        got, deadline, seq = None, time.monotonic() + 10.0, 1
        while got is None and time.monotonic() < deadline:
            c.send(0, Hello(1, 2, seq, c.endpoint))
            c.flush()
            got, seq = a.recv(0.2), seq + 1
        assert isinstance(got, Hello)
        assert a.peers[1] == c.endpoint and a.stats["net.reconnects"] == 1
        a.send(1, Goodbye(0, 1, 5))
        assert isinstance(recv_until(c), Goodbye)
    finally:
        c.close()
