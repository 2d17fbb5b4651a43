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

Security (DESIGN.md section 2). With a :class:`~swarmgp.protocol.keys.Keyring` the ROUTER is a
CURVE server behind a ZAP handler that admits only allow-listed keys, and every DEALER is a CURVE
client pinned to the peer's listed server key. The sender of every agent message is the agent id
bound to the authenticated key (the ZAP ``User-Id``); a header naming anyone else is rejected as
``impersonation``. The operator key may send status requests only. Without a keyring the swarm
runs as before and one loud warning says so.

Bounded work. A received message is read frame by frame: once its frame count or byte total is
over the caps the rest is drained without being kept (``rejected.too_many_frames`` /
``rejected.too_large``); ``MAXMSGSIZE`` still caps each frame. DEALERs are capped per agent
(least recently heard Hello-made sockets are evicted first) and socket creation or connect
failures are counted (``net.socket_errors``), never raised out of :meth:`ZmqTransport.send`,
:meth:`ZmqTransport.connect` or a received Hello.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping

import zmq
import zmq.asyncio

from swarmgp.fusion.summary import Summary
from swarmgp.protocol.codec import (
    MAX_ARRAY_BYTES,
    MAX_ARRAYS,
    MAX_HEADER_BYTES,
    decode,
    encode,
    packed_len,
)
from swarmgp.protocol.errors import DecodeError, TransportError, VersionMismatch
from swarmgp.protocol.keys import OPERATOR, Keyring
from swarmgp.protocol.messages import Fuse, Hello, Message, StatusReply, StatusRequest
from swarmgp.protocol.transport import RejectHook

__all__ = ["StatusClient", "ZmqTransport", "client_id"]

log = logging.getLogger("swarmgp.transport")

#: Ids at or above this are status clients, not agents.
CLIENT_ID_BASE = 1 << 62


def client_id() -> int:
    """A fresh status-client id (above every agent id)."""
    return CLIENT_ID_BASE + int.from_bytes(os.urandom(4), "little")


#: Default cap of DEALER sockets per transport (configured plus Hello-made ones).
MAX_SOCKETS = 256
#: Most frames of one message: routing id is stripped first; signature, header, arrays.
MAX_FRAMES = 2 + MAX_ARRAYS
#: Status clients remembered for a reply at once (a flood of client ids cannot grow state).
MAX_CLIENTS = 1024
#: Allowance for a status request's input rows ``X`` in the default message-size cap.
STATUS_X_BYTES = 32 * 1024 * 1024

_warned_unauthenticated = False


def _rid(agent_id: int) -> bytes:
    return str(agent_id).encode()


def default_max_message_bytes(m: int) -> int:
    """Byte cap of one message for an agent with ``m`` inducing inputs.

    Room for two packed summaries (a status request carries one plus ``X``), a full header and
    ``STATUS_X_BYTES`` of status inputs; anything larger is not a message a member sends.
    """
    return 2 * packed_len(max(m, 1)) * 8 + MAX_HEADER_BYTES + 64 + STATUS_X_BYTES


def _warn_unauthenticated(agent_id: int) -> None:
    global _warned_unauthenticated
    if not _warned_unauthenticated:
        _warned_unauthenticated = True
        log.warning(
            "agent %d: UNAUTHENTICATED SWARM: no keyring, so any process that can reach this "
            "port can join, impersonate members and read status; use `launch.py keys` and --keys",
            agent_id,
        )


def _curve_client(s: zmq.Socket, keyring: Keyring, server_key: bytes) -> None:
    s.setsockopt(zmq.CURVE_PUBLICKEY, keyring.public)
    s.setsockopt(zmq.CURVE_SECRETKEY, keyring.secret)
    s.setsockopt(zmq.CURVE_SERVERKEY, server_key)


