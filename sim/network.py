"""A simulated network in the transport role: latency, loss, duplication, reordering,
partitions and churn, all seeded.

:class:`SimNetwork` decides, for each message an agent sends, whether and when copies of it
arrive. It never calls agents: the driver (:mod:`swarmgp.sim.scheduler`) asks
:meth:`SimNetwork.transmit` for the delivery times and puts them on its event queue, and asks
:meth:`SimNetwork.deliverable` again on arrival (a partition that began in flight, or a receiver
that crashed, drops the message).

Randomness is per directed link: link ``(a, b)`` has its own generator, keyed by
``(seed, a, b)`` (``SeedSequence(seed entropy, spawn_key=seed key + (a, b))``), drawn only when
``a`` sends to ``b``; every message not cut by a partition takes the same fixed block of
:data:`DRAWS_PER_MESSAGE` uniforms from it whatever the settings (loss, Gilbert-Elliott
state, jitter, reordering, duplication and the duplicate's own delay each have their slot).
So turning on duplication does not change which messages are lost, and the draws of a link do
not depend on the order in which other agents send: a simulation sharded over MPI ranks draws
exactly what the single-process one draws. The links' generators are kept as their 32-byte
PCG64 states in one table (:class:`LinkStreams`), loaded into one shared generator per draw:
the same streams as one ``Generator`` per link, at ~100 bytes a link instead of ~1 KB.

Message size is the length of the protocol codec's encoding when the codec is importable,
else the estimate ``m(m+3)/2 * 8 + HEADER_BYTES`` for a summary-carrying message and
``HEADER_BYTES`` for the others. Latency = ``base + Exp(jitter) + size / bandwidth``.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from swarmgp.fusion.errors import SwarmGPError

__all__ = [
    "DRAWS_PER_MESSAGE",
    "HEADER_BYTES",
    "ChurnEvent",
    "GilbertElliott",
    "LinkStats",
    "NetworkConfig",
    "NetworkError",
    "Partition",
    "SimNetwork",
    "estimate_size",
    "poisson_churn",
]

#: Bytes assumed for a message's framing and header when the codec is not used.
HEADER_BYTES = 96

#: Uniforms every message takes from its link's generator: loss, Gilbert-Elliott state, then
#: (jitter, reorder?, reorder delay) for the first copy, duplicate?, and the same three for
#: the duplicate.
DRAWS_PER_MESSAGE = 9

ChurnKind = Literal["crash", "leave", "join", "restart"]


class LinkStreams:
    """Independent PCG64 streams, one per key, stored as raw states in one table.

    Stream ``key`` is ``default_rng(SeedSequence(entropy, spawn_key=spawn_key + key))``
    exactly; :meth:`draw` loads its 32-byte state into one shared generator, draws, and stores
    the state back. Where the state cannot be addressed (another numpy), it swaps the state
    through the public ``bit_generator.state`` dict instead (slower, same numbers).
    """

    def __init__(self, entropy: Any, spawn_key: tuple[int, ...]) -> None:
        self._entropy, self._spawn_key = entropy, spawn_key
        self._bg = np.random.PCG64(0)
        self._gen = np.random.Generator(self._bg)
        self._row: dict[tuple[int, int], int] = {}
        self._table = np.zeros((64, 4), np.uint64)
        self._dicts: list[Any] = []  # fallback: public states
        self._view = self._state_view()

    def _state_view(self) -> np.ndarray | None:
        try:
            addr = self._bg.ctypes.state_address
            ptr = ctypes.cast(addr, ctypes.POINTER(ctypes.c_void_p))[0]
            view = np.ctypeslib.as_array((ctypes.c_uint64 * 4).from_address(ptr))
            self._bg.state = np.random.PCG64(np.random.SeedSequence(12345)).state
            saved = view.copy()
            a = self._gen.random(4)
            view[:] = saved  # rewinds the shared generator only if the view is its state
            b = self._gen.random(4)
            ref = np.random.Generator(np.random.PCG64(np.random.SeedSequence(12345))).random(4)
            ok = bool(np.array_equal(a, ref) and np.array_equal(b, ref))
            return view if ok else None
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - other numpy
            return None

    def __len__(self) -> int:
        return len(self._row)

    def draw(self, key: tuple[int, int], n: int) -> np.ndarray:
        """The next ``n`` uniforms of stream ``key``."""
        i = self._row.get(key)
        if i is None:
            i = self._new(key)
        if self._view is None:
            self._bg.state = self._dicts[i]
            u = self._gen.random(n)
            self._dicts[i] = self._bg.state
            return u
        view, table = self._view, self._table
        view[:] = table[i]
        u = self._gen.random(n)
        table[i] = view
        return u

    def _new(self, key: tuple[int, int]) -> int:
        ss = np.random.SeedSequence(self._entropy, spawn_key=self._spawn_key + key)
        state = np.random.PCG64(ss).state
        i = self._row[key] = len(self._row)
        if self._view is None:
            self._dicts.append(state)
            return i
        if i >= self._table.shape[0]:
            grown = np.zeros((2 * i, 4), np.uint64)
            grown[:i] = self._table
            self._table = grown
        self._bg.state = state
        self._table[i] = self._view
        return i


class NetworkError(SwarmGPError):
    """Invalid network settings (a probability outside [0, 1], a negative delay...)."""


def _prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise NetworkError(f"network: {name} must be in [0, 1], got {p}")
    return float(p)


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss per directed link: Good and Bad states with their own loss rates.

    Attributes
    ----------
    p_gb : float
        Probability of moving Good -> Bad at each message on the link.
    p_bg : float
        Probability of moving Bad -> Good.
    loss_good, loss_bad : float
        Loss probability in each state.
    """

    p_gb: float
    p_bg: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for k in ("p_gb", "p_bg", "loss_good", "loss_bad"):
            _prob(k, getattr(self, k))
        if self.p_gb + self.p_bg <= 0:
            raise NetworkError("Gilbert-Elliott: p_gb + p_bg must be > 0")

    @property
    def mean_loss(self) -> float:
        """Stationary loss rate ``pi_B loss_bad + pi_G loss_good``."""
        pi_b = self.p_gb / (self.p_gb + self.p_bg)
        return pi_b * self.loss_bad + (1.0 - pi_b) * self.loss_good

    @classmethod
    def from_mean(cls, loss: float, burst: float = 4.0) -> GilbertElliott:
        """Gilbert model (loss 0 in Good, 1 in Bad) of the given mean loss and burst length."""
        _prob("loss", loss)
        if burst < 1:
            raise NetworkError(f"Gilbert-Elliott: mean burst length must be >= 1, got {burst}")
        if loss >= 1.0:
            return cls(1.0, 0.0)
        p_bg = 1.0 / burst
        p_gb = loss * p_bg / (1.0 - loss)
        if p_gb > 1.0:
            raise NetworkError(f"Gilbert-Elliott: loss {loss} too high for burst {burst}")
        return cls(p_gb, p_bg, 0.0, 1.0)


