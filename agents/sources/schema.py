"""Column mapping (which fields hold agent, time, inputs, target) and row parsing."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from swarmgp.agents.sources.errors import BadRowError, SourceConfigError, SourceOpenError
from swarmgp.agents.sources.record import Observation

__all__ = ["MAX_ABS", "MAX_JSON_DEPTH", "MAX_LINE", "ColumnSchema", "RowParser", "loads_row"]

#: Largest magnitude of an accepted value. Beyond it a row is rejected as ``overflow``: the
#: statistics built from the rows (means, variances, sums of squares of standardized values)
#: must stay finite, and any physical measurement is far below it.
MAX_ABS = 1e100

#: Deepest nesting of brackets accepted in a JSON row (a row needs 2: an object of lists).
#: Deeper rows are rejected as ``too_deep`` before :func:`json.loads` could recurse.
MAX_JSON_DEPTH = 32

#: Longest accepted line (JSON Lines) or push payload, in characters / bytes: ``oversized``.
MAX_LINE = 1 << 20

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\x02\x02")


@dataclass(frozen=True)
class ColumnSchema:
    """Which columns (or JSON keys) hold the agent key, time, inputs and target.

    Parameters
    ----------
    agent : str or None
        Column of the agent / sensor key; ``None`` means every row belongs to
        ``default_agent`` (or, for MQTT / ZeroMQ, the last topic level).
    time : str or None
        Time column (numeric); None: the rows are untimed and a row's time is its line number
        (file order; 0 where a source has no lines).
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
    time: str | None = "t"
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
        cols = ([self.agent] if self.agent else []) + ([self.time] if self.time else [])
        cols += [*self.inputs, self.target]
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
                shown = repr(list(header))
                if len(shown) > 200:
                    shown = shown[:200] + "...]"
                hint = (
                    "; --time-column COL names the time column, --time-column none reads the "
                    "rows as untimed"
                    if col == self.time
                    else ""
                )
                raise SourceOpenError(
                    origin,
                    f"header lacks declared column {col!r} (header: {shown}){hint}",
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
    except OverflowError:  # an int beyond the float range
        raise BadRowError(
            "overflow", "integer beyond the float range", origin=origin, line=line, column=column
        ) from None
    except ValueError:
        raise BadRowError(
            "non_numeric", f"value {value!r}", origin=origin, line=line, column=column
        ) from None
    if not math.isfinite(v):
        raise BadRowError("non_finite", f"value {value!r}", origin=origin, line=line, column=column)
    if abs(v) > MAX_ABS:
        raise BadRowError(
            "overflow", f"|{v:.3g}| > {MAX_ABS:g}", origin=origin, line=line, column=column
        )
    return v


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings are not counted)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the number of openers: the fast path of every row
    bare = _STRING.sub("", text).encode("utf-8", "surrogatepass")
    marks = np.frombuffer(bare.translate(_OPEN_CLOSE), dtype=np.uint8)
    steps = np.where(marks == 1, 1, np.where(marks == 2, -1, 0)).astype(np.int64)
    return int(np.cumsum(steps).max(initial=0))


def loads_row(text: str | bytes, origin: str, line: int | None) -> Any:
    """Parse one JSON row with bounded size and nesting.

    Raises
    ------
    BadRowError
        ``oversized`` (longer than :data:`MAX_LINE`), ``malformed`` (not UTF-8, not JSON),
        ``too_deep`` (nested deeper than :data:`MAX_JSON_DEPTH`).
    """
    if len(text) > MAX_LINE:
        raise BadRowError(
            "oversized", f"{len(text)} characters > {MAX_LINE}", origin=origin, line=line
        )
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        elif not text.isascii():
            text.encode("utf-8")  # lone surrogates: undecodable bytes read with surrogateescape
    except UnicodeError:
        raise BadRowError("malformed", "not UTF-8", origin=origin, line=line) from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BadRowError(
            "too_deep", f"nested {depth} deep > {MAX_JSON_DEPTH}", origin=origin, line=line
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRowError(
            "malformed", f"invalid JSON: {exc.msg}", origin=origin, line=line
        ) from None
    except UnicodeError:
        raise BadRowError("malformed", "not UTF-8", origin=origin, line=line) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadRowError("malformed", f"invalid JSON: {exc}", origin=origin, line=line) from None
    except RecursionError:  # unreachable after the depth check; never let it kill a source
        raise BadRowError("too_deep", "nested too deep", origin=origin, line=line) from None


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
        t = _num(row[s.time], s.time, o, line) if s.time else float(line or 0)
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
        self.i_time = idx[s.time] if s.time else None
        self.i_inputs = [(idx[c], c) for c in s.inputs]
        self.i_target = idx[s.target]

    def parse(self, row: Sequence[str], line: int) -> Observation:
        """Parse one CSV row.

        Raises
        ------
        BadRowError
        """
        p = self.parent
        s = p.schema
        o = p.origin
        if len(row) != self.n_cols:
            raise BadRowError(
                "field_count",
                f"row has {len(row)} fields, header has {self.n_cols}",
                origin=o,
                line=line,
            )
        if self.i_agent is None:
            agent = s.default_agent
        else:
            agent = row[self.i_agent].strip()
            if not agent:
                raise BadRowError(
                    "missing_value", "empty agent key", origin=o, line=line, column=s.agent
                )
        t = float(line) if self.i_time is None else _num(row[self.i_time], s.time or "", o, line)
        xs = [_num(row[i], c, o, line) for i, c in self.i_inputs]
        y = _num(row[self.i_target], s.target, o, line)
        return p._finish(agent, t, xs, y, line)
