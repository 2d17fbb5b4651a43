"""swarmgp.agents: the sans-I/O agent core.

The agent state machine, its peer table and spanning tree, the typed run configuration, the
one agent factory, topologies and the local model. ``agents.sources`` is the data intake edge,
``agents.runtime`` the real-time edge (runner, launchers, status, report); neither is imported
here, and torch-dependent modules (``learner``) load only when learning is used.
"""

from __future__ import annotations

from swarmgp.agents.agent import Agent, Outbound, StaticModel
from swarmgp.agents.config import AgentConfig, ConfigError, TimingConfig
from swarmgp.agents.peers import Admit, PeerTable
from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.tree import SpanningTree

__all__ = [
    "Admit",
    "Agent",
    "AgentConfig",
    "ConfigError",
    "Outbound",
    "PeerTable",
    "RunConfig",
    "SpanningTree",
    "StaticModel",
    "TimingConfig",
]
