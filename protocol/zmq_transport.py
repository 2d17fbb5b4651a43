"""ZeroMQ transport (Harmony pattern): one ROUTER inbox, one DEALER per neighbour.

The only module of swarmgp that imports zmq. Each agent binds a ROUTER (its inbox) and opens
a DEALER to each neighbour's ROUTER, with ``routing_id`` = its own id, so the receiver checks
the header's sender against the routing id. Sends never block (``SNDTIMEO=0``, small
``SNDHWM``); on ``EAGAIN`` the frames wait in a one-slot-per-(peer, kind) mailbox where the
latest state replaces an unsent older one (summaries are state, not a queue). ``LINGER=0``
everywhere, so closing never hangs on a dead peer. Arrays go out zero-copy (``copy=False``)
and are read zero-copy from the received frames.

A :class:`Hello` carrying an endpoint (re)connects the DEALER to that peer: a restarted agent
binds a new port and announces it. Status clients (:class:`StatusClient`) talk to an agent's
ROUTER with their own DEALER, and the agent answers them through its ROUTER.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import zmq
import zmq.asyncio

from ..fusion.summary import Summary
from .codec import MAX_ARRAY_BYTES, decode, encode
from .errors import DecodeError, TransportError, VersionMismatch
from .messages import Hello, Message, StatusReply, StatusRequest
from .transport import RejectHook

__all__ = ["StatusClient", "SubscriberSocket", "ZmqTransport", "client_id"]

log = logging.getLogger("swarmgp.transport")

#: Ids at or above this are status clients, not agents.
CLIENT_ID_BASE = 1 << 62


def client_id() -> int:
    """A fresh status-client id (above every agent id)."""
    return CLIENT_ID_BASE + int.from_bytes(os.urandom(4), "little")


def _rid(agent_id: int) -> bytes:
    return str(agent_id).encode()


class ZmqTransport:
    """One agent's ZeroMQ endpoint.

    Parameters
    ----------
    agent_id : int
    m : int
        The encoding's number of inducing inputs (validated on receive).
    encoding_hash : str
    bind : str
        ROUTER bind address; a ``*`` port picks a free one (see :attr:`endpoint`).
    advertise_host : str or None
        Host to put in :attr:`endpoint` when binding a wildcard interface.
    hwm : int
        DEALER send high-water mark, in messages.
    stats : MutableMapping of str to int, optional
        Counter to add ``net.*`` and ``rejected.*`` counts to (e.g. the agent's counters).
    """

    def __init__(
        self,
        agent_id: int,
        m: int,
        encoding_hash: str,
        bind: str = "tcp://127.0.0.1:*",
        advertise_host: str | None = None,
        hwm: int = 8,
        stats: MutableMapping[str, int] | None = None,
    ) -> None:
        self.agent_id, self.m, self.encoding_hash = agent_id, m, encoding_hash
        self.hwm = hwm
        self.stats: MutableMapping[str, int] = stats if stats is not None else Counter()
        self.rejected: Counter[str] = Counter()
        self.on_reject: RejectHook | None = None
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_ARRAY_BYTES)  # per frame; codec caps the rest
        self.router.setsockopt(zmq.RCVHWM, 1000)
        try:
            self.router.bind(bind)
        except zmq.ZMQError as e:
            self.close()
            raise TransportError(f"agent {agent_id}: cannot bind {bind}: {e}") from None
        ep = str(self.router.getsockopt_string(zmq.LAST_ENDPOINT))
        if advertise_host:
            ep = f"tcp://{advertise_host}:{ep.rsplit(':', 1)[1]}"
        self.endpoint = ep
        self._dealers: dict[int, tuple[zmq.Socket, str]] = {}
        self._pending: dict[tuple[int, type], list] = {}
        self._clients: dict[int, bytes] = {}
        self._refused_versions: set[bytes] = set()
        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)
        self._async_router: zmq.asyncio.Socket | None = None
        self.closed = False

    # ------------------------------------------------------------------ peers

    def connect(self, peer: int, endpoint: str) -> None:
        """Open (or re-point) the DEALER to ``peer`` at ``endpoint``."""
        old = self._dealers.get(peer)
        if old is not None:
            if old[1] == endpoint:
                return
            old[0].close(0)
            self.stats["net.reconnects"] += 1
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.ROUTING_ID, _rid(self.agent_id))
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, self.hwm)
        s.setsockopt(zmq.SNDTIMEO, 0)
        s.setsockopt(zmq.RECONNECT_IVL, 50)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        try:
            s.connect(endpoint)
        except zmq.ZMQError as e:
            s.close(0)
            raise TransportError(
                f"agent {self.agent_id}: cannot connect to {endpoint}: {e}"
            ) from None
        self._dealers[peer] = (s, endpoint)

    def connect_many(self, endpoints: Mapping[int, str]) -> None:
        """:meth:`connect` each ``peer -> endpoint``."""
        for p, ep in endpoints.items():
            self.connect(p, ep)

    @property
    def peers(self) -> dict[int, str]:
        """Connected peers and their endpoints."""
        return {p: ep for p, (_, ep) in self._dealers.items()}

    # ------------------------------------------------------------------ send

    def send(self, dest: int, msg: Message) -> None:
        """Send without blocking; on a full pipe keep only the newest frames per kind."""
        frames = encode(msg, self.encoding_hash, self.m)
        self._pending.pop((dest, type(msg)), None)
        self._send_frames(dest, type(msg), frames)

    def _send_frames(self, dest: int, kind: type, frames: list) -> bool:
        d = self._dealers.get(dest)
        try:
            if d is not None:
                d[0].send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            elif dest in self._clients:
                self.router.send_multipart(
                    [self._clients.pop(dest), *frames], flags=zmq.NOBLOCK, copy=False
                )
            else:
                self.stats["net.unroutable"] += 1
                return True
        except zmq.Again:
            if d is not None:
                self._pending[(dest, kind)] = frames
            self.stats["net.deferred"] += 1
            return False
        except zmq.ZMQError:
            self.stats["net.send_errors"] += 1
            return True
        nbytes = sum(memoryview(f).nbytes for f in frames)
        if d is None:  # a status reply: monitoring traffic, kept apart from protocol cost
            self.stats["net.status_tx_bytes"] += nbytes
            return True
        self.stats["net.tx_msgs"] += 1
        self.stats["net.tx_bytes"] += nbytes
        return True

    def flush(self) -> int:
        """Retry deferred sends; return how many are still waiting."""
        for key in list(self._pending):
            if self._send_frames(key[0], key[1], self._pending[key]):
                self._pending.pop(key, None)
        return len(self._pending)

    # ------------------------------------------------------------------ receive

    def recv(self, timeout_s: float = 0.0) -> Message | None:
        """Next valid message, waiting up to ``timeout_s``; rejected frames are counted."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            if not self.router.poll(0, zmq.POLLIN):
                left = deadline - time.monotonic()
                if left <= 0 or not self.router.poll(int(left * 1000) + 1, zmq.POLLIN):
                    return None
            msg = self._recv_one()
            if msg is not None:
                return msg

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        self.stats["rejected." + reason] += 1
        if self.on_reject is not None:
            self.on_reject(reason)

    def _recv_one(self) -> Message | None:
        frames = self.router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        rid = frames[0].bytes
        self.stats["net.rx_msgs"] += 1
        self.stats["net.rx_bytes"] += sum(len(f) for f in frames[1:])
        try:
            msg = decode([f.buffer for f in frames[1:]], self.m, self.encoding_hash)
        except VersionMismatch as e:
            if rid not in self._refused_versions:
                self._refused_versions.add(rid)
                log.warning("refusing peer %r: %s", rid.decode(errors="replace"), e)
            self._reject(e.reason)
            return None
        except DecodeError as e:
            self._reject(e.reason)
            return None
        if rid != _rid(msg.sender):
            self._reject("identity")  # header sender must match the DEALER routing id
            return None
        if isinstance(msg, StatusRequest):
            self._clients[msg.sender] = rid
        elif isinstance(msg, Hello) and msg.endpoint and msg.sender < CLIENT_ID_BASE:
            known = self._dealers.get(msg.sender)
            if known is None or known[1] != msg.endpoint:
                try:
                    self.connect(msg.sender, msg.endpoint)
                except TransportError:
                    self.stats["net.bad_endpoint"] += 1
        return msg

    async def wait_readable(self, timeout_s: float) -> bool:
        """Await (in asyncio) until a message may be read, or ``timeout_s`` passes."""
        if self.router.poll(0, zmq.POLLIN):
            return True
        if self._async_router is None:
            self._async_router = zmq.asyncio.Socket.from_socket(self.router)
        ev = await self._async_router.poll(  # type: ignore[call-arg]
            timeout=max(int(timeout_s * 1000), 0), flags=zmq.POLLIN
        )
        return bool(ev & zmq.POLLIN)  # type: ignore[operator,arg-type]

    def close(self) -> None:
        """Close every socket without lingering and terminate the context."""
        if getattr(self, "closed", False):
            return
        self.closed = True
        for s, _ in getattr(self, "_dealers", {}).values():
            s.close(0)
        self.router.close(0)
        self.ctx.term()


class StatusClient:
    """Query agents' status over their ROUTER inboxes (used by ``launch.py status``/``local``).

    Parameters
    ----------
    endpoints : mapping of agent id (or any key) to endpoint
    """

    def __init__(self, endpoints: Mapping[int, str]) -> None:
        self.id = client_id()
        self.ctx = zmq.Context()
        self._socks: dict[int, zmq.Socket] = {}
        self._poller = zmq.Poller()
        self._nonce = 0
        for k, ep in endpoints.items():
            self.add(k, ep)

    def add(self, key: int, endpoint: str) -> None:
        """Connect to one more agent (replacing the socket of ``key``)."""
        old = self._socks.pop(key, None)
        if old is not None:
            self._poller.unregister(old)
            old.close(0)
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.ROUTING_ID, _rid(self.id))
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 0)
        s.connect(endpoint)
        self._socks[key] = s
        self._poller.register(s, zmq.POLLIN)

    def query(
        self,
        keys: Iterable[int] | None = None,
        timeout_s: float = 2.0,
        X: object = None,
        summary: Summary | None = None,
    ) -> dict[int, StatusReply]:
        """Ask each agent for its status; return the replies that arrived in time.

        Parameters
        ----------
        keys : iterable of int, optional
            Which agents (default all).
        X : ndarray of shape (n, d), optional
            Inputs to get predictions at.
        summary : Summary, optional
            An extra summary for the agents to predict from.
        """
        import numpy as np

        self._nonce += 1
        nonce = self._nonce
        ks = list(self._socks) if keys is None else list(keys)
        Xa = None if X is None else np.ascontiguousarray(X, dtype=np.float64)
        req = StatusRequest(self.id, 0, nonce, nonce, Xa, summary)
        frames = encode(
            req,
            summary.encoding_hash if summary is not None else "",
            summary.m if summary is not None else 0,
        )
        by_sock = {}
        for k in ks:
            s = self._socks[k]
            by_sock[s] = k
            try:
                s.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                pass
        out: dict[int, StatusReply] = {}
        deadline = time.monotonic() + timeout_s
        while len(out) < len(ks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for s, _ in self._poller.poll(int(left * 1000) + 1):
                while s.poll(0, zmq.POLLIN):
                    fr = s.recv_multipart(copy=False)
                    try:
                        msg = decode([f.buffer for f in fr])
                    except DecodeError:
                        continue
                    if isinstance(msg, StatusReply) and msg.nonce == nonce and s in by_sock:
                        out[by_sock[s]] = msg
        return out

    def close(self) -> None:
        """Close sockets and the context."""
        for s in self._socks.values():
            s.close(0)
        self._socks.clear()
        self.ctx.term()


class SubscriberSocket:
    """A ZeroMQ SUB socket for data feeds (``zmq+sub://`` sources), so zmq stays in protocol/.

    Parameters
    ----------
    endpoint : str
        Where the publisher is, e.g. ``tcp://127.0.0.1:5600``.
    topic : str
        Subscription prefix ('' for all).
    rcvhwm : int
        Receive high-water mark (messages).
    context : zmq.Context, optional
        Shared context (default: the process-wide instance).
    """

    def __init__(self, endpoint: str, topic: str, rcvhwm: int, context: Any = None) -> None:
        ctx = context if context is not None else zmq.Context.instance()
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(endpoint)

    def poll(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a message; True when one can be read."""
        return bool(self._sock.poll(int(timeout_s * 1000), zmq.POLLIN))

    def recv_frames(self) -> list[bytes]:
        """Read one multipart message without blocking (call after :meth:`poll`)."""
        return list(self._sock.recv_multipart(zmq.NOBLOCK))

    def close(self) -> None:
        """Close at once (linger 0)."""
        self._sock.close(0)
