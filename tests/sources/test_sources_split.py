"""Per-agent filters, table splits for the simulator, held-out sets, synthetic streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sources_helpers import SCHEMA, expected, write_csv

from swarmgp.agents.sources import (
    Holdout,
    LatentFunction,
    SourceConfigError,
    SyntheticSpec,
    agent_filter,
    holdout_split,
    open_source,
    pick_stations,
    split_table_stream,
    station_mapping,
    to_arrays,
)

pytestmark = pytest.mark.timeout(60)


def test_filter_by_key_takes_only_own_rows(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows)
    src = open_source(f"csv:{path}", schema=SCHEMA, keep=agent_filter(key="S1"))
    got = list(src)
    assert got == [o for o in expected(rows) if o.agent == "S1"]
    assert src.stats.accepted == len(rows)


def test_filter_by_mapping(tmp_path: Path, rows: list[dict]) -> None:
    path = write_csv(tmp_path / "a.csv", rows)
    m = {"S0": 0, "S1": 1, "S2": 0}
    got = list(open_source(f"csv:{path}", schema=SCHEMA, keep=agent_filter(0, mapping=m)))
    assert {o.agent for o in got} == {"S0", "S2"}


def test_random_filters_partition_the_stream() -> None:
    uri = "synthetic:agents=2,d=1,n=300,seed=4"
    shares = [list(open_source(uri, keep=agent_filter(i, n_agents=3, seed=9))) for i in range(3)]
    assert sum(len(s) for s in shares) == 600 and all(len(s) > 120 for s in shares)
    again = list(open_source(uri, keep=agent_filter(1, n_agents=3, seed=9)))
    assert again == shares[1]
    with pytest.raises(SourceConfigError):
        agent_filter(3, n_agents=3)


def test_split_by_column() -> None:
    src = open_source("synthetic:agents=3,d=2,n=25,seed=0")
    streams = split_table_stream(src, by="column", batch_size=10)
    assert len(streams) == 3 and streams.keys == [["0"], ["1"], ["2"]]
    assert [[len(b) for b in s] for s in streams] == [[10, 10, 5]] * 3
    assert all(b.agent == str(i) for i, s in enumerate(streams) for b in s)
    assert streams.n_obs == [25, 25, 25]


def test_split_fewer_agents_than_stations() -> None:
    streams = split_table_stream(open_source("synthetic:agents=5,d=1,n=4"), 2, batch_size=4)
    assert streams.keys == [["0", "2", "4"], ["1", "3"]] and streams.n_obs == [12, 8]
    with pytest.raises(SourceConfigError):
        split_table_stream(open_source("synthetic:agents=2,d=1,n=4"), 3)


def test_split_random_is_seeded() -> None:
    def run(seed: int) -> list[list[float]]:
        s = split_table_stream(
            open_source("synthetic:agents=1,d=1,n=200"), 4, by="random", seed=seed, batch_size=7
        )
        assert sum(s.n_obs) == 200
        return [[float(v) for b in lst for v in b.t] for lst in s]

    assert run(1) == run(1) and run(1) != run(2)


def test_holdout_stations_and_days() -> None:
    obs = list(open_source("synthetic:agents=6,d=2,n=40,seed=3"))
    held_stations = pick_stations({o.agent for o in obs}, 1, seed=1, always=["0"])
    rule = Holdout("time", every=5, seed=1, stations=held_stations, day_length=1.0)
    train, test = holdout_split(obs, rule)
    assert len(train) + len(test) == len(obs)
    held = {o.agent for o in test if all(p.agent != o.agent for p in train)}
    assert "0" in held and len(held) == 2
    assert all(o.t != 5.0 for o in train)
    train2, test2 = holdout_split(list(reversed(obs)), rule)
    assert sorted(o.t for o in test2) == sorted(o.t for o in test)
    X, y = to_arrays(test)
    assert X.shape == (len(test), 2) and y.shape == (len(test),)


def test_station_mapping() -> None:
    assert station_mapping(["b", "a", "c", "a"]) == {"a": 0, "b": 1, "c": 2}
    assert station_mapping(["b", "a", "c"], 2) == {"a": 0, "b": 1, "c": 0}


def test_synthetic_is_seeded_and_matches_truth() -> None:
    spec = SyntheticSpec(n_agents=3, d=2, n=200, noise=0.0, seed=7)
    a = list(open_source("synthetic:agents=3,d=2,n=200,noise=0,seed=7"))
    assert a == list(open_source("synthetic:agents=3,d=2,n=200,noise=0,seed=7"))
    truth = LatentFunction(spec)
    for k in range(3):
        X = np.stack([o.x for o in a if o.agent == str(k)])
        y = np.array([o.y for o in a if o.agent == str(k)])
        np.testing.assert_allclose(truth.f(k, X), y, atol=1e-12)
    assert a != list(open_source("synthetic:agents=3,d=2,n=200,noise=0,seed=8"))


def test_synthetic_agents_share_the_latent_function() -> None:
    spec = SyntheticSpec(n_agents=2, d=2, spread=0.0)
    truth = LatentFunction(spec)
    X = np.random.default_rng(0).uniform(-2, 2, (50, 2))
    np.testing.assert_allclose(truth.f(0, X), truth.f(1, X))


def test_synthetic_latent_has_unit_se_covariance() -> None:
    Z = np.array([[0.0], [1.0], [2.0]])
    U = np.stack([LatentFunction(SyntheticSpec(n_agents=1, d=1, seed=s)).u(Z) for s in range(400)])
    K = U.T @ U / U.shape[0]
    r = Z - Z.T
    np.testing.assert_allclose(K, np.exp(-0.5 * r**2), atol=0.25)
