"""``--plot`` in sim, local and agent, and the lon/lat map of the collective model (issue 11)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from swarmgp.agents.runtime.mapplot import lonlat_index

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.timeout(120)

LAUNCH = Path(__file__).resolve().parents[2] / "launch.py"
STATIONS = {"A": (-9.5, 52.0), "B": (-7.0, 52.5), "C": (-8.0, 54.0), "D": (-6.5, 53.5)}


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    rng = random.Random(3)
    lines = ["station,longitude,latitude,t,wind"]
    for i in range(600):
        s = "ABCD"[i % 4]
        lon, lat = STATIONS[s]
        t = i // 4
        y = 10 + 3 * math.sin(lon) + 2 * math.cos(lat) + math.sin(t / 20) + rng.gauss(0, 0.3)
        lines.append(f"{s},{lon},{lat},{t},{y}")
    path = tmp_path / "w.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _check(report: Path, plot: Path) -> None:
    r = json.loads(report.read_text())
    m = r["map"]
    assert m["lon_name"] == "longitude" and m["lat_name"] == "latitude" and m["target"] == "wind"
    assert sorted(m["stations"]["names"]) == sorted(STATIONS)
    mean, std = np.asarray(m["mean"]), np.asarray(m["std"])
    assert mean.shape == std.shape == (len(m["lat"]), len(m["lon"]))
    assert np.isfinite(mean).all() and (std > 0).all()
    assert 5.0 < float(np.median(mean)) < 16.0  # target units, not standardized
    assert plot.stat().st_size > 0
    assert Path(str(plot)[: -len(".png")] + "-map.png").stat().st_size > 0


def test_lonlat_names() -> None:
    assert lonlat_index(("lon", "lat", "t")) == (0, 1)
    assert lonlat_index(("t", "Latitude", "LONGITUDE")) == (2, 1)
    assert lonlat_index(("x", "lat")) is None


def test_sim_plot_draws_the_map(csv: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(LAUNCH), "sim", "--data", f"csv:{csv}", "--agent-column",
        "station", "--inducing", "20", "--batch-size", "20", "--quiet",
        "--report", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-1500:]
    _check(tmp_path / "s.json", tmp_path / "s.png")


def test_local_plot_draws_the_map(csv: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(LAUNCH), "local", "--data", f"csv:{csv}", "--agent-column",
        "station", "--inducing", "20", "--batch-size", "20", "--timeout", "60",
        "--report", str(tmp_path / "l.json"), "--plot", str(tmp_path / "l.png"),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-1500:]
    _check(tmp_path / "l.json", tmp_path / "l.png")


def test_agent_plot_draws_the_map(csv: Path, tmp_path: Path) -> None:
    rdv = tmp_path / "rdv"
    rdv.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(LAUNCH),
                "agent",
                "--id",
                str(i),
                "--world",
                "4",
                "--rendezvous",
                str(rdv),
                "--data",
                f"csv:{csv}",
                "--agent-column",
                "station",
                "--inducing",
                "20",
                "--batch-size",
                "20",
                "--report",
                str(tmp_path / "a{id}.json"),
                "--plot",
                str(tmp_path / "a{id}.png"),
            ],  # fmt: skip
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        errs = [p.communicate(timeout=100)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 4, [e[-600:] for e in errs]
    _check(tmp_path / "a0.json", tmp_path / "a0.png")
