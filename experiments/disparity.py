"""Information disparity between two agents (COOL-GP Fig. 5a).

Agent A1 receives a fixed 5 batches; agent A2 keeps receiving batches, N = 1..30. Both see
one phenomenon (synthetic, one projection, 3-D inputs by default: a function the agents
can learn from a few hundred points, like Fig. 5a's AIMPEAK), |I| = 50, batches of 20,
learning on. The
per-agent pre- and post-fusion RMSE at each checkpoint gives the four curves of Fig. 5a.
Writes ``docs/figures/disparity.png`` and ``experiments/results/disparity.json``.

Usage::

    python experiments/disparity.py
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt
from common import figure_path, run, save

from swarmgp.agents.run_config import DataConfig
from swarmgp.sim.streams import make_streams
from swarmgp.agents.run_config import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--a1-batches", type=int, default=5)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--dim", type=int, default=3)
    a = ap.parse_args()
    args_d = a.dim
    st = make_streams(
        DataConfig(batches=a.batches, batch_size=20, dim=args_d, groups=1),
        agents=2,
        seed=a.seed,
        test_points=1000,
    )
    st.batches[0] = st.batches[0][: a.a1_batches]  # A1: fixed data
    s = RunConfig.make(
        "sim",
        mode="paper",
        agents=2,
        topology="complete",
        dim=args_d,
        inducing=50,
        batches=a.batches,
        batch_size=20,
        learn=True,
        series_agents=2,
        series_test=1000,
        seed=a.seed,
        baselines=("local", "oracle"),
    )
    r = run(s, "disparity", streams=st)
    N = [p["batches"] for p in r["rmse_over_time"]]
    curves = {
        "A1 pre": [p["per_agent_local"][0] for p in r["rmse_over_time"]],
        "A2 pre": [p["per_agent_local"][1] for p in r["rmse_over_time"]],
        "A1 post": [p["per_agent_fused"][0] for p in r["rmse_over_time"]],
        "A2 post": [p["per_agent_fused"][1] for p in r["rmse_over_time"]],
    }
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ys in curves.items():
        ax.plot(N, ys, ("o-" if "pre" in name else "s-"), ms=3, label=name)
    ax.set_xlabel(f"N, batches streamed (A1 stops after {a.a1_batches})")
    ax.set_ylabel("RMSE")
    ax.set_title("information disparity, 2 agents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure_path("disparity"), dpi=110)
    save(
        "disparity",
        {
            "N": N,
            "curves": curves,
            "final": {k: r[k] for k in ("rmse_local", "rmse_fused", "consistency_max_rel_err")},
        },
    )


if __name__ == "__main__":
    main()
