"""``fusion="rounds"``: about one Fuse message per tree edge and direction per round of changes,
exact sums under loss, duplication and reordering (issue 12)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _swarm import HASH, Swarm, random_summary, ring

from swarmgp.agents.agent import Agent, StaticModel
from swarmgp.agents.config import AgentConfig, ConfigError, TimingConfig


def line(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def binary_tree(n: int) -> list[tuple[int, int]]:
    return [((i - 1) // 2, i) for i in range(1, n)]


class RoundsSwarm(Swarm):
    """The in-memory swarm with every agent on the given fusion protocol."""

    def __init__(self, *args: object, fusion: str = "rounds", **kw: object) -> None:
        self.fusion = fusion
        super().__init__(*args, **kw)  # type: ignore[arg-type]

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
            fusion=self.fusion,
        )
        a = Agent(cfg, StaticModel(self.locals[i]), self.t, self.rng)
        tr = self.net.transport(i)
        tr.on_reject = a.count_rejected
        self.agents[i], self.transports[i] = a, tr
        self._send(i, a.start(self.t))

    def fuse_sent(self) -> int:
        return sum(a.counters["tx.fuse"] for a in self.agents.values())

    def change_round(self, spread_s: float) -> None:
        """Every agent gets a new local summary at its own time within ``spread_s``."""
        when = {i: self.t + float(self.rng.uniform(0.0, spread_s)) for i in self.agents}
        pending = dict(when)
        while pending:
            for i in sorted(pending):
                if pending[i] <= self.t:
                    self.locals[i] = random_summary(self.rng, self.m, n_obs=5)
                    self._send(i, self.agents[i].set_local_summary(self.locals[i], self.t))
                    del pending[i]
            self.step()

    def idle(self, seconds: float) -> None:
        t0 = self.t
        while self.t - t0 < seconds:
            self.step()


TIMING = dataclasses.replace(TimingConfig.fast(), fuse_hold_s=0.5)


@pytest.mark.parametrize(
    "name,edges", [("tree", binary_tree(15)), ("line", line(10)), ("ring", ring(12))]
)
def test_one_fuse_message_per_tree_edge_and_direction_per_round(name: str, edges: list) -> None:
    n = 1 + max(max(e) for e in edges)
    sw = RoundsSwarm(n, edges, seed=3, timing=TIMING)
    sw.run_until_consistent(5.0)
    sw.idle(1.0)  # tree settled, every message acknowledged
    ideal = 2 * (n - 1)
    for _ in range(3):
        before = sw.fuse_sent()
        sw.change_round(spread_s=0.1)
        sw.run_until_consistent(5.0)
        sw.idle(1.0)  # nothing more is sent once the round is in and acknowledged
        sent = sw.fuse_sent() - before
        assert ideal <= sent <= 1.5 * ideal, f"{name}: {sent} Fuse messages, ideal {ideal}"
        assert sw.max_err() <= 1e-9


def test_tree_mode_sends_more_than_rounds() -> None:
    """The per-change protocol forwards each change hop by hop and resends periodically."""
    counts = {}
    for fusion in ("tree", "rounds"):
        sw = RoundsSwarm(12, ring(12), seed=3, timing=TIMING, fusion=fusion)
        sw.run_until_consistent(5.0)
        before = sw.fuse_sent()
        sw.change_round(spread_s=0.1)
        sw.run_until_consistent(5.0)
        sw.idle(1.0)
        counts[fusion] = sw.fuse_sent() - before
    assert counts["rounds"] * 2 < counts["tree"]


@pytest.mark.parametrize("seed", [0, 1])
def test_rounds_exact_under_loss_duplication_and_reordering(seed: int) -> None:
    sw = RoundsSwarm(
        12,
        ring(12) + [(0, 6), (3, 9)],
        seed=seed,
        loss=0.4,
        duplicate=0.2,
        reorder=0.3,
        timing=TIMING,
    )
    sw.run_until_consistent(30.0)
    for _ in range(2):
        sw.change_round(spread_s=0.2)
        sw.run_until_consistent(30.0)
    assert sum(a.counters["tx.fuse_resend"] for a in sw.agents.values()) > 0


def test_rounds_exact_after_a_crash_and_a_restart() -> None:
    sw = RoundsSwarm(10, binary_tree(10) + [(4, 5), (7, 8)], seed=5, loss=0.1, timing=TIMING)
    sw.run_until_consistent(10.0)
    sw.kill(0)  # the root
    sw.run_until_consistent(20.0)
    sw.net.down.discard(0)
    sw.locals[0] = random_summary(np.random.default_rng(9), sw.m)
    sw.start(0)
    sw.change_round(spread_s=0.2)
    sw.run_until_consistent(20.0)


def test_unknown_fusion_mode_is_refused() -> None:
    with pytest.raises(ConfigError):
        AgentConfig(0, (1,), 4, HASH, fusion="gossip")


class StaggeredSwarm(RoundsSwarm):
    """Agents start one after another (1, 2, ..., n-1, then 0, as in a local swarm whose
    agents wait for their neighbours' endpoints), each with a new summary at its start."""

    def start(self, i: int) -> None:
        if getattr(self, "_go", False):
            super().start(i)

    def launch(self, order: list[int], gap_s: float) -> None:
        self._go = True
        for i in order:
            super().start(i)
            self.locals[i] = random_summary(self.rng, self.m, n_obs=5)
            self._send(i, self.agents[i].set_local_summary(self.locals[i], self.t))
            self.idle(gap_s)


@pytest.mark.parametrize("n", [16, 32])
def test_agents_starting_one_after_another_cost_about_one_round(n: int) -> None:
    """Neighbours still starting are owed changes (join_wait_s): one round, not one per join
    (9.5x the ideal at 32 agents without it)."""
    timing = dataclasses.replace(TIMING, join_wait_s=5.0)
    sw = StaggeredSwarm(n, ring(n), seed=3, timing=timing)
    sw.launch([*range(1, n), 0], gap_s=0.08)
    sw.run_until_consistent(5.0)
    sw.idle(1.0)
    assert sw.max_err() <= 1e-9
    assert sw.fuse_sent() <= 1.5 * 2 * (n - 1), f"{sw.fuse_sent()} Fuse messages"
