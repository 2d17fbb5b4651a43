"""``python launch.py sim``: run one simulated swarm, print a summary, write report and plot.

``launch.py`` builds the parser with the options of DESIGN.md section 4 and calls
:func:`main` with the parsed namespace. The simulator's extra options (encoder, faults,
timing, scoring) are added by :func:`add_sim_arguments`; :func:`main` falls back to their
defaults for any the namespace lacks, so it works with or without them.
``python -m swarmgp.sim.cli ...`` runs the same with a parser of its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .network import ChurnEvent, Partition
from .report import check_report, plot_report, summary_lines, write_report
from .swarm import SimSettings, run_simulation
from .topology import TOPOLOGIES

__all__ = ["Progress", "add_sim_arguments", "build_parser", "main", "settings_from_args"]

#: Defaults of ``launch.py sim`` (small enough to finish in well under a minute on 2 cores).
DEFAULTS = SimSettings(agents=8, topology="ring", batches=5, batch_size=50, inducing=50)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The DESIGN.md section 4 options (for the standalone parser; launch.py has its own)."""
    p.add_argument("--agents", type=int, default=DEFAULTS.agents)
    t = p.add_mutually_exclusive_group()
    t.add_argument("--topology", choices=TOPOLOGIES, default=DEFAULTS.topology)
    t.add_argument("--peers", metavar="FILE")
    p.add_argument("--inducing", type=int, default=DEFAULTS.inducing, metavar="m")
    p.add_argument("--samples", type=int, default=DEFAULTS.samples, metavar="M")
    p.add_argument("--batches", type=int, default=DEFAULTS.batches, metavar="B")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, metavar="S")
    p.add_argument("--loss", type=float, default=0.0, metavar="p")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-learn", action="store_true")
    p.add_argument("--plot", metavar="PATH")
    p.add_argument("--data", default="synthetic", metavar="URI")
    p.add_argument("--agent-column", metavar="COL")
    p.add_argument("--inputs", metavar="A,B,...")
    p.add_argument("--target", metavar="COL")
    p.add_argument("--report", metavar="PATH")


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    """Options specific to the simulator (``launch.py sim`` may call this on its subparser)."""
    g = p.add_argument_group("simulation")
    g.add_argument(
        "--encoder",
        choices=("analytic", "importance"),
        default=DEFAULTS.encoder,
        help="exact per-batch encoder, or the paper's importance-sampled one",
    )
    g.add_argument("--dim", type=int, default=DEFAULTS.dim, help="synthetic input dimension")
    g.add_argument(
        "--groups",
        type=int,
        default=None,
        help="synthetic: distinct projections W_g (default min(agents, 8))",
    )
    g.add_argument(
        "--spread",
        type=float,
        default=DEFAULTS.spread,
        help="synthetic: W_g = I + spread * N(0,1)/sqrt(d)",
    )
    g.add_argument("--noise", type=float, default=DEFAULTS.noise, help="synthetic noise std")
    g.add_argument("--test-points", type=int, default=DEFAULTS.n_test)
    g.add_argument(
        "--batch-interval",
        type=float,
        default=DEFAULTS.batch_interval_s,
        metavar="S",
        help="virtual seconds between an agent's batches",
    )
    g.add_argument("--heartbeat", type=float, default=DEFAULTS.heartbeat_s, metavar="S")
    g.add_argument(
        "--fuse-interval",
        type=float,
        default=DEFAULTS.fuse_interval_s,
        metavar="S",
        help="coalescing interval of fusion rounds",
    )
    g.add_argument(
        "--bursty",
        type=float,
        default=None,
        metavar="p",
        help="Gilbert-Elliott bursty loss of this mean rate instead of Bernoulli",
    )
    g.add_argument("--duplicate", type=float, default=0.0, metavar="p")
    g.add_argument("--reorder", type=float, default=0.0, metavar="p")
    g.add_argument("--latency", type=float, default=DEFAULTS.latency_s, metavar="S")
    g.add_argument(
        "--churn-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="departures per virtual second (each restarts shortly after)",
    )
    g.add_argument(
        "--churn",
        action="append",
        default=[],
        metavar="T:AGENT:KIND",
        help="one churn event (KIND crash|leave|join|restart); repeatable",
    )
    g.add_argument(
        "--partition",
        action="append",
        default=[],
        metavar="T0:T1:A,B,..",
        help="isolate agents A,B,.. from the rest during [T0, T1); repeatable",
    )
    g.add_argument("--max-settle", type=float, default=DEFAULTS.max_settle_s, metavar="S")
    g.add_argument(
        "--score-agents",
        type=int,
        default=DEFAULTS.score_agents,
        help="score at most this many agents (a seeded sample)",
    )
    g.add_argument(
        "--baselines",
        default=",".join(DEFAULTS.baselines),
        help="comma list of local,oracle,gpoe,rbcm,dpitc,sgpr_pooled ('' for none)",
    )
    g.add_argument("--sgpr-iters", type=int, default=DEFAULTS.sgpr_iters)
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """Standalone parser (``python -m swarmgp.sim.cli``)."""
    p = argparse.ArgumentParser(prog="swarmgp-sim", description="simulate a swarm in one process")
    add_common_arguments(p)
    add_sim_arguments(p)
    return p


