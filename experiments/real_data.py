"""Real-data demonstration of "Streaming sensor data": one agent per station, the real simulator.

Two shared data sets (see ``../shared/data/README.md``), each station one agent:

* ``wind``: daily mean wind speed (knots) at 12 Irish stations. Inputs
  ``(lon, lat, t, doy_sin, doy_cos)`` (``t`` in days, day-of-year phase), standardized with
  the training rows' statistics. By default only the first two years (1961-1962, 8,760 rows)
  are used so that a run stays well under three minutes on two cores (``--years``).
* ``ozone``: daily 8-hour maximum ozone (ppb) at 153 US Midwest stations, summer 1987.
  Inputs ``(lon, lat, t)``.

Two tasks:

* ``days``: every fifth day (``int(t) % 5 == 0``, the shared splitter's ``"time"`` rule) is
  held out at every station; every agent streams its own station's remaining days in time
  order; the test set is the held-out days at all stations (interpolation in time, every
  station seen).
* ``stations``: a seeded set of stations (wind 3 of 12, ozone 30 of 153) is held out; the
  remaining stations are the agents; the test set is every row of the held-out stations
  (spatial interpolation to places no agent has seen).

The streams are built with the sources API (:func:`open_source`, the shared splitter's
:class:`Holdout` with :func:`holdout_split`,
:func:`fit_config` / :class:`FeatureTransform`, :func:`split_table_stream`) into a
:class:`swarmgp.sim.streams.Streams` and run through :func:`swarmgp.sim.swarm.run_simulation`
(the real :class:`~swarmgp.agents.agent.Agent`, its :class:`LocalModel`, the simulated
network and the tree fusion protocol). The neighbour graph links every station to its
``k`` nearest stations (plus a minimum spanning tree, so it is connected). The report gives
``rmse_local`` (agents alone), ``rmse_fused`` (each agent with the decentralized fused
summary), the oracle (exact sum of the local summaries), gPoE, rBCM, a dPITC-like server sum
and a centralized SGPR on the pooled data, all in the target's units, with NLPD.

Usage::

    python experiments/real_data.py --dataset ozone --task stations --seed 0 --out runs/real
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarmgp.agents.sources import (
    ColumnSchema,
    FeatureConfig,
    FeatureTransform,
    Holdout,
    Observation,
    fit_config,
    holdout_split,
    open_source,
    pick_stations,
    split_table_stream,
    to_arrays,
)
from swarmgp.agents.topology import Adjacency, from_edges
from swarmgp.sim.streams import Streams
from swarmgp.agents.run_config import RunConfig
from swarmgp.sim.swarm import run_simulation

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "build_streams",
    "default_data_dir",
    "knn_adjacency",
    "load_rows",
    "main",
    "run_demo",
]

METHODS = ("train_mean", "local", "fused", "oracle", "gpoe", "rbcm", "dpitc", "sgpr_pooled")


@dataclass(frozen=True)
class DatasetSpec:
    """How one shared CSV becomes agent streams.

    Attributes
    ----------
    file : str
        File name under the data directory.
    target : str
        Target column.
    day_of_year : bool
        Add ``doy_sin, doy_cos`` features (``t`` is in days since a 1 January).
    batch_size : int
        Observations per batch.
    held_stations : int
        Stations held out in the ``stations`` task.
    k : int
        Nearest neighbours per station in the communication graph.
    """

    file: str
    target: str
    day_of_year: bool
    batch_size: int
    held_stations: int
    k: int


DATASETS: dict[str, DatasetSpec] = {
    "wind": DatasetSpec("ireland_wind.csv", "wind_knots", True, 40, 3, 3),
    "ozone": DatasetSpec("midwest_ozone.csv", "ozone_ppb", False, 10, 30, 4),
}


def default_data_dir() -> Path:
    """``../shared/data`` next to the repository root."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_rows(
    dataset: str,
    data_dir: Path,
    *,
    years: float | None = 2.0,
    stations: int | None = None,
    seed: int = 0,
) -> list[Observation]:
    """Read a data set as :class:`Observation` s through :func:`open_source`.

    Parameters
    ----------
    dataset : {"wind", "ozone"}
    data_dir : Path
    years : float or None
        Wind only: keep ``t < 365 * years`` (None: all 18 years).
    stations : int or None
        Keep a seeded random subset of this many stations (smoke tests).
    seed : int
        Seed of the station subset.

    Returns
    -------
    list of Observation
    """
    spec = DATASETS[dataset]
    schema = ColumnSchema("station", "t", ("lon", "lat", "t"), spec.target)
    t_max = 365.0 * years if (dataset == "wind" and years is not None) else math.inf
    src = open_source(f"csv:{data_dir / spec.file}", schema=schema, keep=lambda o: o.t < t_max)
    rows = list(src)
    if stations is not None:
        names = sorted({o.agent for o in rows})
        if stations < len(names):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
            keep = {names[i] for i in rng.choice(len(names), stations, replace=False)}
            rows = [o for o in rows if o.agent in keep]
    return rows


