"""``launch.py status``: query running agents by endpoint or through a rendezvous directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarmgp.agents.runtime.local import progress
from swarmgp.agents.runtime.rendezvous import read_records

__all__ = ["main", "status_rows"]


def status_rows(replies: dict[int, Any], endpoints: dict[int, str]) -> list[dict[str, Any]]:
    """One row per endpoint: the agent's status info with its health counters, or an error."""
    rows: list[dict[str, Any]] = []
    for key in sorted(endpoints):
        r = replies.get(key)
        if r is None:
            rows.append({"endpoint": endpoints[key], "error": "no reply"})
            continue
        info = dict(r.info)
        c = info.pop("counters", {})
        info["health"] = {
            k: v for k, v in c.items() if k.startswith(("rejected.", "drop.", "expired", "net."))
        }
        rows.append(info)
    return rows


def _line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['endpoint']}: {row['error']}"
    bad = sum(v for k, v in row["health"].items() if k.startswith("rejected."))
    return (
        f"agent {row['id']} inc {row['incarnation']}: covers {row['n_agents']} agents "
        f"{row['n_obs']} obs (local {row['local_n_obs']}); root {row['root']} dist "
        f"{row['dist']} parent {row['parent']} tree {row['tree_neighbors']}; live peers "
        f"{row['live_peers']}; rejected {bad}; fingerprint {row['fingerprint']}"
    )


def main(
    endpoints: Sequence[str],
    rendezvous: str | None,
    timeout_s: float,
    as_json: bool,
    keys: str | None = None,
) -> int:
    """Print one line (or a JSON row) per agent; exit 1 if any did not answer.

    With ``keys`` (a swarm keyring) the query is CURVE-authenticated with the operator key;
    agents are then addressed through the rendezvous directory, by id.
    """
    from swarmgp.protocol.keys import load_keyring
    from swarmgp.protocol.zmq_transport import StatusClient

    eps: dict[int, str] = {}
    if rendezvous:
        eps.update({i: r["endpoint"] for i, r in read_records(Path(rendezvous)).items()})
    for k, ep in enumerate(endpoints):
        eps[-1 - k] = ep
    if not eps:
        progress("status: give endpoints or --rendezvous DIR")
        return 2
    keyring = load_keyring(keys, "operator") if keys else None
    if keyring is not None and any(k < 0 for k in eps):
        progress("status: with --keys, address agents through --rendezvous DIR")
        return 2
    client = StatusClient(eps, keyring=keyring)
    try:
        replies = client.query(timeout_s=timeout_s)
    finally:
        client.close()
    rows = status_rows(replies, eps)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(_line(row))
    return 0 if len(replies) == len(eps) else 1
