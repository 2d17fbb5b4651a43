"""File sources deliver exactly the file's observations, in order; bad rows are counted."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from sources_helpers import JSON_SCHEMA, SCHEMA, expected, json_line, write_csv, write_jsonl

from swarmgp.agents.sources import (
    BadRowError,
    ColumnSchema,
    CsvSource,
    JsonlSource,
    Observation,
    Pacer,
    SourceConfigError,
    SourceOpenError,
    open_source,
    parse_speed,
)

pytestmark = pytest.mark.timeout(30)


def test_csv_same_observations_same_order(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows)
    src = open_source(f"csv:{path}", schema=SCHEMA)
    got = list(src)
    assert got == expected(rows)
    assert all(o.x.dtype == np.float64 and not o.x.flags.writeable for o in got)
    assert src.stats.accepted == len(rows) and src.stats.n_rejected == 0


def test_csv_schema_from_uri_query(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows)
    src = open_source(f"csv:{path}?agent=station&time=t&inputs=x1,x2&target=y")
    assert list(src) == expected(rows)


def test_jsonl_file_same_observations(tmp_path: Path, rows: list[dict]) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    assert list(open_source(f"jsonl:{path}")) == expected(rows)


def test_jsonl_stdin_stringio(rows: list[dict]) -> None:
    text = "".join(json_line(r) + "\n" for r in rows)
    src = open_source("jsonl:-", stream=io.StringIO(text))
    assert list(src) == expected(rows)


def test_jsonl_stdin_real_pipe(rows: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    r_fd, w_fd = os.pipe()
    reader = os.fdopen(r_fd, "r")
    writer = os.fdopen(w_fd, "w")

    def produce() -> None:
        with writer:
            for r in rows:
                writer.write(json_line(r) + "\n")
                writer.flush()

    th = threading.Thread(target=produce, daemon=True)
    monkeypatch.setattr("sys.stdin", reader)
    th.start()
    try:
        got = list(JsonlSource("-"))
    finally:
        th.join(10)
        reader.close()
    assert got == expected(rows)


def test_parquet_same_observations(tmp_path: Path, rows: list[dict]) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow not installed: parquet source untested")
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=7)
    src = open_source(f"parquet:{path}", schema=SCHEMA, batch_size=5)
    assert list(src) == expected(rows)


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(SourceConfigError, match="pyarrow"):
            open_source(f"parquet:{tmp_path / 'x.parquet'}", schema=SCHEMA)
    else:
        pytest.skip("pyarrow is installed")


# --- bad rows ------------------------------------------------------------------------

BAD_CSV = """station,t,x1,x2,y
S0,0,1.0,2.0,3.0
S1,1,1.0,2.0
S1,2,abc,2.0,3.0
S2,3,1.0,nan,3.0
S0,4,1.0,2.0,inf
S0,5,,2.0,3.0
,6,1.0,2.0,3.0
S2,7,1.5,2.5,3.5
"""


def test_csv_bad_rows_counted_and_good_rows_arrive(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    src = CsvSource(path, SCHEMA)
    got = list(src)
    assert [(o.agent, o.t) for o in got] == [("S0", 0.0), ("S2", 7.0)]
    assert dict(src.stats.rejected) == {
        "field_count": 1,
        "non_numeric": 1,
        "non_finite": 2,
        "missing_value": 2,
    }
    assert any("line 4" in m and "'x1'" in m and str(path) in m for m in src.stats.samples)


def test_csv_on_bad_raise(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(BadRowError, match="line 3") as info:
        list(CsvSource(path, SCHEMA, on_bad="raise"))
    assert info.value.reason == "field_count"


def test_jsonl_bad_rows_each_kind(tmp_path: Path) -> None:
    good = [
        {"agent": "a", "t": 0, "x": [1.0, 2.0], "y": 1.0},
        {"agent": "b", "t": 9, "x": [3.0, 4.0], "y": 2.0},
    ]
    import json

    lines = [
        json.dumps(good[0]),
        "{not json",
        json.dumps([1, 2, 3]),
        json.dumps({"agent": "a", "t": 1, "x": [1.0, 2.0]}),
        json.dumps({"agent": "a", "t": 2, "x": [1.0, "z"], "y": 1}),
        json.dumps({"agent": "a", "t": 3, "x": [1.0, 2.0], "y": True}),
        '{"agent": "a", "t": 4, "x": [1.0, NaN], "y": 1}',
        '{"agent": "a", "t": 5, "x": [1.0, 2.0], "y": Infinity}',
        json.dumps({"agent": "a", "t": 6, "x": [1.0, 2.0, 3.0], "y": 1}),
        json.dumps({"agent": "a", "t": 7, "x": [], "y": 1}),
        json.dumps({"agent": None, "t": 8, "x": [1.0, 2.0], "y": 1}),
        "",
        json.dumps(good[1]),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    src = open_source(f"jsonl:{path}", schema=JSON_SCHEMA)
    got = list(src)
    assert [o.to_dict() for o in got] == [
        {"agent": "a", "t": 0.0, "x": [1.0, 2.0], "y": 1.0},
        {"agent": "b", "t": 9.0, "x": [3.0, 4.0], "y": 2.0},
    ]
    assert dict(src.stats.rejected) == {
        "malformed": 2,
        "missing_column": 1,
        "non_numeric": 2,
        "non_finite": 2,
        "wrong_dimension": 1,
        "missing_value": 2,
    }
    assert src.stats.accepted == 2


def test_declared_dimension_rejects_first_row(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"agent":"a","t":0,"x":[1],"y":1}\n{"agent":"a","t":1,"x":[1,2],"y":1}\n')
    schema = ColumnSchema(agent="agent", time="t", inputs=("x",), target="y", d=2)
    src = JsonlSource(path, schema)
    assert [o.t for o in src] == [1.0]
    assert dict(src.stats.rejected) == {"wrong_dimension": 1}


# --- wholly malformed sources fail fast ---------------------------------------------------


def test_missing_file_fails_fast(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceOpenError, match="nope.csv"):
        open_source(f"csv:{missing}", schema=SCHEMA)
    with pytest.raises(SourceOpenError, match="nope.jsonl"):
        open_source(f"jsonl:{tmp_path / 'nope.jsonl'}")


def test_header_missing_declared_column_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("station,t,x1,yy\nS0,0,1,2\n")
    with pytest.raises(SourceOpenError) as info:
        CsvSource(path, SCHEMA)
    err = info.value
    assert err.line == 1 and err.column == "x2" and str(path) in str(err)
    assert "line 1" in str(err) and "'x2'" in str(err)


def test_empty_csv_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("")
    with pytest.raises(SourceOpenError, match="no header"):
        CsvSource(path, SCHEMA)


@pytest.mark.parametrize(
    "uri", ["nope:x", "csv", "csv:", "zmq+sub:x", "mqtt://", "synthetic:foo=1"]
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(SourceConfigError):
        open_source(uri, schema=SCHEMA)


def test_errors_are_swarmgp_errors() -> None:
    from swarmgp.fusion.errors import SwarmGPError

    assert issubclass(SourceOpenError, SwarmGPError) and issubclass(BadRowError, SwarmGPError)


# --- pacing with an injected clock --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_replay_speed_uses_injected_clock(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows[:9])  # t = 0, 0.25, ..., 2.0 days
    fc = FakeClock()
    src = open_source(
        f"csv:{path}",
        schema=SCHEMA,
        speed="86400x",
        time_unit_s=86400,
        clock=fc.clock,
        sleep=fc.sleep,
    )
    got = list(src)
    assert len(got) == 9
    assert fc.sleeps == pytest.approx([0.25] * 8)
    assert fc.now == pytest.approx(102.0)


def test_replay_max_never_sleeps(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows)
    fc = FakeClock()
    list(open_source(f"csv:{path}", schema=SCHEMA, speed="max", clock=fc.clock, sleep=fc.sleep))
    assert fc.sleeps == []


def test_pacer_does_not_sleep_when_behind() -> None:
    fc = FakeClock()
    p = Pacer(2.0, clock=fc.clock, sleep=fc.sleep)
    p.wait(0.0)
    fc.now += 10.0  # the consumer was slow
    p.wait(4.0)  # due at +2 s: already late
    assert fc.sleeps == []
    p.wait(30.0)  # due at +15 s, now +10 s
    assert fc.sleeps == pytest.approx([5.0])


@pytest.mark.parametrize(
    "s,v", [(None, None), ("max", None), ("10x", 10.0), (2, 2.0), ("0.5", 0.5)]
)
def test_parse_speed(s: object, v: float | None) -> None:
    assert parse_speed(s) == v  # type: ignore[arg-type]


@pytest.mark.parametrize("s", ["fast", "0x", -1, "-2x"])
def test_parse_speed_rejects(s: object) -> None:
    with pytest.raises(SourceConfigError):
        parse_speed(s)  # type: ignore[arg-type]


def test_observation_equality_and_dict() -> None:
    a = Observation("s", 1.0, np.array([1.0, 2.0]), 3.0)
    assert a == Observation("s", 1.0, np.array([1.0, 2.0]), 3.0)
    assert a != Observation("s", 1.0, np.array([1.0, 2.5]), 3.0)
    assert a.to_dict() == {"agent": "s", "t": 1.0, "x": [1.0, 2.0], "y": 3.0} and a.d == 2


def test_optional_backends_are_imported_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, swarmgp.agents\n"
        "before = set(sys.modules)\n"
        "import swarmgp.agents.sources as s\n"
        "s.open_source('synthetic:n=3')\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new & {'zmq', 'paho', 'pyarrow'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
