"""Wire format v1: versioned, checksummed, validated multipart frames; never pickled.

Layout of one message (a ZeroMQ multipart message, or any list of byte buffers)::

    frame 0   b"SWGP" + major version byte + crc32 (4 bytes, little-endian) of frames 1..
    frame 1   msgpack map (<= 64 KiB): kind, sender, incarnation, seq, encoding hash, m,
              kind-specific fields, and one [name, "<f8", shape] descriptor per array frame
    frame 2.. raw C-contiguous little-endian float64 arrays, one per descriptor (zero-copy)

Decoding validates in order, before anything is built: frame count, frame 0 signature,
major version, frame sizes, checksum, header msgpack (``strict_map_key``), header schema,
array descriptors (dtype allow-list, shapes matching the encoding's m, byte sizes), finite
values, then the summary (symmetric positive definite precision) and the encoding hash.
Every rejection raises a :class:`~swarmgp.protocol.errors.DecodeError` subclass whose
``reason`` names a counter; nothing else escapes :func:`decode`.

A fusion message at m = 100 is m(m+3)/2 = 5150 float64 values (41,200 bytes) plus a header of
about 150 bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from swarmgp.fusion.errors import FusionError
from swarmgp.fusion.summary import Summary
from swarmgp.protocol.errors import (
    BadArray,
    BadChecksum,
    BadFrames,
    BadHeader,
    BadSignature,
    BadSummary,
    EncodingMismatch,
    VersionMismatch,
)
from swarmgp.protocol.messages import (
    Fuse,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    Reduce,
    StatusReply,
    StatusRequest,
    TreeState,
)

__all__ = [
    "MAJOR",
    "MAX_ARRAYS",
    "MAX_HEADER_BYTES",
    "MAX_M",
    "MINOR",
    "SIGNATURE",
    "array_shapes",
    "decode",
    "encode",
    "header_fields",
    "packed_len",
]

SIGNATURE = b"SWGP"
MAJOR = 1
MINOR = 0
#: Header frame cap (the brief's 64 KiB).
MAX_HEADER_BYTES = 64 * 1024
#: At most this many array frames after the header.
MAX_ARRAYS = 12
#: Largest number of inducing inputs accepted (packed summary of 2.1 M values, 16.8 MB).
MAX_M = 2048
#: Largest single array frame in bytes.
MAX_ARRAY_BYTES = 64 * 1024 * 1024
_MAX_DIM = 1 << 24
_MAX_ID = (1 << 63) - 1
_MAX_U64 = (1 << 64) - 1
_MAX_COUNT = (1 << 53) - 1
_F8 = np.dtype("<f8")
_CRC = struct.Struct("<I")

_KINDS: dict[type, str] = {
    Hello: "hello",
    Heartbeat: "hb",
    Fuse: "fuse",
    Goodbye: "bye",
    StatusRequest: "sreq",
    StatusReply: "srep",
    Reduce: "red",  # collective mode (issue 9)
}
# kinds whose encoding hash and m must equal the receiver's
_BOUND_KINDS = frozenset({"hello", "hb", "fuse", "red"})
#: Longest all-reduce vector (collective mode): packed statistics at MAX_M with room to spare.
MAX_REDUCE_LEN = 4 * 1024 * 1024


def packed_len(m: int) -> int:
    """Length m(m+3)/2 of a packed summary (upper triangle of P, then h)."""
    return m * (m + 3) // 2


# --------------------------------------------------------------------------- encode


def _tree(t: TreeState) -> list[int]:
    return [t.root, t.root_inc, t.root_seq, t.dist, t.parent]


def _f8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=_F8)


def array_shapes(msg: object) -> list[tuple[str, list[int]]]:
    """``(name, shape)`` of each array frame :func:`encode` writes for ``msg``, in order."""
    if isinstance(msg, Fuse):
        return [("R", [packed_len(msg.summary.m)])]
    if isinstance(msg, Reduce):
        return [("V", list(msg.vector.shape))]
    out: list[tuple[str, list[int]]] = []
    if isinstance(msg, StatusRequest):
        if msg.X is not None:
            out.append(("X", list(msg.X.shape)))
        if msg.summary is not None:
            out.append(("S", [packed_len(msg.summary.m)]))
    elif isinstance(msg, StatusReply):
        for name, s in (("F", msg.fused), ("L", msg.local)):
            if s is not None:
                out.append((name, [packed_len(s.m)]))
        for name, a in sorted(msg.predictions.items()):
            out.append(("p:" + name, list(a.shape)))
    return out


def header_fields(msg: object, encoding_hash: str = "", m: int = 0) -> dict[str, Any]:
    """The header map :func:`encode` writes for ``msg``, without touching any array.

    The array descriptors come from :func:`array_shapes`, so :mod:`protocol.sizes` can count a
    message's bytes from this map alone.

    Raises
    ------
    TypeError
        ``msg`` is not a protocol message.
    """
    kind = _KINDS.get(type(msg))
    if kind is None:
        raise TypeError(f"encode: not a protocol message: {type(msg).__name__}")
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
        if msg.pending:
            hdr["pd"] = list(msg.pending)
    elif isinstance(msg, Fuse):
        hdr.update(to=msg.to, v=msg.version, t=_tree(msg.tree))
        hdr["c"] = [msg.summary.n_agents, msg.summary.n_obs]
        if msg.gen:
            hdr["g"] = msg.gen
        if msg.pending:
            hdr["pd"] = 1
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


def _payload(msg: object) -> list[np.ndarray]:
    """The float64 arrays of ``msg``'s frames, in :func:`array_shapes` order."""
    if isinstance(msg, Fuse):
        return [_f8(msg.summary.pack())]
    if isinstance(msg, Reduce):
        return [_f8(msg.vector)]
    out: list[np.ndarray] = []
    if isinstance(msg, StatusRequest):
        if msg.X is not None:
            out.append(_f8(msg.X))
        if msg.summary is not None:
            out.append(_f8(msg.summary.pack()))
    elif isinstance(msg, StatusReply):
        for s in (msg.fused, msg.local):
            if s is not None:
                out.append(_f8(s.pack()))
        for _, a in sorted(msg.predictions.items()):
            out.append(_f8(a))
    return out