def knn_adjacency(pos: np.ndarray, k: int) -> Adjacency:
    """Each station linked to its ``k`` nearest stations plus a minimum spanning tree.

    Parameters
    ----------
    pos : ndarray of shape (A, 2)
        Station coordinates (lon, lat in degrees; lon scaled by cos(mean lat)).
    k : int

    Returns
    -------
    Adjacency
        Connected, undirected.
    """
    from scipy.sparse.csgraph import minimum_spanning_tree

    A = pos.shape[0]
    D = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    edges: set[tuple[int, int]] = set()
    for a in range(A):
        for b in np.argsort(D[a])[1 : k + 1]:
            edges.add((min(a, int(b)), max(a, int(b))))
    mst = minimum_spanning_tree(D + 1e-9 * (1 - np.eye(A))).tocoo()
    for a, b in zip(mst.row, mst.col, strict=True):
        edges.add((min(int(a), int(b)), max(int(a), int(b))))
    return from_edges(A, sorted(edges))


def _positions(rows: Sequence[Observation], names: Sequence[str]) -> np.ndarray:
    first: dict[str, np.ndarray] = {}
    for o in rows:
        first.setdefault(o.agent, o.x[:2])
    P = np.array([first[n] for n in names], dtype=np.float64)
    P[:, 0] *= math.cos(math.radians(float(P[:, 1].mean())))
    return P


def build_streams(
    rows: Sequence[Observation],
    dataset: str,
    task: str,
    seed: int,
    *,
    max_test: int = 2000,
    held_stations: int | None = None,
) -> tuple[Streams, Adjacency, dict[str, Any]]:
    """Held-out split, shared feature transform, per-station batches -> ``Streams``.

    Parameters
    ----------
    rows : sequence of Observation
    dataset : {"wind", "ozone"}
    task : {"days", "stations"}
    seed : int
        Seed of the held-out days / stations and of the test subsample.
    max_test : int
        Test rows kept (seeded subsample) to bound scoring time.
    held_stations : int, optional
        Overrides the data set's default for the ``stations`` task.

    Returns
    -------
    streams : Streams
        One agent per training station (sorted), batches in time order, standardized; every
        agent is scored on the same test rows.
    adjacency : Adjacency
        k-nearest-station graph.
    info : dict
        Description for the report.
    """
    spec = DATASETS[dataset]
    if task == "days":
        train, test = holdout_split(rows, Holdout("time", every=5, seed=seed))
    elif task == "stations":
        n_h = spec.held_stations if held_stations is None else held_stations
        held = pick_stations({o.agent for o in rows}, n_h, seed)
        train, test = holdout_split(rows, Holdout("none", seed=seed, stations=held))
    else:
        raise ValueError(f"task must be 'days' or 'stations', got {task!r}")
    if not train or not test:
        raise ValueError(f"{dataset}/{task}: empty train ({len(train)}) or test ({len(test)})")
    cfg = FeatureConfig(
        input_names=("lon", "lat", "t"),
        day_of_year=spec.day_of_year,
        time_unit_s=86400.0,
        standardize=True,
        standardize_y=True,
        prefix=len(train),
    )
    cfg = fit_config(cfg, train)  # statistics of all training rows, frozen
    tf = FeatureTransform(cfg)
    train = sorted(train, key=lambda o: (o.agent, o.t))  # each station streams in time order
    names = sorted({o.agent for o in train})
    mapping = {n: i for i, n in enumerate(names)}
    split = split_table_stream(
        train,
        len(names),
        by="column",
        batch_size=spec.batch_size,
        mapping=mapping,
        keep_partial=False,
    )
    batches = [
        [(b.X, np.asarray(b.y, dtype=np.float64)) for b in tf.batches(bl)] for bl in split.batches
    ]
    X_raw, y_raw = to_arrays(test)
    t_test = np.array([o.t for o in test])
    # a seeded random order (and subsample): the simulator's in-stream series scores the first
    # ``series_test`` test rows, which must then be a random sample, not the earliest days
    pick = np.random.default_rng(np.random.SeedSequence([seed, 7])).permutation(len(test))
    pick = pick[:max_test]
    X_raw, y_raw, t_test = X_raw[pick], y_raw[pick], t_test[pick]
    X_test = tf.transform_X(X_raw, t_test)
    y_test = np.asarray(tf.transform_y(y_raw), dtype=np.float64)
    assert cfg.y_mean is not None and cfg.y_std is not None
    test_stations = sorted({o.agent for o in test})
    info = {
        "kind": "table",
        "dataset": dataset,
        "task": task,
        "file": spec.file,
        "features": list(cfg.output_names),
        "target": spec.target,
        "rows": len(rows),
        "train_rows": int(sum(split.n_obs)),
        "streamed_rows": int(sum(len(b) * spec.batch_size for b in batches)),
        "test_rows_total": len(test),
        "n_test": int(y_test.size),
        "agents": len(names),
        "test_stations": len(test_stations) if task == "stations" else None,
        "held_out_stations": test_stations if task == "stations" else [],
        "batch_size": spec.batch_size,
        "batches_per_agent": [len(b) for b in batches],
        "t_range": [float(min(o.t for o in rows)), float(max(o.t for o in rows))],
        "y_mean": float(cfg.y_mean),
        "y_std": float(cfg.y_std),
        "d": cfg.d_out,
    }
    streams = Streams(
        cfg.d_out,
        batches,
        X_test,
        y_test[None, :],
        np.zeros(len(names), dtype=np.int64),
        float(cfg.y_mean),
        float(cfg.y_std),
        info,
    )
    adjacency = knn_adjacency(_positions(train, names), spec.k)
    return streams, adjacency, info


