"""The rendezvous directory: where agents publish endpoints and the launcher its swarm record.

``agent-<id>.json`` holds one agent's record (endpoint, incarnation, pid, host), written
atomically (temporary file + rename). ``swarm.json`` holds what a launcher declares for the
whole swarm: the world size, the neighbour graph and the data manifest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from swarmgp.agents.runtime.errors import LaunchError

__all__ = ["read_records", "read_swarm", "wait_records", "write_record", "write_swarm"]

SWARM_FILE = "swarm.json"


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
    rdv: Path, ids: Sequence[int], timeout_s: float, poll_s: float = 0.02
) -> dict[int, dict[str, Any]]:
    """The records of ``ids`` once all are published, or those there at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        recs = read_records(rdv, ids)
        if len(recs) == len(ids) or time.monotonic() > deadline:
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
