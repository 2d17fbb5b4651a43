"""Helpers of the source tests: a small table written as CSV / JSONL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from swarmgp.agents.sources import ColumnSchema, Observation

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
SCHEMA = ColumnSchema(agent="station", time="t", inputs=("x1", "x2"), target="y")
JSON_SCHEMA = ColumnSchema(agent="agent", time="t", inputs=("x",), target="y")


def make_rows(n: int = 60, seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "station": f"S{i % 3}",
                "t": float(i) * 0.25,
                "x1": float(rng.normal()),
                "x2": float(rng.normal()),
                "y": float(rng.normal()),
            }
        )
    return rows


def expected(rows: list[dict]) -> list[Observation]:
    return [Observation(r["station"], r["t"], np.array([r["x1"], r["x2"]]), r["y"]) for r in rows]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["station", "t", "x1", "x2", "y"])
        w.writeheader()
        for r in rows:
            w.writerow({k: repr(v) if isinstance(v, float) else v for k, v in r.items()})
    return path


def json_line(r: dict) -> str:
    return json.dumps({"agent": r["station"], "t": r["t"], "x": [r["x1"], r["x2"]], "y": r["y"]})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json_line(r) + "\n" for r in rows))
    return path