@dataclass(frozen=True)
class Partition:
    """During ``[start, end)``, messages between different groups are dropped.

    Agents in no group form one more implicit group.
    """

    start: float
    end: float
    groups: tuple[frozenset[int], ...]

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise NetworkError(f"partition: expected end > start, got [{self.start}, {self.end})")
        object.__setattr__(self, "groups", tuple(frozenset(int(a) for a in g) for g in self.groups))

    def separates(self, a: int, b: int, t: float) -> bool:
        """Whether a message from a to b at time t crosses the partition."""
        if not self.start <= t < self.end:
            return False
        return self.group_of(a) != self.group_of(b)

    def group_of(self, a: int) -> int:
        """Index of a's group, ``len(groups)`` for the implicit rest."""
        for i, g in enumerate(self.groups):
            if a in g:
                return i
        return len(self.groups)


@dataclass(frozen=True, order=True)
class ChurnEvent:
    """One change of membership at virtual time ``time``.

    ``crash``: the agent stops silently; ``leave``: it says goodbye (``Agent.stop``) and stops;
    ``join``: an agent that was not running starts; ``restart``: a crashed or running agent
    starts again from scratch with a new incarnation.
    """

    time: float
    agent: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in ("crash", "leave", "join", "restart"):
            raise NetworkError(f"churn: unknown kind {self.kind!r}")
        if not (math.isfinite(self.time) and self.time >= 0):
            raise NetworkError(f"churn: time must be finite and >= 0, got {self.time}")


