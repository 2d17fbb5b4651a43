"""Column mapping (which fields hold agent, time, inputs, target) and row parsing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from swarmgp.agents.sources.errors import BadRowError, SourceConfigError, SourceOpenError
from swarmgp.agents.sources.record import Observation

__all__ = ["ColumnSchema", "RowParser"]


@dataclass(frozen=True)
class ColumnSchema:
    """Which columns (or JSON keys) hold the agent key, time, inputs and target.

    Parameters
    ----------
    agent : str or None
        Column of the agent / sensor key; ``None`` means every row belongs to
        ``default_agent`` (or, for MQTT / ZeroMQ, the last topic level).
    time : str
        Time column (numeric).
    inputs : tuple of str
        Input columns, in order. In JSON, a value may be a list (flattened in place).
    target : str
        Target column.
    d : int or None
        Expected input dimension; ``None`` fixes it from the first accepted row.
    default_agent : str
        Agent key when ``agent`` is ``None``.
    """

    agent: str | None = "agent"
    time: str = "t"
    inputs: tuple[str, ...] = ("x",)
    target: str = "y"
    d: int | None = None
    default_agent: str = "0"

    def __post_init__(self) -> None:
        if isinstance(self.inputs, str):
            object.__setattr__(self, "inputs", (self.inputs,))
        else:
            object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise SourceConfigError("ColumnSchema.inputs must name at least one column")
        if self.d is not None and self.d < 1:
            raise SourceConfigError(f"ColumnSchema.d must be >= 1, got {self.d}")

    @property
    def required(self) -> tuple[str, ...]:
        """Every declared column, without duplicates, in declaration order."""
        cols = ([self.agent] if self.agent else []) + [self.time, *self.inputs, self.target]
        return tuple(dict.fromkeys(cols))

    def check_header(self, header: Sequence[str], origin: str, line: int | None = 1) -> None:
        """Fail fast when a header lacks a declared column.

        Raises
        ------
        SourceOpenError
            Naming the file, the header line and the first missing column.
        """
        have = set(header)
        for col in self.required:
            if col not in have:
                raise SourceOpenError(
                    origin,
                    f"header lacks declared column {col!r} (header: {list(header)})",
                    line=line,
                    column=col,
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["inputs"] = list(self.inputs)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSchema:
        """Inverse of :meth:`to_dict`."""
        kw = dict(data)
        if "inputs" in kw:
            kw["inputs"] = tuple(kw["inputs"])
        return cls(**kw)


def _num(value: Any, column: str, origin: str, line: int | None) -> float:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        raise BadRowError("missing_value", "empty value", origin=origin, line=line, column=column)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRowError(
            "non_numeric",
            f"{type(value).__name__} value {value!r}",
            origin=origin,
            line=line,
            column=column,
        )
    try:
        v = float(value)
    except (ValueError, OverflowError):
        raise BadRowError(
            "non_numeric", f"value {value!r}", origin=origin, line=line, column=column
        ) from None
    if not math.isfinite(v):
        raise BadRowError("non_finite", f"value {value!r}", origin=origin, line=line, column=column)
    return v


class RowParser:
    """Turns rows (mappings or positional CSV rows) into :class:`Observation` s.

    Stateful only in the input dimension, fixed by the first accepted row when the
    schema does not declare it.

    Parameters
    ----------
    schema : ColumnSchema
    origin : str
        File path or endpoint, for messages.
    """

    def __init__(self, schema: ColumnSchema, origin: str) -> None:
        self.schema = schema
        self.origin = origin
        self.d: int | None = schema.d

    def _finish(
        self, agent: str, t: float, xs: list[float], y: float, line: int | None
    ) -> Observation:
        if self.d is None:
            self.d = len(xs)
        elif len(xs) != self.d:
            raise BadRowError(
                "wrong_dimension",
                f"{len(xs)} inputs, expected {self.d}",
                origin=self.origin,
                line=line,
            )
        x = np.array(xs, dtype=np.float64)
        x.flags.writeable = False
        return Observation(agent, t, x, y)

    def parse_mapping(
        self, row: Mapping[str, Any], line: int | None = None, default_agent: str | None = None
    ) -> Observation:
        """Parse a mapping (JSON object, Parquet row, CSV DictReader row).

        Raises
        ------
        BadRowError
        """
        s = self.schema
        o = self.origin
        if not isinstance(row, Mapping):
            raise BadRowError(
                "malformed", f"expected an object, got {type(row).__name__}", origin=o, line=line
            )
        for col in s.required:
            if col not in row:
                raise BadRowError("missing_column", "absent", origin=o, line=line, column=col)
        if s.agent is None:
            agent = default_agent if default_agent is not None else s.default_agent
        else:
            a = row[s.agent]
            if a is None or (isinstance(a, str) and not a.strip()) or isinstance(a, (list, dict)):
                raise BadRowError(
                    "missing_value", f"agent key {a!r}", origin=o, line=line, column=s.agent
                )
            agent = str(a).strip()
        t = _num(row[s.time], s.time, o, line)
        xs: list[float] = []
        for col in s.inputs:
            v = row[col]
            if isinstance(v, (list, tuple)):
                if not v:
                    raise BadRowError(
                        "missing_value", "empty list", origin=o, line=line, column=col
                    )
                xs.extend(_num(e, col, o, line) for e in v)
            else:
                xs.append(_num(v, col, o, line))
        y = _num(row[s.target], s.target, o, line)
        return self._finish(agent, t, xs, y, line)

    def positional(self, header: Sequence[str]) -> PositionalParser:
        """A fast parser for rows of strings laid out as ``header`` (checked first)."""
        self.schema.check_header(header, self.origin)
        return PositionalParser(self, header)


class PositionalParser:
    """Parses CSV rows (lists of strings) by precomputed column indices."""

    def __init__(self, parent: RowParser, header: Sequence[str]) -> None:
        s = parent.schema
        idx = {name: i for i, name in enumerate(header)}
        self.parent = parent
        self.n_cols = len(header)
        self.i_agent = idx[s.agent] if s.agent else None
        self.i_time = idx[s.time]
        self.i_inputs = [(idx[c], c) for c in s.inputs]
        self.i_target = idx[s.target]
        self.need = max(idx[c] for c in s.required) + 1

    def parse(self, row: Sequence[str], line: int) -> Observation:
        """Parse one CSV row.

        Raises
        ------
        BadRowError
        """
        p = self.parent
        s = p.schema
        o = p.origin
        if len(row) < self.need:
            missing = [c for c in s.required if s.required and self._index(c) >= len(row)]
            raise BadRowError(
                "missing_column",
                f"row has {len(row)} fields, header has {self.n_cols}",
                origin=o,
                line=line,
                column=missing[0] if missing else None,
            )
        if self.i_agent is None:
            agent = s.default_agent
        else:
            agent = row[self.i_agent].strip()
            if not agent:
                raise BadRowError(
                    "missing_value", "empty agent key", origin=o, line=line, column=s.agent
                )
        t = _num(row[self.i_time], s.time, o, line)
        xs = [_num(row[i], c, o, line) for i, c in self.i_inputs]
        y = _num(row[self.i_target], s.target, o, line)
        return p._finish(agent, t, xs, y, line)

    def _index(self, col: str) -> int:
        s = self.parent.schema
        if col == s.agent and self.i_agent is not None:
            return self.i_agent
        if col == s.time:
            return self.i_time
        if col == s.target:
            return self.i_target
        return next(i for i, c in self.i_inputs if c == col)
