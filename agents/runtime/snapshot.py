"""Durable agents (``--state-dir DIR``): an atomic, validated snapshot of one agent's state.

After every ``--snapshot-every K`` batches (and on a clean stop) the agent writes its local
statistics, learned or agreed parameters, counters, incarnation and its position in its data
source to ``DIR/snapshot.bin``; on restart it restores them, takes a *new* incarnation (peers
supersede its past life) and resumes a table file or the synthetic world after the last batch
it had learned, so a SIGKILL loses at most the batch in flight and nothing is counted twice. A
live feed (stdin, ``zmq+sub``, MQTT) is not replayed: rows that arrived but were not yet in a
snapshot are lost.

File format (version :data:`FORMAT_VERSION`), never pickled::

    b"SWGPSNAP"                 8 bytes, magic
    version                     uint32 little-endian
    header length H             uint32 little-endian
    header                      H bytes, one UTF-8 JSON object (scalars, counters, array list)
    payload                     the arrays named in header["arrays"], in order, raw <f8 bytes
    sha256                      32 bytes over everything above

The file is written to a temporary name, fsynced, ``os.replace``-d over the old one and the
directory fsynced. :func:`decode` checks the magic, version, checksum, header structure and
exact payload length; :class:`Durable` then checks the agent id, the run key (run seed, world,
model and data settings, data manifest), the encoding hash and every array's shape before
anything is applied. Every refusal is one :class:`SnapshotError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swarmgp.fusion.errors import SwarmGPError

if TYPE_CHECKING:
    from swarmgp.agents.agent import Agent
    from swarmgp.agents.run_config import RunConfig
    from swarmgp.agents.runtime.node import NodePlan

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SNAPSHOT_FILE",
    "Durable",
    "Snapshot",
    "SnapshotError",
    "decode",
    "encode",
    "read_snapshot",
    "run_key",
    "write_atomic",
]

log = logging.getLogger("swarmgp.agent")

MAGIC = b"SWGPSNAP"
FORMAT_VERSION = 1
SNAPSHOT_FILE = "snapshot.bin"
FORMAT_NAME = "swarmgp-agent-snapshot"
_PREFIX = struct.Struct("<8sII")
_DIGEST = 32
#: Largest header accepted (a snapshot's header is a few KiB).
MAX_HEADER_BYTES = 1 << 24
#: Largest number of named arrays accepted.
MAX_ARRAYS = 1 << 16

Scalar = int | float | str | bool | None


class SnapshotError(SwarmGPError):
    """A snapshot that cannot be used: corrupt, of another version, agent or run."""


@dataclass(frozen=True)
class Snapshot:
    """A decoded snapshot: its JSON header and its float64 arrays by name."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray]


# --------------------------------------------------------------------------- format


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """The snapshot file's bytes (module docstring); ``header`` must be JSON-able.

    Raises
    ------
    SnapshotError
        A non-finite scalar in the header, or an array that is not real.
    """
    names = list(arrays)
    body: list[bytes] = []
    shapes = []
    for name in names:
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "fiub":
            raise SnapshotError(f"snapshot: array {name!r} of dtype {a.dtype} is not real")
        body.append(np.ascontiguousarray(a, dtype="<f8").tobytes())
        shapes.append({"name": name, "shape": [int(s) for s in a.shape]})
    head = dict(header)
    head["arrays"] = shapes
    try:
        text = json.dumps(head, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"snapshot: header not JSON-able: {exc}") from None
    out = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text + b"".join(body)
    return out + hashlib.sha256(out).digest()


