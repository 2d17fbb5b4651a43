"""CSV replay source (stdlib :mod:`csv`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import Any

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import BadRowError, SourceOpenError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import ColumnSchema, RowParser

__all__ = ["CsvSource"]


class CsvSource(Source):
    """Replays a CSV file with a header line, one observation a row.

    The file is checked when the source is built: a missing / unreadable file, an
    empty file, or a header lacking a declared column raises :class:`SourceOpenError`
    naming the file, line and column. Bad rows are counted in ``stats`` and skipped.

    Parameters
    ----------
    path : str or os.PathLike
    schema : ColumnSchema
        Column mapping.
    delimiter : str
    **kwargs
        ``pacer``, ``keep``, ``on_bad`` (see :class:`~.base.Source`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: ColumnSchema,
        *,
        delimiter: str = ",",
        **kwargs: Any,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(f"csv:{self.path}", **kwargs)
        self.schema = schema
        self.delimiter = delimiter
        self.header = self._read_header()
        RowParser(schema, self.path).positional(self.header)  # fail fast on the header

    def _open(self) -> Any:
        try:
            # undecodable bytes become lone surrogates: the row is rejected, the file read on
            return open(self.path, newline="", encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise SourceOpenError(self.path, f"cannot open: {exc.strerror or exc}") from exc

    def _read_header(self) -> list[str]:
        with self._open() as fh:
            try:
                header = next(csv.reader(fh, delimiter=self.delimiter), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise SourceOpenError(self.path, f"unreadable header: {exc}", line=1) from exc
        if not header:
            raise SourceOpenError(self.path, "empty file: no header line", line=1)
        if not _utf8(header):
            raise SourceOpenError(self.path, "header is not UTF-8 text", line=1)
        return [h.strip() for h in header]

    def _produce(self) -> Iterator[Observation]:
        parser = RowParser(self.schema, self.path).positional(self.header)
        with self._open() as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            next(reader, None)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    reason = "oversized" if "field limit" in str(exc) else "malformed"
                    self._bad(BadRowError(reason, str(exc), origin=self.path, line=reader.line_num))
                    continue
                if not row:
                    continue
                try:
                    if not _utf8(row):
                        raise BadRowError(
                            "malformed", "not UTF-8", origin=self.path, line=reader.line_num
                        )
                    obs = parser.parse(row, reader.line_num)
                except BadRowError as err:
                    self._bad(err)
                    continue
                yield obs


def _utf8(fields: list[str]) -> bool:
    """Whether fields read with ``surrogateescape`` were valid UTF-8 (no lone surrogates)."""
    text = "".join(fields)
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeError:
        return False
    return True
