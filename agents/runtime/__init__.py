"""swarmgp.agents.runtime: the real-time edge around the sans-I/O agent core.

The asyncio runner (:mod:`.runner`), one agent process (:mod:`.node`), the local swarm
launcher (:mod:`.local`), identity from cluster launchers (:mod:`.identity`), the rendezvous
directory (:mod:`.rendezvous`), the status command (:mod:`.status`) and the one run report
(:mod:`.report`). Nothing in ``swarmgp.agents`` outside this package imports it.
"""

from __future__ import annotations

from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.identity import resolve_identity
from swarmgp.agents.runtime.rendezvous import read_records, write_record
from swarmgp.agents.runtime.report import (
    REQUIRED_KEYS,
    ReportError,
    Scores,
    build_report,
    check_report,
    write_report,
)

__all__ = [
    "LaunchError",
    "REQUIRED_KEYS",
    "ReportError",
    "Scores",
    "build_report",
    "check_report",
    "read_records",
    "resolve_identity",
    "write_record",
    "write_report",
]
