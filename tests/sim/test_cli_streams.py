"""The ``launch.py sim`` entry point, the report file and plot, and the data streams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SHARED_DATA

from launch import main
from swarmgp.agents.run_config import DataConfig
from swarmgp.agents.runtime.report import REQUIRED_KEYS, ReportError, check_report
from swarmgp.sim.streams import StreamError, make_streams


def test_cli_writes_report_and_plot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rep, png = tmp_path / "r.json", tmp_path / "p.png"
    rc = main(
        [
            "sim",
            "--mode",
            "paper",
            "--agents",
            "5",
            "--topology",
            "tree",
            "--inducing",
            "12",
            "--batches",
            "2",
            "--batch-size",
            "10",
            "--no-learn",
            "--loss",
            "0.1",
            "--seed",
            "3",
            "--quiet",
            "--baselines",
            "local,oracle,gpoe,rbcm,dpitc",
            "--test-points",
            "60",
            "--partition",
            "1:3:0,1",
            "--churn",
            "1.5:4:crash",
            "--churn",
            "2.5:4:restart",
            "--report",
            str(rep),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    r = json.loads(rep.read_text())
    assert set(REQUIRED_KEYS) <= set(r)
    check_report(r)
    assert r["agents"] == 5 and r["topology"] == "tree" and r["learn"] is False
    assert r["consistency_max_rel_err"] <= 1e-9
    assert png.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "pre-fusion" in out and "post-fusion" in out


def test_check_report_rejects_missing_keys() -> None:
    with pytest.raises(ReportError):
        check_report({"agents": 1})


def test_synthetic_streams_shapes_and_determinism() -> None:
    spec = DataConfig(batches=3, batch_size=7, dim=3, groups=2)
    a = make_streams(spec, agents=5, seed=0, test_points=40)
    b = make_streams(spec, agents=5, seed=0, test_points=40)
    assert a.n_agents == 5 and a.n_batches(4) == 3 and a.batches[4][2][0].shape == (7, 3)
    assert a.y_test_groups.shape == (2, 40) and list(a.group) == [0, 1, 0, 1, 0]
    assert np.array_equal(a.pooled()[1], b.pooled()[1])
    assert np.array_equal(a.y_test(0), a.y_test(2)) and not np.array_equal(a.y_test(0), a.y_test(1))
    X, y = a.pooled([1, 0, 0, 0, 2])
    assert X.shape == (21, 3)
    # targets are s * u(W x) + noise with u a unit-variance GP: sample variance near s^2 + sn^2
    big = make_streams(
        DataConfig(batches=50, batch_size=50, dim=2), agents=4, seed=1, test_points=500
    )
    assert 0.3 < big.pooled()[1].var() < 3.0


def test_table_stream_from_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    p = tmp_path / "t.csv"
    rows = ["station,lon,lat,t,val"]
    for i in range(600):
        rows.append(
            f"S{i % 4},{rng.normal():.4f},{rng.normal():.4f},{i},{rng.normal() * 3 + 10:.4f}"
        )
    p.write_text("\n".join(rows) + "\n")

    def table(**kw):  # type: ignore[no-untyped-def]
        base = dict(data=f"csv:{p}", agent_column="station", batches=5, batch_size=10)
        base.update(kw)
        return DataConfig(**base)

    s = make_streams(table(), agents=4, seed=0, test_points=100)
    assert s.n_agents == 4 and all(s.n_batches(a) == 5 for a in range(4))
    assert s.info["target"] == "val" and abs(s.y_mean - 10) < 1
    mu, var = s.to_units(np.zeros(3), np.ones(3))
    assert np.allclose(mu, s.y_mean) and np.allclose(var, s.y_std**2)
    r = make_streams(
        table(
            agent_column=None, inputs=("lon", "lat", "t"), target="val", batches=None, batch_size=20
        ),
        agents=3,
        seed=0,
        test_points=100,
    )
    assert r.n_agents == 3 and sum(r.n_batches(a) for a in range(3)) >= 20
    with pytest.raises(StreamError):
        make_streams(table(), agents=9, seed=0, test_points=100)
    with pytest.raises(StreamError):
        make_streams(table(target="nope"), agents=2, seed=0, test_points=500)
    with pytest.raises(StreamError):
        make_streams(
            table(data="csv:/nonexistent.csv", batches=1, batch_size=1),
            agents=2,
            seed=0,
            test_points=500,
        )
    with pytest.raises(StreamError):
        make_streams(
            table(data="parquet:x", batches=1, batch_size=1), agents=2, seed=0, test_points=500
        )


@pytest.mark.skipif(
    not (SHARED_DATA / "midwest_ozone.csv").exists(),
    reason="shared data folder ../shared/data absent",
)
def test_real_ozone_stream_runs_exactly() -> None:
    from swarmgp.agents.run_config import RunConfig
    from swarmgp.sim.swarm import run_simulation

    s = RunConfig.make(
        "sim",
        agents=10,
        topology="geometric",
        data=f"csv:{SHARED_DATA / 'midwest_ozone.csv'}",
        agent_column="station",
        inducing=20,
        batches=3,
        batch_size=10,
        learn=False,
        test_points=200,
        baselines=("local", "oracle"),
    )
    r = run_simulation(s)
    assert r["data"]["target"] == "ozone_ppb"
    assert r["consistency_max_rel_err"] <= 1e-9
    assert 5 < r["rmse_fused"] < 40 and math.isfinite(r["nlpd_fused"])  # ppb