def run_demo(
    dataset: str,
    task: str,
    seed: int = 0,
    *,
    data_dir: Path | None = None,
    years: float | None = 2.0,
    stations: int | None = None,
    held_stations: int | None = None,
    inducing: int = 50,
    max_test: int = 2000,
    sgpr_iters: int = 150,
    learn: bool = True,
    baselines: Sequence[str] = ("local", "oracle", "gpoe", "rbcm", "dpitc", "sgpr_pooled"),
) -> dict[str, Any]:
    """Build the streams and run one simulated swarm; return the simulator's report.

    Parameters
    ----------
    dataset, task, seed
        See :func:`build_streams`.
    data_dir : Path, optional
        Default :func:`default_data_dir`.
    years, stations
        See :func:`load_rows`.
    held_stations : int, optional
        Stations held out in the ``stations`` task.
    inducing : int
        m.
    max_test : int
    sgpr_iters : int
        Adam iterations of the centralized SGPR baseline.
    learn : bool
        Agents learn their hyperparameters online (False: all keep the shared initial ones,
        so the fused model equals the dPITC-like server sum).
    baselines : sequence of str
        Passed to :class:`RunConfig`.

    Returns
    -------
    dict
        The report of :func:`run_simulation` plus ``"real_data"`` (the task description) and
        ``"summary"`` (method -> rmse / nlpd).
    """
    t0 = time.perf_counter()
    rows = load_rows(
        dataset, data_dir or default_data_dir(), years=years, stations=stations, seed=seed
    )
    streams, adjacency, info = build_streams(
        rows, dataset, task, seed, max_test=max_test, held_stations=held_stations
    )
    nb = max(streams.n_batches(a) for a in range(streams.n_agents))
    settings = RunConfig.make(
        "sim",
        mode="paper",
        agents=streams.n_agents,
        topology="geometric",  # nominal: the k-NN station graph is passed below
        inducing=inducing,
        batches=nb,
        batch_size=DATASETS[dataset].batch_size,
        seed=seed,
        learn=learn,
        data=f"csv:{DATASETS[dataset].file}",
        dim=streams.d,
        test_points=streams.X_test.shape[0],
        baselines=tuple(baselines),
        sgpr_iters=sgpr_iters,
    )
    report = run_simulation(settings, adjacency=adjacency, streams=streams)
    report["topology"] = "knn-stations"
    report["real_data"] = info
    report["real_data"]["load_s"] = time.perf_counter() - t0 - report["wall_s"]
    report["real_data"]["years"] = years if dataset == "wind" else None
    report["summary"] = summarize(report)
    # reference: predicting the training mean everywhere (RMSE = spread of the test targets)
    y_t = streams.y_units(streams.y_test(0))
    report["summary"]["train_mean"] = {
        "rmse": float(np.sqrt(np.mean((y_t - streams.y_mean) ** 2))),
        "nlpd": float(
            0.5 * np.log(2 * np.pi * streams.y_std**2)
            + 0.5 * np.mean((y_t - streams.y_mean) ** 2) / streams.y_std**2
        ),
    }
    return report


