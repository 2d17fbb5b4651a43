"""Shared helpers of the experiment scripts: run a setting, save results, plot defaults."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from swarmgp.agents.run_config import RunConfig
from swarmgp.sim.swarm import run_simulation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
RESULTS = ROOT / "experiments" / "results"
SHARED = ROOT.parent / "shared" / "data"


def run(settings: RunConfig, label: str, **kw: Any) -> dict[str, Any]:
    """One simulation, with a one-line log on stderr."""
    t0 = time.perf_counter()
    r = run_simulation(settings, **kw)
    print(
        f"[{label}] agents={r['agents']} B={r['batches_per_agent']} loss={r['loss']} "
        f"local={r['rmse_local']:.4g} fused={r['rmse_fused']:.4g} oracle={r['rmse_oracle']:.4g} "
        f"cons={r['consistency_max_rel_err']:.2g} wall={time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return r


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``experiments/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(payload, indent=1, sort_keys=True, default=float) + "\n")
    return p


def figure_path(name: str) -> Path:
    """``docs/figures/<name>.png`` (folder created)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    return FIGURES / f"{name}.png"


def at_batches(report: dict[str, Any], ks: list[int]) -> dict[int, tuple[float, float]]:
    """(pre, post) mean RMSE of the tracked agents at the given batches-per-agent checkpoints."""
    out = {}
    for p in report["rmse_over_time"]:
        if p["batches"] in ks:
            out[p["batches"]] = (p["rmse_local"], p["rmse_fused"])
    return out