@dataclass(frozen=True)
class NetworkConfig:
    """Settings of :class:`SimNetwork`.

    Attributes
    ----------
    base_latency_s : float
        Fixed part of every delay.
    jitter_s : float
        Mean of the exponential random part of the delay (0: none).
    bandwidth_bps : float
        Bytes per second for the size-dependent delay (inf: none).
    loss : float
        Bernoulli loss probability per message (ignored when ``bursty`` is given).
    bursty : GilbertElliott or None
        Per-link bursty loss instead of Bernoulli.
    duplicate : float
        Probability that a delivered message arrives twice (independent delays).
    reorder : float
        Probability of an extra delay drawn uniformly in ``[0, reorder_delay_s]``.
    reorder_delay_s : float
    partitions : tuple of Partition
    churn : tuple of ChurnEvent
        Membership changes the driver applies.
    size_model : {"codec", "estimate"}
        Count bytes by the codec's exact encoded length (``protocol.sizes``, computed from the
        header fields and array shapes without encoding) or by the estimate.
    """

    base_latency_s: float = 0.005
    jitter_s: float = 0.005
    bandwidth_bps: float = 12.5e6
    loss: float = 0.0
    bursty: GilbertElliott | None = None
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay_s: float = 0.05
    partitions: tuple[Partition, ...] = ()
    churn: tuple[ChurnEvent, ...] = ()
    size_model: Literal["codec", "estimate"] = "codec"

    def __post_init__(self) -> None:
        _prob("loss", self.loss)
        _prob("duplicate", self.duplicate)
        _prob("reorder", self.reorder)
        if self.base_latency_s < 0 or self.jitter_s < 0 or self.reorder_delay_s < 0:
            raise NetworkError("network: delays must be >= 0")
        if not self.bandwidth_bps > 0:
            raise NetworkError("network: bandwidth must be > 0")
        if self.size_model not in ("codec", "estimate"):
            raise NetworkError(f"network: unknown size model {self.size_model!r}")
        object.__setattr__(self, "partitions", tuple(self.partitions))
        object.__setattr__(self, "churn", tuple(sorted(self.churn)))

    @property
    def mean_loss(self) -> float:
        """Average loss probability."""
        return self.bursty.mean_loss if self.bursty is not None else self.loss


