"""Smoke test of experiments/real_data.py on a small subset of the shared ozone data."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(
    not (DATA / "midwest_ozone.csv").is_file(),
    reason=f"shared real data not found at {DATA} (../shared/data next to the repository)",
)


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "real_data_demo", ROOT / "experiments" / "real_data.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_ozone_held_out_stations_fusion_helps() -> None:
    """30 ozone stations, 6 held out: finite scores, a consistent swarm, fused <= local."""
    demo = _load_demo()
    rep = demo.run_demo(
        "ozone",
        "stations",
        seed=0,
        data_dir=DATA,
        stations=30,
        held_stations=6,
        inducing=20,
        max_test=200,
        baselines=("local", "oracle", "gpoe", "rbcm", "dpitc"),
    )
    s = rep["summary"]
    for k in ("local", "fused", "oracle"):
        assert math.isfinite(s[k]["rmse"]) and math.isfinite(s[k]["nlpd"]), (k, s[k])
    assert rep["consistent"], rep["consistency_max_rel_err"]
    assert abs(s["fused"]["rmse"] - s["oracle"]["rmse"]) < 1e-6 * s["oracle"]["rmse"]
    assert s["fused"]["rmse"] <= s["local"]["rmse"], s
    assert rep["real_data"]["agents"] == 24
    assert rep["real_data"]["test_stations"] == 6
    text = demo.format_table(rep)
    assert "fused" in text and "oracle" in text
