"""One agent's data, and the swarm's shared data manifest (``sim``, ``local`` and ``agent`` alike).

The swarm shares one :class:`DataManifest`, declared once by :func:`declare_data` (the launcher
writes :meth:`DataManifest.to_json` in the rendezvous ``swarm.json``; the simulator builds the
same one in process):

* ``uri`` and ``schema``: where the rows are and which columns hold sensor, time, inputs, target;
* ``features``: the fitted :class:`~swarmgp.agents.sources.FeatureConfig` (standardization of
  inputs and target) every agent applies identically;
* ``splitter``: which sensors each agent reads (or a seeded random split of rows) and which rows
  are held out (:class:`~swarmgp.agents.sources.split.Splitter`), decided per row so every
  process agrees;
* ``world``: on synthetic data, the :class:`~swarmgp.agents.sources.world.SyntheticWorld` whose
  rows agent ``a`` draws by itself.

:func:`agent_batches` gives agent ``a`` its batches: on synthetic data from the world, on a
table file its own training rows in the configured order (exactly the simulator's batches), on
a live feed its rows as they arrive. A feed never blocks its caller: it returns
:data:`NOT_READY` while no batch is ready (a background pump reads the source into a bounded
queue; the producer blocks when the learner lags, nothing is dropped). :func:`test_set` gives
the held-out test set every agent is scored on.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swarmgp.agents.sources.batching import Batcher
from swarmgp.agents.sources.errors import QueueClosed, SourceConfigError, SourceOpenError
from swarmgp.agents.sources.jsonl_source import DEFAULT_JSON_SCHEMA
from swarmgp.agents.sources.queue import BoundedQueue, SourcePump
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.registry import _schema_from, open_source, parse_uri
from swarmgp.agents.sources.schema import ColumnSchema
from swarmgp.agents.sources.settings import DataSettings
from swarmgp.agents.sources.split import Holdout, Splitter, order_rows, pick_test_rows
from swarmgp.agents.sources.transforms import FeatureConfig, FeatureTransform, fit_config
from swarmgp.agents.sources.world import DEFAULT_AGENTS, DEFAULT_BATCHES, SyntheticWorld

__all__ = [
    "NOT_READY",
    "DataFeed",
    "DataManifest",
    "LoadedTable",
    "TestSet",
    "agent_batches",
    "batch_arrays",
    "declare_data",
    "declare_stream",
    "is_live",
    "is_synthetic",
    "is_table_file",
    "load_table",
    "table_schema",
    "table_test_set",
    "test_set",
    "time_column",
]

log = logging.getLogger("swarmgp.agents.sources")

#: Returned by :class:`DataFeed` when no full batch is ready yet (the runner polls again).
NOT_READY: Any = object()

Pair = tuple[np.ndarray, np.ndarray]


def is_synthetic(uri: str) -> bool:
    """Whether ``uri`` names the synthetic world (``synthetic`` or ``synthetic:``)."""
    return uri in ("", "synthetic") or uri.startswith("synthetic:")


def time_column(data: DataSettings) -> str | None:
    """The time column ``--time-column`` names; None for ``none`` or empty (untimed rows)."""
    name = data.time_column.strip()
    return None if name.lower() in ("", "none") else name


def is_table_file(uri: str) -> bool:
    """Whether ``uri`` is a finite table file (``csv:``, ``parquet:``, ``jsonl:`` not stdin)."""
    scheme, target, _ = parse_uri(uri)
    return scheme in ("csv", "parquet") or (scheme == "jsonl" and target != "-")


def is_live(uri: str, pre_read: bool = True) -> bool:
    """Whether ``uri`` is read as a live stream, without a pre-read: the push feeds
    (``zmq+sub://``, ``mqtt://``), standard input (``jsonl:-``), and any table file when
    ``pre_read`` is False (``--no-pre-read``)."""
    if is_synthetic(uri):
        return False
    scheme, target, _ = parse_uri(uri)
    if scheme in ("zmq+sub", "mqtt") or (scheme == "jsonl" and target == "-"):
        return True
    return not pre_read


# ---------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class DataManifest:
    """What every agent of a swarm must agree on about the data (JSON round trip).

    Parameters
    ----------
    uri : str
        The data source.
    seed : int
        The run seed it was declared with.
    n_agents : int
        A.
    d : int
        Input dimension the agents see (after the feature transform).
    schema : ColumnSchema or None
        Columns of a table (None on synthetic data).
    features : FeatureConfig or None
        Fitted feature transform of a table (None on synthetic data).
    splitter : Splitter or None
        Sensors per agent / random split and the hold-out rule of a table.
    world : SyntheticWorld or None
        The synthetic world (None on a table).
    """

    uri: str
    seed: int
    n_agents: int
    d: int
    schema: ColumnSchema | None = None
    features: FeatureConfig | None = None
    splitter: Splitter | None = None
    world: SyntheticWorld | None = None
    #: Read as a live stream (no pre-read, no held-out rows, rows as they arrive).
    live: bool = False

    def __post_init__(self) -> None:
        if (self.world is None) == (self.splitter is None):
            raise SourceConfigError("a data manifest has either a world or a splitter")
        if self.splitter is not None and (self.schema is None or self.features is None):
            raise SourceConfigError("a table's data manifest needs its schema and features")
        if self.splitter is not None and self.splitter.n_agents != self.n_agents:
            raise SourceConfigError(
                f"manifest: splitter of {self.splitter.n_agents} agents for {self.n_agents}"
            )

    @property
    def kind(self) -> str:
        """``"synthetic"`` or ``"table"``."""
        return "synthetic" if self.world is not None else "table"

    @property
    def sensors(self) -> tuple[tuple[str, ...], ...]:
        """Sensor keys per agent (empty on synthetic data or a random split)."""
        return self.splitter.sensors if self.splitter is not None else ()

    @property
    def holdout(self) -> Holdout | None:
        """The hold-out rule of a table (None on synthetic data)."""
        return self.splitter.holdout if self.splitter is not None else None

    def transform(self) -> FeatureTransform:
        """The shared feature transform of a table.

        Raises
        ------
        SourceConfigError
            On synthetic data (its inputs are used as drawn).
        """
        if self.features is None:
            raise SourceConfigError("synthetic data has no feature transform")
        return FeatureTransform(self.features)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "uri": self.uri,
            "seed": self.seed,
            "n_agents": self.n_agents,
            "d": self.d,
            "schema": None if self.schema is None else self.schema.to_dict(),
            "features": None if self.features is None else self.features.to_dict(),
            "splitter": None if self.splitter is None else self.splitter.to_dict(),
            "world": None if self.world is None else self.world.to_dict(),
            "live": self.live,
        }

    def to_json(self) -> str:
        """Serialise (stable key order)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DataManifest:
        """Inverse of :meth:`to_json`.

        Raises
        ------
        SourceConfigError
            Invalid JSON or a missing / unknown field.
        """
        try:
            d = json.loads(text)
            return cls(
                uri=str(d["uri"]),
                seed=int(d["seed"]),
                n_agents=int(d["n_agents"]),
                d=int(d["d"]),
                schema=None if d["schema"] is None else ColumnSchema.from_dict(d["schema"]),
                features=None if d["features"] is None else FeatureConfig.from_dict(d["features"]),
                splitter=None if d["splitter"] is None else Splitter.from_dict(d["splitter"]),
                world=None if d["world"] is None else SyntheticWorld.from_dict(d["world"]),
                live=bool(d.get("live", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SourceConfigError):
                raise
            raise SourceConfigError(f"invalid data manifest: {exc!r}") from None


# ---------------------------------------------------------------------------- declaring


def table_schema(data: DataSettings) -> ColumnSchema:
    """The columns of a table: defaults from a CSV header where ``inputs``/``target`` are None.

    Target default: the header's last column. Inputs default: every other column but the agent
    column (so the shared data sets give ``lon, lat, t``). A JSON Lines file defaults to the
    documented layout (inputs ``x``, a list or a number; target ``y``), as live feeds do.

    Raises
    ------
    SourceConfigError, SourceOpenError
        Defaults needed on a source that has no header, or an unreadable file.
    """
    target, inputs = data.target, data.inputs
    if target is None or inputs is None:
        scheme, path, _ = parse_uri(data.data)
        if scheme == "jsonl":  # the documented layout {"agent", "t", "x": [...], "y"}
            target = DEFAULT_JSON_SCHEMA.target if target is None else target
            inputs = DEFAULT_JSON_SCHEMA.inputs if inputs is None else inputs
        elif scheme != "csv":
            raise SourceConfigError(
                f"--data {data.data}: give --inputs A,B,... and --target COL "
                "(and --agent-column COL to split the stream by sensor)"
            )
    if target is None or inputs is None:  # a CSV file: its header (only) gives the defaults
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                header = [h.strip() for h in next(csv.reader(fh), [])]
        except OSError as exc:
            raise SourceOpenError(path, f"cannot open: {exc.strerror or exc}") from exc
        if not header:
            raise SourceOpenError(path, "empty file: no header line", line=1)
        if target is None:
            target = header[-1]
        if inputs is None:
            inputs = tuple(c for c in header if c not in (target, data.agent_column))
    return ColumnSchema(
        agent=data.agent_column, time=time_column(data), inputs=tuple(inputs), target=target
    )


@dataclass(frozen=True)
class LoadedTable:
    """A table read once: its manifest, every valid row, each agent's share and the test rows.

    Attributes
    ----------
    manifest : DataManifest
    rows : list of Observation
        Every valid row, in file order.
    per_agent : list of list of Observation
        ``per_agent[a]``: agent ``a``'s training rows, in file order.
    held : list of Observation
        The held-out rows, in file order.
    stats : dict
        The source's counters (accepted, rejected by reason).
    """

    manifest: DataManifest
    rows: list[Observation] = field(repr=False)
    per_agent: list[list[Observation]] = field(repr=False)
    held: list[Observation] = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict)


def _read_rows(src: Any, uri: str, record_s: float | None) -> list[Observation]:
    """Every row of a source; a live feed is recorded for ``record_s`` seconds of wall time.

    Raises
    ------
    SourceConfigError
        A live feed (never ending) without ``record_s``.
    """
    if parse_uri(uri)[0] not in ("zmq+sub", "mqtt"):  # files and stdin end by themselves
        return list(src)
    if record_s is None:
        raise SourceConfigError(
            f"--data {uri}: a live feed never ends; give --duration S to record it for S "
            "seconds, then simulate it"
        )
    timer = threading.Timer(record_s, src.stop)
    timer.daemon = True
    timer.start()
    try:
        return list(src)
    finally:
        timer.cancel()


def load_table(
    data: DataSettings, n_agents: int | None, seed: int, record_s: float | None = None
) -> LoadedTable:
    """Read a table once, split it and fit the shared feature transform on its training rows.

    Parameters
    ----------
    data : DataConfig (any :class:`DataSettings`)
    n_agents : int or None
        A; None: one per distinct value of the agent column (required for a random split).
    seed : int
        The run seed (random split, random hold-out).
    record_s : float, optional
        A live feed (``zmq+sub://``, ``mqtt://``) is recorded for this many seconds.

    Returns
    -------
    LoadedTable

    Raises
    ------
    SourceError
        Unreadable source, missing column, no valid or no training row, too many agents.
    """
    schema = stream_schema(data)  # a table's header, or a feed's JSON layout and URI options
    with open_source(data.data, schema=schema, on_bad="count") as src:
        rows = _read_rows(src, data.data, record_s)
        stats = src.stats.as_dict()
    rejected = _rejected_text(stats)
    if not rows:
        raise SourceConfigError(
            f"--data {data.data}: the source holds no valid row"
            + (f" (rejected: {rejected}; see the warnings above)" if rejected else "")
        )
    if rejected:
        log.warning("--data %s: %d rows accepted, rejected %s", data.data, len(rows), rejected)
    holdout = Holdout(data.holdout, data.holdout_every, seed)
    if schema.agent is not None:
        splitter = Splitter.by_column((o.agent for o in rows), n_agents, holdout, seed)
    else:
        if n_agents is None:
            raise SourceConfigError(
                f"--data {data.data}: a random split (no --agent-column) needs --agents"
            )
        splitter = Splitter(n_agents, holdout, "random", seed=seed)
    per, held = splitter.partition(rows)
    train = [o for o in rows if not holdout(o)]
    if not train:
        raise SourceConfigError(f"--data {data.data}: every row is held out")
    if data.features:
        try:
            text = Path(data.features).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SourceOpenError(data.features, f"--features: cannot read: {why}") from None
        try:
            cfg = FeatureConfig.from_json(text)
        except (ValueError, TypeError, RecursionError) as exc:
            if isinstance(exc, SourceConfigError):
                raise SourceConfigError(f"--features {data.features}: {exc}") from None
            raise SourceConfigError(
                f"--features {data.features}: not a FeatureConfig JSON: {exc}"
            ) from None
    else:
        cfg = FeatureConfig(
            input_names=_input_names(schema.inputs, int(train[0].x.shape[0])),
            standardize=True,
            standardize_y=True,
            prefix=len(train),
        )
    d_in = int(train[0].x.shape[0])
    if len(cfg.input_names) != d_in:
        raise SourceConfigError(
            f"--features {data.features}: declares {len(cfg.input_names)} inputs "
            f"{list(cfg.input_names)}, the rows of --data {data.data} have {d_in}"
        )
    cfg = fit_config(cfg, iter(train))
    manifest = DataManifest(
        uri=data.data,
        seed=seed,
        n_agents=splitter.n_agents,
        d=cfg.d_out,
        schema=schema,
        features=cfg,
        splitter=splitter,
    )
    return LoadedTable(manifest, rows, per, held, stats)


def _input_names(inputs: tuple[str, ...], d_in: int) -> tuple[str, ...]:
    """Names of the ``d_in`` input components: the columns, or ``x[0], x[1], ...`` when a
    JSON column holds a list (as many components as the rows have)."""
    if len(inputs) == d_in:
        return inputs
    if len(inputs) == 1:
        return tuple(f"{inputs[0]}[{i}]" for i in range(d_in))
    return tuple(f"x{i}" for i in range(d_in))


def _rejected_text(stats: dict[str, Any]) -> str:
    """``"non_numeric 2, overflow 1"`` from a source's counters ('' when nothing was rejected)."""
    rejected = stats.get("rejected") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()))


