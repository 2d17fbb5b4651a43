"""The heartbeat floor of ``launch.py local``: a large swarm's beacons stay a bounded share of
the machine's cores, unless ``--heartbeat`` is given (then it is used exactly)."""

from __future__ import annotations

from pathlib import Path

import pytest

import launch
from swarmgp.agents.factory import (
    HEARTBEAT_CPU_S,
    HEARTBEAT_CPU_SHARE,
    heartbeat_floor,
    local_heartbeat,
)
from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.runtime.local import LocalSwarm, plan_local, swarm_heartbeat
from swarmgp.agents.topology import neighbour_graph


def test_below_the_floor_the_default() -> None:
    assert heartbeat_floor(0, 2, 0.1) == 0.1
    assert heartbeat_floor(32, 2, 0.1, cost_s=1e-3, share=0.5) == 0.1  # 0.032 s < 0.1 s
    # exactly at the boundary the default still holds
    assert heartbeat_floor(100, 2, 0.1, cost_s=1e-3, share=0.5) == pytest.approx(0.1)


def test_above_the_floor_linear_in_links_inverse_in_cores() -> None:
    f = lambda links, cores: heartbeat_floor(links, cores, 0.1, cost_s=1e-3, share=0.5)  # noqa: E731
    assert f(400, 2) == pytest.approx(0.4)  # 400 links * 1 ms / (2 cores * 0.5)
    assert f(800, 2) == pytest.approx(2 * f(400, 2))
    assert f(1200, 2) == pytest.approx(3 * f(400, 2))
    assert f(800, 4) == pytest.approx(f(400, 2))
    assert f(800, 1) == pytest.approx(4 * f(800, 4))
    # the share is the beacons' CPU: links / period * cost = share * cores
    period = heartbeat_floor(562, 2, 0.1)
    assert 562 / period * HEARTBEAT_CPU_S == pytest.approx(HEARTBEAT_CPU_SHARE * 2)
    assert heartbeat_floor(10, 0, 0.1) == heartbeat_floor(10, 1, 0.1)  # no cores: one


def test_the_default_is_raised_only_when_not_given() -> None:
    cfg = RunConfig.make("local")
    assert "heartbeat" not in cfg.given and cfg.timing.heartbeat == 0.1
    assert local_heartbeat(cfg, 16, 2) == (0.1, "default")
    hb, why = local_heartbeat(cfg, 2000, 2)
    assert hb == pytest.approx(heartbeat_floor(2000, 2, 0.1)) and hb > 0.1
    assert why == "floor for 2000 links on 2 cores; --heartbeat to override"
    # given explicitly, even equal to the default: used exactly, however many links
    for value in (0.1, 0.05, 3.0):
        given = RunConfig.make("local", heartbeat=value)
        assert local_heartbeat(given, 2000, 2) == (value, "--heartbeat")
        assert local_heartbeat(given, 2000, 64) == (value, "--heartbeat")


def test_given_from_flags_and_files_survives_replace(tmp_path: Path) -> None:
    _, flags = launch.parse_config(["local", "--agents", "4"])
    assert flags.given == {"agents"}
    _, flags = launch.parse_config(["local", "--heartbeat", "0.1"])
    assert "heartbeat" in flags.given
    toml = tmp_path / "c.toml"
    toml.write_text("[timing]\nheartbeat = 0.1\n")
    _, from_file = launch.parse_config(["local", "--config", str(toml)])
    assert "heartbeat" in from_file.given
    later = RunConfig.make("local", agents=3).replace(loss=0.1)
    assert later.given == {"agents", "loss"}
    assert later == RunConfig.make("local", agents=3, loss=0.1)  # not part of equality


def test_the_local_plan_and_the_agents_use_the_floor(tmp_path: Path) -> None:
    adj = neighbour_graph("geometric", None, 64, 1)
    links = sum(len(v) for v in adj.values())
    cfg = RunConfig.make("local", agents=64, topology="geometric", seed=1, workdir=str(tmp_path))
    assert swarm_heartbeat(cfg, adj, cores=2) == local_heartbeat(cfg, links, 2)
    plan = plan_local(cfg)
    hb, why = swarm_heartbeat(cfg, plan.adjacency)
    assert (plan.heartbeat, plan.heartbeat_note) == (hb, why)
    # what launch.py local hands its agents: swarm.toml holds the period they all read
    swarm = LocalSwarm(cfg.replace(heartbeat=plan.heartbeat), plan.adjacency, tmp_path)
    _, agent_cfg = launch.parse_config(["agent", *swarm.command(5)[3:]])
    assert agent_cfg.timing.heartbeat == plan.heartbeat
