"""Real-time asyncio driver of one :class:`~swarmgp.agents.agent.Agent` over ZeroMQ.

The runner is the only loop: it waits for the inbox or the agent's next deadline, hands
messages and ticks to the agent with ``now = time.monotonic()``, feeds observation batches on
a schedule, and sends what the agent returns. SIGINT/SIGTERM make it say goodbye and exit.
It also exits when its parent process dies (no orphans if a launcher is killed).

Logs are one line per event, ``key=value`` (or one JSON object with ``--log-format json``) with
the agent id and incarnation, on stderr or a file.

With ``until`` (:class:`~swarmgp.agents.runtime.until.SwarmDone`, ``--until consistent``) the
run also ends, with goodbyes, once the swarm is done.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from swarmgp.agents.agent import Agent, Outbound
from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.report import peak_rss_mb
from swarmgp.agents.sources.agent_feed import NOT_READY
from swarmgp.protocol.transport import LiveTransport

if TYPE_CHECKING:
    from swarmgp.agents.runtime.until import SwarmDone
    from swarmgp.fusion.summary import Summary

__all__ = ["RunFacts", "batch_digest", "configure_threads", "run", "serve", "setup_logging"]

log = logging.getLogger("swarmgp.agent")


def configure_threads() -> None:
    """One BLAS/OpenMP thread per agent process (many agents share a node's cores)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class _KV(logging.Formatter):
    def __init__(self, agent_id: int, incarnation: int) -> None:
        super().__init__()
        self.prefix = f"agent={agent_id} inc={incarnation}"

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        return (
            f"ts={ts}.{int(record.msecs):03d} level={record.levelname} {self.prefix} "
            f"{record.getMessage()}"
        )


class _JSON(logging.Formatter):
    """One JSON object per line: ts, level, agent, inc, event and the ``key=value`` pairs."""

    def __init__(self, agent_id: int, incarnation: int) -> None:
        super().__init__()
        self.agent_id, self.incarnation = agent_id, incarnation

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "agent": self.agent_id,
            "inc": self.incarnation,
        }
        msg = record.getMessage()
        rest: list[str] = []
        for part in msg.split(" "):
            key, eq, value = part.partition("=")
            if eq and key.isidentifier() and key not in out and not rest:
                out[key] = value
            else:
                rest.append(part)
        if rest:  # a value with spaces: keep the tail as text
            out["text"] = " ".join(rest)
        return json.dumps(out)


def setup_logging(
    agent_id: int, incarnation: int, path: str | None, level: str = "INFO", fmt: str = "kv"
) -> None:
    """Structured log lines for this agent on stderr or ``path``: ``kv`` or ``json``."""
    try:
        handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler()
    except OSError as exc:
        raise LaunchError(f"--log-file {path}: cannot open: {exc.strerror or exc}") from None
    formatter = _JSON if fmt == "json" else _KV
    handler.setFormatter(formatter(agent_id, incarnation))
    root = logging.getLogger("swarmgp")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


#: How often the runner polls a live data source that had no full batch ready.
DATA_POLL_S = 0.02


def batch_digest(X: np.ndarray, y: np.ndarray) -> str:
    """Short sha256 of a batch's float64 bytes: equal digests mean the same rows."""
    h = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


