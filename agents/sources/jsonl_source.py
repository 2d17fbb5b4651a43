"""JSON Lines source: a file, or standard input (``jsonl:-``)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import BadRowError, SourceOpenError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import MAX_LINE, ColumnSchema, RowParser, loads_row

__all__ = ["JsonlSource", "DEFAULT_JSON_SCHEMA"]

#: ``{"agent": "s1", "t": 0.5, "x": [1.0, 2.0], "y": 3.2}``
DEFAULT_JSON_SCHEMA = ColumnSchema(agent="agent", time="t", inputs=("x",), target="y")


class JsonlSource(Source):
    """One JSON object a line.

    Parameters
    ----------
    path : str or os.PathLike
        File path, or ``"-"`` for standard input.
    schema : ColumnSchema, optional
        Key mapping; default :data:`DEFAULT_JSON_SCHEMA`.
    stream : text file, optional
        Injected stream used instead of ``path`` (tests: a pipe or ``io.StringIO``);
        for ``"-"`` it defaults to ``sys.stdin``.
    **kwargs
        ``pacer``, ``keep``, ``on_bad`` (see :class:`~.base.Source`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "-",
        schema: ColumnSchema | None = None,
        *,
        stream: IO[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(f"jsonl:{self.path}", **kwargs)
        self.schema = schema or DEFAULT_JSON_SCHEMA
        self.stream = stream
        self.origin = "<stdin>" if self.path == "-" and stream is None else self.path
        if stream is None and self.path != "-":
            if not os.path.isfile(self.path):
                raise SourceOpenError(self.path, "no such file")
            if not os.access(self.path, os.R_OK):
                raise SourceOpenError(self.path, "not readable")

    def _lines(self) -> Iterator[str | int]:
        """Each line, or its length when it exceeds :data:`MAX_LINE` (never held whole)."""
        if self.stream is not None:
            yield from _bounded_lines(self.stream, self.origin)
        elif self.path == "-":
            stdin: IO[str] = sys.stdin
            if isinstance(stdin, io.TextIOWrapper):  # undecodable bytes: a rejected row
                stdin.reconfigure(errors="surrogateescape")
            yield from _bounded_lines(stdin, self.origin)
        else:
            try:
                fh = open(self.path, encoding="utf-8", errors="surrogateescape")
            except OSError as exc:
                raise SourceOpenError(self.path, f"cannot open: {exc.strerror or exc}") from exc
            with fh:
                yield from _bounded_lines(fh, self.origin)

    def _produce(self) -> Iterator[Observation]:
        parser = RowParser(self.schema, self.origin)
        for lineno, text in enumerate(self._lines(), start=1):
            try:
                if isinstance(text, int):
                    raise BadRowError(
                        "oversized",
                        f"line of {text} characters > {MAX_LINE}",
                        origin=self.origin,
                        line=lineno,
                    )
                if not text.strip():
                    continue
                row = loads_row(text, self.origin, lineno)
                obs = parser.parse_mapping(row, lineno)
            except BadRowError as err:
                self._bad(err)
                continue
            yield obs


def _bounded_lines(fh: IO[str], origin: str) -> Iterator[str | int]:
    """The lines of ``fh``; a line longer than :data:`MAX_LINE` is skipped and its length given."""
    while True:
        try:
            text = fh.readline(MAX_LINE + 1)
        except UnicodeDecodeError as exc:  # an injected stream decoding strictly: unusable
            raise SourceOpenError(origin, f"not UTF-8 text: {exc.reason}") from None
        if not text:
            return
        if len(text) > MAX_LINE and not text.endswith("\n"):
            n = len(text)
            while text and not text.endswith("\n"):  # skip the rest of the line, bounded reads
                text = fh.readline(MAX_LINE)
                n += len(text)
            yield n
            continue
        yield text
