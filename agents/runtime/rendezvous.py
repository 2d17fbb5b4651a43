"""The rendezvous directory: where agents publish endpoints and the launcher its swarm record.

``agent-<id>.json`` holds one agent's record (endpoint, incarnation, pid, host), written
atomically (temporary file + rename). ``swarm.json`` holds what a launcher declares for the
whole swarm: the world size, the neighbour graph and the data manifest.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from swarmgp.agents.runtime.errors import LaunchError

__all__ = [
    "claim_record",
    "read_records",
    "read_swarm",
    "record_is_live",
    "touch_record",
    "wait_records",
    "write_record",
    "write_swarm",
]

SWARM_FILE = "swarm.json"
#: A record on another host is live while refreshed within this many seconds.
LIVE_S = 15.0


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise LaunchError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_record(rdv: Path, agent_id: int, record: Mapping[str, Any]) -> None:
    """Atomically publish ``agent-<id>.json``."""
    _atomic_write(rdv / f"agent-{agent_id}.json", json.dumps(dict(record)))


def _same_life(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("pid", "host", "incarnation"))


def record_is_live(rdv: Path, rec: Mapping[str, Any]) -> bool:
    """Whether the process of an agent record still runs.

    On this host: its pid exists. Elsewhere: the record was refreshed (:func:`touch_record`)
    within :data:`LIVE_S` seconds.
    """
    if rec.get("host") == socket.gethostname():
        try:
            os.kill(int(rec["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError, TypeError):
            return True
        return True
    try:
        age = time.time() - (rdv / f"agent-{int(rec['id'])}.json").stat().st_mtime
    except (OSError, KeyError, ValueError):
        return False
    return age < LIVE_S


def _duplicate(agent_id: int, other: Mapping[str, Any]) -> LaunchError:
    return LaunchError(
        f"agent id {agent_id} is already taken by pid {other.get('pid')} on "
        f"{other.get('host')} (incarnation {other.get('incarnation')}): two agents cannot "
        "share an id; check the launcher's rank variables or --id"
    )


def claim_record(rdv: Path, agent_id: int, record: Mapping[str, Any]) -> None:
    """Publish ``record`` unless a live other process holds the id (then LaunchError)."""
    old = read_records(rdv, [agent_id]).get(agent_id)
    if old is not None and not _same_life(old, record) and record_is_live(rdv, old):
        raise _duplicate(agent_id, old)
    write_record(rdv, agent_id, record)


def touch_record(rdv: Path, agent_id: int, record: Mapping[str, Any]) -> None:
    """Refresh this agent's record (liveness); LaunchError if a live other process took it."""
    cur = read_records(rdv, [agent_id]).get(agent_id)
    if cur is not None and not _same_life(cur, record):
        if record_is_live(rdv, cur):
            raise _duplicate(agent_id, cur)
        write_record(rdv, agent_id, record)
        return
    try:
        os.utime(rdv / f"agent-{agent_id}.json")
    except OSError:
        write_record(rdv, agent_id, record)


def read_records(rdv: Path, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """Published agent records (all, or those of ``ids`` that exist)."""
    out: dict[int, dict[str, Any]] = {}
    if ids is None:
        paths = sorted(rdv.glob("agent-*.json"))
    else:
        paths = [rdv / f"agent-{i}.json" for i in ids]
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        out[int(rec["id"])] = rec
    return out


def wait_records(
    rdv: Path,
    ids: Sequence[int],
    timeout_s: float,
    poll_s: float = 0.02,
    own: tuple[int, Mapping[str, Any]] | None = None,
) -> dict[int, dict[str, Any]]:
    """The records of ``ids`` once all are published, or those there at the deadline.

    With ``own = (id, record)`` the agent's own record is refreshed about once a second and
    checked: a live other process that took the id raises LaunchError.
    """
    deadline = time.monotonic() + timeout_s
    next_touch = time.monotonic() + 1.0
    while True:
        recs = read_records(rdv, ids)
        if own is not None and time.monotonic() >= next_touch:
            next_touch = time.monotonic() + 1.0
            touch_record(rdv, own[0], own[1])
        if len(recs) == len(ids) or time.monotonic() > deadline:
            if own is not None:
                touch_record(rdv, own[0], own[1])
            return recs
        time.sleep(poll_s)


def write_swarm(rdv: Path, record: Mapping[str, Any]) -> None:
    """Atomically write the launcher's ``swarm.json``."""
    _atomic_write(rdv / SWARM_FILE, json.dumps(dict(record)))


def read_swarm(rdv: Path | None) -> dict[str, Any] | None:
    """The launcher's ``swarm.json``, or None where there is none."""
    if rdv is None or not (rdv / SWARM_FILE).exists():
        return None
    try:
        return dict(json.loads((rdv / SWARM_FILE).read_text()))
    except (OSError, ValueError) as exc:
        raise LaunchError(f"unreadable {rdv / SWARM_FILE}: {exc}") from None
