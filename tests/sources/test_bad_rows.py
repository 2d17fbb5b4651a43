"""Bad rows are rejected and counted by reason alike in ``sim`` and ``agent``; good rows arrive.

The simulator (:func:`swarmgp.sim.streams.make_streams`) and an agent process
(:func:`~swarmgp.agents.sources.agent_feed.agent_batches`, a :class:`DataFeed`) read the same
file through the same parsers: the same rows are accepted, the same rows rejected for the same
reasons, and the batches are equal. A value that would overflow the statistics (1e308) never
makes the standardization inf or nan.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from swarmgp.agents.run_config import DataConfig
from swarmgp.agents.sources import ColumnSchema, open_source
from swarmgp.agents.sources.agent_feed import NOT_READY, agent_batches, declare_data
from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.agents.sources.jsonl_source import JsonlSource
from swarmgp.agents.sources.schema import MAX_JSON_DEPTH, MAX_LINE, RowParser, loads_row
from swarmgp.agents.sources.transforms import FeatureConfig, fit_config
from swarmgp.sim.streams import make_streams

BAD_ROWS = {  # inserted line -> reason
    "S0,1.5,0.1,0.2,1e308": "overflow",
    "S1,2.5,0.1,0.2,0.5,99": "field_count",
    "S0,3.5,0.1,0.2": "field_count",
    "S1,4.5,abc,0.2,0.5": "non_numeric",
    "S0,5.5,0.1,nan,0.5": "non_finite",
    "S1,6.5,0.1,0.2,-inf": "non_finite",
    "S0,7.5,1e-400,0.2,1e150": "overflow",
}
WANT = {"overflow": 2, "field_count": 2, "non_numeric": 1, "non_finite": 2}


def _csv(tmp_path: Path, bad: bool) -> Path:
    rng = np.random.default_rng(0)
    lines = ["station,t,x1,x2,y"]
    for i in range(120):
        x = rng.normal(size=2)
        lines.append(f"S{i % 2},{i},{x[0]:.5f},{x[1]:.5f},{np.sin(x[0]) + 0.1 * x[1]:.5f}")
    if bad:
        for k, row in enumerate(BAD_ROWS):
            lines.insert(5 + 11 * k, row)
    p = tmp_path / ("bad.csv" if bad else "good.csv")
    p.write_text("\n".join(lines) + "\n")
    return p


def _data(path: Path) -> DataConfig:
    return DataConfig(
        data=f"csv:{path}",
        agent_column="station",
        inputs=("x1", "x2"),
        target="y",
        batch_size=8,
        holdout_every=6,
    )


def _drain(feed, deadline_s: float = 20.0) -> list[tuple[np.ndarray, np.ndarray]]:
    out, end = [], time.monotonic() + deadline_s
    for b in feed:
        if b is NOT_READY:
            assert time.monotonic() < end, "feed never finished"
            time.sleep(0.001)
            continue
        out.append(b)
    return out


def test_bad_rows_same_in_sim_and_agent_and_good_rows_all_arrive(tmp_path: Path) -> None:
    good, bad = _data(_csv(tmp_path, False)), _data(_csv(tmp_path, True))
    s_good = make_streams(good, agents=None, seed=0, test_points=50)
    s_bad = make_streams(bad, agents=None, seed=0, test_points=50)
    # the simulator keeps the file and counts each bad row by reason
    assert s_bad.info["rejected"] == WANT and s_good.info["rejected"] == {}
    assert s_bad.info["rows"] == s_good.info["rows"] == 120
    # the good rows around the bad ones all arrive: same batches, same test set, finite
    assert np.isfinite([s_bad.y_mean, s_bad.y_std]).all()
    for a in range(s_good.n_agents):
        assert len(s_bad.batches[a]) == len(s_good.batches[a]) > 0
        for (Xg, yg), (Xb, yb) in zip(s_good.batches[a], s_bad.batches[a], strict=True):
            np.testing.assert_array_equal(Xg, Xb)
            np.testing.assert_array_equal(yg, yb)
    np.testing.assert_array_equal(s_good.X_test, s_bad.X_test)

    # an agent process: the same batches and the same counts, from its own read of the file
    manifest = declare_data(bad, None, 0)
    for a in range(manifest.n_agents):
        feed = agent_batches(manifest, bad, a, 0)
        got = _drain(feed)
        assert len(got) == len(s_bad.batches[a])
        for (X, y), (Xs, ys) in zip(got, s_bad.batches[a], strict=True):
            np.testing.assert_array_equal(X, Xs)
            np.testing.assert_array_equal(y, ys)
        stats = feed.stats["source"]
        assert stats["rejected"] == WANT and stats["accepted"] == 120


def test_the_same_reasons_from_a_file_source(tmp_path: Path) -> None:
    src = open_source(
        f"csv:{_csv(tmp_path, True)}",
        schema=ColumnSchema(agent="station", inputs=("x1", "x2"), target="y"),
    )
    assert len(list(src)) == 120
    assert dict(src.stats.rejected) == WANT


def test_jsonl_hostile_lines_are_counted_and_the_source_lives(tmp_path: Path) -> None:
    row = {"agent": "a", "t": 0, "x": [1.0, 2.0], "y": 1.0}
    lines = [
        json.dumps(row),
        "[" * 100_000,  # would be a RecursionError in json.loads
        '{"a": ' * 40 + "1" + "}" * 40,
        json.dumps({**row, "t": 1, "x": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}),  # in a string
        json.dumps({**row, "t": 2, "y": 1e308}),
        '{"agent": "a", "t": 3, "x": [1.0, 2.0], "y": ' + "9" * 400 + "}",
        "1" * 5000,  # Python refuses to convert so many digits (a ValueError)
        "x" * (MAX_LINE + 10),
        json.dumps({**row, "t": 9}),
    ]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    src = JsonlSource(path)
    got = list(src)
    assert time.perf_counter() - t0 < 5.0
    assert [o.t for o in got] == [0.0, 9.0]
    assert dict(src.stats.rejected) == {
        "too_deep": 2,
        "non_numeric": 1,
        "overflow": 2,
        "malformed": 1,
        "oversized": 1,
    }


def test_jsonl_stream_with_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    good = json.dumps({"agent": "a", "t": 0, "x": [1.0], "y": 1.0}).encode()
    path.write_bytes(good + b'\n{"agent": "\xff", "t": 1, "x": [1.0], "y": 1.0}\n' + good + b"\n")
    src = JsonlSource(path)
    assert len(list(src)) == 2 and dict(src.stats.rejected) == {"malformed": 1}
    src = JsonlSource("-", stream=io.StringIO("\n".join([good.decode()] * 3)))
    assert len(list(src)) == 3


def test_loads_row_depth_bound_is_exact() -> None:
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_row(ok, "o", 1) is not None
    with pytest.raises(ValueError, match="too_deep"):
        loads_row("[" + ok + "]", "o", 1)
    with pytest.raises(ValueError, match="malformed"):
        loads_row(b"\xff", "o", 1)


def test_parser_rejects_overflowing_values() -> None:
    p = RowParser(ColumnSchema(agent=None), "o")
    with pytest.raises(ValueError, match="overflow"):
        p.parse_mapping({"t": 0, "x": 1e200, "y": 1})
    with pytest.raises(ValueError, match="overflow"):
        p.parse_mapping({"t": 0, "x": 10**400, "y": 1})
    assert p.parse_mapping({"t": 0, "x": 1e99, "y": -1e99}).y == -1e99


def test_standardization_is_finite_or_refused() -> None:
    from swarmgp.agents.sources.record import Observation

    rows = [Observation("a", 0.0, np.array([v]), v) for v in (1e99, -1e99, 3e99)]
    cfg = fit_config(
        FeatureConfig(("x",), standardize=True, standardize_y=True, prefix=10), iter(rows)
    )
    assert cfg.std is not None and cfg.y_std is not None and cfg.y_mean is not None
    assert np.isfinite([*cfg.std, *cfg.mean, cfg.y_std, cfg.y_mean]).all()
    with pytest.raises(SourceConfigError, match="finite"):
        FeatureConfig(("x",), standardize_y=True, y_mean=0.0, y_std=float("inf"))
    with pytest.raises(SourceConfigError, match="finite"):
        FeatureConfig(("x",), standardize_y=True, y_mean=float("nan"), y_std=1.0)
