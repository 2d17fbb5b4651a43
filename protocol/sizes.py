"""Exact wire size of a message without encoding it (no array packing, no checksum).

The simulator counts the bytes every message would take on the wire. Encoding a Fuse message to
count it packs the summary (an ``m(m+3)/2`` copy) and runs crc32 over ~41 KB at m = 100; here
the size follows from the header fields and the array shapes alone::

    size = 9 (frame 0) + len(msgpack header) + 8 * (values in the array frames)

The header is the codec's header (same keys, same order, same values, array descriptors with the
same shapes), packed by msgpack (a few hundred bytes at most), so the count equals
``sum(len(frame) for frame in codec.encode(msg, encoding_hash, m))`` exactly;
``tests/protocol/test_sizes.py`` checks that for every message kind and several m.
"""

from __future__ import annotations

from typing import Any

import msgpack

from swarmgp.protocol.codec import _KINDS, MINOR
from swarmgp.protocol.messages import (
    Fuse,
    Heartbeat,
    Hello,
    Reduce,
    StatusReply,
    StatusRequest,
    TreeState,
)

__all__ = ["FRAME0_BYTES", "array_shapes", "encoded_size", "header_fields"]

#: Frame 0: signature, major version byte, crc32.
FRAME0_BYTES = 9


def _tree(t: TreeState) -> list[int]:
    return [t.root, t.root_inc, t.root_seq, t.dist, t.parent]


def _packed(m: int) -> list[int]:
    return [m * (m + 3) // 2]


def array_shapes(msg: object) -> list[tuple[str, list[int]]]:
    """``(name, shape)`` of each array frame the codec would write for ``msg``, in order."""
    if isinstance(msg, Fuse):
        return [("R", _packed(msg.summary.m))]
    if isinstance(msg, Reduce):
        return [("V", list(msg.vector.shape))]
    out: list[tuple[str, list[int]]] = []
    if isinstance(msg, StatusRequest):
        if msg.X is not None:
            out.append(("X", list(msg.X.shape)))
        if msg.summary is not None:
            out.append(("S", _packed(msg.summary.m)))
    elif isinstance(msg, StatusReply):
        for name, s in (("F", msg.fused), ("L", msg.local)):
            if s is not None:
                out.append((name, _packed(s.m)))
        for name, a in sorted(msg.predictions.items()):
            out.append(("p:" + name, list(a.shape)))
    return out


def header_fields(msg: object, encoding_hash: str = "", m: int = 0) -> dict[str, Any]:
    """The header map ``protocol.codec.encode`` writes for ``msg`` (same keys and order).

    Raises
    ------
    TypeError
        ``msg`` is not a protocol message.
    """
    kind = _KINDS.get(type(msg))
    if kind is None:
        raise TypeError(f"encoded_size: not a protocol message: {type(msg).__name__}")
    hdr: dict[str, Any] = {
        "k": kind,
        "s": msg.sender,  # type: ignore[attr-defined]
        "i": msg.incarnation,  # type: ignore[attr-defined]
        "q": msg.seq,  # type: ignore[attr-defined]
        "e": encoding_hash,
        "m": m,
        "mn": MINOR,
    }
    if isinstance(msg, Hello):
        hdr["ep"] = msg.endpoint
    elif isinstance(msg, Heartbeat):
        hdr["t"] = _tree(msg.tree)
        hdr["c"] = [msg.n_agents, msg.n_obs]
        if msg.acks:
            hdr["ak"] = [list(x) for x in msg.acks]
    elif isinstance(msg, Fuse):
        hdr.update(to=msg.to, v=msg.version, t=_tree(msg.tree))
        hdr["c"] = [msg.summary.n_agents, msg.summary.n_obs]
        if msg.gen:
            hdr["g"] = msg.gen
    elif isinstance(msg, Reduce):
        hdr["r"] = [msg.root, msg.root_inc, msg.epoch, msg.round, msg.phase, msg.size]
    elif isinstance(msg, StatusRequest):
        hdr["n"] = msg.nonce
        if msg.summary is not None:
            hdr["c"] = [msg.summary.n_agents, msg.summary.n_obs]
            hdr["sh"] = msg.summary.encoding_hash
    elif isinstance(msg, StatusReply):
        hdr["n"] = msg.nonce
        hdr["info"] = msg.info
        for name, s in (("F", msg.fused), ("L", msg.local)):
            if s is not None:
                hdr["c" + name] = [s.n_agents, s.n_obs]
                hdr["sh"] = s.encoding_hash
    hdr["a"] = [[name, "<f8", shape] for name, shape in array_shapes(msg)]
    return hdr


def encoded_size(msg: object, encoding_hash: str = "", m: int = 0) -> int:
    """Bytes of ``protocol.codec.encode(msg, encoding_hash, m)`` over all frames, exactly.

    Parameters
    ----------
    msg : Message
    encoding_hash : str
        The sender's common-encoding hash (written in the header).
    m : int
        The sender's number of inducing inputs (written in the header).

    Returns
    -------
    int

    Raises
    ------
    TypeError
        ``msg`` is not a protocol message.
    """
    hdr = header_fields(msg, encoding_hash, m)
    values = 0
    for _, _, shape in hdr["a"]:
        n = 1
        for s in shape:
            n *= s
        values += n
    return FRAME0_BYTES + len(msgpack.packb(hdr, use_bin_type=True)) + 8 * values
