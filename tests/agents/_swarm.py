"""Test helpers: random local summaries and a tiny virtual-time driver for in-memory swarms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from swarmgp.agents.agent import Agent, StaticModel
from swarmgp.agents.config import AgentConfig, TimingConfig
from swarmgp.fusion.summary import Summary, fuse
from swarmgp.protocol.transport import InMemoryNetwork

HASH = "testenc000000000"


def random_summary(rng: np.random.Generator, m: int, n_obs: int = 10) -> Summary:
    """A valid local summary: P = I + B B^T / m (SPD), random h."""
    B = rng.standard_normal((m, 3))
    return Summary(np.eye(m) + B @ B.T / m, rng.standard_normal(m), n_obs, 1, HASH)


def ring(n: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % n) for i in range(n)]


def neighbours(n: int, edges: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    nb: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in edges:
        nb[a].append(b)
        nb[b].append(a)
    return nb


class Swarm:
    """Agents on an :class:`InMemoryNetwork`, driven on a virtual clock."""

    def __init__(
        self,
        n: int,
        edges: Sequence[tuple[int, int]],
        m: int = 6,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        wire: bool = True,
        timing: TimingConfig | None = None,
        dt: float = 0.005,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.m, self.dt, self.t = m, dt, 0.0
        self.timing = timing or TimingConfig.fast()
        self.net = InMemoryNetwork(
            np.random.default_rng(seed + 1), loss, duplicate, reorder, wire, m, HASH
        )
        self.nb = neighbours(n, edges)
        self.locals = {i: random_summary(rng, m, n_obs=10 + i) for i in range(n)}
        self.rng = rng
        self.agents: dict[int, Agent] = {}
        self.transports = {}
        self.inc = 0
        for i in range(n):
            self.start(i)

    def start(self, i: int) -> None:
        self.inc += 1
        cfg = AgentConfig(
            i,
            tuple(self.nb[i]),
            self.m,
            HASH,
            incarnation=self.inc,
            timing=self.timing,
            max_dist=len(self.nb),
        )
        a = Agent(cfg, StaticModel(self.locals[i]), self.t, self.rng)
        tr = self.net.transport(i)
        tr.on_reject = a.count_rejected
        self.agents[i], self.transports[i] = a, tr
        self._send(i, a.start(self.t))

    def kill(self, i: int) -> None:
        del self.agents[i]
        self.net.down.add(i)

    def _send(self, i: int, out) -> None:
        tr = self.transports[i]
        for dest, msg in out:
            tr.send(dest, msg)

    def step(self) -> None:
        t = self.t
        for i, a in self.agents.items():
            tr = self.transports[i]
            while (msg := tr.recv(0.0)) is not None:
                self._send(i, a.on_message(msg, t))
            if a.next_deadline() <= t:
                self._send(i, a.on_tick(t))
        self.t = round(self.t + self.dt, 9)

    def exact(self, members: Mapping[int, Summary] | None = None) -> Summary:
        ls = members if members is not None else {i: self.locals[i] for i in self.agents}
        return fuse([ls[i] for i in sorted(ls)], self.m, HASH)

    def max_err(self) -> float:
        ex = self.exact()
        return max(a.fused_summary.max_rel_diff(ex) for a in self.agents.values())

    def consistent(self, tol: float = 1e-9) -> bool:
        n = len(self.agents)
        if any(a.fused_summary.n_agents != n for a in self.agents.values()):
            return False
        return self.max_err() <= tol

    def run_until_consistent(self, t_max: float, tol: float = 1e-9) -> float:
        """Step until consistent (checked each step); return the virtual time it took."""
        t0 = self.t
        while self.t - t0 < t_max:
            self.step()
            if self.consistent(tol):
                return self.t - t0
        raise AssertionError(f"no consistency within {t_max} s virtual; max err {self.max_err()}")