def declare_data(
    data: DataSettings, n_agents: int | None, seed: int, *, mode: str = "collective"
) -> DataManifest:
    """The swarm's shared data manifest (synthetic: no read; a table: read once; a live
    feed, see :func:`is_live`: no read at all, :func:`declare_stream`).

    Parameters
    ----------
    data : DataConfig (any :class:`DataSettings`)
    n_agents : int or None
        A; None: one per distinct agent-column value on a table, 8 on synthetic data
        (required on a live feed).
    seed : int
        The run seed.
    mode : {"collective", "paper"}
        The model mode: on a live feed the paper mode needs a declared, fitted ``--features``
        (the collective mode agrees its standardization in the swarm's warm-up).

    Returns
    -------
    DataManifest

    Raises
    ------
    SourceError
        See :func:`load_table`; URI options on ``synthetic:``.
    """
    if is_synthetic(data.data):
        if data.data not in ("", "synthetic", "synthetic:"):
            raise SourceConfigError(
                f"--data {data.data}: the synthetic world takes --dim, --groups, --spread, "
                "--noise and --seed, not URI options"
            )
        A = DEFAULT_AGENTS if n_agents is None else n_agents
        world = SyntheticWorld.from_config(data, A, seed)
        return DataManifest(uri="synthetic", seed=seed, n_agents=A, d=world.d, world=world)
    if is_live(data.data, bool(getattr(data, "pre_read", True))):
        return declare_stream(data, n_agents, seed, mode=mode)
    return load_table(data, n_agents, seed).manifest


