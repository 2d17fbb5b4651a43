"""Replay pacing: as fast as possible, or at a speed factor, with an injected clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarmgp.agents.sources.errors import SourceConfigError

__all__ = ["Pacer", "parse_speed"]


def parse_speed(speed: float | str | None) -> float | None:
    """Parse a replay speed: ``None`` / ``"max"`` (as fast as possible), ``10``, ``"10x"``.

    Raises
    ------
    SourceConfigError
        For a non-positive or unparsable value.
    """
    if speed is None:
        return None
    if isinstance(speed, str):
        s = speed.strip().lower()
        if s in ("max", "inf", ""):
            return None
        s = s[:-1] if s.endswith("x") else s
        try:
            value = float(s)
        except ValueError:
            raise SourceConfigError(
                f"replay speed {speed!r}: expected 'max' or e.g. '10x'"
            ) from None
    else:
        value = float(speed)
    if not value > 0 or value == float("inf"):
        if value == float("inf"):
            return None
        raise SourceConfigError(f"replay speed must be > 0, got {speed!r}")
    return value


class Pacer:
    """Holds back observations so that data time advances ``speed`` times faster than wall time.

    Parameters
    ----------
    speed : float or str or None
        Speed factor (see :func:`parse_speed`); ``None`` never waits.
    time_unit_s : float
        Seconds per unit of the data's time column (86400 for days).
    clock : callable
        Monotonic clock in seconds (injected in tests).
    sleep : callable
        Sleep function (injected in tests so that they never really sleep).
    """

    def __init__(
        self,
        speed: float | str | None = None,
        *,
        time_unit_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.speed = parse_speed(speed)
        if not time_unit_s > 0:
            raise SourceConfigError(f"time_unit_s must be > 0, got {time_unit_s}")
        self.time_unit_s = float(time_unit_s)
        self.clock = clock
        self.sleep = sleep
        self._t0: float | None = None
        self._w0 = 0.0
        self.slept_s = 0.0

    def wait(self, t: float) -> None:
        """Block until the wall time that corresponds to data time ``t``."""
        if self.speed is None:
            return
        if self._t0 is None:
            self._t0 = t
            self._w0 = self.clock()
            return
        target = self._w0 + (t - self._t0) * self.time_unit_s / self.speed
        delay = target - self.clock()
        if delay > 0:
            self.slept_s += delay
            self.sleep(delay)
