"""One data layer: the simulator and a real agent observe the same rows and score on the same rule.

For the same data settings and seed, ``sim``'s :func:`make_streams` and a real agent's
:func:`agent_batches` over the declared :class:`DataManifest` give agent ``a`` the same batches;
the splitter's hold-out decision for a row is the same on both paths; the ``synthetic:`` source
replays the one synthetic world.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from swarmgp.agents.run_config import DataConfig
from swarmgp.agents.sources import (
    NOT_READY,
    DataManifest,
    Holdout,
    Observation,
    SyntheticSpec,
    SyntheticWorld,
    agent_batches,
    declare_data,
    load_table,
    open_source,
    test_set,
)
from swarmgp.sim.streams import make_streams

pytestmark = pytest.mark.timeout(60)

SEED = 7


def _drain(it, deadline_s: float = 20.0) -> list[tuple[np.ndarray, np.ndarray]]:  # type: ignore[no-untyped-def]
    out, end = [], time.monotonic() + deadline_s
    for b in it:
        if b is NOT_READY:
            assert time.monotonic() < end, "feed never finished"
            time.sleep(0.001)
            continue
        out.append(b)
    return out


def _same_batches(a: list, b: list) -> None:  # type: ignore[type-arg]
    assert len(a) == len(b)
    for (Xa, ya), (Xb, yb) in zip(a, b, strict=True):
        assert Xa.shape == Xb.shape and np.array_equal(Xa, Xb)
        assert np.array_equal(ya, yb)


def _csv(tmp_path: Path) -> Path:
    """4 stations x 60 days, fractional times, rows not in time order within the file."""
    rng = np.random.default_rng(0)
    lines = ["station,lon,lat,t,val"]
    coords = [(0.0, 1.0), (1.0, 0.5), (2.0, 2.0), (0.5, 1.5)]
    rows = []
    for day in range(60):
        for s, (lo, la) in enumerate(coords):
            t = day + 0.25 * s
            rows.append(f"S{s},{lo},{la},{t},{np.sin(t / 7) + s + 0.1 * rng.normal():.6f}")
    rng.shuffle(rows)
    lines.extend(rows)
    p = tmp_path / "one.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


# ---------------------------------------------------------------------------- (a) same batches


def test_synthetic_sim_and_agent_get_the_same_rows() -> None:
    data = DataConfig(batches=3, batch_size=6, dim=3, groups=5, spread=0.4, noise=0.2)
    sim = make_streams(data, agents=5, seed=SEED, test_points=30)
    manifest = DataManifest.from_json(declare_data(data, 5, SEED).to_json())  # as shipped
    assert manifest.n_agents == 5 and manifest.d == 3 and manifest.kind == "synthetic"
    for a in (0, 1, 3, 4):
        feed = list(agent_batches(manifest, data, a, SEED))
        X0, y0 = feed[0]
        assert np.array_equal(sim.batches[a][0][0], X0) and np.array_equal(sim.batches[a][0][1], y0)
        _same_batches(sim.batches[a], feed)
    ts = test_set(manifest, data, SEED, 30)
    assert np.array_equal(ts.X, sim.X_test) and np.array_equal(ts.Y, sim.y_test_groups)
    assert list(ts.group) == list(sim.group) == [0, 1, 2, 3, 4]
    assert np.array_equal(ts.y_of(3), sim.y_test(3))
    # batches=None: 5 on synthetic data, on both paths
    five = DataConfig(batch_size=4)
    assert make_streams(five, agents=2, seed=1, test_points=5).n_batches(1) == 5
    assert len(list(agent_batches(declare_data(five, 2, 1), five, 1, 1))) == 5


def test_synthetic_default_agents_and_groups() -> None:
    data = DataConfig(batches=1, batch_size=2)
    sim = make_streams(data, agents=None, seed=0, test_points=4)
    m = declare_data(data, None, 0)
    # one phenomenon by default: every agent sees the same function
    assert sim.n_agents == m.n_agents == 8 and m.world is not None and m.world.groups == 1
    eight = DataConfig(batches=1, batch_size=2, groups=8)
    big = declare_data(eight, 20, 0)
    assert big.world is not None and big.world.groups == 8 and big.world.group_of(13) == 5


@pytest.mark.parametrize("column", ["station", None])
@pytest.mark.parametrize("holdout", ["random", "time"])
@pytest.mark.parametrize("order", ["random", "time"])
def test_table_sim_and_agent_get_the_same_batches(
    tmp_path: Path, column: str | None, holdout: str, order: str
) -> None:
    data = DataConfig(
        data=f"csv:{_csv(tmp_path)}",
        agent_column=column,
        inputs=("lon", "lat", "t"),
        batch_size=5,
        holdout=holdout,
        holdout_every=4,
        order=order,
    )
    agents = 3 if column is None else None
    sim = make_streams(data, agents=agents, seed=SEED, test_points=25)
    declared = declare_data(data, agents, SEED)
    manifest = DataManifest.from_json(declared.to_json())
    assert manifest == declared and manifest.to_json() == declared.to_json()
    assert sim.n_agents == manifest.n_agents == (3 if column is None else 4)
    assert sim.d == manifest.d == 3
    assert sim.info["target"] == "val" and sim.info["holdout"] == holdout
    for a in range(sim.n_agents):
        feed = _drain(agent_batches(manifest, data, a, SEED))
        assert len(feed) > 0
        X0, y0 = feed[0]
        assert np.array_equal(sim.batches[a][0][0], X0) and np.array_equal(sim.batches[a][0][1], y0)
        _same_batches(sim.batches[a], feed)
    ts = test_set(manifest, data, SEED, 25)
    assert ts.n == 25 and np.array_equal(ts.X, sim.X_test)
    assert np.array_equal(ts.Y, sim.y_test_groups)
    assert (ts.y_mean, ts.y_std) == (sim.y_mean, sim.y_std)
    # a cap on batches applies on both paths
    capped = dataclasses.replace(data, batches=2)
    sim2 = make_streams(capped, agents=agents, seed=SEED, test_points=25)
    for a in range(sim2.n_agents):
        _same_batches(sim2.batches[a], _drain(agent_batches(manifest, capped, a, SEED)))
        assert sim2.n_batches(a) == 2


# ---------------------------------------------------------------------------- (b) same hold-out


@pytest.mark.parametrize("holdout", ["random", "time"])
@pytest.mark.parametrize("column", ["station", None])
def test_holdout_decision_is_the_same_in_sim_and_feed(
    tmp_path: Path, holdout: str, column: str | None
) -> None:
    data = DataConfig(
        data=f"csv:{_csv(tmp_path)}",
        agent_column=column,
        inputs=("lon", "lat", "t"),
        holdout=holdout,
        holdout_every=5,
    )
    agents = 3 if column is None else None
    table = load_table(data, agents, SEED)  # the simulator's path: the whole table, one pass
    m = declare_data(data, agents, SEED)
    assert m.splitter is not None and m.schema is not None
    feed_held = list(open_source(m.uri, schema=m.schema, keep=m.splitter.held_out))
    assert feed_held == table.held and 0 < len(table.held) < len(table.rows)
    for a in range(m.n_agents):  # each agent's own rows, read by itself, are the sim's share
        own = list(open_source(m.uri, schema=m.schema, keep=m.splitter.keep_train(a)))
        assert own == table.per_agent[a]
        assert not any(m.splitter.held_out(o) for o in own)
    assert sum(len(p) for p in table.per_agent) + len(table.held) == len(table.rows)
    if holdout == "time":
        assert all(int(np.floor(o.t)) % 5 == 0 for o in table.held)
    else:
        assert 0.1 < len(table.held) / len(table.rows) < 0.32  # about 1 in 5


def test_random_holdout_is_content_based_and_stable_across_processes() -> None:
    rule = Holdout("random", every=3, seed=11)
    rows = list(open_source("synthetic:agents=2,d=2,n=60,seed=1"))
    here = [rule(o) for o in rows]
    assert [rule(o) for o in reversed(rows)] == here[::-1]  # order does not matter
    assert here != [Holdout("random", every=3, seed=12)(o) for o in rows]
    assert 20 < sum(here) < 60
    code = (
        "from swarmgp.agents.sources import Holdout, open_source\n"
        "rule = Holdout('random', every=3, seed=11)\n"
        "rows = open_source('synthetic:agents=2,d=2,n=60,seed=1')\n"
        "print(''.join('1' if rule(o) else '0' for o in rows))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "".join("1" if h else "0" for h in here)
    obs = Observation("S1", 3.9, np.array([1.0, 2.0]), 0.5)
    assert Holdout("time", every=3)(obs) and not Holdout("time", every=4)(obs)


# ---------------------------------------------------------------------------- (c) one world


def test_synthetic_source_replays_the_world() -> None:
    spec = SyntheticSpec(n_agents=3, d=2, n=40, groups=3, noise=0.1, spread=0.3, seed=5)
    rows = list(open_source("synthetic:agents=3,d=2,n=40,groups=3,noise=0.1,spread=0.3,seed=5"))
    world = spec.world
    assert world == SyntheticWorld(seed=5, d=2, groups=3, spread=0.3, noise=0.1)
    data = DataConfig(batches=4, batch_size=10, dim=2, groups=3, spread=0.3, noise=0.1)
    sim = make_streams(data, agents=3, seed=5, test_points=10)
    for a in range(3):
        X = np.stack([o.x for o in rows if o.agent == str(a)])
        y = np.array([o.y for o in rows if o.agent == str(a)])
        ((Xw, yw),) = world.batches(a, 1, 40)
        assert np.array_equal(X, Xw) and np.array_equal(y, yw)
        Xs, ys = (
            np.concatenate([b[0] for b in sim.batches[a]]),
            np.concatenate([b[1] for b in sim.batches[a]]),
        )
        assert np.array_equal(X, Xs) and np.array_equal(y, ys)


def test_world_rows_do_not_depend_on_batching_or_other_agents() -> None:
    w = SyntheticWorld(seed=3, d=2, groups=2)
    ((X20, y20),) = w.batches(1, 1, 20)
    X, y = (
        np.concatenate([b[0] for b in w.batches(1, 4, 5)]),
        np.concatenate([b[1] for b in w.batches(1, 4, 5)]),
    )
    assert np.array_equal(X, X20) and np.array_equal(y, y20)
    # more groups, more agents: agent 1's inputs and projection are unchanged
    w4 = SyntheticWorld(seed=3, d=2, groups=4)
    assert np.array_equal(w4.W[:2], w.W) and np.array_equal(w4.batches(1, 1, 20)[0][0], X20)
    assert not np.array_equal(w.batches(0, 1, 20)[0][0], X20)
