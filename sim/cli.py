"""``python launch.py sim``: run one simulated swarm, print a summary, write report and plot.

``launch.py`` parses the command line into one :class:`~swarmgp.agents.run_config.RunConfig`
and calls :func:`main` with it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from swarmgp.agents.run_config import RunConfig
from swarmgp.agents.runtime.report import check_outputs, plot_report, summary_lines, write_report
from swarmgp.sim.newcomers import newcomer_lines, newcomers_plot_path, plot_newcomers
from swarmgp.sim.swarm import run_simulation

__all__ = ["Progress", "main"]


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


def main(cfg: RunConfig) -> int:
    """Run ``launch.py sim`` for a parsed run configuration; returns the exit code."""
    check_outputs(cfg.output.report, cfg.output.plot)  # fail now, not after the run
    bar = None if cfg.output.quiet else Progress()
    kept: list = []  # the built swarm: its agents' collective model draws the --plot map
    try:
        report = run_simulation(cfg, progress=bar, keep=kept)
    finally:
        if bar is not None:
            bar.close()
    if report is None:  # an MPI rank other than 0: rank 0 writes the report
        return 0
    if cfg.output.plot and kept:
        from swarmgp.sim.mapping import sim_map

        report["map"] = sim_map(cfg, kept[0])
    for line in summary_lines(report) + newcomer_lines(report):
        print(line)
    if cfg.output.report:
        write_report(report, cfg.output.report)
        print(f"  report: {cfg.output.report}")
    if cfg.output.plot:
        plot_report(report, cfg.output.plot)
        print(f"  plot: {cfg.output.plot}")
        if report.get("newcomers", {}).get("table"):  # --newcomers (issue 9)
            nc_plot = newcomers_plot_path(cfg.output.plot)
            plot_newcomers(report, nc_plot)
            print(f"  plot: {nc_plot}")
    return 0
