"""swarmgp.sim: thousands of agents in one process, in virtual time.

A deterministic discrete-event driver (:class:`Simulator`) runs the real sans-I/O
:class:`swarmgp.agents.agent.Agent` over a seeded :class:`SimNetwork` (latency, loss,
duplication, reordering, partitions, churn), on generated topologies, fed by synthetic or
replayed data streams, and scores the swarm against baselines in one JSON report
(DESIGN.md section 4). :func:`run_simulation` is the entry point; ``launch.py sim`` its CLI.
"""

from __future__ import annotations

from .clock import ClockError, EventQueue, VirtualClock
from .network import (
    ChurnEvent,
    GilbertElliott,
    NetworkConfig,
    NetworkError,
    Partition,
    SimNetwork,
    poisson_churn,
)
from .report import REQUIRED_KEYS, check_report, comparable, plot_report, write_report
from .scheduler import Simulator
from .streams import StreamError, Streams, make_streams, synthetic_streams, table_streams
from .swarm import SimSettings, Swarm, build_swarm, run_simulation
from .topology import TOPOLOGIES, TopologyError, is_connected, load_peers, make_topology

__all__ = [
    "REQUIRED_KEYS",
    "TOPOLOGIES",
    "ChurnEvent",
    "ClockError",
    "EventQueue",
    "GilbertElliott",
    "NetworkConfig",
    "NetworkError",
    "Partition",
    "SimNetwork",
    "SimSettings",
    "Simulator",
    "StreamError",
    "Streams",
    "Swarm",
    "TopologyError",
    "VirtualClock",
    "build_swarm",
    "check_report",
    "comparable",
    "is_connected",
    "load_peers",
    "make_streams",
    "make_topology",
    "plot_report",
    "poisson_churn",
    "run_simulation",
    "synthetic_streams",
    "table_streams",
    "write_report",
]
