"""Hypothesis fuzzing: random and mutated frames are rejected, counted, and change nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import decode, encode
from swarmgp.protocol.errors import DecodeError
from swarmgp.protocol.messages import Fuse, Heartbeat, Hello, StatusRequest, TreeState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agents"))
from _swarm import HASH, Swarm, ring  # noqa: E402

M = 6
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def valid_frames() -> list[list[bytes]]:
    r = np.random.default_rng(0)
    B = r.standard_normal((M, 2))
    s = Summary(np.eye(M) + B @ B.T, r.standard_normal(M), 3, 1, HASH)
    ts = TreeState(0, 1, 5, 1, 0)
    msgs = [
        Fuse(1, 1, 10**6, 2, 10**6, ts, s),
        Heartbeat(1, 1, 10**6, ts, 2, 5),
        Hello(1, 1, 10**6, "tcp://x:1"),
        StatusRequest(2**62, 0, 1, 1, np.ones((2, 2)), s),
    ]
    return [[bytes(f) for f in encode(m, HASH, M)] for m in msgs]


VALID = valid_frames()


@st.composite
def mutated(draw) -> list[bytes]:
    frames = [bytearray(f) for f in draw(st.sampled_from(VALID))]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "drop", "dup", "swap"]))
        i = draw(st.integers(0, len(frames) - 1))
        f = frames[i]
        if op in ("flip", "set") and f:
            j = draw(st.integers(0, len(f) - 1))
            f[j] = (
                (f[j] ^ (1 << draw(st.integers(0, 7))))
                if op == "flip"
                else draw(st.integers(0, 255))
            )
        elif op == "truncate" and f:
            del f[draw(st.integers(0, len(f) - 1)) :]
        elif op == "extend":
            f.extend(draw(st.binary(min_size=1, max_size=16)))
        elif op == "drop" and len(frames) > 1:
            frames.pop(i)
        elif op == "dup":
            frames.insert(i, bytearray(f))
        elif op == "swap" and len(frames) > 1:
            k = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[k] = frames[k], frames[i]
    out = [bytes(f) for f in frames]
    assume(out not in VALID)
    return out


random_frames = st.lists(st.binary(max_size=256), min_size=0, max_size=16)


@SETTINGS
@given(random_frames)
def test_random_frames_rejected(frames) -> None:
    with pytest.raises(DecodeError):
        decode(frames, M, HASH)


@SETTINGS
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_frames_behind_a_valid_signature_rejected(tail) -> None:
    with pytest.raises(DecodeError):
        decode([b"SWGP\x01\x00\x00\x00\x00", *tail], M, HASH)


@SETTINGS
@given(mutated())
def test_mutated_frames_rejected(frames) -> None:
    with pytest.raises(DecodeError):
        decode(frames, M, HASH)


@pytest.fixture(scope="module")
def converged() -> Swarm:
    sw = Swarm(5, ring(5), m=M, seed=21)
    sw.run_until_consistent(5.0)
    for _ in range(100):  # let the last in-flight messages land: steady state is quiet
        sw.step()
    return sw


def snapshot(sw: Swarm) -> list[tuple[bytes, int, int]]:
    return [
        (a.fused_summary.pack().tobytes(), a.fused_summary.n_agents, a.fused_summary.n_obs)
        for a in sw.agents.values()
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.one_of(mutated(), random_frames), min_size=1, max_size=8), st.integers(0, 4))
def test_agents_drop_and_count_bad_frames(converged: Swarm, batch, target) -> None:
    sw = converged
    before = snapshot(sw)
    exact = sw.exact()
    rejected = sum(sw.transports[target].rejected.values())
    counted = sum(v for k, v in sw.agents[target].counters.items() if k.startswith("rejected."))
    for frames in batch:
        sw.net.inject(target, frames)
    sw.step()
    assert sum(sw.transports[target].rejected.values()) == rejected + len(batch)
    assert sum(
        v for k, v in sw.agents[target].counters.items() if k.startswith("rejected.")
    ) == counted + len(batch)
    assert snapshot(sw) == before  # state untouched
    assert sw.max_err() <= 1e-9 and sw.exact().max_rel_diff(exact) == 0.0
