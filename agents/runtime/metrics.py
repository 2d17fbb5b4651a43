"""``--metrics-port N``: a Prometheus endpoint of one agent process (``prometheus_client``).

The runner refreshes a snapshot of the agent's numbers at most every :data:`REFRESH_S` from
its own loop (:meth:`AgentMetrics.update`); the HTTP thread of ``prometheus_client`` only
reads that snapshot, so a scrape never touches the agent's state while it changes.

Metrics (all labelled with ``agent``):

* ``swarmgp_observations_total``: rows the agent learned from; ``swarmgp_rows_received_total``
  rows its feed handed on;
* ``swarmgp_messages_total{direction}``, ``swarmgp_bytes_total{direction}`` (``tx``/``rx``);
* ``swarmgp_rejects_total{reason}``: refused messages (``protocol.<why>``) and rejected data
  rows (``data.<why>``);
* ``swarmgp_peers_live``; ``swarmgp_collective_agents`` and ``swarmgp_collective_observations``
  (what the collective model covers);
* ``swarmgp_consistency_age_seconds``: seconds since the collective model last changed (how
  long it has been stable; it grows once the swarm agrees);
* ``swarmgp_ingest_lag_seconds{stat}``: arrival to learned, ``mean`` and ``max``;
  ``swarmgp_ingest_lag_rows_total``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from swarmgp.agents.runtime.errors import LaunchError

__all__ = ["AgentMetrics", "REFRESH_S", "require_prometheus", "start_metrics"]

#: Longest age of the snapshot a scrape reads, seconds.
REFRESH_S = 0.25


def require_prometheus() -> Any:
    """The ``prometheus_client`` module.

    Raises
    ------
    LaunchError
        One line when it is not installed.
    """
    try:
        import prometheus_client
    except ImportError:
        raise LaunchError(
            "--metrics-port needs the optional package prometheus_client "
            "(pip install 'swarmgp[metrics]')"
        ) from None
    return prometheus_client


class AgentMetrics:
    """The snapshot an agent's Prometheus collector serves (see the module doc)."""

    def __init__(self, agent_id: int) -> None:
        self.agent_id = str(agent_id)
        self._lock = threading.Lock()
        self._snap: dict[str, Any] = {}
        self._next = 0.0
        self.port = 0

    def update(self, agent: Any, facts: Any, now: float, force: bool = False) -> None:
        """Refresh the snapshot from the agent and the runner's facts (the runner's thread)."""
        if now < self._next and not force:
            return
        self._next = now + REFRESH_S
        c = agent.counters
        rejects: dict[str, float] = {}
        for k, v in c.items():
            if k.startswith("rejected."):
                rejects["protocol." + k[len("rejected.") :]] = float(v)
        feed = getattr(facts, "feed", None)
        source = getattr(feed, "source", None)
        stats = getattr(source, "stats", None)
        if stats is not None:
            for why, n in (stats.as_dict().get("rejected") or {}).items():
                rejects["data." + str(why)] = float(n)
        fused = agent.fused_summary
        changed = facts.last_fused_change_wall
        snap = {
            "observations": float(c.get("observations", 0)),
            "rows_received": float(facts.rows_received or 0),
            "tx_msgs": float(c.get("net.tx_msgs", 0)),
            "rx_msgs": float(c.get("net.rx_msgs", 0)),
            "tx_bytes": float(c.get("net.tx_bytes", 0)),
            "rx_bytes": float(c.get("net.rx_bytes", 0)),
            "rejects": rejects,
            "peers_live": float(len(agent.peers.live())),
            "fused_agents": float(fused.n_agents),
            "fused_obs": float(fused.n_obs),
            "consistency_age": (time.time() - changed) if changed is not None else 0.0,
            "lag_mean": facts.lag_sum / facts.lag_n if facts.lag_n else 0.0,
            "lag_max": facts.lag_max if facts.lag_n else 0.0,
            "lag_n": float(facts.lag_n),
        }
        with self._lock:
            self._snap = snap

    def snapshot(self) -> dict[str, Any]:
        """The last snapshot (a copy)."""
        with self._lock:
            return dict(self._snap)

    def collect(self) -> Iterator[Any]:
        """Metric families of the snapshot (``prometheus_client`` calls it on a scrape)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.snapshot()
        if not s:
            return
        a = self.agent_id

        def counter(name: str, doc: str, value: float) -> Any:
            m = CounterMetricFamily(name, doc, labels=["agent"])
            m.add_metric([a], value)
            return m

        def gauge(name: str, doc: str, value: float) -> Any:
            m = GaugeMetricFamily(name, doc, labels=["agent"])
            m.add_metric([a], value)
            return m

        yield counter("swarmgp_observations", "rows learned from", s["observations"])
        yield counter("swarmgp_rows_received", "rows the data feed handed on", s["rows_received"])
        msgs = CounterMetricFamily(
            "swarmgp_messages", "protocol messages", labels=["agent", "direction"]
        )
        msgs.add_metric([a, "tx"], s["tx_msgs"])
        msgs.add_metric([a, "rx"], s["rx_msgs"])
        yield msgs
        nbytes = CounterMetricFamily(
            "swarmgp_bytes", "protocol bytes", labels=["agent", "direction"]
        )
        nbytes.add_metric([a, "tx"], s["tx_bytes"])
        nbytes.add_metric([a, "rx"], s["rx_bytes"])
        yield nbytes
        rej = CounterMetricFamily(
            "swarmgp_rejects", "refused messages and rejected rows", labels=["agent", "reason"]
        )
        for why, n in sorted(s["rejects"].items()):
            rej.add_metric([a, why], n)
        yield rej
        yield gauge("swarmgp_peers_live", "neighbours heard from lately", s["peers_live"])
        yield gauge(
            "swarmgp_collective_agents", "agents the collective model covers", s["fused_agents"]
        )
        yield gauge(
            "swarmgp_collective_observations",
            "observations the collective model covers",
            s["fused_obs"],
        )
        yield gauge(
            "swarmgp_consistency_age_seconds",
            "seconds since the collective model last changed",
            s["consistency_age"],
        )
        lag = GaugeMetricFamily(
            "swarmgp_ingest_lag_seconds", "arrival to learned, seconds", labels=["agent", "stat"]
        )
        lag.add_metric([a, "mean"], s["lag_mean"])
        lag.add_metric([a, "max"], s["lag_max"])
        yield lag
        yield counter("swarmgp_ingest_lag_rows", "rows whose ingest lag is counted", s["lag_n"])


def start_metrics(port: int, agent_id: int, addr: str = "127.0.0.1") -> AgentMetrics:
    """Serve an agent's metrics on ``addr:port`` (0: a free port, in ``.port``).

    Raises
    ------
    LaunchError
        ``prometheus_client`` missing, or the port cannot be bound (one line).
    """
    prom = require_prometheus()
    from prometheus_client import CollectorRegistry

    metrics = AgentMetrics(agent_id)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)  # type: ignore[arg-type]
    try:
        server = prom.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise LaunchError(f"--metrics-port {port}: cannot listen: {exc.strerror or exc}") from None
    if isinstance(server, tuple):  # prometheus_client >= 0.20 returns (server, thread)
        metrics.port = int(server[0].server_address[1])
    else:
        metrics.port = int(port)
    return metrics
