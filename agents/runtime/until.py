"""When a swarm of ``launch.py agent`` processes is done (``--until consistent``).

The swarm is done when every agent's data has ended and every agent's collective model is the
exact sum of all local summaries (within ``--tol``, relative), covering ``world`` agents with
one ``n_obs``. Agents learn it through the status service and the rendezvous directory, at the
edge (the sans-I/O agent core is untouched):

1. agent 0 (the coordinator) polls every agent's status once its own data has ended; when
   :func:`swarm_consistency` holds (every agent also says ``data_done``), it sets
   ``swarm_consistent`` and ``swarm_max_rel_diff`` in its own status;
2. every other agent polls agent 0 only; when agent 0 says ``swarm_consistent`` it is done:
   it stops serving, writes its report and then ``agent-<id>.done`` in the rendezvous
   directory;
3. agent 0 keeps serving until every other agent has a ``.done`` file (or says
   ``swarm_consistent`` itself), so nobody waits on an agent that already left; then it is
   done too.

A report is of the model the swarm verified: the runner keeps the last collective model that
covered the whole swarm after the data ended (:attr:`RunFacts.final_fused`), since a departing
neighbour shrinks the live one. ``launch.py status --wait`` reads the same records and
``.done`` files (:func:`wait_consistent`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.rendezvous import read_records

__all__ = [
    "COORDINATOR",
    "Consistency",
    "SwarmDone",
    "read_done",
    "swarm_consistency",
    "write_done",
]

log = logging.getLogger("swarmgp.agent")

#: The agent that decides that the swarm is done (every swarm has an agent 0).
COORDINATOR = 0


@dataclass(frozen=True)
class Consistency:
    """Whether a set of status replies is one collective model.

    Attributes
    ----------
    ok : bool
    max_rel_diff : float
        Max over agents of ``|R_F(a) - sum_a R_a| / |sum_a R_a|`` (inf when unknown).
    n_obs : int
        Observations the collective model covers (-1 when the agents disagree).
    why : str
        Empty when ``ok``; else the first reason it is not.
    """

    ok: bool
    max_rel_diff: float
    n_obs: int
    why: str


def swarm_consistency(
    replies: Mapping[int, Any],
    world: int,
    tol: float,
    need_data_done: bool = False,
) -> Consistency:
    """Check the replies of agents ``0..world-1`` (StatusReply objects) against each other."""
    from swarmgp.agents.runtime.local import exact_sum

    missing = sorted(set(range(world)) - set(replies))
    if missing:
        return Consistency(False, math.inf, -1, f"agents {missing} did not answer")
    reps = [replies[i] for i in range(world)]
    if any(r.fused is None or r.local is None for r in reps):
        return Consistency(False, math.inf, -1, "an agent sent no summaries")
    short = [(i, r.fused.n_agents) for i, r in enumerate(reps) if r.fused.n_agents != world]
    exact = exact_sum([r.local for r in reps])
    err = max(r.fused.max_rel_diff(exact) for r in reps)
    if short:
        i, k = short[0]
        return Consistency(False, err, -1, f"agent {i} covers {k} of {world} agents")
    n_obs = {int(r.fused.n_obs) for r in reps}
    if len(n_obs) != 1:
        return Consistency(False, err, -1, f"the agents' n_obs differ: {sorted(n_obs)}")
    if need_data_done:
        busy = [i for i, r in enumerate(reps) if not r.info.get("data_done")]
        if busy:
            return Consistency(False, err, n_obs.pop(), f"agents {busy} still have data")
    if not err <= tol:
        return Consistency(False, err, n_obs.pop(), f"max rel diff {err:.3g} > tol {tol:g}")
    return Consistency(True, err, n_obs.pop(), "")


def write_done(rdv: Path, agent_id: int, record: Mapping[str, Any]) -> None:
    """Atomically write ``agent-<id>.done`` (this agent finished with ``--until consistent``)."""
    p = rdv / f"agent-{agent_id}.done"
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(dict(record)))
    tmp.replace(p)


def read_done(rdv: Path, records: Mapping[int, Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """The ``.done`` files of the current incarnations in ``records``."""
    out: dict[int, dict[str, Any]] = {}
    for i, rec in records.items():
        try:
            d = json.loads((rdv / f"agent-{i}.done").read_text())
        except (OSError, ValueError):
            continue
        if d.get("incarnation") == rec.get("incarnation"):
            out[i] = d
    return out


class _Client:
    """A status client that follows the endpoints in the rendezvous directory."""

    def __init__(self, rdv: Path, keyring: Any) -> None:
        from swarmgp.protocol.zmq_transport import StatusClient

        self.rdv = rdv
        self.client = StatusClient({}, keyring=keyring)
        self.eps: dict[int, str] = {}
        self.records: dict[int, dict[str, Any]] = {}

    def query(self, ids: Sequence[int], timeout_s: float) -> dict[int, Any]:
        self.records = read_records(self.rdv)
        ids = [i for i in ids if i in self.records]
        for i in ids:
            ep = self.records[i]["endpoint"]
            if self.eps.get(i) != ep:
                self.client.add(i, ep)
                self.eps[i] = ep
        return dict(self.client.query(ids, timeout_s=timeout_s)) if ids else {}

    def close(self) -> None:
        self.client.close()


class SwarmDone:
    """``--until consistent``: a thread that decides when this agent may finish.

    Parameters
    ----------
    rendezvous : Path or None
        Required (the records locate agent 0; ``.done`` files tell who left).
    agent_id, world : int
    tol : float
        Consistency tolerance (max relative difference).
    keyring : Keyring, optional
        This agent's keyring (status queries are CURVE-authenticated then).
    data_done : callable
        Whether this agent's data has ended (the runner's view).
    poll_s : float
        Seconds between status polls.
    """

    def __init__(
        self,
        rendezvous: Path | None,
        agent_id: int,
        world: int,
        tol: float,
        keyring: Any,
        data_done: Callable[[], bool],
        poll_s: float = 0.3,
    ) -> None:
        self.rdv, self.id, self.world, self.tol = rendezvous, agent_id, world, tol
        self.keyring, self.data_done, self.poll_s = keyring, data_done, poll_s
        self.done = threading.Event()
        self._halt = threading.Event()
        self.verified = False
        self.max_rel_diff = math.nan
        self.why = "data not ended"
        self._thread: threading.Thread | None = None

    def facts(self) -> dict[str, Any]:
        """What this agent's status says about the swarm."""
        return {
            "swarm_consistent": self.verified,
            "swarm_max_rel_diff": None if math.isnan(self.max_rel_diff) else self.max_rel_diff,
        }

    def start(self) -> None:
        """Start polling (in a daemon thread).

        Raises
        ------
        LaunchError
            No rendezvous directory (agents cannot see each other's status without it).
        """
        if self.rdv is None:
            if self.world == 1:  # alone: done when the data has ended
                self.verified, self.max_rel_diff = True, 0.0
            else:
                raise LaunchError(
                    "--until consistent needs --rendezvous DIR to see the swarm (or --until never)"
                )
        self._thread = threading.Thread(target=self._run, name="until-consistent", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        if self.rdv is None:
            while not self._halt.wait(self.poll_s):
                if self.data_done():
                    self.done.set()
                    return
            return
        client = _Client(self.rdv, self.keyring)
        try:
            while not self._halt.wait(self.poll_s):
                if not self.data_done():
                    continue
                if self.id == COORDINATOR:
                    self._coordinate(client)
                else:
                    self._follow(client)
                if self.done.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 - the thread must not die silently
            log.error("event=until_error error=%s", str(exc).splitlines()[0] if str(exc) else exc)
        finally:
            client.close()

    def _coordinate(self, client: _Client) -> None:
        assert self.rdv is not None
        if not self.verified:
            replies = client.query(range(self.world), timeout_s=2.0)
            c = swarm_consistency(replies, self.world, self.tol, need_data_done=True)
            if c.why != self.why:
                self.why = c.why
                log.info("event=swarm_check ok=%s reason=%r", c.ok, c.why)
            if c.ok:
                self.max_rel_diff, self.verified = c.max_rel_diff, True
                log.info(
                    "event=swarm_consistent max_rel_diff=%.3g n_obs=%d", c.max_rel_diff, c.n_obs
                )
            return
        others = [i for i in range(self.world) if i != self.id]
        client.records = read_records(self.rdv)
        gone = read_done(self.rdv, client.records)
        pending = [i for i in others if i not in gone]
        if pending:
            replies = client.query(pending, timeout_s=1.0)
            pending = [i for i in pending if not replies.get(i, _NO).info.get("swarm_consistent")]
        if not pending:
            self.done.set()

    def _follow(self, client: _Client) -> None:
        r = client.query([COORDINATOR], timeout_s=1.0).get(COORDINATOR)
        if r is not None and r.info.get("swarm_consistent"):
            v = r.info.get("swarm_max_rel_diff")
            self.max_rel_diff = float(v) if v is not None else math.nan
            self.verified = True
            log.info("event=swarm_consistent max_rel_diff=%s by=%d", v, COORDINATOR)
            self.done.set()


class _None:
    info: dict[str, Any] = {}


_NO = _None()


def wait_consistent(
    rdv: Path, timeout_s: float, tol: float, keyring: Any = None, poll_s: float = 0.3
) -> tuple[bool, str]:
    """``launch.py status --wait``: (ok, one line) once the swarm in ``rdv`` is consistent.

    Consistent: every recorded agent (``world`` from the records) has ended its data and all
    collective models agree within ``tol``; agents that finished with ``--until consistent``
    count with the difference their coordinator verified. Not consistent by the deadline:
    (False, the last reason).
    """
    deadline = time.monotonic() + timeout_s
    client = _Client(rdv, keyring)
    why = "no agent recorded"
    try:
        while True:
            records = read_records(rdv)
            world = max((int(r.get("world") or 0) for r in records.values()), default=0)
            world = max(world, len(records))
            if records and len(records) < world:
                why = f"{len(records)} of {world} agents published"
            elif records:
                done = read_done(rdv, records)
                live = [i for i in range(world) if i not in done]
                replies = client.query(
                    live, timeout_s=min(2.0, max(0.2, deadline - time.monotonic()))
                )
                if done:  # agents leave only after agent 0 verified the swarm
                    errs = [float(d.get("max_rel_diff") or 0.0) for d in done.values()]
                    n = {int(d.get("n_obs", -1)) for d in done.values()}
                    err = max(errs)
                    if err <= tol:
                        return True, (
                            f"consistent: max rel diff {err:.3g} over {world} agents, "
                            f"n_obs {max(n)} ({len(done)} finished)"
                        )
                    why = f"max rel diff {err:.3g} > tol {tol:g}"
                else:
                    c = swarm_consistency(replies, world, tol, need_data_done=True)
                    if c.ok:
                        return True, (
                            f"consistent: max rel diff {c.max_rel_diff:.3g} over {world} "
                            f"agents, n_obs {c.n_obs}"
                        )
                    why = c.why
            if time.monotonic() >= deadline:
                return False, f"not consistent within {timeout_s:g} s: {why}"
            time.sleep(poll_s)
    finally:
        client.close()