def stream_schema(data: DataSettings) -> ColumnSchema:
    """The columns of a live feed, without reading a row.

    ``--inputs``/``--target`` default to the documented JSON layout (``{"agent": ..., "t": ...,
    "x": [...], "y": ...}``: inputs ``x``, target ``y``) on JSON sources, and to the CSV
    header on a CSV file (the header only). The input dimension comes from a URI ``d=N``, a
    ``--features`` file, or one component per input column.
    """
    scheme, _, opts = parse_uri(data.data)
    if scheme in ("csv", "parquet"):
        return table_schema(data)
    base = ColumnSchema(
        agent=data.agent_column,
        time=time_column(data),
        inputs=DEFAULT_JSON_SCHEMA.inputs if data.inputs is None else tuple(data.inputs),
        target=DEFAULT_JSON_SCHEMA.target if data.target is None else data.target,
    )
    return _schema_from(dict(opts), base) or base  # URI options (?agent=...&d=3) apply


def _declared_features(data: DataSettings) -> FeatureConfig | None:
    """The ``--features`` FeatureConfig (None when none is declared).

    Raises
    ------
    SourceOpenError, SourceConfigError
        Unreadable file, not a FeatureConfig JSON.
    """
    if not data.features:
        return None
    try:
        text = Path(data.features).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceOpenError(data.features, f"--features: cannot read: {why}") from None
    try:
        return FeatureConfig.from_json(text)
    except (ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, SourceConfigError):
            raise SourceConfigError(f"--features {data.features}: {exc}") from None
        raise SourceConfigError(
            f"--features {data.features}: not a FeatureConfig JSON: {exc}"
        ) from None


