"""Newcomers joining a settled swarm (``--newcomers``, issue 9): the report's per-k table,
the warm start of the collective model, and newcomers' rows kept out of the swarm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarmgp.agents.collective_model import stats_from_summary
from swarmgp.agents.run_config import RunConfig
from swarmgp.fusion.collapsed import add_stats, batch_stats
from swarmgp.sim.newcomers import (
    KS,
    join_collective,
    newcomers_plot_path,
    plot_newcomers,
    split_newcomers,
)
from swarmgp.sim.streams import StreamError, make_streams
from swarmgp.sim.swarm import Swarm, run_simulation

SMALL = dict(
    agents=8,
    newcomers=2,
    inducing=20,
    batches=12,
    batch_size=10,
    test_points=100,
    series_agents=2,
    baselines=("local",),
    seed=0,
)


@pytest.fixture(scope="module")
def run() -> tuple[RunConfig, dict[str, Any], Swarm]:
    cfg = RunConfig.make("sim", **SMALL)
    keep: list[Swarm] = []
    return cfg, run_simulation(cfg, keep=keep), keep[0]


def test_report_has_the_per_k_table(run: tuple[RunConfig, dict[str, Any], Swarm]) -> None:
    _, r, _ = run
    nc = r["newcomers"]
    assert [row["k"] for row in nc["table"]] == list(KS) == nc["ks"]
    assert len(nc["agents"]) == 2 and r["agents"] == 6
    for row in nc["table"]:
        for key in ("rmse_collective", "rmse_local", "nlpd_collective", "nlpd_local"):
            assert np.isfinite(row[key])
    per = nc["per_newcomer"]
    assert len(per["rmse_local"]) == 2 and len(per["rmse_local"][0]) == len(KS)


def test_collective_beats_local_for_few_rows(run: tuple[RunConfig, dict[str, Any], Swarm]) -> None:
    _, r, _ = run
    for row in r["newcomers"]["table"]:
        if row["k"] in (0, 5):
            assert row["rmse_collective"] < row["rmse_local"]
            assert row["nlpd_collective"] < row["nlpd_local"]


def test_newcomer_rows_never_reach_the_swarm(run: tuple[RunConfig, dict[str, Any], Swarm]) -> None:
    cfg, r, sw = run
    data = make_streams(cfg.data, agents=8, seed=0, test_points=cfg.scoring.test_points)
    split = split_newcomers(data, 2, cfg.seed)
    assert list(split.newcomers) == r["newcomers"]["agents"]
    kept_rows = sum(y.shape[0] for a in split.kept for _, y in data.batches[a])
    assert r["n_obs"] == kept_rows == r["newcomers"]["swarm_n_obs"]
    # the fused statistics are exactly those of the kept agents' rows
    agent = sw.sim.agents[r["newcomers"]["peer"]]
    model = agent.model
    st = None
    for a in split.kept:
        for X, y in data.batches[a]:
            Xs, ys = model._standardize(X, y, model.std)
            b = batch_stats(Xs, ys, model.params)
            st = b if st is None else add_stats(st, b)
    fused = stats_from_summary(agent.fused_summary)
    assert st is not None
    assert np.allclose(fused.G, st.G, rtol=1e-9, atol=1e-9)
    assert np.allclose(fused.g, st.g, rtol=1e-9, atol=1e-9)


def test_joined_model_shares_theta_and_starts_empty(
    run: tuple[RunConfig, dict[str, Any], Swarm],
) -> None:
    _, r, sw = run
    peer = sw.sim.agents[r["newcomers"]["peer"]].model
    nm = join_collective(peer)
    assert nm.theta_hash == peer.theta_hash and nm.n_obs == 0 and nm.phase == "stream"
    nm.observe(np.zeros((3, peer.encoding.d)), np.zeros(3))
    assert nm.summary().n_obs == 3


def test_bad_newcomer_counts() -> None:
    cfg = RunConfig.make("sim", **SMALL)
    data = make_streams(cfg.data, agents=8, seed=0, test_points=50)
    with pytest.raises(StreamError, match="at least one must stay"):
        split_newcomers(data, 8, 0)
    short = make_streams(
        RunConfig.make("sim", **{**SMALL, "batches": 2}).data, agents=8, seed=0, test_points=50
    )
    with pytest.raises(StreamError, match="hold 50 rows"):
        split_newcomers(short, 2, 0)


def test_paper_mode_skips_with_a_note() -> None:
    cfg = RunConfig.make(
        "sim", **{**SMALL, "mode": "paper", "agents": 4, "newcomers": 1, "batches": 2}
    )
    r = run_simulation(cfg)
    assert "paper mode" in r["newcomers"]["skipped"] and r["agents"] == 4


def test_table_streams_hold_each_stations_own_test_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["station,lon,t,y"]
    for s in range(4):
        for t in range(80):
            lines.append(f"S{s},{s}.0,{t},{s * 10 + rng.standard_normal():.4f}")
    path = tmp_path / "st.csv"
    path.write_text("\n".join(lines) + "\n")
    cfg = RunConfig.make("sim", data=f"csv:{path}", agent_column="station", target="y")
    data = make_streams(cfg.data, agents=None, seed=0, test_points=1000)
    total = 0
    for a in range(4):
        held = data.held_rows(a)
        assert held is not None
        X, y = held
        total += X.shape[0]
        # one input value per station: every held row of agent a is agent a's station's
        lon_units = data.y_units(y)  # target = 10 * station + noise
        assert np.all(np.abs(lon_units - 10 * a) < 6)
        assert np.ptp(X[:, 0]) < 1e-9
    assert total == data.info["held_out_rows"]
    sub = data.select([1, 3])
    assert sub.n_agents == 2 and sub.held_rows(1) is data.held_rows(3)


def test_plot_newcomers(run: tuple[RunConfig, dict[str, Any], Swarm], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _, r, _ = run
    out = newcomers_plot_path(tmp_path / "run.png")
    assert out.endswith("run-newcomers.png")
    plot_newcomers(r, out)
    assert Path(out).stat().st_size > 1000
