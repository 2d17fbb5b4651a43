"""1000 agents (COOL-GP Fig. 4, AIRLINE): per-agent pre- vs post-fusion RMSE.

1000 agents on a random geometric graph, 6-D synthetic data (8 projections), |I| = 50,
10 batches of 20 per agent (the paper: 30; ``--batches 30`` for the full size, about 3x
longer), learning on. Every agent is scored on the same held-out inputs. Writes
``docs/figures/scale_1000.png`` (scatter of per-agent post- vs pre-fusion RMSE, and the spread
over time) and ``experiments/results/scale_1000.json``.

Usage::

    python experiments/scale_1000.py [--batches 30] [--agents 1000]
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt
import numpy as np
from common import figure_path, run, save
from swarmgp.agents.run_config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = RunConfig.make(
        "sim",
        mode="paper",
        agents=a.agents,
        topology="geometric",
        dim=6,
        groups=8,
        inducing=50,
        batches=a.batches,
        batch_size=20,
        learn=True,
        test_points=200,
        score_agents=a.agents,
        series_agents=32,
        series_test=100,
        heartbeat=1.0,
        fuse_interval=0.2,
        seed=a.seed,
        baselines=("local", "oracle", "gpoe", "rbcm", "dpitc"),
    )
    r = run(s, "scale")
    pa = r["per_agent"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.scatter(pa["rmse_fused"], pa["rmse_local"], s=4, alpha=0.5)
    lo, hi = min(pa["rmse_fused"] + pa["rmse_local"]), max(pa["rmse_fused"] + pa["rmse_local"])
    ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax1.set_xlabel("post-fusion RMSE")
    ax1.set_ylabel("pre-fusion RMSE")
    ax1.set_title(f"{r['agents']} agents, {a.batches} batches each")
    k = [p["batches"] for p in r["rmse_over_time"]]
    for key, style in (("per_agent_local", "o-"), ("per_agent_fused", "s-")):
        v = np.array([p[key] for p in r["rmse_over_time"]])
        ax2.errorbar(
            k,
            v.mean(1),
            yerr=v.std(1),
            fmt=style,
            ms=3,
            capsize=2,
            label=key.replace("per_agent_", ""),
        )
    ax2.set_xlabel("batches per agent")
    ax2.set_ylabel("RMSE (mean +- std over tracked agents)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(figure_path("scale_1000"), dpi=110)
    save(
        "scale_1000",
        {
            "final": {
                key: r[key]
                for key in (
                    "agents",
                    "rmse_local",
                    "rmse_fused",
                    "rmse_oracle",
                    "nlpd_local",
                    "nlpd_fused",
                    "consistency_max_rel_err",
                    "messages",
                    "bytes",
                    "wall_s",
                    "peak_rss_mb",
                    "settle_s",
                    "diameter",
                )
            },
            "std_local": float(np.std(pa["rmse_local"])),
            "std_fused": float(np.std(pa["rmse_fused"])),
            "baselines": r["baselines"],
        },
    )


if __name__ == "__main__":
    main()
