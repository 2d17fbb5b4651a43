"""MQTT source (``mqtt://host:port/topic``), via paho-mqtt >= 2 (imported lazily).

The paho network thread validates each payload (see :mod:`.feed`) and puts the
observation on a :class:`~.queue.BoundedQueue`; iteration drains it. Under the
default ``"block"`` policy a slow consumer stalls the network thread, so the broker
holds the messages back (QoS 1) rather than anything being dropped silently.
With ``schema.agent = None`` the agent key is the last topic level.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import (
    BadRowError,
    QueueClosed,
    SourceConfigError,
    SourceOpenError,
)
from swarmgp.agents.sources.feed import EOS, SYNC, decode_payload
from swarmgp.agents.sources.jsonl_source import DEFAULT_JSON_SCHEMA
from swarmgp.agents.sources.queue import BoundedQueue
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import ColumnSchema, RowParser

__all__ = ["MqttSource"]


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SourceConfigError(
            "mqtt:// sources need paho-mqtt>=2: pip install 'swarmgp[mqtt]'"
        ) from exc
    if not hasattr(mqtt, "CallbackAPIVersion"):  # pragma: no cover
        raise SourceConfigError("paho-mqtt>=2 is required (CallbackAPIVersion missing)")
    return mqtt


class MqttSource(Source):
    """Subscribe to an MQTT topic.

    Parameters
    ----------
    host, port : str, int
        Broker.
    topic : str
        Subscription (wildcards ``+`` / ``#`` allowed).
    schema : ColumnSchema, optional
        Default :data:`~.jsonl_source.DEFAULT_JSON_SCHEMA`.
    qos : int
        Subscription QoS (default 1).
    maxsize, policy
        Internal queue (see :class:`~.queue.BoundedQueue`).
    connect_timeout_s : float
        The constructor fails with :class:`SourceOpenError` if the subscription is not
        acknowledged within this time.
    idle_timeout_s : float or None
        End the stream after this long without a message.
    client_id : str
    **kwargs
        ``pacer``, ``keep``, ``on_bad``.

    Attributes
    ----------
    synced : threading.Event
        Set when the first ``sync`` control message arrived.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        topic: str = "#",
        schema: ColumnSchema | None = None,
        *,
        qos: int = 1,
        maxsize: int = 4096,
        policy: str = "block",
        connect_timeout_s: float = 10.0,
        idle_timeout_s: float | None = None,
        poll_s: float = 0.05,
        client_id: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(f"mqtt://{host}:{port}/{topic}", **kwargs)
        self.host, self.port, self.topic, self.qos = host, int(port), topic, int(qos)
        self.schema = schema or DEFAULT_JSON_SCHEMA
        self.idle_timeout_s = idle_timeout_s
        self.poll_s = poll_s
        self.synced = threading.Event()
        self.queue: BoundedQueue[Observation | str] = BoundedQueue(maxsize, policy)
        self._parser = RowParser(self.schema, self.uri)
        self._n = 0
        self._subscribed = threading.Event()
        self._error: str | None = None
        mqtt = _paho()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, self.port, keepalive=30)
        except OSError as exc:
            raise SourceOpenError(self.uri, f"cannot connect to broker: {exc}") from exc
        self._client.loop_start()
        deadline = time.monotonic() + connect_timeout_s
        while not self._subscribed.wait(0.05):
            if self._error is not None or time.monotonic() > deadline:
                self.close()
                raise SourceOpenError(
                    self.uri, self._error or f"no subscription ack within {connect_timeout_s} s"
                )

    # paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._error = f"connection refused: {rc}"
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        if any(rc.is_failure for rc in rcs):
            self._error = f"subscription refused: {rcs}"
            return
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self._n += 1
        agent = msg.topic.rsplit("/", 1)[-1] if self.schema.agent is None else None
        try:
            got = decode_payload(msg.payload, self._parser, default_agent=agent, line=self._n)
        except BadRowError as err:
            self.stats.reject(err)
            return
        if got == SYNC:
            self.stats.control += 1
            self.synced.set()
            return
        try:
            self.queue.put(got)
        except QueueClosed:
            pass

    # iteration -------------------------------------------------------------------------
    def _produce(self) -> Iterator[Observation]:
        last = time.monotonic()
        while True:
            try:
                items = self.queue.get_many(256, self.poll_s)
            except QueueClosed:
                return
            if not items:
                if (
                    self.idle_timeout_s is not None
                    and time.monotonic() - last > self.idle_timeout_s
                ):
                    return
                continue
            last = time.monotonic()
            for item in items:
                if isinstance(item, str):
                    self.stats.control += 1
                    if item == EOS:
                        return
                    continue
                yield item

    def stop(self) -> None:
        """End the iteration once the queued items are consumed (thread-safe)."""
        self.queue.close()

    @property
    def dropped(self) -> int:
        """Observations dropped by a ``"drop-oldest"`` queue."""
        return self.queue.dropped

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        client = getattr(self, "_client", None)
        if client is not None:
            self._client = None
            self.queue.close()
            try:
                client.disconnect()
            finally:
                client.loop_stop()
        super().close()