def declare_stream(
    data: DataSettings, n_agents: int | None, seed: int, *, mode: str = "collective"
) -> DataManifest:
    """The manifest of a live feed, declared without reading it.

    * agents: ``n_agents`` (required: the sensors are not known before the stream);
    * assignment: with an agent column, a stable hash of the sensor key modulo A
      (:func:`~swarmgp.agents.sources.split.key_agent`: no global key list; balanced only on
      average, unlike the round robin over sorted keys of a table), else a seeded hash of
      each row;
    * nothing is held out (there is no finite test table): every row is learned;
    * features: a declared ``--features`` (with its statistics), else in the collective mode
      the identity (the warm-up all-reduce agrees the standardization); the paper mode needs
      ``--features``.

    Raises
    ------
    SourceConfigError
        No ``n_agents``; the paper mode without ``--features``; an unfitted ``--features``.
    """
    if n_agents is None:
        raise SourceConfigError(
            f"--data {data.data}: a live feed needs --agents N (the stream is not read first)"
        )
    schema = stream_schema(data)
    declared = _declared_features(data)
    if declared is not None and not declared.is_fitted:
        raise SourceConfigError(
            f"--features {data.features}: a live feed needs the statistics declared "
            "(mean/std, y_mean/y_std): the stream is not read first"
        )
    if declared is None and mode == "paper":
        raise SourceConfigError(
            f"--data {data.data}: --mode paper on a live feed needs --features FILE (a fitted "
            "FeatureConfig: the stream is not read first; the collective mode needs none)"
        )
    if schema.d is not None:
        d_in = schema.d
    elif declared is not None:
        d_in = len(declared.input_names)
    elif data.inputs is None and "inputs" not in parse_uri(data.data)[2]:
        raise SourceConfigError(
            f"--data {data.data}: the input dimension of a live feed is not known before it is "
            f"read: add d=N to the URI ('{schema.inputs[0]}' holds a list of N numbers) or "
            "name scalar inputs with --inputs A,B,..."
        )
    else:
        d_in = len(schema.inputs)
    if declared is not None and len(declared.input_names) != d_in:
        raise SourceConfigError(
            f"--features {data.features}: declares {len(declared.input_names)} inputs "
            f"{list(declared.input_names)}, the feed has {d_in}"
        )
    schema = ColumnSchema(schema.agent, schema.time, schema.inputs, schema.target, d=d_in)
    cfg = declared or FeatureConfig(input_names=_input_names(schema.inputs, d_in))
    holdout = Holdout("none", seed=seed)
    by = "hash" if schema.agent is not None else "random"
    splitter = Splitter(n_agents, holdout, by, seed=seed)
    return DataManifest(
        uri=data.data,
        seed=seed,
        n_agents=n_agents,
        d=cfg.d_out,
        schema=schema,
        features=cfg,
        splitter=splitter,
        live=True,
    )