class RunFacts:
    """What the runner knows that the agent does not: merged into every status reply.

    Build it before the agent and pass it as the agent's ``status_extra``; the runner keeps it
    up to date.
    """

    def __init__(self, endpoint: str = "", world: int = 0) -> None:
        self.endpoint = endpoint
        self.world = world
        self.last_obs_wall: float | None = None
        self.last_fused_change_wall: float | None = None
        self.first_batch: str | None = None
        #: Called as ``after_batch(X, y)`` after each batch learned (``--state-dir`` snapshots).
        self.after_batch: Any = None
        #: This agent's data has ended and its local summary covers every row it observed.
        self.data_done = False
        #: The last collective model covering ``world`` agents after the data ended.
        self.final_fused: Summary | None = None
        #: The swarm was verified consistent: ``final_fused`` no longer changes.
        self.frozen = False
        #: More facts (e.g. ``SwarmDone.facts``), merged into the status.
        self.more: Callable[[], dict[str, Any]] | None = None
        #: The agent's data feed (a :class:`~swarmgp.agents.sources.agent_feed.DataFeed`, or
        #: None): its rows received and the arrival times of each batch (ingest lag).
        self.feed: Any = None
        #: Set to stop ingesting (SIGUSR1, ``--duration``): rows received are still learned.
        self.end_ingest = threading.Event()
        #: Ingest lag, arrival to learned (in the local summary), in seconds: n, sum, max.
        self.lag_n = 0
        self.lag_sum = 0.0
        self.lag_max = 0.0
        #: A metrics exporter (``--metrics-port``): ``update(agent, facts, now)`` in the loop.
        self.metrics: Any = None

    def note_lag(self, arrivals: Iterable[float], learned_wall: float) -> None:
        """Rows that arrived at ``arrivals`` (wall clock) are in the local summary now."""
        for t in arrivals:
            lag = max(learned_wall - t, 0.0)
            self.lag_n += 1
            self.lag_sum += lag
            self.lag_max = max(self.lag_max, lag)

    @property
    def rows_received(self) -> int | None:
        """Rows of this agent's share the feed handed on (None without a feed)."""
        return None if self.feed is None else int(getattr(self.feed, "rows_emitted", 0))

    def observed(self, X: np.ndarray, y: np.ndarray) -> None:
        """Note a batch the agent learned (its arrival time; a digest of the first one)."""
        self.last_obs_wall = time.time()
        if self.first_batch is None:
            self.first_batch = batch_digest(X, y)
        if self.after_batch is not None:  # durable agents (issue 10)
            self.after_batch(X, y)

    def __call__(self) -> dict[str, Any]:
        return {
            "peak_rss_mb": peak_rss_mb(),
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "last_observation_wall": self.last_obs_wall,
            "last_fused_change_wall": self.last_fused_change_wall,
            "first_batch": self.first_batch,
            "data_done": self.data_done,
            "rows_received": self.rows_received,
            "ingest_lag_n": self.lag_n,
            "ingest_lag_mean_s": self.lag_sum / self.lag_n if self.lag_n else None,
            "ingest_lag_max_s": self.lag_max if self.lag_n else None,
            "ingest_ended": self.end_ingest.is_set(),
            **(self.more() if self.more is not None else {}),
        }

    def note_fused(self, fused: Summary) -> None:
        """Keep ``fused`` as the final model if the data ended and it covers the swarm.

        Frozen once the swarm is verified consistent (``frozen``): later changes come from
        departing agents.
        """
        if self.data_done and not self.frozen and self.world and fused.n_agents == self.world:
            self.final_fused = fused


