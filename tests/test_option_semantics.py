"""One meaning per option (issue 11): the same flags mean the same thing in ``sim``, ``local``
and ``agent`` (table-driven).

Each command's own code path decides the data: ``sim`` through
:func:`swarmgp.sim.streams.make_streams`, ``local`` through
:func:`swarmgp.agents.runtime.local.plan_local` and ``agent`` through
:func:`swarmgp.agents.runtime.node.plan_node`, then each agent's batches from
:func:`~swarmgp.agents.sources.agent_feed.agent_batches` (what the agent processes learn).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from swarmgp.agents.run_config import COMMANDS, ConfigError, RunConfig, settings_of
from swarmgp.agents.runtime.local import plan_local
from swarmgp.agents.runtime.node import plan_node
from swarmgp.agents.sources.agent_feed import NOT_READY, agent_batches
from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.sim.streams import StreamError, make_streams

STATIONS = ("A", "B", "C", "D", "E")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same rows as a CSV (target last) and as JSON Lines in the documented layout."""
    d = tmp_path_factory.mktemp("opts")
    rng = random.Random(7)
    rows = []
    for i in range(400):
        s = STATIONS[i % len(STATIONS)]
        lon, lat = rng.uniform(-10, -6), rng.uniform(51, 55)
        rows.append((s, lon, lat, i * 0.05, math.sin(lon) + math.cos(lat)))
    csv = d / "t.csv"
    csv.write_text(
        "station,lon,lat,t,wind\n" + "".join(f"{s},{a},{b},{t},{y}\n" for s, a, b, t, y in rows)
    )
    jsonl = d / "t.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"agent": s, "t": t, "x": [a, b, t], "y": y}) + "\n"
            for s, a, b, t, y in rows
        )
    )
    return {"csv": csv, "jsonl": jsonl}


def _feed_batches(manifest: Any, cfg: RunConfig, a: int) -> int:
    n = 0
    for b in agent_batches(manifest, cfg.data, a, cfg.seed):
        if b is not NOT_READY:
            n += 1
    return n


