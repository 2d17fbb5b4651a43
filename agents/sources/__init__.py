"""Streaming sensor data: pluggable sources of :class:`Observation` s, chosen by URI.

Typical use::

    from swarmgp.agents.sources import open_source, agent_filter, iter_batches
    src = open_source("csv:../shared/data/ireland_wind.csv",
                      schema=ColumnSchema("station", "t", ("lon", "lat", "t"), "wind_knots"),
                      keep=agent_filter(key="VAL"))
    for batch in iter_batches(src, 32):
        agent.observe(batch.X, batch.y, now)

A swarm's data (``sim``, ``local`` and ``agent`` alike)::

    manifest = declare_data(cfg.data, n_agents, cfg.seed)        # once; JSON to every agent
    for b in agent_batches(manifest, cfg.data, agent_id, cfg.seed):  # (X, y) or NOT_READY
        ...
    test = test_set(manifest, cfg.data, cfg.seed, cfg.scoring.test_points)

One synthetic world (:class:`SyntheticWorld`), one splitter (:class:`Splitter`: agent by column
or at random, hold-out by random rows or by time), one manifest (:class:`DataManifest`).

Optional back-ends are imported lazily: ``zmq`` (``zmq+sub://``), ``paho-mqtt>=2``
(``mqtt://``), ``pyarrow`` (``parquet:``).
"""

from swarmgp.agents.sources.agent_feed import (
    NOT_READY,
    DataFeed,
    DataManifest,
    LoadedTable,
    TestSet,
    agent_batches,
    batch_arrays,
    declare_data,
    load_table,
    table_schema,
    table_test_set,
    test_set,
)
from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.batching import Batch, Batcher, iter_agent_batches, iter_batches
from swarmgp.agents.sources.csv_source import CsvSource
from swarmgp.agents.sources.errors import (
    BadRowError,
    QueueClosed,
    SourceConfigError,
    SourceError,
    SourceOpenError,
    TransformNotFitted,
)
from swarmgp.agents.sources.feed import control_payload
from swarmgp.agents.sources.jsonl_source import DEFAULT_JSON_SCHEMA, JsonlSource
from swarmgp.agents.sources.queue import BoundedQueue, SourcePump, aiter_source, iter_queue
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.registry import open_source, parse_uri
from swarmgp.agents.sources.replay import Pacer, parse_speed
from swarmgp.agents.sources.schema import ColumnSchema, RowParser
from swarmgp.agents.sources.settings import DataSettings
from swarmgp.agents.sources.split import (
    AgentStreams,
    ColumnAssigner,
    Holdout,
    RandomAssigner,
    Splitter,
    agent_filter,
    holdout_split,
    order_rows,
    pick_stations,
    pick_test_rows,
    row_digest,
    split_table_stream,
    station_mapping,
    to_arrays,
)
from swarmgp.agents.sources.stats import SourceStats
from swarmgp.agents.sources.synthetic import LatentFunction, SyntheticSource, SyntheticSpec
from swarmgp.agents.sources.transforms import FeatureConfig, FeatureTransform, fit_config
from swarmgp.agents.sources.world import AgentRows, SyntheticWorld, rff_latent

__all__ = [
    "AgentRows",
    "AgentStreams",
    "BadRowError",
    "Batch",
    "Batcher",
    "BoundedQueue",
    "ColumnAssigner",
    "ColumnSchema",
    "CsvSource",
    "DEFAULT_JSON_SCHEMA",
    "DataFeed",
    "DataManifest",
    "DataSettings",
    "FeatureConfig",
    "FeatureTransform",
    "Holdout",
    "JsonlSource",
    "LatentFunction",
    "LoadedTable",
    "NOT_READY",
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
    "Splitter",
    "SyntheticSource",
    "SyntheticSpec",
    "SyntheticWorld",
    "TestSet",
    "TransformNotFitted",
    "agent_batches",
    "agent_filter",
    "aiter_source",
    "batch_arrays",
    "control_payload",
    "declare_data",
    "fit_config",
    "holdout_split",
    "iter_agent_batches",
    "iter_batches",
    "iter_queue",
    "load_table",
    "open_source",
    "order_rows",
    "parse_speed",
    "parse_uri",
    "pick_stations",
    "pick_test_rows",
    "rff_latent",
    "row_digest",
    "split_table_stream",
    "station_mapping",
    "table_schema",
    "table_test_set",
    "test_set",
    "to_arrays",
]
