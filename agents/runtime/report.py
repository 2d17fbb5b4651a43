"""The JSON run report (DESIGN.md section 4), its summary line, its plot and its checks.

The report is a plain dict. :data:`REQUIRED_KEYS` are the keys scripts may rely on; everything
else is an extra. Two runs with the same settings give the same report except
:data:`NONDETERMINISTIC_KEYS` (wall time and memory).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from swarmgp.agents.run_config import RunConfig
from swarmgp.fusion.errors import SwarmGPError

__all__ = [
    "check_outputs",
    "NONDETERMINISTIC_KEYS",
    "REQUIRED_KEYS",
    "ReportError",
    "Scores",
    "build_report",
    "check_report",
    "comparable",
    "dumps",
    "peak_rss_mb",
    "plot_report",
    "summary_lines",
    "write_report",
]

#: Keys every report has (DESIGN.md section 4).
REQUIRED_KEYS = (
    "agents",
    "topology",
    "inducing",
    "samples",
    "batches_per_agent",
    "batch_size",
    "loss",
    "seed",
    "learn",
    "rmse_local",
    "nlpd_local",
    "rmse_fused",
    "nlpd_fused",
    "rmse_oracle",
    "consistency_max_rel_err",
    "baselines",
    "messages",
    "bytes",
    "wall_s",
    "peak_rss_mb",
    "n_obs",
)

#: Keys that depend on the machine, not on the seed.
NONDETERMINISTIC_KEYS = ("wall_s", "peak_rss_mb")


class ReportError(SwarmGPError):
    """A report lacks a required key or holds a value of the wrong kind."""


@dataclass(frozen=True)
class Scores:
    """Mean accuracy over the scored agents, in the target's units.

    ``local``: each agent from its own data; ``fused``: from its collective model; ``oracle``:
    from the exact sum of all current local summaries (what fusion must reach).
    """

    rmse_local: float
    nlpd_local: float
    rmse_fused: float
    nlpd_fused: float
    rmse_oracle: float
    nlpd_oracle: float


def build_report(
    cfg: RunConfig,
    *,
    agents: int,
    topology: str,
    batches_per_agent: int,
    scores: Scores,
    consistency_max_rel_err: float,
    baselines: Mapping[str, Mapping[str, float]],
    messages: int,
    bytes_sent: int,
    wall_s: float,
    peak_rss_mb: float,
    n_obs: int,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run report of DESIGN.md section 4, the same for ``sim``, ``local`` and ``agent``.

    The settings keys come from ``cfg``; the rest from the driver. The report is checked
    (:func:`check_report`) before it is returned.

    Raises
    ------
    ReportError
        A required key is missing or of the wrong kind.
    """
    report: dict[str, Any] = {
        "command": cfg.command,
        "agents": int(agents),
        "topology": topology,
        "inducing": cfg.model.inducing,
        "samples": cfg.model.samples,
        "batches_per_agent": int(batches_per_agent),
        "batch_size": cfg.data.batch_size,
        "loss": cfg.faults.loss,
        "seed": cfg.seed,
        "learn": cfg.model.learn,
        **asdict(scores),
        "consistency_max_rel_err": float(consistency_max_rel_err),
        "baselines": {k: dict(v) for k, v in baselines.items()},
        "messages": int(messages),
        "bytes": int(bytes_sent),
        "wall_s": float(wall_s),
        "peak_rss_mb": float(peak_rss_mb),
        "n_obs": int(n_obs),
        "encoder": cfg.model.encoder,
        "settings": cfg.public(),
    }
    report.update(extras or {})
    check_report(report)
    return report


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(r) / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def _clean(v: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN and inf to None."""
    if isinstance(v, Mapping):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (TypeError, ValueError):
            return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def dumps(report: Mapping[str, Any]) -> str:
    """The report as indented, key-sorted JSON (NaN and inf written as null)."""
    return json.dumps(_clean(report), indent=1, sort_keys=True, allow_nan=False)


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the report as JSON (creating the parent directory).

    Raises
    ------
    ReportError
        The file cannot be written (one line naming the path and why).
    """
    p = os.fspath(path)
    try:
        parent = os.path.dirname(p)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = p + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(dumps(report))
            fh.write("\n")
        os.replace(tmp, p)
    except OSError as exc:
        raise ReportError(f"--report {p}: cannot write: {exc.strerror or exc}") from None


def check_outputs(report: str | None, plot: str | None, agent_id: int | None = None) -> None:
    """Fail before a run whose report or plot could not be written at its end.

    Checks that each path's directory exists or can be made and is writable, that the path
    is not a directory, and that matplotlib is importable when a plot is asked for.
    ``{id}`` in a path is replaced by ``agent_id``.

    Raises
    ------
    ReportError
        One line naming the option, the path and why.
    """
    for option, path in (("--report", report), ("--plot", plot)):
        if not path:
            continue
        p = path.replace("{id}", str(agent_id)) if agent_id is not None else path
        parent = os.path.dirname(os.path.abspath(p))
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ReportError(f"{option} {p}: a parent of it is not a directory") from None
        except OSError as exc:
            raise ReportError(
                f"{option} {p}: cannot make {parent}: {exc.strerror or exc}"
            ) from None
        if os.path.isdir(p):
            raise ReportError(f"{option} {p}: is a directory")
        if not os.access(parent, os.W_OK):
            raise ReportError(f"{option} {p}: directory {parent} is not writable")
    if plot:
        _need_matplotlib()


def _need_matplotlib() -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ReportError(
            "--plot needs the optional package matplotlib, which is not installed "
            "(pip install matplotlib, or drop --plot)"
        )


def check_report(report: Mapping[str, Any]) -> None:
    """Raise :class:`ReportError` unless every required key is present and well typed."""
    missing = [k for k in REQUIRED_KEYS if k not in report]
    if missing:
        raise ReportError(f"report: missing keys {missing}")
    if not isinstance(report["baselines"], Mapping):
        raise ReportError("report: 'baselines' must map names to {rmse, nlpd}")
    for name, v in report["baselines"].items():
        if not (isinstance(v, Mapping) and "rmse" in v and "nlpd" in v):
            raise ReportError(f"report: baseline {name!r} lacks rmse/nlpd")
    for k in (
        "agents",
        "inducing",
        "samples",
        "batches_per_agent",
        "batch_size",
        "seed",
        "messages",
        "bytes",
        "n_obs",
    ):
        if not isinstance(report[k], int) or isinstance(report[k], bool):
            raise ReportError(f"report: {k!r} must be an int, got {report[k]!r}")
    if not isinstance(report["learn"], bool):
        raise ReportError("report: 'learn' must be a bool")


def comparable(report: Mapping[str, Any]) -> str:
    """The JSON of the report without the machine-dependent keys (for bit-for-bit checks)."""
    return dumps({k: v for k, v in report.items() if k not in NONDETERMINISTIC_KEYS})


def _fmt(x: Any, nd: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A short human summary (pre/post fusion accuracy, consistency, cost)."""
    r = report
    lines = [
        f"swarmgp {r.get('command', 'sim')}: {r['agents']} agents, topology {r['topology']}, "
        f"m={r['inducing']}, "
        f"{r['batches_per_agent']} batches x {r['batch_size']} per agent, loss {r['loss']}, "
        f"learn {'on' if r['learn'] else 'off'}, seed {r['seed']}",
        f"  RMSE  pre-fusion (local) {_fmt(r['rmse_local'])}   post-fusion {_fmt(r['rmse_fused'])}"
        f"   oracle {_fmt(r['rmse_oracle'])}",
        f"  NLPD  pre-fusion (local) {_fmt(r['nlpd_local'])}   post-fusion {_fmt(r['nlpd_fused'])}",
        f"  consistency max rel err {_fmt(r['consistency_max_rel_err'], 3)}"
        + (f" (settled {r['settle_s']:.3g} s virtual after the data)" if "settle_s" in r else ""),
    ]
    if r.get("baselines"):
        parts = [
            f"{k} {_fmt(v.get('rmse'))}/{_fmt(v.get('nlpd'))}" for k, v in r["baselines"].items()
        ]
        lines.append("  baselines (rmse/nlpd): " + ", ".join(parts))
    lines.append(
        f"  cost: {r['messages']} messages, {r['bytes'] / 1e6:.3g} MB, wall {r['wall_s']:.3g} s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MiB"
    )
    return lines


def plot_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG: per-agent pre/post-fusion RMSE (left) and mean RMSE over time (right).

    Uses matplotlib's Agg backend (no display needed).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ReportError(
            f"--plot needs the optional package matplotlib, which cannot be imported ({exc})"
        ) from None

    pa = report.get("per_agent", {})
    series = report.get("rmse_over_time", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ids = pa.get("ids", [])
    if ids:
        ax1.scatter(pa["rmse_fused"], pa["rmse_local"], s=10, alpha=0.7)
        lo = min(min(pa["rmse_fused"]), min(pa["rmse_local"]))
        hi = max(max(pa["rmse_fused"]), max(pa["rmse_local"]))
        ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="no gain")
        ax1.set_xlabel("post-fusion RMSE")
        ax1.set_ylabel("pre-fusion (local) RMSE")
        ax1.set_title(f"per agent ({len(ids)} agents)")
        ax1.legend(loc="upper left")
    if series:
        k = [p["batches"] for p in series]
        ax2.plot(k, [p["rmse_local"] for p in series], "o-", label="pre-fusion (local)")
        ax2.plot(k, [p["rmse_fused"] for p in series], "s-", label="post-fusion")
        for name, style in (("sgpr_pooled", ":"), ("gpoe", "-."), ("rbcm", "--")):
            b = report.get("baselines", {}).get(name)
            if b and b.get("rmse") is not None:
                ax2.axhline(b["rmse"], ls=style, lw=0.9, color="gray", label=f"{name} (end)")
        ax2.set_xlabel("batches per agent")
        ax2.set_ylabel("mean RMSE (tracked agents)")
        ax2.set_title("RMSE over time")
        ax2.legend()
    fig.suptitle(
        f"{report['agents']} agents, {report['topology']}, m={report['inducing']}, "
        f"loss {report['loss']}, learn {'on' if report['learn'] else 'off'}"
    )
    fig.tight_layout()
    try:
        parent = os.path.dirname(os.fspath(path))
        if parent:
            os.makedirs(parent, exist_ok=True)
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:  # ValueError: an image format matplotlib lacks
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReportError(f"--plot {os.fspath(path)}: cannot write: {why}") from None
    finally:
        plt.close(fig)
    if report.get("map"):  # lon/lat inputs: the collective model over the stations' area
        from swarmgp.agents.runtime.mapplot import map_plot_path, plot_map

        plot_map(report, map_plot_path(path))
