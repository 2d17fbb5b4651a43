"""The shared real data sets load as streams; each station becomes an agent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarmgp.agents.sources import (
    ColumnSchema,
    FeatureConfig,
    FeatureTransform,
    agent_filter,
    fit_config,
    open_source,
    split_table_stream,
)

pytestmark = pytest.mark.timeout(120)

CASES = [
    ("ireland_wind.csv", "wind_knots", 78_888, 12),
    ("midwest_ozone.csv", "ozone_ppb", 13_122, 153),
]


@pytest.mark.parametrize("name,target,n_rows,n_stations", CASES)
def test_real_csv_loads_one_agent_per_station(
    shared_data: Path, name: str, target: str, n_rows: int, n_stations: int
) -> None:
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    schema = ColumnSchema(agent="station", time="t", inputs=("lon", "lat", "t"), target=target)
    src = open_source(f"csv:{path}", schema=schema)
    streams = split_table_stream(src, by="column", batch_size=64)
    assert src.stats.accepted == n_rows and src.stats.n_rejected == 0
    assert len(streams) == n_stations and sum(streams.n_obs) == n_rows
    assert all(len(k) == 1 for k in streams.keys)
    for keys, lst in zip(streams.keys, streams, strict=True):
        assert all(b.agent == keys[0] for b in lst)
        assert all(b.X.shape[1] == 3 and np.isfinite(b.X).all() for b in lst)
    # one agent process reading only its own station
    first = streams.keys[0][0]
    own = list(open_source(f"csv:{path}", schema=schema, keep=agent_filter(key=first)))
    assert len(own) == streams.n_obs[0]


def test_wind_with_shared_seasonal_transform(shared_data: Path) -> None:
    path = shared_data / "ireland_wind.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    schema = ColumnSchema(agent="station", time="t", inputs=("lon", "lat"), target="wind_knots")
    cfg = fit_config(
        FeatureConfig(
            ("lon", "lat"), day_of_year=True, time_unit_s=86400.0, standardize=True, prefix=5000
        ),
        open_source(f"csv:{path}", schema=schema),
    )
    tr = FeatureTransform(FeatureConfig.from_json(cfg.to_json()))
    obs = list(tr(open_source(f"csv:{path}", schema=schema, keep=agent_filter(key="VAL"))))
    assert len(obs) > 6000 and obs[0].x.shape == (4,)
