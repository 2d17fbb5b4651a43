"""The :class:`Observation` record: one sensor reading."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Observation"]


@dataclass(frozen=True, slots=True, eq=False)
class Observation:
    """One scalar observation of one sensor.

    Parameters
    ----------
    agent : str
        Sensor / agent key (e.g. the station name).
    t : float
        Time stamp, in the units of the source (e.g. days, seconds).
    x : numpy.ndarray
        Inputs, float64, shape ``[d]`` (read-only once built by a source).
    y : float
        Target value.
    """

    agent: str
    t: float
    x: np.ndarray
    y: float

    @property
    def d(self) -> int:
        """Input dimension."""
        return int(self.x.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Observation):
            return NotImplemented
        return (
            self.agent == other.agent
            and self.t == other.t
            and self.y == other.y
            and self.x.shape == other.x.shape
            and bool(np.array_equal(self.x, other.x))
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form ``{"agent", "t", "x": [...], "y"}``."""
        return {"agent": self.agent, "t": self.t, "x": self.x.tolist(), "y": self.y}
