"""The collective model with and without the per-agent offset (``--site-effect``), issue 9.

For each shared data set: ``launch.py sim`` (seed 0, m = 100) with and without the site effect;
reports the sim's own scores (every agent predicts the pooled test set: with the site effect
an unseen-site prediction), the pooled SGPR baseline (no site effect), and a site-aware score
on every swarm agent's own held-out rows (each station predicted by its own agent with its
offset's posterior, ``own_site=True``) next to the same rows without it, plus the newcomers.

    python benchmarks/bench_site_effect.py [wind|ozone ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np

from swarmgp.agents.run_config import config_from_namespace
from swarmgp.fusion.metrics import nlpd, rmse
from swarmgp.sim.swarm import run_simulation

DATA = {
    "wind": dict(
        data="csv:../shared/data/ireland_wind.csv", agent_column="station",
        inputs=("lon", "lat", "t"), target="wind_knots", batches=10, batch_size=50,
    ),
    "ozone": dict(
        data="csv:../shared/data/midwest_ozone.csv", agent_column="station",
        inputs=("lon", "lat", "t"), target="ozone_ppb", batches=8, batch_size=10,
    ),
}  # fmt: skip


def own_rows_scores(sw):
    """RMSE / NLPD (target units) on all swarm agents' own held-out rows, pooled."""
    st = sw.streams
    ys, mu_o, v_o, mu_u, v_u = [], [], [], [], []
    for a, ag in sw.sim.agents.items():
        held = st.held_rows(a)
        if held is None or held[0].shape[0] == 0:
            continue
        X, y = held
        for own, mus, vs in ((True, mu_o, v_o), (False, mu_u, v_u)):
            m, v = st.to_units(*ag.model.predict(X, ag.fused_summary, own_site=own))
            mus.append(m)
            vs.append(v)
        ys.append(st.y_units(y))
    y = np.concatenate(ys)
    out = {}
    for key, mus, vs in (("own_site", mu_o, v_o), ("unseen_site", mu_u, v_u)):
        mu, v = np.concatenate(mus), np.concatenate(vs)
        out[key] = (rmse(y, mu), nlpd(y, mu, v))
    out["rows"] = int(y.shape[0])
    return out


def run(name, site, newcomers):
    flags = dict(DATA[name], inducing=100, baselines=("local", "sgpr_pooled"), quiet=True)
    flags.update(site_effect=site, newcomers=newcomers)
    kept = []
    rep = run_simulation(config_from_namespace("sim", flags), keep=kept)
    sw = kept[0]
    ag = sw.sim.agents[min(sw.sim.agents)]
    p = ag.model._params_for(ag.fused_summary)
    res = {
        "fused": (rep["rmse_fused"], rep["nlpd_fused"]),
        "sgpr": (rep["baselines"]["sgpr_pooled"]["rmse"], rep["baselines"]["sgpr_pooled"]["nlpd"]),
        "theta": dict(s=p.s, sn=p.sn, sb=p.sb, tau=p.tau, ell=np.exp(p.log_ell).round(3).tolist()),
        "own_rows": own_rows_scores(sw),
        "newcomers": rep.get("newcomers", {}).get("table"),
    }
    return res


if __name__ == "__main__":
    for name in sys.argv[1:] or list(DATA):
        nc = 3 if name == "wind" else 10
        for site in (False, True):
            r = run(name, site, 0)
            r2 = run(name, site, nc)
            print(
                json.dumps({"data": name, "site_effect": site, **r, "newcomers": r2["newcomers"]})
            )
            sys.stdout.flush()
