"""Feeding a real agent process from a data source (``--data URI`` of ``launch.py agent/local``).

The swarm shares one *data config*, a JSON-able dict declared once (by ``launch.py local`` in
the rendezvous ``swarm.json``, or computed identically by each agent from the same file):

* ``uri`` and ``schema``: where the stream is and which columns hold sensor, time, inputs, target;
* ``features``: the fitted :class:`~swarmgp.agents.sources.FeatureConfig` (standardization of
  inputs and target) that every agent applies identically;
* ``sensors``: which sensor keys each agent id reads (each station one agent by default);
* ``holdout_every``: rows with ``int(t) % holdout_every == 0`` are held-out days, never
  observed by agents; the launcher scores predictions on them.

An agent reads its own sensors' rows on a background pump thread into a bounded queue (the
producer blocks when the learner lags: nothing is dropped) and the runner takes batches
without blocking its event loop.
"""

from __future__ import annotations

import argparse
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .sources import (
    Batcher,
    BoundedQueue,
    ColumnSchema,
    FeatureConfig,
    FeatureTransform,
    Observation,
    SourcePump,
    fit_config,
    open_source,
    station_mapping,
)
from .sources.errors import QueueClosed, SourceConfigError

__all__ = ["NOT_READY", "DataFeed", "held_out_rows", "swarm_data_config"]

#: Returned by :class:`DataFeed` when no full batch is ready yet (the runner polls again).
NOT_READY: Any = object()
#: Rows of the stream's prefix used to fit the shared standardization.
FIT_PREFIX = 2000


def _schema(args: argparse.Namespace) -> ColumnSchema:
    if not args.inputs or not args.target:
        raise SourceConfigError(
            f"--data {args.data}: give --inputs A,B,... and --target COL "
            "(and --agent-column COL to split the stream by sensor)"
        )
    return ColumnSchema(
        agent=args.agent_column,
        time=args.time_column,
        inputs=tuple(c.strip() for c in args.inputs.split(",") if c.strip()),
        target=args.target,
    )


def swarm_data_config(args: argparse.Namespace, n_agents: int | None) -> dict[str, Any]:
    """Read the stream's keys and prefix once and declare the swarm's shared data config.

    Parameters
    ----------
    args : argparse.Namespace
        ``data``, ``agent_column``, ``time_column``, ``inputs``, ``target``, ``holdout_every``,
        ``features`` (optional JSON file of a declared FeatureConfig).
    n_agents : int or None
        Agents to map the sensors onto (round robin by sorted key); None: one per sensor.

    Returns
    -------
    dict
        JSON-able: ``uri``, ``schema``, ``features``, ``sensors``, ``holdout_every``, ``d``.
    """
    schema = _schema(args)
    keys: set[str] = set()
    prefix: list[Observation] = []
    with open_source(args.data, schema=schema) as src:
        for obs in src:
            keys.add(obs.agent)
            if len(prefix) < FIT_PREFIX:
                prefix.append(obs)
    if not prefix:
        raise SourceConfigError(f"--data {args.data}: the stream holds no valid row")
    if getattr(args, "features", None):
        cfg = FeatureConfig.from_json(Path(args.features).read_text())
    else:
        cfg = FeatureConfig(
            input_names=schema.inputs, standardize=True, standardize_y=True, prefix=FIT_PREFIX
        )
    cfg = fit_config(cfg, iter(prefix))
    mapping = station_mapping(sorted(keys), n_agents)
    sensors: dict[str, list[str]] = {}
    for key, a in mapping.items():
        sensors.setdefault(str(a), []).append(key)
    return {
        "uri": args.data,
        "schema": {
            "agent": schema.agent,
            "time": schema.time,
            "inputs": list(schema.inputs),
            "target": schema.target,
        },
        "features": json.loads(cfg.to_json()),
        "sensors": sensors,
        "holdout_every": int(args.holdout_every),
        "d": cfg.d_out,
    }


def _is_held_out(obs: Observation, every: int) -> bool:
    return every > 0 and int(np.floor(obs.t)) % every == 0


def held_out_rows(
    config: dict[str, Any], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, FeatureTransform]:
    """Up to n held-out rows of all sensors, transformed: ``(X [n, d], y [n], transform)``."""
    transform = FeatureTransform(FeatureConfig.from_dict(config["features"]))
    every = config["holdout_every"]
    rows: list[Observation] = []
    with open_source(config["uri"], schema=config["schema"]) as src:
        rows = [o for o in src if _is_held_out(o, every)]
    if not rows:
        raise SourceConfigError("no held-out rows: lower --holdout-every or check the time column")
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    X = np.stack([rows[i].x for i in pick])
    t = np.array([rows[i].t for i in pick])
    y = np.array([rows[i].y for i in pick])
    return transform.transform_X(X, t), np.asarray(transform.transform_y(y)), transform


class DataFeed:
    """An iterator of standardized ``(X, y)`` batches of one agent's sensors, never blocking.

    ``next()`` returns a batch, :data:`NOT_READY` when fewer than ``batch_size`` rows wait, and
    stops at the end of the stream (after a final partial batch) or after ``max_batches``.

    Parameters
    ----------
    config : dict
        The swarm's data config (:func:`swarm_data_config`).
    agent_id : int
    batch_size : int
    max_batches : int or None
    queue_size : int
        Bound of the queue between the reading thread and the agent.
    """

    def __init__(
        self,
        config: dict[str, Any],
        agent_id: int,
        batch_size: int,
        max_batches: int | None = None,
        queue_size: int = 4096,
    ) -> None:
        sensors = set(config["sensors"].get(str(agent_id), []))
        if not sensors:
            raise SourceConfigError(f"agent {agent_id}: no sensor of the data config maps to it")
        every = config["holdout_every"]
        self.transform = FeatureTransform(FeatureConfig.from_dict(config["features"]))
        self.source = open_source(
            config["uri"],
            schema=config["schema"],
            keep=lambda o: o.agent in sensors and not _is_held_out(o, every),
        )
        self.queue: BoundedQueue[Observation] = BoundedQueue(queue_size, policy="block")
        self.pump = SourcePump(self.source, self.queue)
        self.pump.start()
        self.batcher = Batcher(batch_size)
        self.max_batches = max_batches
        self.emitted = 0
        self._done = False
        self._pending: deque[Observation] = deque()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._done or (self.max_batches is not None and self.emitted >= self.max_batches):
            raise StopIteration
        while True:
            while self._pending:
                b = self.batcher.add(self._pending.popleft())
                if b is not None:
                    return self._emit(b)
            try:
                items = self.queue.get_many(256, timeout=0.0)
            except QueueClosed:  # the stream ended (a failed source re-raises its own error)
                self._done = True
                last = self.batcher.flush()
                if last is None:
                    raise StopIteration from None
                return self._emit(last)
            if not items:
                return NOT_READY
            self._pending.extend(items)

    def _emit(self, b: Any) -> tuple[np.ndarray, np.ndarray]:
        self.emitted += 1
        tb = self.transform.apply_batch(b)
        return tb.X, tb.y

    @property
    def stats(self) -> dict[str, Any]:
        """Source counters (accepted, rejected by reason) and queue counters."""
        return {"source": self.source.stats.as_dict(), "queue": self.queue.counters()}
