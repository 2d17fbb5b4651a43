"""Test helpers: in-memory swarms of collective-mode agents on a virtual clock."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarmgp.agents.agent import Agent
from swarmgp.agents.allreduce import AllReduceTiming
from swarmgp.agents.collective_model import CollectiveEncoding, CollectiveModel
from swarmgp.agents.config import AgentConfig, TimingConfig
from swarmgp.protocol.transport import InMemoryNetwork
from tests.agents._swarm import neighbours


def model_data(rng: np.random.Generator, n: int, d: int = 2, shift: float = 0.0):
    """Inputs around ``shift`` in raw units and targets from a smooth function plus noise."""
    X = rng.uniform(0.0, 4.0, (n, d)) + shift
    y = 3.0 + 2.0 * np.sin(X[:, 0]) * np.cos(0.7 * X[:, -1]) + 0.2 * rng.standard_normal(n)
    return X, y


class CollectiveSwarm:
    """Collective agents on an :class:`InMemoryNetwork` (real codec), driven step by step."""

    def __init__(
        self,
        n: int,
        edges: Sequence[tuple[int, int]],
        *,
        m: int = 8,
        d: int = 2,
        loss: float = 0.0,
        seed: int = 0,
        learn: bool = True,
        max_evals: int = 6,
        batches: int = 2,
        batch_size: int = 15,
        dt: float = 0.01,
        static: bool = False,
        inducing_init: str = "halton",
        starts: int = 1,
        memo: object = None,
    ) -> None:
        # static: the last input plays time, the others carry a static component (m // 4)
        self.enc = CollectiveEncoding(
            d=d, inducing=m, learn=learn, seed=seed, max_evals=max_evals,
            static_dims=tuple(range(d - 1)) if static else (), static_inducing=m // 4,
            inducing_init=inducing_init, warmup_starts=starts,
        )  # fmt: skip
        self.memo = memo  # a WarmupMemo shared by the agents, or None
        self.timing = TimingConfig.fast()
        self.ar_timing = AllReduceTiming(
            resend_s=0.05, settle_s=0.1, round_timeout_s=1.0, ready_wait_s=1.0, max_attempts=6
        )
        self.net = InMemoryNetwork(
            np.random.default_rng(seed + 1), loss, 0.0, 0.0, True, self.enc.m, self.enc.hash
        )
        self.nb = neighbours(n, edges)
        self.rng = np.random.default_rng(seed)
        self.data = {
            i: [model_data(self.rng, batch_size, d, shift=0.3 * i) for _ in range(batches)]
            for i in range(n)
        }
        self.t, self.dt, self.inc = 0.0, dt, 0
        self.agents: dict[int, Agent] = {}
        self.transports: dict[int, object] = {}
        for i in range(n):
            self.start(i)

    def start(self, i: int, feed: bool = True) -> None:
        self.inc += 1
        cfg = AgentConfig(
            i, tuple(self.nb[i]), self.enc.m, self.enc.hash, incarnation=self.inc,
            timing=self.timing, max_dist=len(self.nb),
        )  # fmt: skip
        a = Agent(cfg, CollectiveModel(self.enc, self.ar_timing, self.memo), self.t, self.rng)
        tr = self.net.transport(i)
        self.agents[i], self.transports[i] = a, tr
        self._send(i, a.start(self.t))
        if feed:
            for X, y in self.data[i]:
                self._send(i, a.observe(X, y, self.t))

    def kill(self, i: int) -> None:
        del self.agents[i]
        self.net.down.add(i)

    def _send(self, i: int, out) -> None:
        tr = self.transports[i]
        for dest, msg in out:
            tr.send(dest, msg)

    def step(self) -> None:
        t = self.t
        for i, a in list(self.agents.items()):
            tr = self.transports[i]
            while (msg := tr.recv(0.0)) is not None:
                self._send(i, a.on_message(msg, t))
            if a.next_deadline() <= t:
                self._send(i, a.on_tick(t))
        self.t = round(self.t + self.dt, 9)

    def all_streaming(self) -> bool:
        return all(a.model.phase == "stream" for a in self.agents.values())

    def run_warmup(self, t_max: float) -> float:
        t0 = self.t
        while not self.all_streaming():
            if self.t - t0 > t_max:
                raise AssertionError(f"warm-up not done in {t_max} s virtual")
            self.step()
        return self.t - t0

    def thetas(self) -> dict[int, np.ndarray]:
        return {i: a.model.params.to_vector() for i, a in self.agents.items()}
