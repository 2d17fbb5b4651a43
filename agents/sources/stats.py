"""Per-source counters of accepted and rejected rows."""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field

from swarmgp.agents.sources.errors import BadRowError

__all__ = ["SourceStats"]

log = logging.getLogger("swarmgp.agents.sources")


@dataclass
class SourceStats:
    """Counters of one source.

    Attributes
    ----------
    accepted : int
        Rows turned into observations (before any per-agent filter).
    rejected : collections.Counter
        Rejected rows by reason (see :class:`~.errors.BadRowError`).
    control : int
        Control messages (sync / end of stream) of push feeds.
    samples : collections.deque
        The last few rejection messages (bounded), for reporting.
    """

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    control: int = 0
    samples: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    @property
    def n_rejected(self) -> int:
        """Total rejected rows."""
        return sum(self.rejected.values())

    def reject(self, err: BadRowError) -> None:
        """Count a rejected row and keep its message (logged at WARNING for the first few)."""
        self.rejected[err.reason] += 1
        self.samples.append(str(err))
        if self.rejected[err.reason] <= 3:
            log.warning("rejected row: %s", err)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready snapshot."""
        return {
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "n_rejected": self.n_rejected,
            "control": self.control,
        }
