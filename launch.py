#!/usr/bin/env python3
"""swarmgp command line: ``sim``, ``local``, ``agent`` and ``status``.

    python launch.py sim   --agents 1000 --topology geometric --inducing 100 --report r.json
    python launch.py local --agents 8 --topology ring --no-learn --report r.json
    python launch.py agent --rendezvous DIR            # identity from --id or SLURM/MPI/torchrun
    python launch.py status tcp://127.0.0.1:5555 ...   # or --rendezvous DIR
    python launch.py keys --out keys/ --agents 8       # then --keys keys/ on local/agent/status

One parser builds one frozen :class:`~swarmgp.agents.run_config.RunConfig` (also from
``--config FILE.toml``; flags override the file). Invalid values exit 2 with one line; run-time
errors exit 1 with one line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from swarmgp.agents.run_config import (
    COMMANDS,
    ConfigError,
    RunConfig,
    add_config_options,
    config_from_namespace,
)

__all__ = ["build_parser", "main"]

_HELP = {
    "sim": "simulate a swarm in one process (virtual time)",
    "local": "run a real swarm of agent processes on this machine",
    "agent": "run one agent (identity from flags or the cluster environment)",
}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``launch.py`` parser."""
    parser = _Parser(prog="launch.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(command, help=_HELP[command], description=_HELP[command])
        add_config_options(p, command)
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    status = sub.add_parser("status", help="query running agents")
    status.add_argument("endpoints", nargs="*", metavar="ENDPOINT")
    status.add_argument("--rendezvous", metavar="DIR", help="query every agent recorded here")
    status.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="seconds to wait for answers"
    )
    status.add_argument(
        "--wait",
        action="store_true",
        help="wait (up to --timeout) until the swarm in --rendezvous is consistent and its data "
        "ended; exit 0 printing 'consistent: max rel diff X', else 1 with the reason",
    )
    status.add_argument(
        "--tol", type=float, default=1e-9, help="consistency tolerance, relative (1e-09)"
    )
    status.add_argument("--json", action="store_true", help="print JSON rows")
    status.add_argument("--keys", metavar="DIR", help="swarm keyring: query as the operator")
    status.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    keys = sub.add_parser("keys", help="make a swarm keyring (CURVE key pairs + allow-list)")
    keys.add_argument("--out", required=True, metavar="DIR", help="new keyring directory")
    keys.add_argument("--agents", required=True, type=_positive_int, metavar="N")
    keys.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}, must be >= 1")
    return value


def parse_config(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, RunConfig | None]:
    """Parse the command line; the run config of a run command (None for ``status``).

    Exits 2 with one line on an invalid value.
    """
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command in ("status", "keys"):
        return ns, None
    given = {k: v for k, v in vars(ns).items() if k not in ("command", "debug")}
    try:
        return ns, config_from_namespace(ns.command, given)
    except ConfigError as exc:
        parser.exit(2, f"launch.py {ns.command}: error: {exc}\n")


def _run(ns: argparse.Namespace, cfg: RunConfig | None) -> int:
    if ns.command == "keys":
        from swarmgp.protocol.keys import make_keyring

        make_keyring(ns.out, ns.agents)
        print(f"keyring for {ns.agents} agents and an operator written to {ns.out}")
        return 0
    if cfg is None:
        from swarmgp.agents.runtime.status import main as status_main

        return status_main(
            ns.endpoints, ns.rendezvous, ns.timeout, ns.json, ns.keys, ns.wait, ns.tol
        )
    if cfg.command == "sim":
        from swarmgp.sim.cli import main as sim_main

        return sim_main(cfg)
    if cfg.command == "local":
        from swarmgp.agents.runtime.local import main as local_main

        return local_main(cfg)
    from swarmgp.agents.runtime.node import main as agent_main

    return agent_main(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (console script ``swarmgp``)."""
    ns, cfg = parse_config(argv)
    try:
        return _run(ns, cfg)
    except KeyboardInterrupt:  # an interrupt outside a command's own handling: exit quietly
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as exc:  # SwarmGPError is a ValueError
        if ns.debug:
            raise
        print(f"launch.py {ns.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ImportError) and exc.name:
        return f"optional package {exc.name!r} is missing (pip install it, or see the README)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
