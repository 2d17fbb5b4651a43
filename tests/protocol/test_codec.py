"""Wire format v1: round trips, sizes, and every validation rule."""

from __future__ import annotations

import struct
import time
import zlib

import msgpack
import numpy as np
import pytest

from swarmgp.fusion.summary import Summary
from swarmgp.protocol import errors as E
from swarmgp.protocol.codec import MAX_HEADER_BYTES, decode, encode, packed_len
from swarmgp.protocol.messages import (
    Fuse,
    Goodbye,
    Heartbeat,
    Hello,
    StatusReply,
    StatusRequest,
    TreeState,
)

H = "enc0123456789abc"
M = 5


def summary(m: int = M, seed: int = 0) -> Summary:
    r = np.random.default_rng(seed)
    B = r.standard_normal((m, 2))
    return Summary(np.eye(m) + B @ B.T, r.standard_normal(m), 7, 2, H)


TS = TreeState(1, 99, 12, 2, 4)


def fuse_msg(m: int = M) -> Fuse:
    return Fuse(3, 2**63 + 5, 17, 4, 9, TS, summary(m))


def frames_of(header: dict, arrays: list[bytes], major: int = 1) -> list[bytes]:
    """Hand-built frames with a correct checksum (to reach the checks after it)."""
    hdr = msgpack.packb(header, use_bin_type=True)
    crc = 0
    for b in [hdr, *arrays]:
        crc = zlib.crc32(b, crc)
    return [b"SWGP" + bytes([major]) + struct.pack("<I", crc), hdr, *arrays]


def fuse_header(**over) -> dict:
    h = {
        "k": "fuse",
        "s": 3,
        "i": 1,
        "q": 2,
        "e": H,
        "m": M,
        "to": 4,
        "v": 1,
        "t": [1, 1, 1, 1, 4],
        "c": [2, 7],
        "a": [["R", "<f8", [packed_len(M)]]],
    }
    h.update(over)
    return h


def packed(s: Summary | None = None) -> bytes:
    return (s or summary()).pack().astype("<f8").tobytes()


def test_roundtrip_every_kind() -> None:
    s = summary()
    X = np.arange(6.0).reshape(3, 2)
    msgs = [
        Hello(1, 2, 3, "tcp://127.0.0.1:5555"),
        Heartbeat(1, 2, 3, TS, 5, 100),
        Heartbeat(1, 2, 3, TS, 5, 100, ((4, 1, 9),), (4, 7)),
        fuse_msg(),
        Fuse(3, 2, 17, 4, 9, TS, summary(), 5, True),
        Goodbye(1, 2, 3),
        StatusRequest(2**62 + 1, 0, 1, 42, X, s),
        StatusReply(
            1,
            2,
            3,
            42,
            {"id": 1, "nested": {"a": [1, 2]}},
            s,
            s,
            {"mean_fused": np.ones(3), "var_fused": np.full(3, 2.0)},
        ),
    ]
    for msg in msgs:
        out = decode([bytes(f) for f in encode(msg, H, M)], M, H)
        assert type(out) is type(msg)
        for f in ("sender", "incarnation", "seq", "acks", "pending", "gen"):
            assert getattr(out, f, None) == getattr(msg, f, None), f
    f = decode(encode(fuse_msg(), H, M), M, H)
    assert isinstance(f, Fuse) and f.tree == TS and (f.to, f.version) == (4, 9)
    assert np.array_equal(f.summary.P, summary().P) and np.array_equal(f.summary.h, summary().h)
    assert (f.summary.n_obs, f.summary.n_agents, f.summary.encoding_hash) == (7, 2, H)
    rep = decode(encode(msgs[-1], H, M))  # a status client knows neither m nor the hash
    assert isinstance(rep, StatusReply) and rep.info["nested"] == {"a": [1, 2]}
    assert rep.fused is not None and rep.fused.m == M
    assert np.array_equal(rep.predictions["var_fused"], np.full(3, 2.0))
    req = decode(encode(msgs[-2], H, M), M, H)
    assert isinstance(req, StatusRequest) and np.array_equal(req.X, X)


def test_fusion_message_size_and_speed_at_m100() -> None:
    msg = fuse_msg(100)
    fr = encode(msg, H, 100)
    sizes = [memoryview(f).nbytes for f in fr]
    assert sizes[2] == 100 * 103 // 2 * 8 == 41_200
    assert sum(sizes) < 41_200 + 200
    t = time.perf_counter()
    for _ in range(50):
        decode(fr, 100, H)
    assert (time.perf_counter() - t) / 50 < 2e-3  # loose bound; the benchmark reports ~80 us


def test_arrays_are_zero_copy_on_encode() -> None:
    fr = encode(fuse_msg(), H, M)
    assert isinstance(fr[2], memoryview)


