"""Real agents' data feed: shared config, own sensors only, held-out days excluded, nothing lost."""

from __future__ import annotations

import time

import numpy as np
import pytest

from swarmgp.agents.run_config import DataConfig
from swarmgp.agents.sources.agent_feed import NOT_READY, DataFeed, declare_data, test_set
from swarmgp.agents.sources.errors import SourceConfigError


def _csv(tmp_path, rows=120):
    lines = ["station,lon,lat,t,val"]
    for t in range(rows // 3):
        for s, (lo, la) in enumerate([(0.0, 1.0), (1.0, 0.5), (2.0, 2.0)]):
            lines.append(f"S{s},{lo},{la},{t},{np.sin(t / 5) + s:.6f}")
    lines.insert(7, "S1,0.5,oops,3,1.0")  # a bad row: counted, the stream goes on
    p = tmp_path / "d.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _data(path, **kw):
    base = dict(
        data=f"csv:{path}",
        agent_column="station",
        time_column="t",
        inputs=("lon", "lat", "t"),
        target="val",
        holdout="time",
        holdout_every=10,
        features=None,
    )
    base.update(kw)
    return DataConfig(**base)


def _drain(feed, deadline_s=20.0):
    out, end = [], time.monotonic() + deadline_s
    for b in feed:
        if b is NOT_READY:
            assert time.monotonic() < end, "feed never finished"
            continue
        out.append(b)
    return out


def test_each_agent_reads_its_own_sensor_without_held_out_days(tmp_path):
    data = _data(_csv(tmp_path))
    cfg = declare_data(data, n_agents=None, seed=0)
    assert [str(a) for a in range(len(cfg.sensors))] == ["0", "1", "2"] and cfg.d == 3
    total = 0
    for a in range(3):
        batches = _drain(DataFeed(cfg, a, batch_size=7))
        n = sum(len(y) for _, y in batches)
        total += n
        assert all(X.shape[1] == 3 and np.isfinite(X).all() for X, _ in batches)
    # 40 days per sensor, 4 of them held out (t = 0, 10, 20, 30)
    assert total == 3 * 36
    ts = test_set(cfg, data, 0, 50)
    Xt, yt = ts.X, ts.y_of(0)
    assert Xt.shape == (12, 3) and np.isfinite(yt).all()
    assert abs(np.mean(ts.y_mean + ts.y_std * yt)) > 0  # back in the target's units


def test_max_batches_and_missing_columns(tmp_path):
    p = _csv(tmp_path)
    cfg = declare_data(_data(p), n_agents=2, seed=0)
    assert len(_drain(DataFeed(cfg, 0, batch_size=5, max_batches=3))) == 3
    with pytest.raises(SourceConfigError):  # no header to take the default target from
        declare_data(_data(p, data=f"jsonl:{p}", target=None), n_agents=2, seed=0)
    with pytest.raises(Exception, match="nope"):
        declare_data(_data(p, target="nope"), n_agents=2, seed=0)
