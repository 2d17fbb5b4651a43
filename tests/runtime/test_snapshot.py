"""Durable agents: the snapshot format, its loader under fuzzing, model state round trips, resume.

Every corrupt or foreign snapshot (truncated at any offset, flipped bytes, another version, a
re-signed file with a bad header, wrong shapes, another encoding, run or agent) must be refused
with :class:`SnapshotError` and nothing applied.
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import launch  # noqa: E402
from swarmgp.agents.factory import agent_seeds, build_agent, common_encoding  # noqa: E402
from swarmgp.agents.runtime.node import plan_node  # noqa: E402
from swarmgp.agents.runtime.snapshot import (  # noqa: E402
    FORMAT_VERSION,
    SNAPSHOT_FILE,
    Durable,
    SnapshotError,
    decode,
    encode,
)
from swarmgp.agents.sources.agent_feed import NOT_READY, agent_batches  # noqa: E402

BASE = ["--world", "2", "--inducing", "6", "--batches", "4", "--batch-size", "10", "--seed", "7"]
MODES = {
    "paper": ["--mode", "paper", "--no-learn"],
    "paper-learn": ["--mode", "paper", "--encoder", "importance", "--samples", "4"],
    "collective": ["--mode", "collective", "--no-learn", "--warmup-batches", "2"],
}


def setup(state_dir: Path, mode: str, agent_id: int = 0, *extra: str) -> tuple[Any, Any, Any]:
    argv = ["agent", "--id", str(agent_id), *BASE, *MODES[mode], "--state-dir", str(state_dir)]
    cfg = launch.parse_config([*argv, *extra])[1]
    plan = plan_node(cfg)
    enc = common_encoding(cfg, plan.manifest.d)
    agent = build_agent(
        cfg,
        plan.agent_id,
        plan.neighbors,
        enc,
        incarnation=1000 + agent_id,
        now=0.0,
        seeds=agent_seeds(cfg.seed, plan.agent_id, 0),
        max_dist=plan.max_dist,
    )
    return cfg, plan, agent


def learn(state_dir: Path, mode: str, n: int, agent_id: int = 0) -> tuple[Any, Durable]:
    """A fresh (or restored) agent that learns ``n`` more batches with snapshots."""
    cfg, plan, agent = setup(state_dir, mode, agent_id)
    d = Durable.open(cfg, plan)
    d.restore(agent, 0.0)
    feed = d.feed(agent_batches(plan.manifest, cfg.data, plan.agent_id, cfg.seed))
    for X, y in islice((b for b in feed if b is not NOT_READY), n):
        agent.observe(X, y, 0.0)
        d.after_batch(X, y)
    return agent, d


def finish_warmup(agent: Any) -> None:
    """Move a collective model to its stream phase as the all-reduce would (fallback state)."""
    ar = agent.model.allreduce
    state = ar.program.fallback_state()
    ar.program.adopt(state, 0.0)
    ar.final, ar.finished = state, True
    agent.set_local_summary(agent.model.summary(), 0.0)


# --------------------------------------------------------------------------- format


def test_encode_decode_round_trip() -> None:
    arrays = {"a": np.arange(6.0).reshape(2, 3), "s": np.array(2.5), "e": np.zeros((0, 4))}
    snap = decode(encode({"format": "swarmgp-agent-snapshot", "x": 1}, arrays))
    assert snap.header["x"] == 1 and "arrays" not in snap.header
    for k, v in arrays.items():
        assert snap.arrays[k].shape == v.shape and np.array_equal(snap.arrays[k], v)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_restore_continues_exactly(tmp_path: Path, mode: str) -> None:
    """2 batches, a 'crash', 2 more after restore == 4 batches in one life, bit for bit."""
    ref, _ = learn(tmp_path / "ref", mode, 4)
    a, d = learn(tmp_path / "crash", mode, 2)
    assert d.batches == 2 and d.rows == 20
    b, d2 = learn(tmp_path / "crash", mode, 10)  # resumes after batch 2; the source has 4
    assert d2.batches == 4 and d2.rows == 40
    assert b.counters["snapshot.restored"] == 1 and b.counters["observations"] == 40
    if mode == "collective":  # still warming up (no swarm here): end it on both alike
        assert b.model.n_obs == ref.model.n_obs == 40
        finish_warmup(ref)
        finish_warmup(b)
    assert b.local_summary.n_obs == ref.local_summary.n_obs == 40
    np.testing.assert_array_equal(b.local_summary.P, ref.local_summary.P)
    np.testing.assert_array_equal(b.local_summary.h, ref.local_summary.h)


def test_collective_stream_state_keeps_theta(tmp_path: Path) -> None:
    cfg, plan, agent = setup(tmp_path, "collective")
    d = Durable.open(cfg, plan)
    d.restore(agent, 0.0)
    feed = [b for b in agent_batches(plan.manifest, cfg.data, 0, cfg.seed) if b is not NOT_READY]
    for X, y in feed[:2]:
        agent.observe(X, y, 0.0)
    finish_warmup(agent)
    agent.observe(*feed[2], 0.0)
    d.batches = 3
    assert d.save()
    cfg2, plan2, agent2 = setup(tmp_path, "collective")
    d2 = Durable.open(cfg2, plan2)
    d2.restore(agent2, 0.0)
    m1, m2 = agent.model, agent2.model
    assert m2.phase == "stream" and m2.allreduce.finished
    assert m2.theta_hash == m1.theta_hash and m2.n_obs == 30
    np.testing.assert_array_equal(m2.allreduce.final, m1.allreduce.final)
    np.testing.assert_array_equal(agent2.local_summary.P, agent.local_summary.P)


def test_feed_skips_and_checks_the_source(tmp_path: Path) -> None:
    learn(tmp_path, "paper", 3)
    cfg, plan, _ = setup(tmp_path, "paper")
    d = Durable.open(cfg, plan)
    batches = [b for b in agent_batches(plan.manifest, cfg.data, 0, cfg.seed)]
    out = list(d.feed(iter([NOT_READY, *batches])))
    assert out[0] is NOT_READY and len(out) == 2
    np.testing.assert_array_equal(out[1][0], batches[3][0])
    d = Durable.open(cfg, plan)
    with pytest.raises(SnapshotError, match="differs"):
        list(d.feed(iter([batches[0], batches[1], batches[0]])))
    d = Durable.open(cfg, plan)
    with pytest.raises(SnapshotError, match="ended after 2"):
        list(d.feed(iter(batches[:2])))


# --------------------------------------------------------------------------- fuzz


def _resign(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def _reencode(data: bytes, edit_header: Any = None, edit_arrays: Any = None) -> bytes:
    snap = decode(data)
    header, arrays = dict(snap.header), dict(snap.arrays)
    if edit_header is not None:
        edit_header(header)
    if edit_arrays is not None:
        edit_arrays(arrays)
    return encode(header, arrays)


def _refused(tmp_path: Path, mode: str, data: bytes) -> str:
    """Install ``data`` as the snapshot; loading + restoring must raise SnapshotError."""
    (tmp_path / SNAPSHOT_FILE).write_bytes(data)
    cfg, plan, agent = setup(tmp_path, mode)
    before = agent.model.state()
    with pytest.raises(SnapshotError) as info:
        d = Durable.open(cfg, plan)
        d.restore(agent, 0.0)
    after = agent.model.state()  # nothing half-loaded
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert np.array_equal(v, after[k]) if isinstance(v, np.ndarray) else v == after[k]
    msg = str(info.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("mode", ["paper", "paper-learn", "collective"])
def test_fuzz_loader_refuses_every_corrupt_file(tmp_path: Path, mode: str) -> None:
    _, d = learn(tmp_path / "good", mode, 3)
    good = d.path.read_bytes()
    assert decode(good).header["source"]["batches"] == 3
    bad = tmp_path / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    n = len(good)
    # truncated at many offsets (every offset of the prefix and header, a sample beyond)
    cuts = set(range(0, min(n, 600))) | set(rng.integers(0, n, 300).tolist()) | {n - 1}
    for cut in sorted(cuts):
        with pytest.raises(SnapshotError):
            decode(good[:cut])
    # one byte flipped at a sample of positions (every position of the first 64 bytes)
    for pos in sorted(set(range(64)) | set(rng.integers(0, n, 400).tolist())):
        flipped = bytearray(good)
        flipped[pos] ^= int(rng.integers(1, 256))
        with pytest.raises(SnapshotError):
            decode(bytes(flipped))
    # appended garbage
    with pytest.raises(SnapshotError):
        decode(good + b"\0")
    # full loader on a few of them (nothing applied)
    assert "truncated" in _refused(bad, mode, good[:10])
    assert "checksum" in _refused(bad, mode, good[: n // 2])
    flipped = bytearray(good)
    flipped[n // 2] ^= 0x40
    assert "checksum" in _refused(bad, mode, bytes(flipped))
    # another version, correctly signed
    v2 = bytearray(good[:-32])
    struct.pack_into("<I", v2, 8, FORMAT_VERSION + 1)
    assert "version" in _refused(bad, mode, _resign(bytes(v2)))
    # signed, but a header that is not JSON / not an object / too deep
    hlen = struct.unpack_from("<I", good, 12)[0]
    for junk in (b"{" * hlen, b"[" * 20000, b"\xff" * hlen, b"nul"):
        body = good[:12] + struct.pack("<I", len(junk)) + junk + good[16 + hlen : -32]
        _refused(bad, mode, _resign(body))

    # signed, but the arrays do not fit the payload
    snap = decode(good)
    header = dict(
        snap.header, arrays=[{"name": k, "shape": list(v.shape)} for k, v in snap.arrays.items()]
    )
    header["arrays"][0]["shape"] = [10**9]
    text = json.dumps(header, sort_keys=True).encode()
    _refused(
        bad, mode, _resign(good[:12] + struct.pack("<I", len(text)) + text + good[16 + hlen : -32])
    )


@pytest.mark.parametrize("mode", ["paper", "paper-learn", "collective"])
def test_loader_refuses_foreign_or_ill_shaped_state(tmp_path: Path, mode: str) -> None:
    _, d = learn(tmp_path / "good", mode, 3)
    good = d.path.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()

    def setter(key: str, value: Any) -> Any:
        return lambda h: h.__setitem__(key, value)

    def model_set(key: str, value: Any) -> Any:
        return lambda h: h["model"].__setitem__(key, value)

    def run_set(key: str, value: Any) -> Any:
        return lambda h: h["run"].__setitem__(key, value)

    assert "agent" in _refused(bad, mode, _reencode(good, setter("agent_id", 1)))
    assert "encoding" in _refused(bad, mode, _reencode(good, setter("encoding", "0" * 16)))
    assert "another run" in _refused(bad, mode, _reencode(good, run_set("model.inducing", 7)))
    assert "another run" in _refused(bad, mode, _reencode(good, run_set("seed", 8)))
    assert "position" in _refused(
        bad, mode, _reencode(good, lambda h: h["source"].update(batches=-1))
    )
    _refused(bad, mode, _reencode(good, setter("format", "other")))
    _refused(bad, mode, _reencode(good, model_set("kind", "other")))
    _refused(bad, mode, _reencode(good, model_set("encoding", "f" * 16)))
    names = list(decode(good).arrays)
    assert names
    for name in names:  # every array: wrong shape, then non-finite
        _refused(
            bad,
            mode,
            _reencode(
                good, edit_arrays=lambda a, k=name: a.__setitem__(k, np.zeros(a[k].size + 1))
            ),
        )
        if decode(good).arrays[name].size:

            def nan(a: dict[str, Any], k: str = name) -> None:
                v = a[k].copy()
                v.flat[0] = np.nan
                a[k] = v

            _refused(bad, mode, _reencode(good, edit_arrays=nan))
        _refused(bad, mode, _reencode(good, edit_arrays=lambda a, k=name: a.pop(k)))
    if mode == "collective":  # a warm-up snapshot: a buffered batch of the wrong width
        _refused(
            bad,
            mode,
            _reencode(good, edit_arrays=lambda a: a.__setitem__("buffer.0.X", np.zeros((10, 5)))),
        )


def test_agent_process_refuses_a_corrupt_snapshot_in_one_line(tmp_path: Path) -> None:
    _, d = learn(tmp_path, "paper", 2)
    data = bytearray(d.path.read_bytes())
    data[len(data) // 3] ^= 1
    d.path.write_bytes(bytes(data))
    argv = ["agent", "--id", "0", *BASE, *MODES["paper"], "--state-dir", str(tmp_path)]
    r = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "checksum" in lines[0] and str(tmp_path) in lines[0], r.stderr


def test_state_dir_id_placeholder(tmp_path: Path) -> None:
    cfg, plan, _ = setup(tmp_path / "agent-{id}", "paper", agent_id=1)
    assert Durable.open(cfg, plan).path == tmp_path / "agent-1" / SNAPSHOT_FILE
