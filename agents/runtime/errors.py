"""Errors of the runtime edge (launching, wiring, rendezvous)."""

from __future__ import annotations

from swarmgp.fusion.errors import SwarmGPError

__all__ = ["LaunchError"]


class LaunchError(SwarmGPError):
    """A swarm could not be launched, wired or brought to consistency."""
