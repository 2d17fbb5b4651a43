"""``launch.py status``: query running agents by endpoint or through a rendezvous directory.

One line per agent, then one line for the swarm: ``consistent: max rel diff X`` (every agent's
collective model against the exact sum of all local summaries) or ``not consistent: why``.
``--wait`` polls until the swarm is consistent and its data has ended
(:func:`~swarmgp.agents.runtime.until.wait_consistent`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarmgp.agents.runtime.local import progress
from swarmgp.agents.runtime.rendezvous import read_records

__all__ = ["main", "status_rows"]


def status_rows(replies: dict[int, Any], endpoints: dict[int, str]) -> list[dict[str, Any]]:
    """One row per endpoint: the agent's status info with its health counters, or an error.

    ``rel_diff``: the agent's collective model against the exact sum of the local summaries
    of every agent that answered (what consistency means; a number, not a fingerprint).
    """
    from swarmgp.agents.runtime.local import exact_sum

    ok = [r for r in replies.values() if r.local is not None and r.fused is not None]
    exact = exact_sum([r.local for r in ok]) if ok else None
    rows: list[dict[str, Any]] = []
    for key in sorted(endpoints):
        r = replies.get(key)
        if r is None:
            rows.append({"endpoint": endpoints[key], "error": "no reply"})
            continue
        info = dict(r.info)
        info.pop("fingerprint", None)
        info["rel_diff"] = (
            r.fused.max_rel_diff(exact) if exact is not None and r.fused is not None else None
        )
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
        f"{row['live_peers']}; rejected {bad}; data {'done' if row.get('data_done') else 'flowing'}"
        f"; rel diff {_g(row['rel_diff'])}"
    )


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _swarm_line(replies: dict[int, Any], tol: float) -> str:
    from swarmgp.agents.runtime.until import swarm_consistency

    if not replies:
        return "not consistent: no agent answered"
    keys = sorted(replies)
    c = swarm_consistency({k: replies[key] for k, key in enumerate(keys)}, len(keys), tol)
    if c.ok:
        return (
            f"consistent: max rel diff {c.max_rel_diff:.3g} over {len(keys)} agents, "
            f"n_obs {c.n_obs}"
        )
    return f"not consistent: {c.why} (max rel diff {c.max_rel_diff:.3g})"


def main(
    endpoints: Sequence[str],
    rendezvous: str | None,
    timeout_s: float,
    as_json: bool,
    keys: str | None = None,
    wait: bool = False,
    tol: float = 1e-9,
) -> int:
    """Print one line (or a JSON row) per agent and one for the swarm; exit 1 if any did not
    answer.

    With ``keys`` (a swarm keyring) the query is CURVE-authenticated with the operator key;
    agents are then addressed through the rendezvous directory, by id. With ``wait`` (needs
    ``rendezvous``): wait up to ``timeout_s`` for the swarm to be consistent within ``tol``
    and its data ended; print ``consistent: max rel diff ...`` and exit 0, else the reason
    and exit 1.
    """
    from swarmgp.protocol.keys import load_keyring
    from swarmgp.protocol.zmq_transport import StatusClient

    if wait:
        from swarmgp.agents.runtime.until import wait_consistent

        if not rendezvous or endpoints:
            progress("status: --wait takes --rendezvous DIR (and no endpoints)")
            return 2
        keyring = load_keyring(keys, "operator") if keys else None
        ok, line = wait_consistent(Path(rendezvous), timeout_s, tol, keyring)
        print(line, flush=True)
        return 0 if ok else 1

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
        print(_swarm_line(replies, tol))
    return 0 if len(replies) == len(eps) else 1
