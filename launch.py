#!/usr/bin/env python3
"""swarmgp command line: ``sim``, ``local``, ``agent`` and ``status``.

    python launch.py sim   --agents 1000 --topology geometric --inducing 100 --report r.json
    python launch.py local --agents 8 --topology ring --no-learn --report r.json
    python launch.py agent --rendezvous DIR            # identity from --id or SLURM/MPI/torchrun
    python launch.py status tcp://127.0.0.1:5555 ...   # or --rendezvous DIR

``sim`` and ``local`` share the options of DESIGN.md section 4 (:func:`add_common_options`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TOPOLOGIES = ("tree", "ring", "grid", "geometric", "smallworld", "complete")


def add_common_options(p: argparse.ArgumentParser) -> None:
    """The options every run command accepts (DESIGN.md section 4)."""
    g = p.add_argument_group("swarm and model")
    g.add_argument("--agents", type=int, default=8, help="number of agents N")
    t = g.add_mutually_exclusive_group()
    t.add_argument("--topology", choices=TOPOLOGIES, default="ring", help="neighbour graph")
    t.add_argument("--peers", metavar="FILE", help="neighbour graph from a peers file")
    g.add_argument("--inducing", type=int, default=50, metavar="m", help="inducing inputs m")
    g.add_argument(
        "--samples",
        type=int,
        default=20,
        metavar="M",
        help="samples of W for the importance encoder",
    )
    g.add_argument("--batches", type=int, default=5, metavar="B", help="batches per agent")
    g.add_argument("--batch-size", type=int, default=50, metavar="S", help="batch size")
    g.add_argument(
        "--loss", type=float, default=0.0, metavar="p", help="probability of dropping each message"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    g.add_argument(
        "--no-learn",
        action="store_true",
        help="freeze hyperparameters at their shared initial values",
    )
    g.add_argument("--plot", metavar="PATH", help="write a plot here")
    d = p.add_argument_group("data")
    d.add_argument(
        "--data", default="synthetic", metavar="URI", help="synthetic (default) or csv:PATH"
    )
    d.add_argument("--agent-column", metavar="COL", help="CSV column naming the agent")
    d.add_argument("--inputs", metavar="A,B,...", help="CSV input columns")
    d.add_argument("--target", metavar="COL", help="CSV target column")
    d.add_argument("--time-column", default="t", metavar="COL", help="time column (default t)")
    d.add_argument(
        "--holdout-every",
        type=int,
        default=10,
        metavar="K",
        help="real agents: rows with int(t) %% K == 0 are held-out days for scoring",
    )
    d.add_argument(
        "--features",
        metavar="FILE",
        help="real agents: declared FeatureConfig JSON shared by the swarm",
    )
    p.add_argument("--report", metavar="PATH", help="write the JSON run report here")


def _add_process_options(p: argparse.ArgumentParser) -> None:
    # options of real agent processes (local and agent)
    g = p.add_argument_group("agent processes")
    g.add_argument("--encoder", choices=("analytic", "importance"), default="analytic")
    g.add_argument("--dim", type=int, default=2, help="input dimension of synthetic data")
    g.add_argument(
        "--heartbeat",
        type=float,
        default=0.1,
        metavar="S",
        help="beacon period in seconds (timeouts are 6 beacons)",
    )
    g.add_argument(
        "--batch-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds between an agent's batches (0: all at start)",
    )
    g.add_argument("--log-level", default="INFO")


def build_parser() -> argparse.ArgumentParser:
    """The full ``launch.py`` parser."""
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="simulate a swarm in one process (virtual time)")
    add_common_options(sim)
    from swarmgp.sim.cli import add_sim_arguments  # light: the simulator loads on use

    add_sim_arguments(sim)

    local = sub.add_parser("local", help="run a real swarm of agent processes on this machine")
    add_common_options(local)
    _add_process_options(local)
    local.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for consistency"
    )
    local.add_argument("--start-timeout", type=float, default=60.0)
    local.add_argument("--tol", type=float, default=1e-9, help="consistency tolerance")
    local.add_argument("--test-points", type=int, default=200)
    local.add_argument("--workdir", help="rendezvous/log directory (default: a new temp dir)")

    agent = sub.add_parser("agent", help="run one agent (identity from flags or the cluster env)")
    add_common_options(agent)
    _add_process_options(agent)
    agent.add_argument("--id", type=int, help="agent id (else SLURM/Open MPI/PMI/torchrun rank)")
    agent.add_argument("--world", type=int, help="number of agents (else from the environment)")
    agent.add_argument("--rendezvous", metavar="DIR", help="shared directory for endpoints")
    agent.add_argument("--rendezvous-timeout", type=float, default=60.0)
    agent.add_argument("--neighbors", metavar="I,J,...", help="neighbour ids (overrides graphs)")
    agent.add_argument("--connect", metavar="ID=EP,...", help="explicit neighbour endpoints")
    agent.add_argument(
        "--bind", default="tcp://127.0.0.1:*", help="ROUTER bind address (tcp://*:* on a cluster)"
    )
    agent.add_argument("--advertise-host", help="host name peers use to reach this agent")
    agent.add_argument("--log-file", help="log here instead of stderr")

    status = sub.add_parser("status", help="query running agents")
    status.add_argument("endpoints", nargs="*", metavar="ENDPOINT")
    status.add_argument("--rendezvous", metavar="DIR", help="query every agent recorded here")
    status.add_argument("--timeout", type=float, default=2.0)
    status.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (console script ``swarmgp``)."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:  # an interrupt outside a command's own handling: exit quietly
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sim":
        from swarmgp.sim.cli import main as sim_main

        return int(sim_main(args) or 0)
    from swarmgp.agents import launcher

    if args.command == "local":
        return launcher.local_main(args)
    if args.command == "agent":
        return launcher.agent_main(args)
    return launcher.status_main(args)


if __name__ == "__main__":
    sys.exit(main())
