"""Shared feature transforms: JSON round trip, periodic features, frozen standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.agents.sources import (
    FeatureConfig,
    FeatureTransform,
    Observation,
    SourceConfigError,
    TransformNotFitted,
    agent_filter,
    fit_config,
    open_source,
)

pytestmark = pytest.mark.timeout(30)


def test_config_json_round_trip_and_frozen() -> None:
    c = FeatureConfig(
        ("lon", "lat", "t"),
        select=("lon", "lat", "doy_sin", "doy_cos"),
        day_of_year=True,
        time_unit_s=86400.0,
        standardize=True,
        mean=(0, 0, 0, 0),
        std=(1, 2, 1, 1),
    )
    assert FeatureConfig.from_json(c.to_json()) == c
    assert c.d_out == 4 and c.is_fitted
    with pytest.raises(AttributeError):
        c.standardize = False  # type: ignore[misc]


def test_periodic_features() -> None:
    c = FeatureConfig(("t",), time_of_day=True, day_of_year=True, time_unit_s=3600.0)
    tr = FeatureTransform(c)
    t = np.array([0.0, 6.0, 12.0, 24.0 * 365.25 / 4])  # hours
    Z = tr.transform_X(t[:, None], t)
    assert c.output_names == ("t", "tod_sin", "tod_cos", "doy_sin", "doy_cos")
    np.testing.assert_allclose(Z[:3, 1], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(Z[:3, 2], [1.0, 0.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(Z[3, 3:], [1.0, 0.0], atol=1e-12)


def test_selection_orders_columns() -> None:
    c = FeatureConfig(("a", "b", "c"), select=("c", "a"))
    o = FeatureTransform(c).apply(Observation("s", 0.0, np.array([1.0, 2.0, 3.0]), 5.0))
    np.testing.assert_array_equal(o.x, [3.0, 1.0])
    with pytest.raises(SourceConfigError, match="tod_sin"):
        FeatureConfig(("a",), select=("tod_sin",))


def test_standardisation_needs_fixed_stats() -> None:
    c = FeatureConfig(("x",), standardize=True)
    with pytest.raises(TransformNotFitted):
        FeatureTransform(c)
    with pytest.raises(SourceConfigError):
        FeatureConfig(("x",), standardize=True, mean=(0.0,), std=(0.0,))


def test_prefix_fit_is_frozen_and_identical_for_every_agent() -> None:
    uri = "synthetic:agents=3,d=2,n=500,seed=2"
    base = FeatureConfig(("x0", "x1"), standardize=True, prefix=300, standardize_y=True)
    cfg = fit_config(base, open_source(uri))
    assert cfg.is_fitted and len(cfg.mean or ()) == 2
    shipped = cfg.to_json()  # what every agent receives
    per_agent = []
    for a in range(3):
        tr = FeatureTransform(FeatureConfig.from_json(shipped))
        per_agent.append(list(tr(open_source(uri, keep=agent_filter(key=str(a))))))
    whole = list(FeatureTransform(cfg)(open_source(uri)))
    # the same transform on each agent's share equals the transform of the whole stream
    merged = sorted((o for lst in per_agent for o in lst), key=lambda o: (o.t, o.agent))
    assert merged == whole
    X = np.stack([o.x for o in whole[:300]])
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(X.std(axis=0), 1.0, atol=1e-12)
    y = FeatureTransform(cfg).inverse_y(np.array([o.y for o in whole]))
    np.testing.assert_allclose(y, [o.y for o in open_source(uri)], atol=1e-12)


def test_fit_on_empty_prefix_fails() -> None:
    with pytest.raises(SourceConfigError):
        fit_config(FeatureConfig(("x",), standardize=True), [])


def test_unknown_config_keys_rejected() -> None:
    with pytest.raises(SourceConfigError, match="bogus"):
        FeatureConfig.from_dict({"input_names": ["x"], "bogus": 1})


def test_batch_transform_equals_per_observation() -> None:
    from swarmgp.agents.sources import iter_batches

    uri = "synthetic:agents=1,d=2,n=50,seed=3"
    cfg = FeatureConfig(
        ("x0", "x1"),
        select=("x1", "tod_cos"),
        time_of_day=True,
        time_unit_s=3600.0,
        standardize=True,
        mean=(1.0, 0.5),
        std=(2.0, 3.0),
        standardize_y=True,
        y_mean=0.1,
        y_std=2.0,
    )
    tr = FeatureTransform(cfg)
    per_obs = list(iter_batches(tr(open_source(uri)), 8))
    per_batch = list(tr.batches(iter_batches(open_source(uri), 8)))
    for a, b in zip(per_obs, per_batch, strict=True):
        np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-14)
        np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-14)
