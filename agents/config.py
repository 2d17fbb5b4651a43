"""Frozen configuration of one agent: identity, neighbours, encoding and protocol timing."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmgp.agents.peers import Limits
from swarmgp.fusion.errors import SwarmGPError

__all__ = ["FUSION_MODES", "AgentConfig", "ConfigError", "TimingConfig"]

#: Fusion protocols (``--fusion``): asynchronous per change, or change rounds with acks.
FUSION_MODES = ("tree", "rounds")


class ConfigError(SwarmGPError):
    """An agent or timing configuration is inconsistent."""


@dataclass(frozen=True)
class TimingConfig:
    """Protocol periods and timeouts, in seconds of the driver's clock.

    Attributes
    ----------
    heartbeat_s : float
        Beacon period: heartbeats (liveness + tree state) and expiry checks.
    quiet_every : int
        Quiet links: a periodic heartbeat goes to every peer only every ``quiet_every``-th
        period, in the others only to the tree neighbours and to peers owed an acknowledgement
        or a pending notice. Links off the tree carry nothing but beacons, so on a dense graph
        this divides most of a swarm's messages by ``quiet_every``; such a peer is expired
        ``(quiet_every - 1) * heartbeat_s`` later, so as many of its beacons fit in its timeout
        as before. Triggered beacons (a tree change, a new peer) still go to everyone at once
        (1: every period to everyone).
    peer_timeout_s : float
        A peer silent this long is considered dead (its messages are forgotten).
    root_timeout_s : float
        A root whose beacon counter has not advanced this long is considered dead, so a
        dead root is dropped in bounded time instead of counting to infinity.
    fuse_min_interval_s : float
        Coalescing: at most one round of fusion messages per this interval.
    fuse_resend_s : float
        Period of unconditional resend of the latest fusion messages (repairs loss).
    beacon_min_interval_s : float
        Rate limit of *triggered* beacons (sent early on a tree change or a new peer), so a
        burst of changes while the tree forms costs one beacon, not one per change.
    fuse_hold_s : float
        ``fusion="rounds"``: longest an agent waits for its own change while its neighbours are
        at a newer change round (then it declares its summary unchanged for that round). A
        neighbour's wave is waited for at least ``peer_timeout_s`` (longer after one came
        late), at most ten ``fuse_hold_s``.
    join_wait_s : float
        ``fusion="rounds"``: for this long after its start, an agent with configured
        neighbours it has never heard from tells its tree neighbours it owes them a change
        (those neighbours are still starting), so they hold changes that depend on it instead
        of sending a partial round per agent that joins (0: off; the real-time drivers, whose
        agents start one after another, set it).
    """

    heartbeat_s: float = 0.5
    peer_timeout_s: float = 2.5
    root_timeout_s: float = 2.5
    fuse_min_interval_s: float = 0.01
    fuse_resend_s: float = 1.0
    beacon_min_interval_s: float = 0.05
    fuse_hold_s: float = 0.5
    join_wait_s: float = 0.0
    quiet_every: int = 1

    def __post_init__(self) -> None:
        if not (
            self.heartbeat_s > 0
            and self.fuse_resend_s > 0
            and self.fuse_min_interval_s >= 0
            and self.fuse_hold_s >= 0
            and self.join_wait_s >= 0
        ):
            raise ConfigError("timing: periods must be positive")
        if self.peer_timeout_s <= self.heartbeat_s or self.root_timeout_s <= self.heartbeat_s:
            raise ConfigError(
                "timing: peer_timeout_s and root_timeout_s must exceed heartbeat_s "
                f"({self.peer_timeout_s}, {self.root_timeout_s} vs {self.heartbeat_s})"
            )
        if not (isinstance(self.quiet_every, int) and 1 <= self.quiet_every <= 64):
            raise ConfigError(
                f"timing: quiet_every must be an integer in [1, 64], got {self.quiet_every!r}"
            )

    @classmethod
    def fast(cls, heartbeat_s: float = 0.05) -> TimingConfig:
        """Short periods for tests: timeouts of 6 beacons, resend every 4."""
        return cls(
            heartbeat_s=heartbeat_s,
            peer_timeout_s=6 * heartbeat_s,
            root_timeout_s=6 * heartbeat_s,
            fuse_min_interval_s=heartbeat_s / 20,
            fuse_resend_s=4 * heartbeat_s,
            beacon_min_interval_s=heartbeat_s / 10,
            fuse_hold_s=2 * heartbeat_s,
        )


@dataclass(frozen=True)
class AgentConfig:
    """Everything an :class:`~swarmgp.agents.agent.Agent` needs besides its model.

    Attributes
    ----------
    agent_id : int
        Unique non-negative id; the smallest live id becomes the tree root.
    neighbors : tuple of int
        Configured neighbour ids (the neighbour graph's edges at this agent).
    m : int
        Number of inducing inputs of the common encoding.
    encoding_hash : str
        Hash of the common encoding; peers with another hash are refused by the codec.
    incarnation : int
        Grows with each start of this agent (the runner uses a nanosecond clock).
    timing : TimingConfig
    max_dist : int
        Distance cap of the BFS tree (a second guard against count-to-infinity); must be at
        least the neighbour graph's diameter.
    accept_unknown_peers : bool
        Adopt a sender that is not a configured neighbour as a neighbour (joins).
    endpoint : str
        This agent's own endpoint, announced in Hello messages ("" in simulation).
    limits : Limits
        Bounds on what peers may claim and cost (peer-table size, counts, incarnation skew).
    fusion : str
        ``"rounds"`` (the default): change rounds on the full-state tree messages: a changed
        message goes when the round it is complete for advances (a convergecast wave up, a
        broadcast wave down), its inputs' late changes within a complete round go at once, and
        messages are resent only while unacknowledged. ``"tree"``: a tree message is sent
        whenever its content changes (coalesced) and every message is resent each
        ``fuse_resend_s``.
    """

    agent_id: int
    neighbors: tuple[int, ...]
    m: int
    encoding_hash: str
    incarnation: int = 0
    timing: TimingConfig = field(default_factory=TimingConfig)
    max_dist: int = 255
    accept_unknown_peers: bool = True
    endpoint: str = ""
    limits: Limits = field(default_factory=Limits)
    fusion: str = "rounds"

    def __post_init__(self) -> None:
        if self.fusion not in FUSION_MODES:
            raise ConfigError(f"agent: fusion must be one of {FUSION_MODES}, got {self.fusion!r}")
        if self.agent_id < 0 or self.m < 1 or self.max_dist < 1 or self.incarnation < 0:
            raise ConfigError("agent: id, incarnation >= 0 and m, max_dist >= 1 required")
        if self.agent_id in self.neighbors:
            raise ConfigError(f"agent {self.agent_id}: an agent is not its own neighbour")
        object.__setattr__(self, "neighbors", tuple(sorted(set(self.neighbors))))