@dataclass
class LinkStats:
    """Counters of the network (all ints)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    partitioned: int = 0
    dead_dest: int = 0
    duplicated: int = 0
    reordered: int = 0
    bytes_sent: int = 0
    bytes_delivered: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    bytes_by_type: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "lost": self.lost,
            "partitioned": self.partitioned,
            "dead_dest": self.dead_dest,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "bytes_sent": self.bytes_sent,
            "bytes_delivered": self.bytes_delivered,
            "by_type": dict(sorted(self.by_type.items())),
            "bytes_by_type": dict(sorted(self.bytes_by_type.items())),
        }


def estimate_size(msg: object) -> int:
    """Bytes of a message without encoding it: ``m(m+3)/2 * 8`` per carried summary + header."""
    size = HEADER_BYTES
    for name in ("summary", "fused", "local"):
        s = getattr(msg, name, None)
        h = getattr(s, "h", None)
        if h is not None:
            m = int(h.shape[0])
            size += m * (m + 3) // 2 * 8
    X = getattr(msg, "X", None)
    if isinstance(X, np.ndarray):
        size += X.size * 8
    return size


def _codec_size(encoding_hash: str, m: int) -> Callable[[object], int] | None:
    # the codec's exact length from the header fields and array shapes (no packing, no crc32)
    try:
        from swarmgp.protocol.sizes import encoded_size
    except ImportError:
        return None

    def size(msg: object) -> int:
        return encoded_size(msg, encoding_hash, m)

    return size


class SimNetwork:
    """Seeded simulated network.

    Parameters
    ----------
    config : NetworkConfig
    seed : int or numpy.random.SeedSequence
        Root of the per-concern generators.
    encoding_hash : str
        Common-encoding hash the codec writes in headers (for the byte count).
    m : int
        Number of inducing inputs (for the byte count).
    """

    def __init__(
        self,
        config: NetworkConfig,
        seed: int | np.random.SeedSequence = 0,
        *,
        encoding_hash: str = "0" * 16,
        m: int = 0,
    ) -> None:
        self.config = config
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._entropy = ss.entropy
        self._spawn_key = tuple(ss.spawn_key)
        self._links = LinkStreams(ss.entropy, tuple(ss.spawn_key))
        self.stats = LinkStats()
        self._ge_bad: dict[tuple[int, int], bool] = {}
        self._size: Callable[[object], int] = estimate_size
        if config.size_model == "codec":
            codec = _codec_size(encoding_hash, m)
            if codec is not None:
                self._size = codec
        self.size_source = "codec" if self._size is not estimate_size else "estimate"
        self._last_msg: object = None
        self._last_size = 0

    # ---- faults -------------------------------------------------------------------------
    def partitioned(self, src: int, dest: int, t: float) -> bool:
        """Whether a partition active at t separates src and dest."""
        return any(p.separates(src, dest, t) for p in self.config.partitions)

    def link_draws(self, src: int, dest: int, n: int = DRAWS_PER_MESSAGE) -> np.ndarray:
        """The next ``n`` uniforms of link ``src -> dest`` (stream ``(seed, src, dest)``)."""
        return self._links.draw((src, dest), n)

    def _lost(self, src: int, dest: int, u: np.ndarray) -> bool:
        ge = self.config.bursty
        if ge is None:
            p = self.config.loss
            return p > 0.0 and bool(u[0] < p)
        key = (src, dest)
        bad = self._ge_bad.get(key, False)
        bad = (u[1] >= ge.p_bg) if bad else (u[1] < ge.p_gb)
        self._ge_bad[key] = bool(bad)
        return bool(u[0] < (ge.loss_bad if bad else ge.loss_good))

    def _delay(self, size: int, u: np.ndarray, i: int) -> float:
        """Delay of one copy from the uniforms ``u[i:i + 3]`` (jitter, reorder?, reorder delay)."""
        c = self.config
        d = c.base_latency_s + size / c.bandwidth_bps
        if c.jitter_s > 0:
            d += -c.jitter_s * math.log1p(-float(u[i]))  # Exp(mean jitter) by inversion
        if c.reorder > 0 and u[i + 1] < c.reorder:
            d += float(u[i + 2]) * c.reorder_delay_s
            self.stats.reordered += 1
        return d

    def message_size(self, msg: object) -> int:
        """Bytes of ``msg`` on the wire (codec length, or the estimate)."""
        return self._size(msg)

    # ---- the transport role -------------------------------------------------------------
    def transmit(self, src: int, dest: int, msg: object, now: float) -> list[float]:
        """Send one message; return the arrival times of the copies that will arrive.

        Parameters
        ----------
        src, dest : int
            Sender and receiver ids.
        msg : Message
        now : float
            Send time.

        Returns
        -------
        list of float
            Empty when lost or partitioned; two entries when duplicated.
        """
        return self.transmit_sized(src, dest, msg, now, self.message_size_cached(msg))

    def message_size_cached(self, msg: object) -> int:
        """:meth:`message_size`, remembering the last message (one beacon goes to many peers)."""
        if msg is self._last_msg:
            return self._last_size
        size = self._size(msg)
        self._last_msg, self._last_size = msg, size
        return size

    def transmit_sized(
        self, src: int, dest: int, msg: object, now: float, size: int
    ) -> list[float]:
        """:meth:`transmit` with the size already known."""
        st = self.stats
        name = type(msg).__name__
        st.sent += 1
        st.bytes_sent += size
        st.by_type[name] = st.by_type.get(name, 0) + 1
        st.bytes_by_type[name] = st.bytes_by_type.get(name, 0) + size
        if self.config.partitions and self.partitioned(src, dest, now):
            st.partitioned += 1
            return []
        u = self._links.draw((src, dest), DRAWS_PER_MESSAGE)
        if self._lost(src, dest, u):
            st.lost += 1
            return []
        times = [now + self._delay(size, u, 2)]
        if self.config.duplicate > 0 and u[5] < self.config.duplicate:
            st.duplicated += 1
            times.append(now + self._delay(size, u, 6))
        return times

    def deliverable(self, src: int, dest: int, t: float, dest_alive: bool, size: int = 0) -> bool:
        """Final check on arrival: the receiver is up and no partition separates the ends."""
        st = self.stats
        if not dest_alive:
            st.dead_dest += 1
            return False
        if self.config.partitions and self.partitioned(src, dest, t):
            st.partitioned += 1
            return False
        st.delivered += 1
        st.bytes_delivered += size
        return True


def poisson_churn(
    agents: Sequence[int],
    rate: float,
    start: float,
    end: float,
    rng: np.random.Generator,
    *,
    downtime_s: float = 1.0,
    kinds: Iterable[str] = ("crash", "leave"),
) -> tuple[ChurnEvent, ...]:
    """A churn schedule that is over by ``end``: departures at Poisson times, each followed
    by a restart ``downtime_s`` later (a crash restarts with a new incarnation; a graceful
    leave rejoins likewise).

    Parameters
    ----------
    agents : sequence of int
        Who may churn.
    rate : float
        Departures per second over the whole swarm.
    start, end : float
        Window; departures fall in ``[start, end - downtime_s)`` so every agent is back by end.
    rng : numpy.random.Generator
    downtime_s : float
    kinds : iterable of {"crash", "leave"}

    Returns
    -------
    tuple of ChurnEvent, sorted by time
    """
    kinds = tuple(kinds)
    if not kinds or any(k not in ("crash", "leave") for k in kinds):
        raise NetworkError(f"churn: departure kinds must be crash/leave, got {kinds}")
    out: list[ChurnEvent] = []
    busy_until: dict[int, float] = {}
    t = start
    last = end - downtime_s
    if rate <= 0 or last <= start or not agents:
        return ()
    while True:
        t += float(rng.exponential(1.0 / rate))
        if t >= last:
            break
        a = int(agents[int(rng.integers(len(agents)))])
        kind = kinds[int(rng.integers(len(kinds)))]
        if busy_until.get(a, -math.inf) > t:
            continue
        out.append(ChurnEvent(t, a, kind))
        out.append(ChurnEvent(t + downtime_s, a, "restart"))
        busy_until[a] = t + downtime_s + 1e-9
    return tuple(sorted(out))