def summarize(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Method -> ``{"rmse", "nlpd"}`` from a report (target's units)."""
    out = {
        "local": {"rmse": report["rmse_local"], "nlpd": report["nlpd_local"]},
        "fused": {"rmse": report["rmse_fused"], "nlpd": report["nlpd_fused"]},
        "oracle": {"rmse": report["rmse_oracle"], "nlpd": report["nlpd_oracle"]},
    }
    for k, v in report["baselines"].items():
        if k not in out:
            out[k] = {"rmse": float(v["rmse"]), "nlpd": float(v["nlpd"])}
    return out


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the summary."""
    info = report["real_data"]
    lines = [
        f"{info['dataset']} / held-out {info['task']}: {info['agents']} agents, "
        f"{info['streamed_rows']} streamed rows, {info['n_test']} test rows, "
        f"m={report['inducing']}, consistent={report['consistent']} "
        f"(max rel err {report['consistency_max_rel_err']:.1e}), wall {report['wall_s']:.1f} s",
        f"{'method':<12} {'RMSE':>8} {'NLPD':>8}   ({info['target']})",
    ]
    for k in METHODS:
        if k in report["summary"]:
            v = report["summary"][k]
            lines.append(f"{k:<12} {v['rmse']:>8.3f} {v['nlpd']:>8.3f}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Three panels: RMSE per method, per-agent local vs fused RMSE, RMSE over the stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = report["real_data"]
    summ = report["summary"]
    names = [k for k in METHODS if k in summ]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = [
        "#dddddd",
        "#999999",
        "#1f77b4",
        "#2ca02c",
        "#ff7f0e",
        "#d62728",
        "#9467bd",
        "#8c564b",
    ]
    ax[0].bar(names, [summ[k]["rmse"] for k in names], color=colors[: len(names)])
    ax[0].set_ylabel(f"RMSE ({info['target']})")
    ax[0].set_title("held-out RMSE by method")
    ax[0].tick_params(axis="x", rotation=35)
    pa = report["per_agent"]
    rl, rf = np.array(pa["rmse_local"]), np.array(pa["rmse_fused"])
    ax[1].scatter(rl, rf, s=12)
    lo, hi = float(min(rl.min(), rf.min())), float(max(rl.max(), rf.max()))
    ax[1].plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax[1].set_xlabel("agent alone (local) RMSE")
    ax[1].set_ylabel("agent with fused model RMSE")
    ax[1].set_title(f"per agent ({len(rl)} stations)")
    ser = report["rmse_over_time"]
    if ser:
        k = [s["batches"] for s in ser]
        ax[2].plot(k, [s["rmse_local"] for s in ser], "o-", label="local", color="#999999")
        ax[2].plot(k, [s["rmse_fused"] for s in ser], "o-", label="fused", color="#1f77b4")
        ax[2].axhline(summ["oracle"]["rmse"], ls=":", color="#2ca02c", label="oracle (end)")
        ax[2].set_xlabel("batches streamed per agent")
        ax[2].set_ylabel("RMSE (subset of agents and test rows)")
        ax[2].legend()
        ax[2].set_title("during the stream")
    fig.suptitle(
        f"{info['dataset']}: held-out {info['task']} - {info['agents']} agents, "
        f"m={report['inducing']}, seed {report['seed']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="ozone")
    p.add_argument("--task", choices=("days", "stations"), default="stations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/real"))
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--years", type=float, default=2.0, help="wind: first N years only (default 2; 0 = all 18)"
    )
    p.add_argument("--stations", type=int, default=None, help="random subset of stations")
    p.add_argument("--held-stations", type=int, default=None)
    p.add_argument("--inducing", type=int, default=50)
    p.add_argument("--max-test", type=int, default=2000)
    p.add_argument("--sgpr-iters", type=int, default=150)
    p.add_argument(
        "--no-learn", action="store_true", help="keep the shared initial hyperparameters"
    )
    a = p.parse_args(argv)
    data_dir = a.data_dir or default_data_dir()
    if not data_dir.is_dir():
        print(f"real_data: data directory {data_dir} not found", file=sys.stderr)
        return 2
    report = run_demo(
        a.dataset,
        a.task,
        a.seed,
        data_dir=data_dir,
        years=a.years or None,
        stations=a.stations,
        held_stations=a.held_stations,
        inducing=a.inducing,
        max_test=a.max_test,
        sgpr_iters=a.sgpr_iters,
        learn=not a.no_learn,
    )
    print(format_table(report))
    a.out.mkdir(parents=True, exist_ok=True)
    stem = f"real_{a.dataset}_{a.task}_s{a.seed}" + ("_nolearn" if a.no_learn else "")
    (a.out / f"{stem}.json").write_text(json.dumps(_jsonable(report), indent=1))
    plot(report, a.out / f"{stem}.png")
    print(f"wrote {a.out / (stem + '.json')} and {a.out / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
