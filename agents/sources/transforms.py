"""Feature transforms shared by the swarm, declared once in a JSON-serialisable config.

Output features, in order: the selected columns among the source's ``input_names``
plus the derived periodic features ``tod_sin, tod_cos`` (time of day) and
``doy_sin, doy_cos`` (day of year), then standardised with statistics that are
fixed up front (declared, or computed from a prefix pass with :func:`fit_config`
and then frozen into the config). Every agent loads the same config, so every
agent applies the identical transform.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from itertools import islice
from typing import Any

import numpy as np

from swarmgp.agents.sources.batching import Batch
from swarmgp.agents.sources.errors import SourceConfigError, TransformNotFitted
from swarmgp.agents.sources.record import Observation

__all__ = ["FeatureConfig", "FeatureTransform", "fit_config", "DERIVED"]

DAY_S = 86400.0
YEAR_DAYS = 365.25
DERIVED = ("tod_sin", "tod_cos", "doy_sin", "doy_cos")


def _tuple(v: Any) -> tuple[float, ...] | None:
    return None if v is None else tuple(float(e) for e in v)


@dataclass(frozen=True)
class FeatureConfig:
    """Declarative feature transform.

    Parameters
    ----------
    input_names : tuple of str
        Names of the source's input columns (``obs.x`` components), e.g. ``("lon", "lat", "t")``.
    select : tuple of str or None
        Output features in order, from ``input_names`` and the enabled derived features;
        ``None``: every input then every enabled derived feature.
    time_of_day, day_of_year : bool
        Add ``sin/cos`` of the phase of ``t`` within the day / year.
    time_unit_s : float
        Seconds per unit of ``t`` (86400 when ``t`` is in days).
    t_offset_s : float
        Seconds from the epoch of ``t`` to a midnight of 1 January (phase origin).
    standardize : bool
        Standardise the output features.
    mean, std : tuple of float or None
        Fixed statistics (one per output feature). When ``standardize`` is set and they
        are ``None``, :func:`fit_config` computes them from the first ``prefix`` rows.
    prefix : int
        Rows of the prefix pass.
    standardize_y : bool
        Also standardise the target with ``y_mean`` / ``y_std``.
    y_mean, y_std : float or None
    """

    input_names: tuple[str, ...]
    select: tuple[str, ...] | None = None
    time_of_day: bool = False
    day_of_year: bool = False
    time_unit_s: float = 1.0
    t_offset_s: float = 0.0
    standardize: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    prefix: int = 1000
    standardize_y: bool = False
    y_mean: float | None = None
    y_std: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", tuple(self.input_names))
        if self.select is not None:
            object.__setattr__(self, "select", tuple(self.select))
        object.__setattr__(self, "mean", _tuple(self.mean))
        object.__setattr__(self, "std", _tuple(self.std))
        if len(set(self.input_names)) != len(self.input_names):
            raise SourceConfigError(f"duplicate input names {self.input_names}")
        avail = self.available
        for name in self.select or ():
            if name not in avail:
                raise SourceConfigError(f"selected feature {name!r} not in {avail}")
        n = len(self.output_names)
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise SourceConfigError(f"{name} has {len(v)} entries, expected {n}")
        if self.std is not None and not all(s > 0 and math.isfinite(s) for s in self.std):
            raise SourceConfigError(f"std must be positive and finite: {self.std}")
        if self.mean is not None and not all(math.isfinite(v) for v in self.mean):
            raise SourceConfigError(f"mean must be finite: {self.mean}")
        if self.y_std is not None and not (self.y_std > 0 and math.isfinite(self.y_std)):
            raise SourceConfigError(f"y_std must be positive and finite: {self.y_std}")
        if self.y_mean is not None and not math.isfinite(self.y_mean):
            raise SourceConfigError(f"y_mean must be finite: {self.y_mean}")
        if self.time_unit_s <= 0:
            raise SourceConfigError(f"time_unit_s must be > 0: {self.time_unit_s}")

    @property
    def available(self) -> tuple[str, ...]:
        """Input names plus the enabled derived features."""
        derived = (DERIVED[:2] if self.time_of_day else ()) + (
            DERIVED[2:] if self.day_of_year else ()
        )
        return self.input_names + derived

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the output features, in order."""
        return self.select if self.select is not None else self.available

    @property
    def d_out(self) -> int:
        """Output dimension."""
        return len(self.output_names)

    @property
    def is_fitted(self) -> bool:
        """Whether every statistic the transform needs is fixed."""
        x_ok = not self.standardize or (self.mean is not None and self.std is not None)
        y_ok = not self.standardize_y or (self.y_mean is not None and self.y_std is not None)
        return x_ok and y_ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    def to_json(self) -> str:
        """Serialise (stable key order)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SourceConfigError(f"unknown FeatureConfig keys {sorted(unknown)}")
        kw = dict(data)
        for k in ("input_names", "select"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> FeatureConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


class FeatureTransform:
    """Applies a fitted :class:`FeatureConfig` to observations or arrays.

    Raises
    ------
    TransformNotFitted
        If the config still lacks standardisation statistics.
    """

    def __init__(self, config: FeatureConfig) -> None:
        if not config.is_fitted:
            raise TransformNotFitted(
                "standardisation statistics are not fixed: declare mean/std or use fit_config()"
            )
        self.config = config
        self._raw = _RawFeatures(config)
        c = config
        self.mean = np.asarray(c.mean, dtype=np.float64) if c.standardize else None
        self.std = np.asarray(c.std, dtype=np.float64) if c.standardize else None

    def transform_X(self, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Transform ``X [n, d_in]`` observed at times ``t [n]`` to ``[n, d_out]``."""
        Z = self._raw(X, t)
        if self.mean is not None and self.std is not None:
            Z = (Z - self.mean) / self.std
        return Z

    def transform_y(self, y: np.ndarray | float) -> np.ndarray | float:
        """Standardise targets (identity unless ``standardize_y``)."""
        c = self.config
        if not c.standardize_y:
            return y
        assert c.y_mean is not None and c.y_std is not None
        return (y - c.y_mean) / c.y_std

    def inverse_y(self, y: np.ndarray | float) -> np.ndarray | float:
        """Undo :meth:`transform_y`."""
        c = self.config
        if not c.standardize_y:
            return y
        assert c.y_mean is not None and c.y_std is not None
        return y * c.y_std + c.y_mean

    def apply(self, obs: Observation) -> Observation:
        """Transform one observation."""
        z = self.transform_X(obs.x[None, :], np.array([obs.t]))[0]
        z.flags.writeable = False
        return Observation(obs.agent, obs.t, z, float(self.transform_y(obs.y)))

    def apply_batch(self, batch: Batch) -> Batch:
        """Transform a whole batch at once (vectorised: the fast path)."""
        y = np.asarray(self.transform_y(batch.y), dtype=np.float64)
        return Batch(batch.agent, self.transform_X(batch.X, batch.t), y, batch.t)

    def batches(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """Transform a stream of batches lazily."""
        for b in batches:
            yield self.apply_batch(b)

    def __call__(self, observations: Iterable[Observation]) -> Iterator[Observation]:
        """Transform a stream lazily."""
        for obs in observations:
            yield self.apply(obs)


class _RawFeatures:
    def __init__(self, c: FeatureConfig) -> None:
        self.c = c
        self.idx = [c.available.index(n) for n in c.output_names]
        self.d_in = len(c.input_names)

    def __call__(self, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        c = self.c
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d_in:
            raise SourceConfigError(f"X has shape {X.shape}, expected [n, {self.d_in}]")
        cols = [X]
        sec = np.asarray(t, dtype=np.float64) * c.time_unit_s + c.t_offset_s
        if c.time_of_day:
            ph = 2 * np.pi * np.mod(sec, DAY_S) / DAY_S
            cols.append(np.stack([np.sin(ph), np.cos(ph)], axis=1))
        if c.day_of_year:
            ph = 2 * np.pi * np.mod(sec / DAY_S, YEAR_DAYS) / YEAR_DAYS
            cols.append(np.stack([np.sin(ph), np.cos(ph)], axis=1))
        Z = np.concatenate(cols, axis=1) if len(cols) > 1 else X
        return Z[:, self.idx]


def fit_config(config: FeatureConfig, observations: Iterable[Observation]) -> FeatureConfig:
    """Freeze the standardisation statistics from a prefix pass.

    Uses the first ``config.prefix`` observations (of the shared, unfiltered stream, so
    that every agent derives the same numbers), and returns a config whose ``mean`` /
    ``std`` (and ``y_mean`` / ``y_std``) are fixed. Declared statistics are kept.
    A constant feature gets ``std = 1``.

    Raises
    ------
    SourceConfigError
        If the prefix is empty.
    """
    if config.is_fitted:
        return config
    rows = list(islice(observations, config.prefix))
    if not rows:
        raise SourceConfigError("fit_config: the prefix pass saw no observations")
    X = np.stack([o.x for o in rows])
    t = np.array([o.t for o in rows])
    y = np.array([o.y for o in rows])
    Z = _RawFeatures(config)(X, t)
    new: dict[str, Any] = {}
    if config.standardize and (config.mean is None or config.std is None):
        mu, sd = _mean_std(Z)
        new["mean"] = tuple(mu) if config.mean is None else config.mean
        new["std"] = tuple(np.where(sd > 1e-12, sd, 1.0)) if config.std is None else config.std
    if config.standardize_y and (config.y_mean is None or config.y_std is None):
        my, sy = (float(v[0]) for v in _mean_std(y[:, None]))
        new["y_mean"] = my if config.y_mean is None else config.y_mean
        new["y_std"] = (sy if sy > 1e-12 else 1.0) if config.y_std is None else config.y_std
    try:
        return replace(config, **new)
    except SourceConfigError as exc:
        raise SourceConfigError(
            f"fit_config: the standardization statistics of the prefix are not usable ({exc})"
        ) from None


def _mean_std(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``Z [n, k]``, finite for any finite ``Z``.

    Each column is scaled by a power of two near its largest magnitude first (exact: the
    results equal ``np.mean`` / ``np.std`` bit for bit wherever those are finite), so neither
    the sum nor the squares overflow (``np.std`` of values near 1e155 is inf).
    """
    top = np.abs(Z).max(axis=0) if Z.shape[0] else np.ones(Z.shape[1])  # [k]
    top = np.where((top > 0) & np.isfinite(top), top, 1.0)
    scale = np.ldexp(1.0, np.frexp(top)[1])  # [k], powers of two
    Zs = Z / scale
    return Zs.mean(axis=0) * scale, Zs.std(axis=0) * scale
