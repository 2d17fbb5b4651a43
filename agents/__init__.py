"""swarmgp.agents: the sans-I/O agent, its peer table and spanning tree, drivers and launchers.

Torch-dependent modules (``learner``) and the ZeroMQ runner are not imported here.
"""

from .agent import Agent, Outbound, StaticModel
from .config import AgentConfig, ConfigError, TimingConfig
from .peers import Admit, PeerTable
from .tree import SpanningTree

__all__ = [
    "Admit",
    "Agent",
    "AgentConfig",
    "ConfigError",
    "Outbound",
    "PeerTable",
    "SpanningTree",
    "StaticModel",
    "TimingConfig",
]
