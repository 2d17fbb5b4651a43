"""protocol.sizes.encoded_size equals the codec's encoded length for every kind and m (issue 12)."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import encode
from swarmgp.protocol.messages import (
    Fuse,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Reduce,
    StatusReply,
    StatusRequest,
    TreeState,
)
from swarmgp.protocol.sizes import encoded_size

HASHES = ("", "enc0123456789abc", "x" * 40)
# values around msgpack's integer width thresholds (fixint, uint8, uint16, uint32, uint64)
INTS = (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1)


def summary(m: int, seed: int = 0, n_obs: int = 7, n_agents: int = 2) -> Summary:
    r = np.random.default_rng(seed)
    B = r.standard_normal((m, 2))
    return Summary(np.eye(m) + B @ B.T, r.standard_normal(m), n_obs, n_agents, "h" * 16)


def messages(m: int, big: int) -> list[object]:
    """One or more messages of every kind, with integer fields of magnitude ``big``."""
    ts = TreeState(big, big, big, min(big, 2**31), -1 if big % 2 else big)
    s = summary(m, n_obs=big, n_agents=max(1, big))
    X = np.arange(6.0 * m).reshape(3 * m, 2)
    return [
        Hello(big, big, big, ""),
        Hello(1, 2, 3, "tcp://127.0.0.1:5555" + "9" * (big % 300)),
        Heartbeat(big, 2, 3, ts, big, big),
        Fuse(3, big, big, big, big, ts, s),
        Goodbye(big, big, big),
        StatusRequest(1, 2, 3, big),
        StatusRequest(1, 2, 3, big, X=X, summary=s),
        StatusReply(1, 2, 3, big),
        StatusReply(
            1,
            2,
            big,
            4,
            info={"n": big, "tree": [1, 2, 3], "name": "agent" * 9, "x": 1.5, "ok": True},
            fused=s,
            local=summary(m, 1),
            predictions={"mean_fused": np.ones(m), "var_fused": np.ones(m), "a": np.ones(1)},
        ),
        Reduce(1, big, 3, big, big, min(big, 7), big, big % 4, 5, np.arange(float(m + 1))),
        Heartbeat(1, 2, 3, ts, 4, 5, ((big % 2**31, big, big % 2**31),), (big % 2**31, 7)),
        Fuse(3, big, big, big, big, ts, s, big, True),
    ]


def codec_len(msg: object, h: str, m: int) -> int:
    frames = encode(msg, h, m)  # type: ignore[arg-type]
    return sum(f.nbytes if isinstance(f, memoryview) else len(f) for f in frames)


@pytest.mark.parametrize("m", [1, 2, 5, 31, 50, 100])
def test_encoded_size_equals_the_codec_for_every_kind(m: int) -> None:
    for big in INTS:
        for msg in messages(m, big):
            for h in HASHES:
                assert encoded_size(msg, h, m) == codec_len(msg, h, m), (type(msg), big, h)


def test_every_message_kind_is_covered() -> None:
    """A new kind in protocol.messages must be sized (and added to ``messages`` above)."""
    kinds = set(typing.get_args(Message))
    assert kinds == {type(msg) for msg in messages(3, 1)}


def test_a_fuse_message_at_m100_is_the_packed_summary_plus_a_small_header() -> None:
    msg = messages(100, 5)[3]
    size = encoded_size(msg, "h" * 16, 100)
    assert 100 * 103 // 2 * 8 < size < 100 * 103 // 2 * 8 + 200


def test_not_a_message() -> None:
    with pytest.raises(TypeError):
        encoded_size(object())
