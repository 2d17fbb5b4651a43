"""Fusion gain vs batches per agent (COOL-GP Figs. 1 and 2).

* ``synthetic2``: SYNTHETIC (Fig. 1): 2 agents, one latent u seen through two projections,
  6-D inputs, batches of 40, up to 40 batches per agent, |I| in {50, 100}, learning on.
* ``synthetic100``: 100 agents on a random geometric graph (Fig. 2's swarm size), 6-D
  synthetic data, batches of 20, up to 30 batches, |I| = 50.
* ``ozone100``: the real-data analogue of Fig. 2 (AIMPEAK, 100 agents): US Midwest ozone,
  100 agents (stations split among them), batches of 10, up to 10 batches.

Pre- and post-fusion RMSE are the means over tracked agents at each checkpoint (one batch
interval after each round of batches). Writes ``docs/figures/fusion_gain.png`` and
``experiments/results/fusion_gain.json``.

Usage::

    python experiments/fusion_gain.py            # all three, about 3-4 minutes on 2 cores
    python experiments/fusion_gain.py --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt
from common import SHARED, figure_path, run, save
from swarmgp.agents.run_config import RunConfig

BASE = ("local", "oracle", "gpoe", "rbcm", "dpitc")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    q = a.quick
    panels = {}
    for m in (50, 100):
        s = RunConfig.make(
            "sim",
            mode="paper",
            agents=2,
            topology="complete",
            dim=6,
            groups=2,
            inducing=m,
            batches=10 if q else 40,
            batch_size=40,
            learn=True,
            test_points=1000,
            series_agents=2,
            series_test=1000,
            seed=a.seed,
            baselines=BASE,
        )
        panels[f"synthetic2_m{m}"] = run(s, f"synthetic2 m={m}")
    s = RunConfig.make(
        "sim",
        mode="paper",
        agents=30 if q else 100,
        topology="geometric",
        dim=6,
        groups=1,
        inducing=50,
        batches=8 if q else 30,
        batch_size=20,
        learn=True,
        test_points=500,
        series_agents=16,
        series_test=300,
        seed=a.seed,
        baselines=BASE,
    )
    panels["synthetic100_m50"] = run(s, "synthetic100")
    if (SHARED / "midwest_ozone.csv").exists():
        s = RunConfig.make(
            "sim",
            mode="paper",
            agents=100,
            topology="geometric",
            data=f"csv:{SHARED / 'midwest_ozone.csv'}",
            agent_column="station",
            inducing=50,
            batches=4 if q else 10,
            batch_size=10,
            learn=True,
            test_points=1000,
            series_agents=25,
            series_test=1000,
            seed=a.seed,
            baselines=BASE,
        )
        panels["ozone100_m50"] = run(s, "ozone100")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    table = {}
    for ax, (name, r) in zip(axes, panels.items(), strict=False):
        k = [p["batches"] for p in r["rmse_over_time"]]
        pre = [p["rmse_local"] for p in r["rmse_over_time"]]
        post = [p["rmse_fused"] for p in r["rmse_over_time"]]
        ax.plot(k, pre, "o-", ms=3, label="pre-fusion (local)")
        ax.plot(k, post, "s-", ms=3, label="post-fusion")
        ax.set_title(f"{name} ({r['agents']} agents)")
        ax.set_xlabel("batches per agent")
        ax.set_ylabel("mean RMSE" + (" (ppb)" if "ozone" in name else ""))
        ax.legend()
        table[name] = {
            "curve": [[kk, a_, b_] for kk, a_, b_ in zip(k, pre, post, strict=False)],
            "final": {
                key: r[key]
                for key in (
                    "rmse_local",
                    "rmse_fused",
                    "rmse_oracle",
                    "nlpd_local",
                    "nlpd_fused",
                    "consistency_max_rel_err",
                    "messages",
                    "wall_s",
                )
            },
            "baselines": r["baselines"],
        }
    fig.tight_layout()
    fig.savefig(figure_path("fusion_gain"), dpi=110)
    save("fusion_gain", table)


if __name__ == "__main__":
    main()
