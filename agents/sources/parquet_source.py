"""Parquet replay source (``parquet:PATH``); needs pyarrow, imported lazily."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import BadRowError, SourceConfigError, SourceOpenError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import ColumnSchema, RowParser

__all__ = ["ParquetSource"]


def _pq() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SourceConfigError(
            "parquet: sources need pyarrow: pip install 'swarmgp[parquet]'"
        ) from exc
    return pq


class ParquetSource(Source):
    """Streams a Parquet file record batch by record batch (``ParquetFile.iter_batches``).

    Parameters
    ----------
    path : str or os.PathLike
    schema : ColumnSchema
    batch_size : int
        Rows per record batch read.
    **kwargs
        ``pacer``, ``keep``, ``on_bad``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: ColumnSchema,
        *,
        batch_size: int = 8192,
        **kwargs: Any,
    ) -> None:
        self.path = os.fspath(path)
        super().__init__(f"parquet:{self.path}", **kwargs)
        self.schema = schema
        self.batch_size = int(batch_size)
        pq = _pq()
        if not os.path.isfile(self.path):
            raise SourceOpenError(self.path, "no such file")
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise SourceOpenError(self.path, f"not a readable Parquet file: {exc}") from exc
        try:
            self.columns = list(pf.schema_arrow.names)
        finally:
            pf.close()
        schema.check_header(self.columns, self.path, line=None)

    def _produce(self) -> Iterator[Observation]:
        pq = _pq()
        parser = RowParser(self.schema, self.path)
        cols = list(self.schema.required)
        row_no = 0
        pf = pq.ParquetFile(self.path)
        try:
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=cols):
                for row in batch.to_pylist():
                    row_no += 1
                    try:
                        obs = parser.parse_mapping(row, row_no)
                    except BadRowError as err:
                        self._bad(err)
                        continue
                    yield obs
        finally:
            pf.close()