def decode(data: bytes) -> Snapshot:
    """Parse and validate a snapshot file's bytes.

    Raises
    ------
    SnapshotError
        Too short, wrong magic, another version, checksum mismatch, a header that is not a
        JSON object of the expected structure, or a payload of the wrong length.
    """
    n = len(data)
    if n < _PREFIX.size + _DIGEST:
        raise SnapshotError(f"snapshot truncated: {n} bytes")
    magic, version, hlen = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise SnapshotError("not a swarmgp snapshot (bad magic)")
    if version != FORMAT_VERSION:
        raise SnapshotError(f"snapshot format version {version}; this build reads {FORMAT_VERSION}")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise SnapshotError("snapshot checksum mismatch (truncated or corrupted)")
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen > len(body):
        raise SnapshotError(f"snapshot header length {hlen} exceeds the file")
    try:
        header = json.loads(
            body[_PREFIX.size : _PREFIX.size + hlen].decode("utf-8"),
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SnapshotError(f"snapshot header is not JSON: {str(exc)[:80]}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise SnapshotError("snapshot header is not an agent snapshot")
    specs = header.pop("arrays", None)
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise SnapshotError("snapshot header has no valid array list")
    offset = _PREFIX.size + hlen
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        name, shape = _array_spec(spec)
        if name in arrays:
            raise SnapshotError(f"snapshot array {name!r} appears twice")
        size = 8 * math.prod(shape)
        if offset + size > len(body):
            raise SnapshotError(f"snapshot payload too short for array {name!r}")
        a = np.frombuffer(body, dtype="<f8", count=size // 8, offset=offset)
        arrays[name] = a.astype(np.float64).reshape(shape)
        offset += size
    if offset != len(body):
        raise SnapshotError(f"snapshot payload has {len(body) - offset} trailing bytes")
    return Snapshot(header, arrays)


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite constant {name}")


def _array_spec(spec: Any) -> tuple[str, tuple[int, ...]]:
    if not isinstance(spec, dict) or set(spec) != {"name", "shape"}:
        raise SnapshotError("snapshot array entry malformed")
    name, shape = spec["name"], spec["shape"]
    if not isinstance(name, str) or not isinstance(shape, list) or len(shape) > 8:
        raise SnapshotError("snapshot array entry malformed")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 40 for s in shape):
        raise SnapshotError(f"snapshot array {name!r} has an invalid shape")
    return name, tuple(shape)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file, fsync, rename, fsync of the dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_snapshot(path: Path) -> Snapshot | None:
    """The decoded snapshot at ``path``; None if there is none.

    Raises
    ------
    SnapshotError
        Unreadable or invalid (the message names the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    try:
        return decode(data)
    except SnapshotError as exc:
        raise SnapshotError(f"refusing snapshot {path}: {exc}") from None


# --------------------------------------------------------------------------- the agent's state


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, Scalar], dict[str, np.ndarray]]:
    """A model's ``state()`` as JSON scalars and float64 arrays."""
    scalars: dict[str, Scalar] = {}
    arrays: dict[str, np.ndarray] = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        elif isinstance(v, np.integer):
            scalars[k] = int(v)
        elif isinstance(v, np.floating):
            scalars[k] = float(v)
        elif v is None or isinstance(v, bool | int | float | str):
            scalars[k] = v
        else:
            raise SnapshotError(f"snapshot: model state {k!r} of type {type(v).__name__}")
    return scalars, arrays


def _flat(prefix: str, d: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def run_key(cfg: RunConfig, plan: NodePlan) -> dict[str, Any]:
    """What a snapshot must share with the run restoring it (flat, JSON-normalized)."""
    key: dict[str, Any] = {
        "seed": cfg.seed,
        "world": plan.world,
        "manifest": hashlib.sha256(plan.manifest.to_json().encode()).hexdigest()[:16],
    }
    key.update(_flat("model", dataclasses.asdict(cfg.model)))
    key.update(_flat("data", dataclasses.asdict(cfg.data)))
    return dict(json.loads(json.dumps(key, sort_keys=True, default=str)))


def _count(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise SnapshotError(f"snapshot: {what} is not a count: {v!r}")
    return v


class Durable:
    """One agent's snapshots: load and check, restore, resume the source, save after batches.

    Parameters
    ----------
    directory : path
        The agent's state directory (created if missing).
    agent_id : int
    key : dict
        :func:`run_key` of the run.
    every : int
        Snapshot after every ``every`` batches.
    resumable : bool
        Whether the source replays deterministically (a table file, the synthetic world): its
        first ``position`` batches are skipped on restart. A live feed is not skipped.
    """

    def __init__(
        self, directory: Path, agent_id: int, key: dict[str, Any], every: int = 1,
        resumable: bool = True,
    ) -> None:  # fmt: skip
        self.dir = Path(directory)
        self.path = self.dir / SNAPSHOT_FILE
        self.agent_id = agent_id
        self.key = key
        self.every = max(1, int(every))
        self.resumable = resumable
        self.loaded: Snapshot | None = None
        self.agent: Agent | None = None
        self.batches = 0  # batches taken from the source (restored ones included)
        self.rows = 0
        self.last_digest: str | None = None
        self._since = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnapshotError(f"--state-dir {self.dir}: {exc.strerror or exc}") from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise SnapshotError(f"--state-dir {self.dir}: not writable")
        for stale in self.dir.glob(f".{SNAPSHOT_FILE}.*.tmp"):  # a write cut short by a kill
            stale.unlink(missing_ok=True)

    @classmethod
    def open(cls, cfg: RunConfig, plan: NodePlan) -> Durable:
        """The agent's store, with its snapshot (if any) loaded and checked against the run.

        ``{id}`` in ``--state-dir`` becomes the agent id (one directory per agent on a cluster).
        """
        from swarmgp.agents.sources.agent_feed import is_table_file

        resumable = plan.manifest.kind == "synthetic" or is_table_file(plan.manifest.uri)
        state_dir = getattr(cfg.process, "state_dir", None)
        every = getattr(cfg.process, "snapshot_every", 1)
        assert state_dir is not None
        path = Path(str(state_dir).replace("{id}", str(plan.agent_id)))  # one dir per agent
        d = cls(path, plan.agent_id, run_key(cfg, plan), every, resumable)
        d.load()
        return d

    # ------------------------------------------------------------------ load

    def load(self) -> Snapshot | None:
        """Read and check the snapshot (agent id, run key, counts); nothing is applied yet.

        Raises
        ------
        SnapshotError
        """
        snap = read_snapshot(self.path)
        if snap is None:
            return None
        h = snap.header
        where = f"snapshot {self.path}"
        if h.get("agent_id") != self.agent_id:
            raise SnapshotError(
                f"{where} belongs to agent {h.get('agent_id')!r}, not {self.agent_id}"
            )
        key = h.get("run")
        if not isinstance(key, dict):
            raise SnapshotError(f"{where} has no run key")
        if key != self.key:
            diff = sorted(k for k in set(key) | set(self.key) if key.get(k) != self.key.get(k))
            shown = ", ".join(f"{k}={key.get(k)!r} (now {self.key.get(k)!r})" for k in diff[:3])
            raise SnapshotError(f"{where} is of another run: {shown}")
        src, model, counters = h.get("source"), h.get("model"), h.get("counters")
        if not (isinstance(src, dict) and isinstance(model, dict) and isinstance(counters, dict)):
            raise SnapshotError(f"{where} lacks its source, model or counters")
        _count(h.get("incarnation"), "the incarnation")
        self.batches = _count(src.get("batches"), "the source position")
        self.rows = _count(src.get("rows"), "the row position")
        digest = src.get("last_digest")
        if digest is not None and not isinstance(digest, str):
            raise SnapshotError(f"{where}: bad batch digest")
        self.last_digest = digest
        for k, v in counters.items():
            _count(v, f"counter {k!r}")
        self.loaded = snap
        return snap

    def new_incarnation(self, now_ns: int) -> int:
        """An incarnation above the snapshot's (a restart must supersede its past life)."""
        if self.loaded is None:
            return now_ns
        return max(now_ns, int(self.loaded.header["incarnation"]) + 1)

    # ------------------------------------------------------------------ restore

    def restore(self, agent: Agent, now: float) -> bool:
        """Restore the loaded snapshot into ``agent`` (before it starts); bind it for saving.

        Returns whether a snapshot was restored.

        Raises
        ------
        SnapshotError
            Another encoding, or a model state that does not fit (nothing was applied to a
            model that refuses; the process must exit).
        """
        model = agent.model
        if not (hasattr(model, "state") and hasattr(model, "restore")):
            raise SnapshotError(f"--state-dir: model {type(model).__name__} cannot be saved")
        self.agent = agent
        snap = self.loaded
        if snap is None:
            return False
        h = snap.header
        where = f"snapshot {self.path}"
        enc = h.get("encoding")
        if enc != agent.config.encoding_hash or h.get("m") != agent.config.m:
            raise SnapshotError(
                f"{where} is of encoding {enc!r} m={h.get('m')!r}, the run uses "
                f"{agent.config.encoding_hash} m={agent.config.m}"
            )
        state: dict[str, Any] = dict(h["model"])
        state.update(snap.arrays)
        try:
            model.restore(state)
            agent.set_local_summary(model.summary(), now)
        except (SwarmGPError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise SnapshotError(f"{where}: model state refused: {str(exc)[:160]}") from None
        counters = h["counters"]
        agent.counters["observations"] = int(counters.get("observations", 0))
        agent.counters["snapshot.restored"] += 1
        log.info(
            "event=restored path=%s batches=%d rows=%d n_obs=%d previous_inc=%d",
            self.path,
            self.batches,
            self.rows,
            agent.local_summary.n_obs,
            int(h["incarnation"]),
        )
        return True

    # ------------------------------------------------------------------ the source

    def feed(self, batches: Iterable[Any]) -> Iterator[Any]:
        """The agent's batches, resumed after the snapshot's position and counted.

        On a replayable source the first ``position`` batches are skipped (the last skipped one
        must match the snapshot's digest); a live feed is not skipped.

        Raises
        ------
        SnapshotError
            (while iterating) the source holds fewer batches than the snapshot's position, or
            other rows there.
        """
        from swarmgp.agents.runtime.runner import batch_digest
        from swarmgp.agents.sources.agent_feed import NOT_READY

        skip = self.batches if (self.resumable and self.loaded is not None) else 0
        if self.loaded is not None and not self.resumable:
            log.warning("event=resume_live note=rows_in_flight_at_the_crash_are_lost")
        seen = 0
        for b in batches:
            if b is NOT_READY:
                yield b
                continue
            if seen < skip:
                seen += 1
                if seen == skip and self.last_digest is not None:
                    if batch_digest(b[0], b[1]) != self.last_digest:
                        raise SnapshotError(
                            f"snapshot {self.path}: batch {seen} of the source differs from "
                            "the one learned (the data changed)"
                        )
                continue
            self.batches += 1
            self.rows += int(np.shape(b[1])[0])
            self.last_digest = batch_digest(b[0], b[1])
            yield b
        if seen < skip:
            raise SnapshotError(
                f"snapshot {self.path}: the source ended after {seen} batches, the snapshot "
                f"had learned {skip}"
            )

    # ------------------------------------------------------------------ save

    def after_batch(self, *_: Any) -> None:
        """Hook called after each batch the agent learned: snapshot every ``every`` batches."""
        self._since += 1
        if self._since >= self.every:
            self.save()

    def save(self) -> bool:
        """Write the snapshot now; a failure is logged and counted, the old file stays."""
        agent = self.agent
        if agent is None:
            return False
        self._since = 0
        try:
            data = self.encode_agent(agent)
            write_atomic(self.path, data)
        except (OSError, SnapshotError, SwarmGPError) as exc:
            agent.counters["snapshot.write_failed"] += 1
            log.error("event=snapshot_failed path=%s error=%s", self.path, str(exc)[:160])
            return False
        agent.counters["snapshot.written"] += 1
        return True

    def encode_agent(self, agent: Agent) -> bytes:
        """The snapshot bytes of ``agent`` at the current source position."""
        scalars, arrays = split_state(agent.model.state())  # type: ignore[attr-defined]
        header = {
            "format": FORMAT_NAME,
            "agent_id": agent.id,
            "incarnation": int(agent.config.incarnation),
            "encoding": agent.config.encoding_hash,
            "m": agent.config.m,
            "run": self.key,
            "source": {
                "batches": self.batches,
                "rows": self.rows,
                "last_digest": self.last_digest,
                "resumable": self.resumable,
            },
            "counters": {
                k: int(v) for k, v in agent.counters.items() if isinstance(v, int) and v >= 0
            },
            "model": scalars,
            "written_unix": time.time(),
        }
        return encode(header, arrays)