class _AllowList:
    """ZAP policy: admit allow-listed keys only; the user id is the bound agent id.

    Guards against non-members reaching the agent at all: their CURVE handshake is refused
    before any of their frames is delivered.
    """

    def __init__(self, ctx: zmq.Context, keyring: Keyring) -> None:
        from zmq.auth.thread import ThreadAuthenticator
        from zmq.utils import z85

        ring = keyring

        class _Auth(ThreadAuthenticator):
            def curve_user_id(self, client_key: bytes) -> str:
                a = ring.agent_of(z85.encode(client_key))
                return OPERATOR if a is None else str(a)

        self.keyring = keyring
        self.denied = 0
        self.auth = _Auth(ctx, log=logging.getLogger("swarmgp.transport.zap"))
        self.auth.start()
        self.auth.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials check of one z85 client key."""
        ok = self.keyring.allowed(bytes(key))
        if not ok:
            self.denied += 1
        return ok

    def stop(self) -> None:
        """Stop the ZAP thread."""
        self.auth.stop()


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
    keyring : Keyring, optional
        This agent's keyring (:func:`~swarmgp.protocol.keys.load_keyring`): CURVE + ZAP
        allow-list on every socket, sender ids from the authenticated key. ``None``: an
        unauthenticated swarm (one loud warning).
    max_sockets : int
        Cap of DEALER sockets (peers) this transport keeps open.
    max_message_bytes : int, optional
        Cap of one received message's total bytes (default
        :func:`default_max_message_bytes` of ``m``); frames are capped by ``MAXMSGSIZE``.

    Raises
    ------
    TransportError
        The ROUTER cannot be created or bound, or the keyring is not an agent's.
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
        keyring: Keyring | None = None,
        max_sockets: int = MAX_SOCKETS,
        max_message_bytes: int | None = None,
    ) -> None:
        self.agent_id, self.m, self.encoding_hash = agent_id, m, encoding_hash
        self.hwm = hwm
        self.stats: MutableMapping[str, int] = stats if stats is not None else Counter()
        self.rejected: Counter[str] = Counter()
        self.on_reject: RejectHook | None = None
        self.keyring = keyring
        self.max_sockets = max(int(max_sockets), 1)
        self.max_message_bytes = (
            int(max_message_bytes)
            if max_message_bytes is not None
            else default_max_message_bytes(m)
        )
        self.closed = False
        self._dealers: dict[int, tuple[zmq.Socket, str]] = {}
        self._pinned: set[int] = set()
        self._heard: dict[int, float] = {}
        self._pending: dict[tuple[int, type], list] = {}
        self._clients: dict[int, bytes] = {}
        self._refused_versions: set[bytes] = set()
        self._async_router: zmq.asyncio.Socket | None = None
        self._zap: _AllowList | None = None
        self.ctx = zmq.Context()
        if keyring is not None and keyring.identity != agent_id:
            self.close()
            raise TransportError(
                f"agent {agent_id}: the keyring belongs to {keyring.identity!r}, not this agent"
            )
        try:
            self.router = self.ctx.socket(zmq.ROUTER)
        except zmq.ZMQError as e:
            self.close()
            raise TransportError(f"agent {agent_id}: cannot create the inbox: {e}") from None
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.MAXMSGSIZE, min(MAX_ARRAY_BYTES, self.max_message_bytes))
        self.router.setsockopt(zmq.RCVHWM, 1000)
        if keyring is not None:
            self._zap = _AllowList(self.ctx, keyring)
            self.router.setsockopt(zmq.CURVE_SERVER, 1)
            self.router.setsockopt(zmq.CURVE_SECRETKEY, keyring.secret)
            self.router.setsockopt(zmq.CURVE_PUBLICKEY, keyring.public)
        else:
            _warn_unauthenticated(agent_id)
        try:
            self.router.bind(bind)
        except zmq.ZMQError as e:
            self.close()
            raise TransportError(f"agent {agent_id}: cannot bind {bind}: {e}") from None
        ep = str(self.router.getsockopt_string(zmq.LAST_ENDPOINT))
        if advertise_host:
            ep = f"tcp://{advertise_host}:{ep.rsplit(':', 1)[1]}"
        self.endpoint = ep
        self._poller = zmq.Poller()
        self._poller.register(self.router, zmq.POLLIN)

    @property
    def secured(self) -> bool:
        """Whether CURVE with a ZAP allow-list protects this transport."""
        return self.keyring is not None

    # ------------------------------------------------------------------ peers

    def connect(self, peer: int, endpoint: str, pinned: bool = True) -> bool:
        """Open (or re-point) the DEALER to ``peer`` at ``endpoint``.

        Guards against descriptor exhaustion: at ``max_sockets`` the least recently heard
        unpinned socket is closed first (Hello-made sockets are unpinned; configured ones
        are pinned), and when every socket is pinned the new one is refused. Failures are
        counted (``net.socket_errors``, ``net.socket_cap``, ``net.unknown_key``) and logged,
        never raised.

        Returns
        -------
        bool
            Whether a DEALER to ``peer`` at ``endpoint`` is now open.
        """
        if self.closed:
            return False
        old = self._dealers.get(peer)
        if old is not None and old[1] == endpoint:
            if pinned:
                self._pinned.add(peer)
            return True
        server_key = None
        if self.keyring is not None:
            server_key = self.keyring.key_of(peer)
            if server_key is None:
                self.stats["net.unknown_key"] += 1
                log.warning("agent %d: peer %d has no key in the keyring", self.agent_id, peer)
                return False
        if old is None and len(self._dealers) >= self.max_sockets and not self._evict():
            self.stats["net.socket_cap"] += 1
            return False
        try:
            s = self.ctx.socket(zmq.DEALER)
        except zmq.ZMQError as e:
            self.stats["net.socket_errors"] += 1
            log.warning("agent %d: cannot open a socket to %d: %s", self.agent_id, peer, e)
            return False
        try:
            s.setsockopt(zmq.ROUTING_ID, _rid(self.agent_id))
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, self.hwm)
            s.setsockopt(zmq.SNDTIMEO, 0)
            s.setsockopt(zmq.RECONNECT_IVL, 50)
            s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
            s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
            if self.keyring is not None and server_key is not None:
                _curve_client(s, self.keyring, server_key)
            s.connect(endpoint)
        except zmq.ZMQError as e:
            s.close(0)
            self.stats["net.socket_errors"] += 1
            log.warning("agent %d: cannot connect to %s: %s", self.agent_id, endpoint, e)
            return False
        if old is not None:
            old[0].close(0)
            self.stats["net.reconnects"] += 1
        self._dealers[peer] = (s, endpoint)
        if pinned:
            self._pinned.add(peer)
        return True

    def _evict(self) -> bool:
        # the unpinned socket whose peer was heard least recently (never heard: first)
        cands = [p for p in self._dealers if p not in self._pinned]
        if not cands:
            return False
        victim = min(cands, key=lambda p: (self._heard.get(p, -math.inf), p))
        self.disconnect(victim)
        self.stats["net.evicted"] += 1
        return True

    def disconnect(self, peer: int) -> None:
        """Close the DEALER to ``peer`` (if any) and forget its deferred sends."""
        d = self._dealers.pop(peer, None)
        if d is not None:
            d[0].close(0)
        self._pinned.discard(peer)
        self._heard.pop(peer, None)
        for key in [k for k in self._pending if k[0] == peer]:
            del self._pending[key]

    def connect_many(self, endpoints: Mapping[int, str]) -> None:
        """:meth:`connect` each ``peer -> endpoint`` (pinned)."""
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

    def _read_bounded(self) -> tuple[bytes, list[zmq.Frame]] | None:
        """Read one multipart message frame by frame under the frame and byte caps.

        Guards against a peer making the agent hold a huge or many-framed message: once over
        a cap, the remaining frames are received and dropped one at a time, never kept.
        """
        first = self.router.recv(flags=zmq.NOBLOCK, copy=False)
        rid = first.bytes
        frames: list[zmq.Frame] = []
        total, n, reason = 0, 0, None
        more = first.more
        while more:
            f = self.router.recv(copy=False)  # the parts of one message arrive together
            more = f.more
            n += 1
            if reason is not None:
                continue
            total += len(f)
            if n > MAX_FRAMES:
                reason = "too_many_frames"
            elif total > self.max_message_bytes:
                reason = "too_large"
            if reason is not None:
                frames.clear()
            else:
                frames.append(f)
        self.stats["net.rx_msgs"] += 1
        self.stats["net.rx_bytes"] += total
        if reason is not None:
            self._reject(reason)
            return None
        return rid, frames

    def _authenticated_agent(self, frames: list[zmq.Frame]) -> int | None:
        # the ZAP handler set User-Id to the agent id bound to the key, or "operator"
        try:
            uid = frames[0].get("User-Id") if frames else ""
        except zmq.ZMQError:
            uid = ""
        return int(uid) if isinstance(uid, str) and uid.isdigit() else None

    def _recv_one(self) -> Message | None:
        got = self._read_bounded()
        if got is None:
            return None
        rid, frames = got
        try:
            msg = decode([f.buffer for f in frames], self.m, self.encoding_hash)
        except VersionMismatch as e:
            if rid not in self._refused_versions and len(self._refused_versions) < MAX_CLIENTS:
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
        if self.keyring is not None and not isinstance(msg, StatusRequest):
            # only a member's own key may speak as that member; operators only ask status
            if self._authenticated_agent(frames) != msg.sender:
                self._reject("impersonation")
                return None
            if isinstance(msg, Fuse) and msg.summary.n_agents > self.keyring.n_members:
                self._reject("implausible_counts")  # more agents than the swarm has
                return None
        if isinstance(msg, StatusRequest):
            if (
                self.keyring is not None
                and msg.sender < CLIENT_ID_BASE
                and self._authenticated_agent(frames) != msg.sender
            ):
                self._reject("impersonation")
                return None
            if len(self._clients) >= MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
                self.stats["net.clients_dropped"] += 1
            self._clients[msg.sender] = rid
        else:
            self._heard[msg.sender] = time.monotonic()
            if isinstance(msg, Hello) and msg.endpoint and msg.sender < CLIENT_ID_BASE:
                known = self._dealers.get(msg.sender)
                if known is None or known[1] != msg.endpoint:
                    if not self.connect(msg.sender, msg.endpoint, pinned=False):
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
        """Close every socket without lingering, stop the ZAP handler, terminate the context."""
        if self.closed:
            return
        self.closed = True
        for s, _ in self._dealers.values():
            s.close(0)
        self._dealers.clear()
        router = getattr(self, "router", None)
        if router is not None:
            router.close(0)
        if self._zap is not None:
            self._zap.stop()
        self.ctx.term()


class StatusClient:
    """Query agents' status over their ROUTER inboxes (used by ``launch.py status``/``local``).

    Parameters
    ----------
    endpoints : mapping of agent id (or any key) to endpoint
    keyring : Keyring, optional
        The operator's (or an agent's) keyring: connect as a CURVE client, checking each
        agent's server key from the allow-list (``key`` of :meth:`add` is then the agent id).
    """

    def __init__(self, endpoints: Mapping[int, str], keyring: Keyring | None = None) -> None:
        self.id = client_id()
        self.keyring = keyring
        self.ctx = zmq.Context()
        self._socks: dict[int, zmq.Socket] = {}
        self._poller = zmq.Poller()
        self._nonce = 0
        for k, ep in endpoints.items():
            self.add(k, ep)

    def add(self, key: int, endpoint: str) -> None:
        """Connect to one more agent (replacing the socket of ``key``).

        Raises
        ------
        TransportError
            With a keyring, ``key`` is not a listed agent; or the socket cannot be opened.
        """
        old = self._socks.pop(key, None)
        if old is not None:
            self._poller.unregister(old)
            old.close(0)
        server_key = None
        if self.keyring is not None:
            server_key = self.keyring.key_of(key)
            if server_key is None:
                raise TransportError(f"status: agent {key} has no key in the keyring")
        try:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.ROUTING_ID, _rid(self.id))
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDTIMEO, 0)
            if self.keyring is not None and server_key is not None:
                _curve_client(s, self.keyring, server_key)
            s.connect(endpoint)
        except zmq.ZMQError as e:
            raise TransportError(f"status: cannot connect to {endpoint}: {e}") from None
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
