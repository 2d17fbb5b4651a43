"""Exceptions raised by the data sources.

Hierarchy::

    SwarmGPError (ValueError)
    └── SourceError                 base of every data-source error
        ├── SourceOpenError         the source as a whole is unusable (file missing, header
        │                           missing a declared column, bad URI): fails fast
        ├── BadRowError             one row is malformed; counted and skipped by default
        ├── SourceConfigError       an invalid schema, transform or option
        ├── TransformNotFitted      standardisation statistics are not fixed yet
        └── QueueClosed             the bounded queue was closed (end of stream)
"""

from __future__ import annotations

from swarmgp.fusion.errors import SwarmGPError

__all__ = [
    "BadRowError",
    "QueueClosed",
    "SourceConfigError",
    "SourceError",
    "SourceOpenError",
    "TransformNotFitted",
]


def _where(origin: str, line: int | None, column: str | None) -> str:
    parts = [origin]
    if line is not None:
        parts.append(f"line {line}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts)


class SourceError(SwarmGPError):
    """Base class of the data-source errors."""


class SourceOpenError(SourceError):
    """The source cannot be used at all (missing file, header without a declared column).

    Parameters
    ----------
    origin : str
        The file path or endpoint.
    message : str
        What is wrong.
    line, column : int or str, optional
        Where (1-based line number, column name).
    """

    def __init__(
        self, origin: str, message: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        self.origin = origin
        self.line = line
        self.column = column
        super().__init__(f"{_where(origin, line, column)}: {message}")


class BadRowError(SourceError):
    """One row is malformed.

    Attributes
    ----------
    reason : str
        Short machine-readable reason used as a counter key: ``missing_column``,
        ``missing_value``, ``non_numeric``, ``non_finite``, ``overflow`` (a magnitude
        beyond :data:`~.schema.MAX_ABS`), ``field_count`` (a CSV row with more or fewer
        fields than its header), ``wrong_dimension``, ``too_deep`` (JSON nested beyond
        :data:`~.schema.MAX_JSON_DEPTH`), ``oversized`` (a line or payload beyond
        :data:`~.schema.MAX_LINE`), ``malformed`` (invalid JSON / CSV / UTF-8).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        origin: str = "",
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = reason
        self.origin = origin
        self.line = line
        self.column = column
        super().__init__(f"{_where(origin, line, column)}: {reason}: {message}")


class SourceConfigError(SourceError):
    """An invalid schema, transform configuration, URI option or policy."""


class TransformNotFitted(SourceError):
    """A standardising transform was used before its statistics were fixed."""


class QueueClosed(SourceError):
    """The bounded queue is closed (and, for a consumer, drained)."""
