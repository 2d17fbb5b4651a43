"""``sim --plot`` on data with lon/lat inputs: the map of a simulated agent's collective model
(see :mod:`swarmgp.agents.runtime.mapplot`)."""

from __future__ import annotations

from typing import Any

from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.runtime.mapplot import lonlat_index, map_data
from swarmgp.agents.sources.agent_feed import is_synthetic, load_table

__all__ = ["sim_map"]


def sim_map(cfg: RunConfig, sw: Any) -> dict[str, Any]:
    """The report's ``map`` from the first live agent of the simulated swarm ``sw`` ({} when
    the data are synthetic or their inputs hold no lon/lat)."""
    if is_synthetic(cfg.data.data):
        return {}
    table = load_table(cfg.data, cfg.swarm.agents, cfg.seed)  # the rows: stations and time
    f = table.manifest.features
    if f is None or lonlat_index(f.input_names) is None:
        return {}
    live = sw.sim.live_ids()
    if not live:
        return {}
    agent = sw.sim.agents[live[0]]
    fused = agent.fused_summary
    return map_data(table.manifest, table.rows, lambda Z: agent.model.predict(Z, fused))