def encode(msg: Message, encoding_hash: str = "", m: int = 0) -> list[bytes | memoryview]:
    """Serialize a message into frames.

    Parameters
    ----------
    msg : Message
    encoding_hash : str
        The sender's common-encoding hash (checked by receivers of hello/hb/fuse).
    m : int
        The sender's number of inducing inputs.

    Returns
    -------
    list of bytes or memoryview
        Frame 0, the header, then one zero-copy float64 buffer per array. The array buffers
        alias immutable snapshots: never mutate the summaries after sending.
    """
    hdr = header_fields(msg, encoding_hash, m)
    arrays = _payload(msg)
    header = msgpack.packb(hdr, use_bin_type=True)
    if len(header) > MAX_HEADER_BYTES:
        raise BadHeader(f"encode: header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    bufs: list[bytes | memoryview] = [header]
    bufs.extend(memoryview(a).cast("B") for a in arrays)  # type: ignore[arg-type]
    crc = 0
    for b in bufs:
        crc = zlib.crc32(b, crc)
    return [SIGNATURE + bytes([MAJOR]) + _CRC.pack(crc), *bufs]


# --------------------------------------------------------------------------- decode


def _no_ext(code: int, data: bytes) -> Any:
    raise BadHeader(f"header: msgpack extension type {code} not allowed")


def _int(h: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = h.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise BadHeader(f"header: field {key!r} must be an int in [{lo}, {hi}], got {v!r}")
    return v


def _str(h: dict[str, Any], key: str, maxlen: int, default: str | None = None) -> str:
    v = h.get(key, default)
    if type(v) is not str or len(v) > maxlen:
        raise BadHeader(f"header: field {key!r} must be a str of <= {maxlen} chars")
    return v


def _ints(h: dict[str, Any], key: str, n: int, lo: int, hi: int) -> list[int]:
    v = h.get(key)
    if type(v) is not list or len(v) != n:
        raise BadHeader(f"header: field {key!r} must be a list of {n} ints")
    for x in v:
        if type(x) is not int or not lo <= x <= hi:
            raise BadHeader(f"header: field {key!r} holds {x!r}, outside [{lo}, {hi}]")
    return v


def _tree_state(h: dict[str, Any]) -> TreeState:
    r, ri, rs, d, p = _ints(h, "t", 5, -1, _MAX_U64)
    if r < 0 or d < 0 or p > _MAX_ID or r > _MAX_ID or rs > _MAX_ID:
        raise BadHeader("header: tree state out of range")
    return TreeState(r, ri, rs, d, p)


#: Most acknowledgements one heartbeat may carry (one per tree neighbour).
MAX_ACKS = 1024


def _acks(h: dict[str, Any]) -> tuple[tuple[int, int, int], ...]:
    v = h.get("ak")
    if v is None:
        return ()
    if type(v) is not list or len(v) > MAX_ACKS:
        raise BadHeader(f"header: field 'ak' must be a list of <= {MAX_ACKS} acknowledgements")
    out = []
    for x in v:
        if type(x) is not list or len(x) != 3 or any(type(y) is not int for y in x):
            raise BadHeader("header: an acknowledgement is a list of 3 ints")
        k, inc, ver = x
        if not (0 <= k <= _MAX_ID and 0 <= inc <= _MAX_U64 and 0 <= ver <= _MAX_ID):
            raise BadHeader("header: acknowledgement out of range")
        out.append((k, inc, ver))
    return tuple(out)


def _pending(h: dict[str, Any]) -> tuple[int, ...]:
    v = h.get("pd")
    if v is None:
        return ()
    if type(v) is not list or len(v) > MAX_ACKS:
        raise BadHeader(f"header: field 'pd' must be a list of <= {MAX_ACKS} agent ids")
    if any(type(k) is not int or not 0 <= k <= _MAX_ID for k in v):
        raise BadHeader("header: a pending id is an int in range")
    return tuple(v)


def _as_view(f: object) -> memoryview:
    try:
        v = memoryview(f)  # type: ignore[arg-type]
    except TypeError:
        raise BadFrames(f"frame of type {type(f).__name__} is not a byte buffer") from None
    if v.ndim != 1 or v.itemsize != 1:
        try:
            v = v.cast("B")
        except TypeError:
            raise BadFrames("frame is not a contiguous byte buffer") from None
    return v


def _arrays(h: dict[str, Any], views: list[memoryview]) -> dict[str, np.ndarray]:
    desc = h.get("a")
    if type(desc) is not list or len(desc) != len(views):
        raise BadFrames(
            f"header describes {len(desc) if type(desc) is list else '?'} arrays, "
            f"{len(views)} array frames arrived"
        )
    out: dict[str, np.ndarray] = {}
    for d, buf in zip(desc, views, strict=True):
        if type(d) is not list or len(d) != 3:
            raise BadHeader("header: array descriptor must be [name, dtype, shape]")
        name, dtype, shape = d
        if type(name) is not str or len(name) > 32 or name in out:
            raise BadHeader(f"header: bad or repeated array name {name!r}")
        if dtype != "<f8":
            raise BadArray(f"array {name!r}: dtype {dtype!r} not allowed (only '<f8')")
        if type(shape) is not list or not 1 <= len(shape) <= 2:
            raise BadArray(f"array {name!r}: shape must have 1 or 2 dimensions")
        if any(type(s) is not int or not 0 <= s <= _MAX_DIM for s in shape):
            raise BadArray(f"array {name!r}: bad shape {shape!r}")
        n = 1
        for s in shape:
            n *= s
        if n * 8 != buf.nbytes:
            raise BadArray(f"array {name!r}: shape {shape} needs {n * 8} bytes, got {buf.nbytes}")
        a = np.frombuffer(buf, dtype=_F8).reshape(shape)
        if not np.isfinite(a).all():
            raise BadArray(f"array {name!r}: NaN or inf values")
        out[name] = a
    return out


def _summary(
    arrays: dict[str, np.ndarray], name: str, counts: list[int], m: int, ehash: str
) -> Summary:
    a = arrays.get(name)
    if a is None or a.ndim != 1 or a.shape[0] != packed_len(m):
        raise EncodingMismatch(
            f"summary {name!r}: expected {packed_len(m)} values for m={m}, "
            f"got {None if a is None else a.shape}"
        )
    n_agents, n_obs = counts
    try:
        s = Summary.unpack(a, m, n_obs, n_agents, ehash)
        s.validate()
    except FusionError as e:
        raise BadSummary(f"summary {name!r}: {e}") from None
    return s


def _find_m(views_len: int) -> int:
    # m from a packed length m(m+3)/2 (status clients do not know m in advance)
    m = int((np.sqrt(9 + 8 * views_len) - 3) / 2)
    for c in (m - 1, m, m + 1):
        if c >= 1 and packed_len(c) == views_len:
            return c
    raise BadArray(f"{views_len} values is not a packed summary length")


def decode(
    frames: Sequence[object], expected_m: int | None = None, encoding_hash: str | None = None
) -> Message:
    """Validate and parse frames into a message.

    Parameters
    ----------
    frames : sequence of bytes-like
        The multipart message (without any ROUTER routing-id frame).
    expected_m : int or None
        The receiver's number of inducing inputs; ``None`` (status clients) accepts the m in
        the header, up to ``MAX_M``.
    encoding_hash : str or None
        The receiver's encoding hash; ``None`` accepts the one in the header.

    Returns
    -------
    Message

    Raises
    ------
    DecodeError
        Any subclass; ``reason`` names the check that failed. No other exception escapes.
    """
    n = len(frames)
    if not 2 <= n <= 2 + MAX_ARRAYS:
        raise BadFrames(f"expected 2 to {2 + MAX_ARRAYS} frames, got {n}")
    views = [_as_view(f) for f in frames]
    f0 = views[0]
    if f0.nbytes != 9 or f0[:4].tobytes() != SIGNATURE:
        raise BadSignature("frame 0 is not a SWGP signature")
    if f0[4] != MAJOR:
        raise VersionMismatch(
            f"peer speaks swarmgp protocol v{f0[4]}, this agent speaks v{MAJOR}; refused"
        )
    if views[1].nbytes > MAX_HEADER_BYTES:
        raise BadFrames(f"header of {views[1].nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    if any(v.nbytes > MAX_ARRAY_BYTES for v in views[2:]):
        raise BadFrames(f"array frame over {MAX_ARRAY_BYTES} bytes")
    crc = 0
    for v in views[1:]:
        crc = zlib.crc32(v, crc)
    if _CRC.unpack(f0[5:9])[0] != crc:
        raise BadChecksum("frames do not match the checksum in frame 0")
    try:
        h = msgpack.unpackb(views[1], raw=False, strict_map_key=True, ext_hook=_no_ext)
    except BadHeader:
        raise
    except Exception as e:  # untrusted bytes: msgpack raises many types; all mean "bad header"
        raise BadHeader(f"header is not valid msgpack: {type(e).__name__}") from None
    if type(h) is not dict:
        raise BadHeader("header must be a msgpack map")
    return _parse(h, views[2:], expected_m, encoding_hash)


def _parse(
    h: dict[str, Any], views: list[memoryview], expected_m: int | None, ehash: str | None
) -> Message:
    kind = _str(h, "k", 8)
    sender = _int(h, "s", 0, _MAX_ID)
    inc = _int(h, "i", 0, _MAX_U64)
    seq = _int(h, "q", 0, _MAX_ID)
    e = _str(h, "e", 64)
    m = _int(h, "m", 0, MAX_M)
    if kind in _BOUND_KINDS:
        if ehash is not None and e != ehash:
            raise EncodingMismatch(f"message encoding {e!r} differs from ours {ehash!r}")
        if expected_m is not None and m != expected_m:
            raise EncodingMismatch(f"message has m={m}, ours is {expected_m}")
    arrays = _arrays(h, views)
    if kind == "hello":
        _no_arrays(arrays, kind)
        return Hello(sender, inc, seq, _str(h, "ep", 256, ""))
    if kind == "hb":
        _no_arrays(arrays, kind)
        na, no = _ints(h, "c", 2, 0, _MAX_COUNT)
        return Heartbeat(sender, inc, seq, _tree_state(h), na, no, _acks(h), _pending(h))
    if kind == "fuse":
        if set(arrays) != {"R"}:
            raise BadFrames("fuse: expected exactly one array 'R'")
        counts = _ints(h, "c", 2, 0, _MAX_COUNT)
        if counts[0] < 1:
            raise BadHeader("fuse: a tree message covers at least its sender")
        summary = _summary(arrays, "R", counts, m, e)
        return Fuse(
            sender,
            inc,
            seq,
            _int(h, "to", 0, _MAX_ID),
            _int(h, "v", 0, _MAX_ID),
            _tree_state(h),
            summary,
            _int(h, "g", 0, _MAX_ID) if "g" in h else 0,
            _int(h, "pd", 0, 1) == 1 if "pd" in h else False,
        )
    if kind == "red":  # collective mode (issue 9)
        if set(arrays) != {"V"} or arrays["V"].ndim != 1:
            raise BadFrames("reduce: expected exactly one 1-D array 'V'")
        if arrays["V"].shape[0] > MAX_REDUCE_LEN:
            raise BadArray(f"reduce: vector over {MAX_REDUCE_LEN} values")
        root, rinc, epoch, rnd, phase, size = _ints(h, "r", 6, 0, _MAX_U64)
        if root > _MAX_ID or phase > 3 or size > MAX_REDUCE_LEN or rnd > _MAX_ID:
            raise BadHeader("reduce: root, phase, round or size out of range")
        return Reduce(sender, inc, seq, root, rinc, epoch, rnd, phase, size, arrays["V"].copy())
    if kind == "bye":
        _no_arrays(arrays, kind)
        return Goodbye(sender, inc, seq)
    if kind == "sreq":
        if not set(arrays) <= {"X", "S"}:
            raise BadFrames("status request: only arrays 'X' and 'S' allowed")
        X = arrays.get("X")
        if X is not None and X.ndim != 2:
            raise BadArray("status request: X must be 2-D")
        given = None
        if "S" in arrays:
            sh = _str(h, "sh", 64)
            if ehash is not None and sh != ehash:
                raise EncodingMismatch("status request: summary of another encoding")
            sm = expected_m if expected_m is not None else _find_m(arrays["S"].shape[0])
            given = _summary(arrays, "S", _ints(h, "c", 2, 0, _MAX_COUNT), sm, sh)
        return StatusRequest(sender, inc, seq, _int(h, "n", 0, _MAX_U64), X, given)
    if kind == "srep":
        info = h.get("info")
        if type(info) is not dict:
            raise BadHeader("status reply: info must be a map")
        sums: dict[str, Summary] = {}
        for name in ("F", "L"):
            if name in arrays:
                sh = _str(h, "sh", 64)
                sm = expected_m if expected_m is not None else _find_m(arrays[name].shape[0])
                sums[name] = _summary(arrays, name, _ints(h, "c" + name, 2, 0, _MAX_COUNT), sm, sh)
        preds = {}
        for name, a in arrays.items():
            if name.startswith("p:"):
                if a.ndim != 1:
                    raise BadArray(f"status reply: prediction {name!r} must be 1-D")
                preds[name[2:]] = a
            elif name not in ("F", "L"):
                raise BadFrames(f"status reply: unexpected array {name!r}")
        return StatusReply(
            sender,
            inc,
            seq,
            _int(h, "n", 0, _MAX_U64),
            info,
            sums.get("F"),
            sums.get("L"),
            preds,
        )
    raise BadHeader(f"header: unknown message kind {kind!r}")


def _no_arrays(arrays: dict[str, np.ndarray], kind: str) -> None:
    if arrays:
        raise BadFrames(f"{kind}: carries no arrays, got {len(arrays)}")
