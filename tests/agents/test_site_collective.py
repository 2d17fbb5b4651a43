"""The collective mode with the opt-in per-agent offset (``--site-effect``): exact fusion of
the agents' adjusted statistics in the simulator (with loss), identical theta, prediction at an
agent's own site and at an unseen one, durable state."""

from __future__ import annotations

import numpy as np
import pytest

from swarmgp.agents.collective_model import (
    CollectiveEncoding,
    CollectiveModel,
    site_stats_from_summary,
)
from swarmgp.agents.run_config import RunConfig
from swarmgp.fusion.collapsed import batch_stats, predict_site, site_adjust, sum_site_stats
from swarmgp.sim.swarm import Swarm, run_simulation

EXACT = dict(
    agents=8,
    inducing=8,
    batches=4,
    batch_size=10,
    test_points=50,
    series_agents=2,
    baselines=("local", "oracle"),
    mode="collective",
    site_effect=True,
)


def test_site_effect_option_default_off_and_encoding() -> None:
    assert RunConfig.make("sim").model.site_effect is False
    assert RunConfig.make("sim", site_effect=True).model.site_effect is True
    plain, site = CollectiveEncoding(d=2, inducing=5), CollectiveEncoding(2, 5, site_effect=True)
    assert plain.m == 7 and site.m == 9 and plain.hash != site.hash


@pytest.mark.parametrize(("topology", "loss"), [("geometric", 0.0), ("ring", 0.3)])
def test_sim_site_effect_fuses_exactly(topology: str, loss: float) -> None:
    keep: list[Swarm] = []
    r = run_simulation(RunConfig.make("sim", **EXACT, topology=topology, loss=loss), keep=keep)
    assert r["consistency_max_rel_err"] <= 1e-9 and r["consistent"]
    agents = keep[0].sim.agents
    th = [a.model.params.to_vector() for a in agents.values()]
    assert all(np.array_equal(t, th[0]) for t in th)
    p = agents[0].model.params
    assert p.site and agents[0].model.learned
    # the fused summary holds the sum of every agent's adjusted statistics of its own rows
    std = agents[0].model.std
    want = []
    for a in sorted(agents):
        X = np.concatenate([x for x, _ in keep[0].streams.batches[a]])
        y = np.concatenate([y for _, y in keep[0].streams.batches[a]])
        want.append(site_adjust(batch_stats((X - std.mx) / std.sx, (y - std.my) / std.sy, p), p))
    pooled = sum_site_stats(want)
    assert pooled is not None
    Xt = np.random.default_rng(0).uniform(0, 1, (20, keep[0].streams.d))
    for ag in agents.values():
        st = site_stats_from_summary(ag.fused_summary)
        scale = np.abs(pooled.G).max()
        assert np.abs(st.G - pooled.G).max() <= 1e-10 * scale
        assert np.abs(st.g - pooled.g).max() <= 1e-10 * scale
        assert st.yy == pytest.approx(pooled.yy, rel=1e-10)
        assert st.resid == pytest.approx(pooled.resid, rel=1e-10)
        assert st.logdet == pytest.approx(pooled.logdet, rel=1e-10)
        assert st.n == pooled.n
        # own site: the agent's offset posterior; unseen: + tau^2
        q = ag.model._params_for(ag.fused_summary)
        mu, var = ag.model.predict(Xt, ag.fused_summary, own_site=True)
        Xs = (Xt - std.mx) / std.sx
        m_ref, v_ref = predict_site(Xs, pooled, q, ag.model._stats)
        np.testing.assert_allclose(mu, std.my + std.sy * m_ref, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(var, std.sy**2 * (v_ref + q.sn**2), rtol=1e-8)
        _, var_u = ag.model.predict(Xt, ag.fused_summary)
        assert (var_u > var).all()


def test_site_state_round_trip_and_newcomer_join() -> None:
    from swarmgp.sim.newcomers import join_collective

    keep: list[Swarm] = []
    run_simulation(RunConfig.make("sim", **EXACT), keep=keep)
    peer = keep[0].sim.agents[0].model
    st = peer.state()
    other = CollectiveModel(peer.encoding)
    other.restore(st)
    assert other.params is not None and other.params.hash() == peer.params.hash()
    np.testing.assert_array_equal(other.summary().P, peer.summary().P)
    new = join_collective(peer)
    assert new.n_obs == 0 and new.params.tau == peer.params.tau
    X = np.random.default_rng(1).uniform(0, 1, (5, peer.encoding.d))
    m0, v0 = new.predict(X, keep[0].sim.agents[0].fused_summary, own_site=True)
    m1, v1 = new.predict(X, keep[0].sim.agents[0].fused_summary, own_site=False)
    np.testing.assert_allclose(m0, m1)  # no rows: its site is unseen
    np.testing.assert_allclose(v0, v1)