# ---------------------------------------------------------------------------- batches


def batch_arrays(
    rows: Sequence[Observation],
    transform: FeatureTransform,
    batch_size: int,
    n_batches: int | None = None,
    *,
    keep_partial: bool = False,
) -> list[Pair]:
    """Rows cut into transformed batches ``(X [S, d], y [S])``, in order.

    Parameters
    ----------
    rows : sequence of Observation
    transform : FeatureTransform
    batch_size : int
        S.
    n_batches : int or None
        At most this many batches (None: every full batch).
    keep_partial : bool
        Also emit a last, partial batch.
    """
    S = int(batch_size)
    if S < 1:
        raise SourceConfigError(f"batch_size must be >= 1, got {batch_size}")
    nb = -(-len(rows) // S) if keep_partial else len(rows) // S
    if n_batches is not None:
        nb = min(nb, int(n_batches))
    out: list[Pair] = []
    for k in range(nb):
        chunk = rows[k * S : (k + 1) * S]
        X = np.stack([o.x for o in chunk]).astype(np.float64, copy=False)  # [S, d_in]
        t = np.array([o.t for o in chunk], dtype=np.float64)  # [S]
        y = np.array([o.y for o in chunk], dtype=np.float64)  # [S]
        out.append(
            (transform.transform_X(X, t), np.asarray(transform.transform_y(y), dtype=np.float64))
        )
    return out


def _check_seed(manifest: DataManifest, seed: int) -> None:
    if seed != manifest.seed:
        raise SourceConfigError(
            f"data manifest declared with seed {manifest.seed}, used with seed {seed}"
        )


def agent_batches(
    manifest: DataManifest, data: DataSettings, agent_id: int, seed: int
) -> Iterator[Any]:
    """Agent ``agent_id``'s batches: an iterator of ``(X [S, d], y [S])`` or :data:`NOT_READY`.

    * synthetic: the world's rows of the agent, ``data.batches`` batches (None: 5);
    * a table file: the agent's training rows in ``data.order`` (the simulator's very batches),
      full batches, at most ``data.batches`` (None: all rows, the last batch partial);
    * a live feed: the agent's rows as they arrive, the last batch possibly partial.

    Raises
    ------
    SourceConfigError
        An agent id outside ``[0, n_agents)``, or a seed other than the manifest's.
    """
    _check_seed(manifest, seed)
    if not 0 <= agent_id < manifest.n_agents:
        raise SourceConfigError(f"agent {agent_id} not in [0, {manifest.n_agents})")
    if manifest.world is not None:
        B = DEFAULT_BATCHES if data.batches is None else data.batches
        return iter(manifest.world.batches(agent_id, B, data.batch_size))
    if is_table_file(manifest.uri) and not manifest.live:
        return DataFeed(
            manifest,
            agent_id,
            data.batch_size,
            data.batches,
            order=data.order,
            keep_partial=data.batches is None,  # the simulator's very batches
        )
    return DataFeed(manifest, agent_id, data.batch_size, data.batches)


# ---------------------------------------------------------------------------- test set


@dataclass(frozen=True)
class TestSet:
    """The held-out points every agent is scored on.

    Attributes
    ----------
    X : ndarray of shape (n, d)
        Test inputs (transformed like the agents' inputs).
    Y : ndarray of shape (G, n)
        Standardized targets of each group (G = 1 on a table).
    group : ndarray of shape (A,)
        Agent -> group index (int).
    y_mean, y_std : float
        Target standardization: target units = ``y_mean + y_std * Y``.
    """

    X: np.ndarray
    Y: np.ndarray
    group: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0

    __test__ = False  # not a pytest class

    def y_of(self, agent: int) -> np.ndarray:
        """Standardized test targets of agent ``a``, shape (n,)."""
        return self.Y[int(self.group[agent])]

    @property
    def n(self) -> int:
        """Number of test points."""
        return int(self.X.shape[0])


def table_test_set(manifest: DataManifest, held: Sequence[Observation], n: int) -> TestSet:
    """Up to ``n`` of the held-out rows (seeded by the manifest's seed), transformed.

    Raises
    ------
    SourceConfigError
        No held-out row.
    """
    if not held:
        raise SourceConfigError(
            f"--data {manifest.uri}: no held-out row (lower --holdout-every or check --holdout)"
        )
    assert manifest.features is not None
    tf = manifest.transform()
    pick = pick_test_rows(len(held), n, manifest.seed)
    X = np.stack([held[i].x for i in pick]).astype(np.float64, copy=False)  # [n, d_in]
    t = np.array([held[i].t for i in pick], dtype=np.float64)  # [n]
    y = np.array([held[i].y for i in pick], dtype=np.float64)  # [n]
    Xt = tf.transform_X(X, t)  # [n, d]
    yt = np.asarray(tf.transform_y(y), dtype=np.float64)[None, :]  # [1, n]
    c = manifest.features
    return TestSet(
        Xt,
        yt,
        np.zeros(manifest.n_agents, dtype=np.int64),
        float(c.y_mean) if c.standardize_y and c.y_mean is not None else 0.0,
        float(c.y_std) if c.standardize_y and c.y_std is not None else 1.0,
    )


def test_set(manifest: DataManifest, data: DataSettings, seed: int, n: int) -> TestSet:
    """The test set of the swarm: up to ``n`` points (exactly ``n`` on synthetic data).

    Synthetic: the world's test inputs and every group's targets. A table: a seeded sample of
    the held-out rows (the splitter's rule), read from the source.

    Raises
    ------
    SourceConfigError
        A live feed (no finite set of held-out rows), no held-out row, a seed other than
        the manifest's.
    """
    _check_seed(manifest, seed)
    if manifest.world is not None:
        w = manifest.world
        X, Y = w.test_set(n)
        group = np.array([w.group_of(a) for a in range(manifest.n_agents)], dtype=np.int64)
        return TestSet(X, Y, group)
    if manifest.live or not is_table_file(manifest.uri):
        raise SourceConfigError(f"--data {manifest.uri}: a live feed has no held-out table")
    assert manifest.splitter is not None
    with open_source(manifest.uri, schema=manifest.schema, keep=manifest.splitter.held_out) as src:
        held = list(src)
    return table_test_set(manifest, held, n)


test_set.__test__ = False  # type: ignore[attr-defined]  # a function, not a pytest test


# ---------------------------------------------------------------------------- the feed


class DataFeed:
    """An iterator of standardized ``(X, y)`` batches of one agent's rows, never blocking.

    ``next()`` returns a batch, or :data:`NOT_READY` when none is ready yet; it stops at the
    end of the stream or after ``max_batches``.

    ``order=None`` (a live feed): rows in arrival order, a batch as soon as ``batch_size`` rows
    wait, a final partial batch at the end of the stream (``keep_partial``). ``order="time"`` or
    ``"random"`` (a table file): every row of the agent is read first (:data:`NOT_READY`
    meanwhile), then ordered by :func:`~swarmgp.agents.sources.split.order_rows` and cut by
    :func:`batch_arrays`, exactly as the simulator does.

    Parameters
    ----------
    manifest : DataManifest
        The swarm's data manifest (a table or a live feed).
    agent_id : int
    batch_size : int
    max_batches : int or None
    order : {None, "time", "random"}
    keep_partial : bool
        Emit a last, partial batch.
    queue_size : int
        Bound of the queue between the reading thread and the agent.
    """

    def __init__(
        self,
        manifest: DataManifest,
        agent_id: int,
        batch_size: int,
        max_batches: int | None = None,
        *,
        order: str | None = None,
        keep_partial: bool = True,
        queue_size: int = 4096,
    ) -> None:
        splitter = manifest.splitter
        if splitter is None:
            raise SourceConfigError("DataFeed reads a table or a live feed, not synthetic data")
        if not 0 <= agent_id < splitter.n_agents:
            raise SourceConfigError(f"agent {agent_id} not in [0, {splitter.n_agents})")
        if splitter.by == "column" and not splitter.sensors[agent_id] and not manifest.live:
            raise SourceConfigError(f"agent {agent_id}: no sensor of the data manifest maps to it")
        if order not in (None, "time", "random"):
            raise SourceConfigError(f"order must be None, 'time' or 'random', got {order!r}")
        self.manifest = manifest
        self.agent_id = int(agent_id)
        self.batch_size = int(batch_size)
        self.order = order
        self.keep_partial = keep_partial
        self.transform = manifest.transform()
        own = splitter.keep_train(agent_id)
        #: Wall-clock arrival times of the rows kept and not yet emitted (the pump appends).
        self._arrivals: deque[float] = deque()

        track = order is None  # arrival times of a stream (the ingest lag)

        def keep(obs: Observation) -> bool:  # runs in the pump thread as each row arrives
            if own(obs):
                if track:
                    self._arrivals.append(time.time())
                return True
            return False

        self.source = open_source(manifest.uri, schema=manifest.schema, keep=keep)
        #: Arrival times of the rows of the last batch emitted (live order; empty otherwise).
        self.last_arrivals: list[float] = []
        #: Rows emitted in batches so far (the rows this agent received and handed on).
        self.rows_emitted = 0
        self._finishing = False
        self._input_closed = False
        self.queue: BoundedQueue[Observation] = BoundedQueue(queue_size, policy="block")
        self.pump = SourcePump(self.source, self.queue)
        self.pump.start()
        self.batcher = Batcher(batch_size)
        self.max_batches = max_batches
        self.emitted = 0
        self._done = False
        self._pending: deque[Observation] = deque()
        self._rows: list[Observation] = []  # ordered mode: the agent's rows read so far
        self._ready: deque[Pair] | None = None  # ordered mode: the batches, once all are read

    def __iter__(self) -> Iterator[Any]:
        return self

    def finish(self) -> None:
        """Stop ingesting (thread-safe): rows already received are still emitted (the last
        batch partial), then the feed ends (``local``/``agent --duration``, SIGUSR1)."""
        self._finishing = True

    def _close_input(self) -> list[Observation]:
        """Close the source's side: what is queued now is the last of the rows received."""
        self._input_closed = True
        got: list[Observation] = []
        try:
            while True:
                items = self.queue.get_many(4096, timeout=0.0)
                if not items:
                    break
                got.extend(items)
        except QueueClosed:
            pass
        self.queue.close()  # the pump's next put fails: it stops reading
        stop = getattr(self.source, "stop", None)
        if callable(stop):
            stop()
        return got

    def __next__(self) -> Any:
        if self.max_batches is not None and self.emitted >= self.max_batches:
            raise StopIteration
        if self._finishing and not self._input_closed:
            rows = self._close_input()
            if self.order is not None:
                self._rows.extend(rows)
            else:
                self._pending.extend(rows)
                self.keep_partial = True  # every row received is learned
        if self.order is not None:
            return self._next_ordered()
        if self._done:
            raise StopIteration
        while True:
            while self._pending:
                b = self.batcher.add(self._pending.popleft())
                if b is not None:
                    return self._emit_batch(b)
            try:
                items = self.queue.get_many(256, timeout=0.0)
            except QueueClosed:  # the stream ended (a failed source re-raises its own error)
                self._done = True
                self._log_end()
                last = self.batcher.flush() if self.keep_partial else None
                if last is None:
                    raise StopIteration from None
                return self._emit_batch(last)
            if not items:
                return NOT_READY
            self._pending.extend(items)

    def _next_ordered(self) -> Any:
        while self._ready is None:
            try:
                items = self.queue.get_many(4096, timeout=0.0)
            except QueueClosed:
                assert self.order is not None
                self._log_end()
                rows = order_rows(self._rows, self.order, self.manifest.seed, self.agent_id)
                self._rows = []
                self._ready = deque(
                    batch_arrays(
                        rows,
                        self.transform,
                        self.batch_size,
                        self.max_batches,
                        keep_partial=self.keep_partial,
                    )
                )
                break
            if not items:
                return NOT_READY
            self._rows.extend(items)
        if not self._ready:
            raise StopIteration
        self.emitted += 1
        X, y = self._ready.popleft()
        self.rows_emitted += int(y.shape[0])
        return X, y

    def _emit_batch(self, b: Any) -> Pair:
        self.emitted += 1
        n = int(b.y.shape[0])
        self.rows_emitted += n
        arr = self._arrivals
        self.last_arrivals = [arr.popleft() for _ in range(min(n, len(arr)))]
        tb = self.transform.apply_batch(b)
        return tb.X, tb.y

    def _log_end(self) -> None:
        stats = self.source.stats.as_dict()
        rejected = _rejected_text(stats)
        if rejected:
            log.warning(
                "agent %d: --data %s ended: %d rows accepted, rejected %s",
                self.agent_id,
                self.manifest.uri,
                stats["accepted"],
                rejected,
            )

    @property
    def stats(self) -> dict[str, Any]:
        """Source counters (accepted, rejected by reason) and queue counters."""
        return {"source": self.source.stats.as_dict(), "queue": self.queue.counters()}
