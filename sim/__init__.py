"""swarmgp.sim: thousands of agents in one process, in virtual time.

A deterministic discrete-event driver (:class:`Simulator`) runs the real sans-I/O
:class:`swarmgp.agents.agent.Agent`, built by the same factory as the real runner, over a
seeded :class:`SimNetwork` (latency, loss, duplication, reordering, partitions, churn), fed by
the shared data layer, and scores the swarm against baselines in the one run report
(DESIGN.md section 4). :func:`run_simulation` is the entry point; ``launch.py sim`` its CLI.
"""

from __future__ import annotations

from swarmgp.sim.clock import ClockError, EventQueue, VirtualClock
from swarmgp.sim.network import (
    ChurnEvent,
    GilbertElliott,
    NetworkConfig,
    NetworkError,
    Partition,
    SimNetwork,
    poisson_churn,
)
from swarmgp.sim.scheduler import Simulator
from swarmgp.sim.streams import StreamError, Streams, make_streams
from swarmgp.sim.swarm import Swarm, build_swarm, run_simulation

__all__ = [
    "ChurnEvent",
    "ClockError",
    "EventQueue",
    "GilbertElliott",
    "NetworkConfig",
    "NetworkError",
    "Partition",
    "SimNetwork",
    "Simulator",
    "StreamError",
    "Streams",
    "Swarm",
    "VirtualClock",
    "build_swarm",
    "make_streams",
    "poisson_churn",
    "run_simulation",
]