class _Driver:
    def __init__(
        self,
        agent: Agent,
        transport: LiveTransport,
        batches: Iterable[tuple[np.ndarray, np.ndarray]],
        batch_interval_s: float,
        status_period_s: float,
        facts: RunFacts,
        until: SwarmDone | None = None,
        periodic: Callable[[], bool] | None = None,
    ) -> None:
        self.agent, self.tr = agent, transport
        self.until, self.periodic = until, periodic
        self.batches: Iterator[tuple[np.ndarray, np.ndarray]] = iter(batches)
        self.batch_interval_s = batch_interval_s
        self.status_period_s = status_period_s
        self.stop = asyncio.Event()
        self.ppid = os.getppid()
        self._tree = (agent.tree.state.root, agent.tree.state.dist, agent.tree.state.parent)
        self._nbrs = agent.tree_neighbors
        self._expired = 0
        self.facts = facts
        self._stamp: Any = None
        #: Batches fed but not yet in the local summary: (rows fed after it, arrival times).
        self._lagging: deque[tuple[int, list[float]]] = deque()
        self._fed = 0
        self._n0 = agent.local_summary.n_obs
        self._ingest_ended = False

    def dispatch(self, out: list[Outbound]) -> None:
        for dest, msg in out:
            self.tr.send(dest, msg)
        stamp = self.agent.fused_stamp
        if stamp != self._stamp:  # when the collective model last moved (benchmarks use it)
            self._stamp = stamp
            self.facts.last_fused_change_wall = time.time()
            if self.facts.data_done:
                self.facts.note_fused(self.agent.fused_summary)
        self._log_changes()

    def _log_changes(self) -> None:
        a = self.agent
        st = a.tree.state
        cur = (st.root, st.dist, st.parent)
        if cur != self._tree or a.tree_neighbors != self._nbrs:
            self._tree, self._nbrs = cur, a.tree_neighbors
            log.info(
                "event=tree root=%d dist=%d parent=%d tree_neighbors=%s",
                st.root,
                st.dist,
                st.parent,
                sorted(a.tree_neighbors),
            )
        if a.counters["expired"] != self._expired:
            self._expired = a.counters["expired"]
            log.info("event=peer_expired live=%s", sorted(a.peers.live()))

    async def run(self) -> None:
        a, tr = self.agent, self.tr
        now = time.monotonic
        self.dispatch(a.start(now()))
        next_batch = now()
        next_status = now() + self.status_period_s
        batches_left = True
        while not self.stop.is_set():
            t = now()
            if batches_left and t >= next_batch:
                b = next(self.batches, None)
                if b is None:
                    batches_left = False
                    log.info("event=data_end observations=%d", a.counters["observations"])
                elif b is NOT_READY:  # a live source has no full batch yet: poll again soon
                    next_batch = t + DATA_POLL_S
                else:
                    self.dispatch(a.observe(b[0], b[1], t))
                    self.facts.observed(b[0], b[1])
                    self._fed += int(b[1].shape[0])
                    arrivals = getattr(self.facts.feed, "last_arrivals", None)
                    if arrivals:
                        self._lagging.append((self._fed, list(arrivals)))
                    next_batch = t + self.batch_interval_s
            if self._lagging:
                learned = a.local_summary.n_obs - self._n0
                wall = time.time()
                while self._lagging and learned >= self._lagging[0][0]:
                    self.facts.note_lag(self._lagging.popleft()[1], wall)
            if batches_left and not self._ingest_ended and self.facts.end_ingest.is_set():
                self._ingest_ended = True  # rows received are still learned, then data ends
                finish = getattr(self.facts.feed, "finish", None)
                if callable(finish):
                    finish()
                    next_batch = t
                else:
                    batches_left = False
                log.info("event=ingest_end")
            wake = a.next_deadline()
            if batches_left:
                wake = min(wake, next_batch)
            timeout = min(max(wake - now(), 0.0), 0.25)
            await tr.wait_readable(timeout)
            for _ in range(256):  # bounded drain keeps timers serviced under floods
                msg = tr.recv(0.0)
                if msg is None:
                    break
                self.dispatch(a.on_message(msg, now()))
            if now() >= a.next_deadline():
                self.dispatch(a.on_tick(now()))
                for peer in a.take_removed_peers():  # e.g. fake ids of a Hello flood
                    tr.disconnect(peer)
            tr.flush()
            if not batches_left and not self.facts.data_done:
                # done once the local summary covers every row (a warm-up may still hold some)
                if a.local_summary.n_obs >= a.counters["observations"]:
                    self.facts.data_done = True
                    self.facts.note_fused(a.fused_summary)
                    log.info("event=data_done n_obs=%d", a.local_summary.n_obs)
            if now() >= next_status:
                next_status = now() + self.status_period_s
                f = a.fused_summary
                log.info(
                    "event=status n_agents=%d n_obs=%d root=%d peers_live=%d rx=%d tx=%d",
                    f.n_agents,
                    f.n_obs,
                    a.tree.state.root,
                    len(a.peers.live()),
                    a.counters["net.rx_msgs"],
                    a.counters["net.tx_msgs"],
                )
                if os.getppid() != self.ppid:
                    log.warning("event=parent_died action=stop")
                    self.stop.set()
                if self.periodic is not None and not self.periodic():
                    self.stop.set()
            if self.facts.metrics is not None:
                self.facts.metrics.update(a, self.facts, now())
            if self.until is not None and self.until.verified:
                self.facts.frozen = True
            if self.until is not None and self.until.done.is_set():
                log.info("event=until_done action=stop")
                self.stop.set()
        self.dispatch(a.stop(now()))
        tr.flush()


async def serve(
    agent: Agent,
    transport: LiveTransport,
    batches: Iterable[tuple[np.ndarray, np.ndarray]] = (),
    batch_interval_s: float = 0.0,
    status_period_s: float = 1.0,
    install_signals: bool = True,
    facts: RunFacts | None = None,
    until: SwarmDone | None = None,
    periodic: Callable[[], bool] | None = None,
) -> None:
    """Run ``agent`` over ``transport`` until SIGINT/SIGTERM (then goodbye and return).

    ``facts`` is the :class:`RunFacts` the agent was built with (its ``status_extra``).
    ``until`` (started here, stopped on return) ends the run once the swarm is done;
    ``periodic`` is called every status period and ends the run when it returns False.
    """
    facts = facts if facts is not None else RunFacts(transport.endpoint)
    d = _Driver(
        agent, transport, batches, batch_interval_s, status_period_s, facts, until, periodic
    )
    if until is not None:
        facts.more = until.facts
        until.start()
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, d.stop.set)
    log.info(
        "event=start endpoint=%s neighbors=%s", transport.endpoint, list(agent.config.neighbors)
    )
    try:
        await d.run()
    finally:
        if until is not None:
            until.stop()
    log.info("event=stop counters=%s", _compact(agent.counters))


def _compact(c: dict[str, Any]) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted(c.items()))


def run(agent: Agent, transport: LiveTransport, **kwargs: Any) -> int:
    """Blocking :func:`serve`; closes the transport; returns a process exit code."""
    try:
        asyncio.run(serve(agent, transport, **kwargs))
    finally:
        transport.close()
    return 0