def _per_command(command: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Agents, target, inputs and batches per agent as ``command`` decides them."""
    if command == "agent":
        settings = {"id": 0, **settings}
    cfg = RunConfig.make(command, **settings)
    if command == "sim":
        st = make_streams(cfg.data, agents=cfg.swarm.agents, seed=cfg.seed, test_points=50)
        info = st.info
        return {
            "agents": len(st.batches),
            "target": info.get("target"),
            "inputs": info.get("inputs"),
            "batches": [len(b) for b in st.batches],
        }
    manifest = plan_local(cfg).manifest if command == "local" else plan_node(cfg).manifest
    schema = manifest.schema
    return {
        "agents": manifest.n_agents,
        "target": None if schema is None else schema.target,
        "inputs": None if schema is None else list(schema.inputs),
        "batches": [_feed_batches(manifest, cfg, a) for a in range(manifest.n_agents)],
    }


CASES = [
    # (name, data kind, settings, expected agents, expected batches per agent or None: all rows)
    ("agent column: one agent per station", "csv", {"agent_column": "station"}, 5, None),
    ("--batches counts per agent", "csv", {"agent_column": "station", "batches": 2}, 5, 2),
    ("--agents deals stations", "csv", {"agent_column": "station", "agents": 2}, 2, None),
    ("jsonl documented layout", "jsonl", {"agent_column": "agent"}, 5, None),
    ("synthetic default batches", "synthetic", {"agents": 3}, 3, 5),
    ("synthetic --batches", "synthetic", {"agents": 3, "batches": 2}, 3, 2),
]


@pytest.mark.parametrize(("name", "kind", "settings", "agents", "batches"), CASES)
def test_same_meaning_in_every_command(
    table: dict[str, Path],
    tmp_path: Path,
    name: str,
    kind: str,
    settings: dict[str, Any],
    agents: int,
    batches: int | None,
) -> None:
    common = {"batch_size": 10, "workdir": str(tmp_path), **settings}
    if kind != "synthetic":
        common["data"] = f"{kind}:{table[kind]}"
    seen = {}
    for command in COMMANDS:
        s = {k: v for k, v in common.items() if k in settings_of(command) or k == "seed"}
        seen[command] = _per_command(command, s)
    first = seen["sim"]
    for command, got in seen.items():
        assert got == first, f"{name}: {command} differs from sim: {got} vs {first}"
    assert first["agents"] == agents, name
    if batches is not None:
        assert first["batches"] == [batches] * agents, name
    else:  # all of each agent's training rows in full batches
        assert min(first["batches"]) >= 3, name
    if kind == "csv":
        assert first["target"] == "wind" and first["inputs"] == ["lon", "lat", "t"]
    if kind == "jsonl":
        assert first["target"] == "y" and first["inputs"] == ["x"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flag", "value"), [("batches", 0), ("agents", 0), ("batch_size", 0)])
def test_invalid_counts_are_errors_everywhere(command: str, flag: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"--{flag.replace('_', '-')}"):
        RunConfig.make(command, **{flag: value})


@pytest.mark.parametrize("command", COMMANDS)
def test_report_and_plot_taken_by_every_command(command: str) -> None:
    assert {"report", "plot", "batches", "agents", "target", "data"} <= set(settings_of(command))


@pytest.mark.parametrize("command", ["local", "agent"])
def test_live_feed_needs_the_number_of_agents(command: str) -> None:
    cfg = RunConfig.make(command, data="jsonl:-?d=2", agent_column="agent")
    with pytest.raises(SourceConfigError, match="--agents"):
        if command == "local":
            plan_local(cfg)
        else:  # an agent with neither --world nor a launcher's variables
            plan_node(cfg.replace(id=0))
    if command == "local":
        m = plan_local(cfg.replace(agents=3)).manifest
    else:
        m = plan_node(cfg.replace(id=0, world=3)).manifest
    assert m.live and m.n_agents == 3 and m.d == 2 and m.splitter is not None
    assert m.splitter.by == "hash" and m.holdout is not None and m.holdout.rule == "none"


def test_paper_mode_on_a_live_feed_needs_features() -> None:
    cfg = RunConfig.make("local", data="jsonl:-?d=2", agents=2, mode="paper")
    with pytest.raises(SourceConfigError, match="--features"):
        plan_local(cfg)


@pytest.mark.parametrize("command", COMMANDS)
def test_all_rows_means_every_training_row(
    table: dict[str, Path], tmp_path: Path, command: str
) -> None:
    """Without --batches every training row is learned: the last batch may be partial, and a
    station with fewer rows than --batch-size still contributes (one partial batch)."""
    settings = {"agent_column": "station", "batch_size": 1000, "workdir": str(tmp_path)}
    settings["data"] = f"csv:{table['csv']}"
    got = _per_command(command, {k: v for k, v in settings.items() if k in settings_of(command)})
    assert got["batches"] == [1] * len(STATIONS)  # 80 rows a station, less the held-out ones
    cfg = RunConfig.make("sim", **{k: v for k, v in settings.items() if k != "workdir"})
    st = make_streams(cfg.data, agents=cfg.swarm.agents, seed=cfg.seed, test_points=50)
    held = sum(len(y) for _, y in st.agent_test or [])
    assert sum(len(y) for bl in st.batches for _, y in bl) + held == 400


def test_untimed_table_reads_with_time_column_none(tmp_path: Path) -> None:
    """A table without a time column: one line naming --time-column, or rows in file order."""
    path = tmp_path / "u.csv"
    path.write_text("station,x,y\n" + "".join(f"s{i % 3},{i % 7},{i * 0.1}\n" for i in range(60)))
    cfg = RunConfig.make("sim", data=f"csv:{path}", agent_column="station", batch_size=10)
    with pytest.raises(StreamError, match="--time-column none"):
        make_streams(cfg.data, agents=None, seed=0, test_points=10)
    cfg = RunConfig.make(
        "sim", data=f"csv:{path}", agent_column="station", batch_size=10, time_column="none"
    )
    st = make_streams(cfg.data, agents=None, seed=0, test_points=10)
    assert st.info.get("inputs") == ["x"] and len(st.batches) == 3
    held = sum(len(y) for _, y in st.agent_test or [])
    assert sum(len(y) for bl in st.batches for _, y in bl) + held == 60
