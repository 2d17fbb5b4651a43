"""Secured ZeroMQ transports on loopback: keyrings, CURVE/ZAP admission, sender ids from the
authenticated key, bounded receive, socket caps."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import zmq

from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import encode
from swarmgp.protocol.errors import KeyringError
from swarmgp.protocol.keys import load_keyring, make_keyring
from swarmgp.protocol.messages import Fuse, Goodbye, Hello, StatusReply, StatusRequest, TreeState
from swarmgp.protocol.zmq_transport import StatusClient, ZmqTransport

pytestmark = [pytest.mark.zmq, pytest.mark.timeout(60)]

H, M = "h" * 16, 4
TS = TreeState(0, 1, 1, 0, -1)


def drain(t: ZmqTransport, seconds: float) -> list:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        m = t.recv(0.02)
        if m is not None:
            out.append(m)
    return out


@pytest.fixture
def ring(tmp_path):
    make_keyring(tmp_path, 4)
    ts = [ZmqTransport(i, M, H, keyring=load_keyring(tmp_path, i)) for i in range(4)]
    yield tmp_path, ts
    for t in ts:
        t.close()


def raw(ctx, rid: bytes, endpoint: str, pub=None, sec=None, server=None):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.ROUTING_ID, rid)
    s.setsockopt(zmq.LINGER, 0)
    if server is not None:
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, server
    s.connect(endpoint)
    return s


def test_keyring_files_and_validation(tmp_path) -> None:
    make_keyring(tmp_path, 2)
    assert os.stat(tmp_path / "agent-0.key_secret").st_mode & 0o077 == 0
    k = load_keyring(tmp_path, 1)
    assert k.agent_of(k.public) == 1 and k.n_members == 2 and len(k.operators) == 1
    with pytest.raises(KeyringError):
        make_keyring(tmp_path, 2)  # never overwrite
    os.chmod(tmp_path / "agent-0.key_secret", 0o644)
    with pytest.raises(KeyringError, match="chmod 600"):
        load_keyring(tmp_path, 0)
    (tmp_path / "agent-1.key").write_text((tmp_path / "operator.key").read_text())
    with pytest.raises(KeyringError):
        load_keyring(tmp_path, 1)
    with pytest.raises(KeyringError, match="missing"):
        load_keyring(tmp_path / "nope", 0)


def test_members_talk_non_members_cannot(ring) -> None:
    d, ts = ring
    ts[0].connect(1, ts[1].endpoint)
    ts[0].send(1, Hello(0, 5, 1, ts[0].endpoint))
    got = drain(ts[1], 1.0)
    assert any(isinstance(m, Hello) and m.sender == 0 for m in got)
    ctx = zmq.Context()
    try:
        pub, sec = zmq.curve_keypair()
        summary = Summary(2 * np.eye(M), np.ones(M), 10**9, 1000, H)
        frames = encode(Fuse(0, 5, 2, 1, 1, TS, summary), H, M)
        a = raw(ctx, b"0", ts[1].endpoint, pub, sec, load_keyring(d, 1).public)  # unlisted key
        b = raw(ctx, b"0", ts[1].endpoint)  # no CURVE at all
        for sock in (a, b):
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
            sock.send_multipart(encode(Goodbye(0, 5, 3), H, M), flags=zmq.NOBLOCK)
            sock.send_multipart(encode(StatusRequest(1 << 62, 0, 1, 1), "", 0), zmq.NOBLOCK)
        assert drain(ts[1], 1.0) == []
        assert ts[1]._zap is not None and ts[1]._zap.denied >= 1
        assert a.poll(200) == 0 and b.poll(200) == 0  # no status reply reaches them
        # a member (2) cannot speak as another member (0), even with the matching routing id
        k2 = load_keyring(d, 2)
        c = raw(ctx, b"0", ts[1].endpoint, k2.public, k2.secret, load_keyring(d, 1).public)
        c.send_multipart(encode(Goodbye(0, 5, 4), H, M))
        assert drain(ts[1], 1.0) == [] and ts[1].rejected["impersonation"] == 1
        for sock in (a, b, c):
            sock.close(0)
    finally:
        ctx.term()


def test_status_only_to_listed_keys(ring) -> None:
    d, ts = ring
    op = StatusClient({}, keyring=load_keyring(d, "operator"))
    anon = StatusClient({2: ts[2].endpoint})
    op.add(2, ts[2].endpoint)
    try:
        import threading

        def serve() -> None:
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                m = ts[2].recv(0.02)
                if isinstance(m, StatusRequest):
                    ts[2].send(m.sender, StatusReply(2, 1, 1, m.nonce, {"ok": 1}))

        th = threading.Thread(target=serve)
        th.start()
        assert op.query(timeout_s=1.0)[2].info == {"ok": 1}
        assert anon.query(timeout_s=0.5) == {}
        th.join()
    finally:
        op.close()
        anon.close()


def test_oversized_and_many_framed_messages_dropped_unbuffered() -> None:
    t = ZmqTransport(0, M, H, max_message_bytes=4096)
    ctx = zmq.Context()
    try:
        s = raw(ctx, b"1", t.endpoint)
        s.send_multipart([b"x" * 3000, b"y" * 3000])
        s.send_multipart([b"z"] * 40)
        s.send_multipart(encode(Hello(1, 1, 1), H, M))
        got = drain(t, 1.0)
        assert [type(m) for m in got] == [Hello]
        assert t.rejected["too_large"] == 1 and t.rejected["too_many_frames"] == 1
        s.close(0)
    finally:
        ctx.term()
        t.close()


def test_hello_flood_socket_cap_and_disconnect() -> None:
    t = ZmqTransport(0, M, H, max_sockets=8)
    ctx = zmq.Context()
    try:
        t.connect(1, "tcp://127.0.0.1:1")  # pinned (configured)
        socks = []
        for k in range(30):
            s = raw(ctx, str(100 + k).encode(), t.endpoint)
            s.send_multipart(encode(Hello(100 + k, 1, 1, f"tcp://127.0.0.1:{2000 + k}"), H, M))
            socks.append(s)
        drain(t, 1.5)
        for s in socks:
            s.close(0)
        assert len(t.peers) <= 8 and 1 in t.peers and t.stats["net.evicted"] > 0
        t.disconnect(1)
        assert 1 not in t.peers
        t.send(1, Goodbye(0, 1, 1))  # unroutable, counted, never raised
        assert t.stats["net.unroutable"] == 1
    finally:
        ctx.term()
        t.close()
