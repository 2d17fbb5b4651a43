"""The map of ``--plot`` for data with longitude and latitude inputs (issue 11).

When the inputs include ``lon``/``longitude`` and ``lat``/``latitude`` (any case), the report
gets a ``map``: the collective model's predicted mean and standard deviation, in the target's
units, on a grid over the stations' area at one time (the median time of the rows; every other
input at its median), with the stations (mean position of each sensor key) marked.
:func:`~swarmgp.agents.runtime.report.plot_report` then also writes ``<plot>-map.png``.

The prediction comes from whoever holds the collective model: ``sim`` an agent of the
simulated swarm in process, ``agent`` itself, ``local`` agent 0 through a status prediction
query (the exact sum of every local summary).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["GRID", "lonlat_index", "map_data", "map_plot_path", "plot_map", "table_rows"]

#: Grid points per side.
GRID = 40
_LON = ("lon", "longitude")
_LAT = ("lat", "latitude")

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def lonlat_index(names: Sequence[str]) -> tuple[int, int] | None:
    """Indices of the longitude and latitude inputs among ``names`` (None: not both)."""
    low = [n.lower() for n in names]
    lon = next((i for i, n in enumerate(low) if n in _LON), None)
    lat = next((i for i, n in enumerate(low) if n in _LAT), None)
    return None if lon is None or lat is None else (lon, lat)


def table_rows(manifest: Any) -> list[Any]:
    """Every valid row of a table file (the stations and the time of the map); [] otherwise."""
    from swarmgp.agents.sources.agent_feed import is_table_file
    from swarmgp.agents.sources.registry import open_source

    if manifest is None or manifest.schema is None or getattr(manifest, "live", False):
        return []
    if not is_table_file(manifest.uri):
        return []
    with open_source(manifest.uri, schema=manifest.schema, on_bad="count") as src:
        return list(src)


def map_data(manifest: Any, rows: Sequence[Any], predict: Predict, n: int = GRID) -> dict[str, Any]:
    """The report's ``map`` entry ({} when the inputs hold no lon/lat or there are no rows).

    Parameters
    ----------
    manifest : DataManifest
        The swarm's data manifest (a table).
    rows : sequence of Observation
        The table's rows (station positions, median time and inputs).
    predict : callable
        ``predict(Z [k, d]) -> (mean [k], var [k])`` of the collective model, in the
        transformed units of the agents' inputs and targets.
    n : int
        Grid points per side.
    """
    features = getattr(manifest, "features", None)
    if features is None or not rows:
        return {}
    names = tuple(features.input_names)
    idx = lonlat_index(names)
    if idx is None:
        return {}
    i_lon, i_lat = idx
    X = np.stack([np.asarray(o.x, dtype=np.float64) for o in rows])  # [N, d_in]
    t = np.array([o.t for o in rows], dtype=np.float64)  # [N]
    if X.shape[1] != len(names):
        return {}
    at = np.median(X, axis=0)  # [d_in]: every other input at its median
    t_at = float(np.median(t))
    keys = sorted({o.agent for o in rows})
    pos: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in keys}
    for o in rows:
        pos[o.agent][0].append(float(o.x[i_lon]))
        pos[o.agent][1].append(float(o.x[i_lat]))
    s_lon = [float(np.mean(pos[k][0])) for k in keys]
    s_lat = [float(np.mean(pos[k][1])) for k in keys]
    lo_lon, hi_lon = min(s_lon), max(s_lon)
    lo_lat, hi_lat = min(s_lat), max(s_lat)
    pad_lon = 0.1 * (hi_lon - lo_lon) or 0.5
    pad_lat = 0.1 * (hi_lat - lo_lat) or 0.5
    g_lon = np.linspace(lo_lon - pad_lon, hi_lon + pad_lon, n)  # [n]
    g_lat = np.linspace(lo_lat - pad_lat, hi_lat + pad_lat, n)  # [n]
    LON, LAT = np.meshgrid(g_lon, g_lat)  # [n, n], rows = latitude
    G = np.tile(at, (n * n, 1))  # [n*n, d_in]
    G[:, i_lon] = LON.ravel()
    G[:, i_lat] = LAT.ravel()
    Z = manifest.transform().transform_X(G, np.full(n * n, t_at))  # [n*n, d]
    mean, var = predict(Z)
    c = features
    y_mean = float(c.y_mean) if c.standardize_y and c.y_mean is not None else 0.0
    y_std = float(c.y_std) if c.standardize_y and c.y_std is not None else 1.0
    mu = y_mean + y_std * np.asarray(mean, dtype=np.float64).reshape(n, n)
    sd = y_std * np.sqrt(np.maximum(np.asarray(var, dtype=np.float64), 0.0)).reshape(n, n)
    return {
        "lon_name": names[i_lon],
        "lat_name": names[i_lat],
        "target": manifest.schema.target if manifest.schema is not None else "y",
        "time": t_at,
        "at": {name: float(at[i]) for i, name in enumerate(names) if i not in idx},
        "lon": g_lon.tolist(),
        "lat": g_lat.tolist(),
        "mean": mu.tolist(),
        "std": sd.tolist(),
        "stations": {"names": keys, "lon": s_lon, "lat": s_lat},
    }


def map_plot_path(plot: str | os.PathLike[str]) -> str:
    """``<plot>-map.png`` next to the run's plot (its extension dropped)."""
    root, _ = os.path.splitext(os.fspath(plot))
    return f"{root}-map.png"


def plot_map(report: dict[str, Any] | Any, path: str | os.PathLike[str]) -> None:
    """PNG: the collective model's mean (left) and standard deviation (right) with stations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["map"]
    lon, lat = np.asarray(m["lon"]), np.asarray(m["lat"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, key, cmap, title in (
        (axes[0], "mean", "viridis", f"predicted {m['target']} (mean)"),
        (axes[1], "std", "magma", "standard deviation"),
    ):
        im = ax.pcolormesh(lon, lat, np.asarray(m[key]), shading="auto", cmap=cmap)
        fig.colorbar(im, ax=ax)
        st = m["stations"]
        ax.scatter(st["lon"], st["lat"], c="white", edgecolors="black", s=28, zorder=3)
        for name, x, y in zip(st["names"], st["lon"], st["lat"], strict=True):
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(m["lon_name"])
        ax.set_ylabel(m["lat_name"])
        ax.set_title(title)
    at = ", ".join(f"{k}={v:.4g}" for k, v in m["at"].items()) or f"t={m['time']:.4g}"
    fig.suptitle(f"collective model at {at}")
    fig.tight_layout()
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