@pytest.mark.parametrize(
    ("frames", "err"),
    [
        ([b"SWGP\x01"], E.BadFrames),
        ([b"x"] * 20, E.BadFrames),
        ([b"GPSW\x01abcd", b"\x80"], E.BadSignature),
        ([b"SWGP\x01ab", b"\x80"], E.BadSignature),
        ([b"SWGP\x01\x00\x00\x00\x00", b"\x80"], E.BadChecksum),
    ],
)
def test_frame_level_rejections(frames, err) -> None:
    with pytest.raises(err):
        decode(frames, M, H)


def test_other_major_version_refused() -> None:
    fr = frames_of(fuse_header(), [packed()], major=2)
    with pytest.raises(E.VersionMismatch, match="v2"):
        decode(fr, M, H)


def test_header_too_large() -> None:
    fr = frames_of(
        {
            "k": "bye",
            "s": 1,
            "i": 1,
            "q": 1,
            "e": "",
            "m": 0,
            "a": [],
            "pad": "x" * MAX_HEADER_BYTES,
        },
        [],
    )
    with pytest.raises(E.BadFrames):
        decode(fr, M, H)


@pytest.mark.parametrize(
    "header",
    [
        [1, 2, 3],  # not a map
        {1: 2},  # int keys (strict_map_key)
        fuse_header(k="nope"),
        fuse_header(s=-1),
        fuse_header(s=True),  # bool is not an int
        fuse_header(q="1"),
        fuse_header(t=[1, 2, 3]),
        fuse_header(c=[0, 7]),  # a tree message covers its sender
        fuse_header(to=None),
        fuse_header(pd=2),  # a Fuse's pending notice is a flag
        fuse_header(pd="1"),
    ],
)
def test_header_schema_rejections(header) -> None:
    with pytest.raises(E.BadHeader):
        decode(frames_of(header, [packed()]), M, H)


def test_not_msgpack_and_ext_types() -> None:
    bad = frames_of(fuse_header(), [packed()])
    bad[1] = b"\xc1\xc1\xc1"
    crc = zlib.crc32(bad[2], zlib.crc32(bad[1]))
    bad[0] = b"SWGP\x01" + struct.pack("<I", crc)
    with pytest.raises(E.BadHeader):
        decode(bad, M, H)
    ext = msgpack.packb({"k": msgpack.ExtType(5, b"x")})
    crc = zlib.crc32(ext)
    with pytest.raises(E.BadHeader):
        decode([b"SWGP\x01" + struct.pack("<I", crc), ext], M, H)


@pytest.mark.parametrize(
    ("over", "arrays", "err"),
    [
        ({"a": [["R", "<f4", [packed_len(M)]]]}, None, E.BadArray),
        ({"a": [["R", "|O", [packed_len(M)]]]}, None, E.BadArray),
        ({"a": [["R", "<f8", [packed_len(M) + 1]]]}, None, E.BadArray),
        ({"a": [["R", "<f8", [1, 2, 3]]]}, None, E.BadArray),
        ({"a": []}, None, E.BadFrames),
        ({"a": [["X", "<f8", [packed_len(M)]]]}, None, E.BadFrames),
        ({"e": "another"}, None, E.EncodingMismatch),
        ({"m": M + 1}, None, E.EncodingMismatch),
        ({}, [packed()[:-8]], E.BadArray),
        ({}, [np.full(packed_len(M), np.nan).tobytes()], E.BadArray),
        ({}, [np.full(packed_len(M), np.inf).tobytes()], E.BadArray),
    ],
)
def test_array_rejections(over, arrays, err) -> None:
    with pytest.raises(err):
        decode(frames_of(fuse_header(**over), arrays or [packed()]), M, H)


def test_not_positive_definite_rejected() -> None:
    s = summary()
    bad = Summary(-s.P, s.h, 1, 1, H)  # negative definite
    with pytest.raises(E.BadSummary):
        decode(frames_of(fuse_header(), [packed(bad)]), M, H)
    sing = Summary(np.zeros((M, M)), s.h, 1, 1, H)
    with pytest.raises(E.BadSummary):
        decode(frames_of(fuse_header(), [packed(sing)]), M, H)


def test_every_reason_is_a_short_key() -> None:
    for cls in (
        E.BadSignature,
        E.VersionMismatch,
        E.BadChecksum,
        E.BadFrames,
        E.BadHeader,
        E.BadArray,
        E.BadSummary,
        E.EncodingMismatch,
    ):
        assert issubclass(cls, E.DecodeError) and cls.reason.isidentifier()
    assert issubclass(E.DecodeError, ValueError)  # SwarmGPError is a ValueError


def test_never_pickles() -> None:
    from pathlib import Path

    import swarmgp.protocol.codec as codec

    src = Path(codec.__file__).read_text()
    assert "import pickle" not in src and "loads(" not in src
