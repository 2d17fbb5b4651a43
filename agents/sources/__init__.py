"""Streaming sensor data: pluggable sources of :class:`Observation` s, chosen by URI.

Typical use::

    from swarmgp.agents.sources import open_source, agent_filter, iter_batches
    src = open_source("csv:../shared/data/ireland_wind.csv",
                      schema=ColumnSchema("station", "t", ("lon", "lat", "t"), "wind_knots"),
                      keep=agent_filter(key="VAL"))
    for batch in iter_batches(src, 32):
        agent.observe(batch.X, batch.y, now)

Optional back-ends are imported lazily: ``zmq`` (``zmq+sub://``), ``paho-mqtt>=2``
(``mqtt://``), ``pyarrow`` (``parquet:``).
"""

from .base import Source
from .batching import Batch, Batcher, iter_agent_batches, iter_batches
from .csv_source import CsvSource
from .errors import (
    BadRowError,
    QueueClosed,
    SourceConfigError,
    SourceError,
    SourceOpenError,
    TransformNotFitted,
)
from .feed import control_payload
from .filters import ColumnAssigner, RandomAssigner, agent_filter, station_mapping
from .jsonl_source import DEFAULT_JSON_SCHEMA, JsonlSource
from .queue import BoundedQueue, SourcePump, aiter_source, iter_queue
from .record import Observation
from .registry import open_source, parse_uri
from .replay import Pacer, parse_speed
from .schema import ColumnSchema, RowParser
from .split import AgentStreams, holdout_split, split_table_stream, to_arrays
from .stats import SourceStats
from .synthetic import LatentFunction, SyntheticSource, SyntheticSpec
from .transforms import FeatureConfig, FeatureTransform, fit_config

__all__ = [
    "AgentStreams",
    "BadRowError",
    "Batch",
    "Batcher",
    "BoundedQueue",
    "ColumnAssigner",
    "ColumnSchema",
    "CsvSource",
    "DEFAULT_JSON_SCHEMA",
    "FeatureConfig",
    "FeatureTransform",
    "JsonlSource",
    "LatentFunction",
    "Observation",
    "Pacer",
    "QueueClosed",
    "RandomAssigner",
    "RowParser",
    "Source",
    "SourceConfigError",
    "SourceError",
    "SourceOpenError",
    "SourcePump",
    "SourceStats",
    "SyntheticSource",
    "SyntheticSpec",
    "TransformNotFitted",
    "agent_filter",
    "aiter_source",
    "control_payload",
    "fit_config",
    "holdout_split",
    "iter_agent_batches",
    "iter_batches",
    "iter_queue",
    "open_source",
    "parse_speed",
    "parse_uri",
    "split_table_stream",
    "station_mapping",
    "to_arrays",
]