def _partition(spec: str) -> Partition:
    try:
        t0, t1, ids = spec.split(":")
        return Partition(float(t0), float(t1), (frozenset(int(a) for a in ids.split(",") if a),))
    except ValueError as exc:
        raise SystemExit(f"--partition {spec!r}: expected T0:T1:A,B,.. ({exc})") from None


def _churn(spec: str) -> ChurnEvent:
    try:
        t, a, kind = spec.split(":")
        return ChurnEvent(float(t), int(a), kind)
    except ValueError as exc:
        raise SystemExit(f"--churn {spec!r}: expected T:AGENT:KIND ({exc})") from None


def settings_from_args(args: argparse.Namespace) -> SimSettings:
    """Map parsed options (launch.py's or the standalone parser's) to :class:`SimSettings`."""

    def opt(name: str, default: Any) -> Any:
        v = getattr(args, name, None)
        return default if v is None else v

    inputs = opt("inputs", None)
    if isinstance(inputs, str):
        inputs = tuple(c.strip() for c in inputs.split(",") if c.strip())
    base = opt("baselines", ",".join(DEFAULTS.baselines))
    return SimSettings(
        agents=opt("agents", DEFAULTS.agents),
        topology=opt("topology", DEFAULTS.topology),
        peers=opt("peers", None),
        inducing=opt("inducing", DEFAULTS.inducing),
        samples=opt("samples", DEFAULTS.samples),
        batches=opt("batches", DEFAULTS.batches),
        batch_size=opt("batch_size", DEFAULTS.batch_size),
        loss=float(opt("loss", 0.0)),
        seed=opt("seed", 0),
        learn=not bool(opt("no_learn", False)),
        data=opt("data", "synthetic"),
        agent_column=opt("agent_column", None),
        inputs=inputs or None,
        target=opt("target", None),
        encoder=opt("encoder", DEFAULTS.encoder),
        dim=opt("dim", DEFAULTS.dim),
        groups=opt("groups", None),
        spread=opt("spread", DEFAULTS.spread),
        noise=opt("noise", DEFAULTS.noise),
        n_test=opt("test_points", DEFAULTS.n_test),
        batch_interval_s=opt("batch_interval", DEFAULTS.batch_interval_s)
        or DEFAULTS.batch_interval_s,
        heartbeat_s=DEFAULTS.heartbeat_s
        if getattr(args, "encoder", None) is None
        else opt("heartbeat", DEFAULTS.heartbeat_s),
        fuse_interval_s=opt("fuse_interval", DEFAULTS.fuse_interval_s),
        bursty=opt("bursty", None),
        duplicate=opt("duplicate", 0.0),
        reorder=opt("reorder", 0.0),
        latency_s=opt("latency", DEFAULTS.latency_s),
        churn_rate=opt("churn_rate", 0.0),
        churn=tuple(_churn(c) for c in opt("churn", [])),
        partitions=tuple(_partition(p) for p in opt("partition", [])),
        max_settle_s=opt("max_settle", DEFAULTS.max_settle_s),
        score_agents=opt("score_agents", DEFAULTS.score_agents),
        baselines=tuple(b.strip() for b in base.split(",") if b.strip()),
        sgpr_iters=opt("sgpr_iters", DEFAULTS.sgpr_iters),
    )


class Progress:
    """Plain-text progress bar on a stream (stderr), rewritten in place with ``\\r``."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.t0 = time.monotonic()
        self._last = ""

    def __call__(self, phase: str, done: float, total: float) -> None:
        frac = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        n = int(frac * self.width)
        line = (
            f"\r[{'#' * n}{'.' * (self.width - n)}] {phase:6s} {done:7.2f}/{total:.2f} s "
            f"virtual, {time.monotonic() - self.t0:6.1f} s wall"
        )
        if line != self._last:
            self.stream.write(line)
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        """End the bar's line."""
        if self._last:
            self.stream.write("\n")
            self.stream.flush()


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run ``launch.py sim`` with parsed options (or parse ``args`` as a list of strings)."""
    if args is None or not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(None if args is None else list(args))
    settings = settings_from_args(args)
    bar = None if getattr(args, "quiet", False) else Progress()
    try:
        report = run_simulation(settings, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    check_report(report)
    for line in summary_lines(report):
        print(line)
    if getattr(args, "report", None):
        write_report(report, args.report)
        print(f"  report: {args.report}")
    if getattr(args, "plot", None):
        plot_report(report, args.plot)
        print(f"  plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
