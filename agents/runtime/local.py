"""``launch.py local``: a real swarm of agent processes over ZeroMQ on this machine.

:class:`LocalSwarm` spawns N ``launch.py agent`` processes on 127.0.0.1 in their own sessions,
all reading one ``swarm.toml`` (the run config) and ``swarm.json`` (neighbour graph and data
manifest) from the rendezvous directory; it waits until every agent's collective model equals
the exact sum of all local summaries (polling status against a deadline), and stops every
process it started (SIGTERM, then SIGKILL) on return, error, SIGINT or SIGTERM.
:func:`main` runs it in named phases: plan, start, wait for consistency, score, report.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarmgp.agents.factory import local_heartbeat
from swarmgp.agents.run_config import RunConfig, dump_toml
from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.rendezvous import read_records, write_swarm
from swarmgp.agents.runtime.report import (
    Scores,
    build_report,
    check_outputs,
    plot_report,
    summary_lines,
    write_report,
)
from swarmgp.agents.runtime.zygote import Zygote, ZygoteError
from swarmgp.agents.sources.agent_feed import DataManifest, declare_data, test_set
from swarmgp.agents.sources.registry import parse_uri
from swarmgp.agents.sources.schema import ColumnSchema
from swarmgp.agents.topology import Adjacency, neighbour_graph
from swarmgp.fusion.metrics import nlpd, rmse
from swarmgp.fusion.summary import Summary, fuse

__all__ = ["LocalSwarm", "exact_sum", "main", "progress", "swarm_heartbeat", "usable_cores"]

LAUNCH_PY = Path(__file__).resolve().parents[2] / "launch.py"
CONFIG_FILE = "swarm.toml"


def progress(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[swarmgp {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def exact_sum(locals_: Iterable[Summary]) -> Summary:
    """``sum_a R_a - (A - 1) R_0`` over local summaries, in a fixed order."""
    ls = list(locals_)
    return fuse(ls, ls[0].m, ls[0].encoding_hash)


def _is_stdin(uri: str) -> bool:
    """Whether ``uri`` is standard input (``jsonl:-``)."""
    try:
        scheme, target, _ = parse_uri(uri)
    except ValueError:
        return False
    return scheme == "jsonl" and target == "-"


def _signal_group(p: Any, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalSwarm:
    """N agent processes on this machine, wired through a rendezvous directory.

    Parameters
    ----------
    cfg : RunConfig
        The run (written to ``swarm.toml``; every agent reads it).
    adjacency : mapping of int to sequence of int
    workdir : path
        Rendezvous directory (records, ``swarm.toml``, ``swarm.json``, per-agent logs).
    manifest : DataManifest, optional
        The swarm's data manifest (``swarm.json``); agents derive it themselves otherwise.
    """

    def __init__(
        self,
        cfg: RunConfig,
        adjacency: Mapping[int, Sequence[int]],
        workdir: Path,
        manifest: DataManifest | None = None,
    ) -> None:
        self.cfg = cfg
        self.adjacency = {int(k): tuple(v) for k, v in adjacency.items()}
        self.n = len(self.adjacency)
        self.dir = Path(workdir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # the launcher writes the report: its agents write none of their own
            # ... and decides when ingesting ends (--duration: SIGUSR1 to every agent)
            agent_cfg = cfg.replace(report=None, plot=None, duration=None, metrics_port=None)
            (self.dir / CONFIG_FILE).write_text(dump_toml(agent_cfg))
        except OSError as exc:
            raise LaunchError(f"cannot use {self.dir}: {exc.strerror or exc}") from None
        record: dict[str, Any] = {
            "world": self.n,
            "adjacency": {str(k): list(v) for k, v in self.adjacency.items()},
        }
        if manifest is not None:
            record["data"] = manifest.to_json()
        write_swarm(self.dir, record)
        #: ``jsonl:-``: the launcher reads standard input and writes each row to the stdin
        #: of the agent that owns it (:meth:`forward_stdin`).
        self.pipe_stdin = _is_stdin(cfg.data.data)
        self.manifest = manifest
        #: agent processes (``subprocess.Popen``, or :class:`~.zygote.Forked` from the zygote:
        #: both tracked by pid, with ``poll``/``wait``/``returncode``/``stdin``)
        self.procs: dict[int, Any] = {}
        self.all_procs: list[Any] = []
        #: ``--zygote`` (default): agents are forked from one pre-imported helper process
        self.use_zygote = bool(getattr(cfg.process, "zygote", True))
        self.zygote: Zygote | None = None
        self._client: Any = None
        self._client_eps: dict[int, str] = {}

    # processes
    def command(self, i: int) -> list[str]:
        """The ``launch.py agent`` command line of agent i."""
        return [
            sys.executable,
            str(LAUNCH_PY),
            "agent",
            "--config",
            str(self.dir / CONFIG_FILE),
            "--id",
            str(i),
            "--world",
            str(self.n),
            "--rendezvous",
            str(self.dir),
            "--log-file",
            str(self.dir / f"agent-{i}.log"),
            "--until",
            "never",  # this launcher decides when the swarm is done, and stops it
            *self._state_args(i),  # durable agents (issue 10)
            *self._metrics_args(i),
        ]

    def _metrics_args(self, i: int) -> list[str]:
        """``--metrics-port N+i`` (0: every agent picks a free port) with ``--metrics-port N``."""
        port = self.cfg.process.metrics_port
        if port is None:
            return []
        return ["--metrics-port", str(port + i if port else 0)]

    def _state_args(self, i: int) -> list[str]:
        """``--state-dir DIR/agent-<i>`` when the run has a ``--state-dir DIR``."""
        state_dir = getattr(self.cfg.process, "state_dir", None)
        if not state_dir:
            return []
        path = Path(state_dir) / f"agent-{i}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LaunchError(f"--state-dir {path}: {exc.strerror or exc}") from None
        return ["--state-dir", str(path)]

    def preload(self) -> tuple[str, ...]:
        """Modules the zygote imports once for every agent beyond the agent path: the
        collective mode's refits need ``scipy.optimize`` (0.4 CPU-s per agent on its first
        prediction otherwise; the paper mode never imports it)."""
        return ("scipy.optimize",) if self.cfg.model.mode == "collective" else ()

    @staticmethod
    def agent_env() -> dict[str, str]:
        """The agents' environment: one BLAS thread each, unbuffered output."""
        return dict(
            os.environ,
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )

    def spawn(self, i: int) -> None:
        """Start agent i (replacing its rendezvous record): forked from the zygote, or (with
        ``--no-zygote``, or when the zygote cannot start) as a ``launch.py agent`` process."""
        (self.dir / f"agent-{i}.json").unlink(missing_ok=True)
        if self.use_zygote:
            try:
                if self.zygote is None:
                    self.zygote = Zygote(
                        self.agent_env(), self.dir / "zygote.stderr", self.preload()
                    )
                p = self.zygote.spawn(
                    self.command(i)[2:], self.dir / f"agent-{i}.stderr", self.pipe_stdin
                )
            except (ZygoteError, OSError) as exc:
                progress(f"zygote unavailable ({exc}); starting agents as new processes")
                self.use_zygote = False
            else:
                self.procs[i] = p
                self.all_procs.append(p)
                return
        env = self.agent_env()
        err = open(self.dir / f"agent-{i}.stderr", "ab")  # noqa: SIM115 - owned by the child
        try:
            p = subprocess.Popen(
                self.command(i),
                stdin=subprocess.PIPE if self.pipe_stdin else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                start_new_session=True,
            )  # own group: Ctrl-C is ours to relay
        finally:
            err.close()
        self.procs[i] = p
        self.all_procs.append(p)

    def start(self, ids: Iterable[int] | None = None, timeout_s: float = 60.0) -> dict[int, str]:
        """Spawn agents and wait for their rendezvous records; return their endpoints."""
        ids = list(range(self.n)) if ids is None else list(ids)
        for i in ids:
            self.spawn(i)
        return self.wait_records(ids, timeout_s)

    def wait_records(self, ids: Sequence[int], timeout_s: float) -> dict[int, str]:
        """Wait until agents ``ids`` (as now running) have published their endpoints."""
        deadline = time.monotonic() + timeout_s
        while True:
            recs = read_records(self.dir, ids)
            ok = {i: r for i, r in recs.items() if r.get("pid") == self.procs[i].pid}
            if len(ok) == len(ids):
                return {i: r["endpoint"] for i, r in ok.items()}
            dead = [i for i in ids if self.procs[i].poll() is not None]
            if dead:
                why = _last_line(self.dir / f"agent-{dead[0]}.stderr")
                raise LaunchError(
                    f"agents {dead} exited during start-up"
                    + (f" (agent {dead[0]}: {why})" if why else "")
                    + f"; see {self.dir}"
                )
            if time.monotonic() > deadline:
                raise LaunchError(f"agents {sorted(set(ids) - set(ok))} did not publish in time")
            time.sleep(0.02)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to agent i and reap it."""
        p = self.procs.pop(i)
        _signal_group(p, sig)
        try:
            p.wait(5.0)
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()

    def alive(self) -> list[int]:
        """Ids of running agents."""
        return sorted(i for i, p in self.procs.items() if p.poll() is None)

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM every process started (goodbye), then SIGKILL what is left; reap all."""
        for p in self.all_procs:
            if p.poll() is None:
                _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.all_procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        for p in self.all_procs:
            if p.poll() is None:
                _signal_group(p, signal.SIGKILL)
                p.wait()
            else:  # the group may hold nothing else, but make sure
                _signal_group(p, signal.SIGKILL)
        self.procs.clear()
        if self.zygote is not None:  # every agent is reaped: the zygote may go
            self.zygote.close()
            self.zygote = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # status
    def client(self, ids: Iterable[int]) -> Any:
        """A status client connected to the current endpoints of ``ids``."""
        from swarmgp.protocol.zmq_transport import StatusClient

        if self._client is None:
            keyring = None
            if self.cfg.process.keys:
                from swarmgp.protocol.keys import load_keyring

                keyring = load_keyring(self.cfg.process.keys, "operator")
            self._client = StatusClient({}, keyring=keyring)
        recs = read_records(self.dir, ids)
        for i, r in recs.items():
            if self._client_eps.get(i) != r["endpoint"]:
                self._client.add(i, r["endpoint"])
                self._client_eps[i] = r["endpoint"]
        return self._client

    def status(self, ids: Iterable[int], timeout_s: float = 2.0, **kw: Any) -> dict[int, Any]:
        """StatusReply of each agent in ``ids`` that answered in time."""
        ids = list(ids)
        return self.client(ids).query(ids, timeout_s=timeout_s, **kw)  # type: ignore[no-any-return]

    def end_ingest(self) -> None:
        """Every agent stops ingesting (SIGUSR1); rows received are still learned."""
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGUSR1)
                except ProcessLookupError:
                    pass

    def forward_stdin(self, stream: Any, stop: threading.Event) -> dict[str, int]:
        """``jsonl:-``: each line of ``stream`` (binary) to the stdin of the agent that owns it.

        The owner is the manifest's splitter (the agent column's hash, or the row's): the
        agents' own filters keep exactly these rows, so each row is learned once. A line
        that does not parse goes to agent 0, whose source counts it as rejected. Ends at the
        end of ``stream`` or when ``stop`` is set; then closes every agent's stdin.
        """
        from swarmgp.agents.sources.errors import BadRowError
        from swarmgp.agents.sources.schema import MAX_LINE, RowParser, loads_row

        assert self.manifest is not None and self.manifest.splitter is not None
        splitter = self.manifest.splitter
        parser = RowParser(self.manifest.schema or ColumnSchema(), "<stdin>")
        counts = {"rows": 0, "unparsed": 0, "oversized": 0}
        pipes = {i: p.stdin for i, p in self.procs.items() if p.stdin is not None}
        try:
            lineno = 0
            while not stop.is_set():
                line = stream.readline(MAX_LINE + 1)
                if not line:
                    break
                lineno += 1
                if len(line) > MAX_LINE and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):
                        line = stream.readline(MAX_LINE)
                    counts["oversized"] += 1
                    continue
                if not line.strip():
                    continue
                try:
                    owner = splitter.route(parser.parse_mapping(loads_row(line, "<stdin>", lineno)))
                except BadRowError:
                    owner, counts["unparsed"] = 0, counts["unparsed"] + 1
                if owner is None or stop.is_set():
                    continue
                pipe = pipes.get(owner)
                if pipe is None:
                    continue
                try:
                    pipe.write(line if line.endswith(b"\n") else line + b"\n")
                    pipe.flush()
                except (BrokenPipeError, ValueError, OSError):
                    pipes.pop(owner, None)
                    continue
                counts["rows"] += 1
        finally:
            for pipe in pipes.values():
                try:
                    pipe.close()
                except OSError:
                    pass
        return counts

    def check(
        self, ids: Sequence[int], replies: Mapping[int, Any], data_done: bool = False
    ) -> tuple[bool, float]:
        """Whether agents ``ids`` all hold the exact sum of their local summaries (and, with
        ``data_done``, their data has ended and is all in their local summaries)."""
        if set(replies) != set(ids) or any(replies[i].fused is None for i in ids):
            return False, math.inf
        if data_done and not all(replies[i].info.get("data_done") for i in ids):
            return False, math.inf
        exact = exact_sum([replies[i].local for i in ids])
        err = max(replies[i].fused.max_rel_diff(exact) for i in ids)
        full = all(replies[i].fused.n_agents == len(ids) for i in ids)
        return full, err

    def wait_consistent(
        self,
        ids: Sequence[int] | None = None,
        timeout_s: float = 60.0,
        tol: float = 1e-9,
        poll_s: float = 0.05,
        data_done: bool = False,
    ) -> tuple[dict[int, Any], float, float]:
        """Poll status until consistent (with ``data_done``: and every agent's data ended and
        learned: a report never claims data its model has not seen); return (replies, max rel
        err, time it became so).

        Raises
        ------
        LaunchError
            Not consistent by the deadline (the message gives the last error seen).
        """
        ids = sorted(self.procs) if ids is None else sorted(ids)
        deadline = time.monotonic() + timeout_s
        err = math.inf
        while time.monotonic() < deadline:
            dead = [i for i in ids if self.procs[i].poll() is not None]
            if dead:
                raise LaunchError(f"agents {dead} died; see logs in {self.dir}")
            replies = self.status(ids, timeout_s=min(2.0, max(deadline - time.monotonic(), 0.1)))
            full, err = self.check(ids, replies, data_done)
            if full and err <= tol:
                return replies, err, time.time()
            time.sleep(poll_s)
        raise LaunchError(f"no consistency within {timeout_s} s (max rel err {err:.3g})")


# --------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class LocalPlan:
    """What ``local`` decided before starting anything."""

    adjacency: Adjacency
    topology: str
    manifest: DataManifest
    workdir: Path
    #: the swarm's heartbeat period (:func:`swarm_heartbeat`) and why
    heartbeat: float
    heartbeat_note: str


def usable_cores() -> int:
    """Cores this process (and the agents it starts) may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def swarm_heartbeat(
    cfg: RunConfig, adjacency: Mapping[int, Sequence[int]], cores: int | None = None
) -> tuple[float, str]:
    """The heartbeat period of a local swarm on ``adjacency`` and why: ``--heartbeat`` when
    given, else the default raised so the beacons on every directed link use a bounded share
    of this machine's cores (:func:`~swarmgp.agents.factory.local_heartbeat`)."""
    links = sum(len(v) for v in adjacency.values())
    return local_heartbeat(cfg, links, usable_cores() if cores is None else cores)


def plan_local(cfg: RunConfig) -> LocalPlan:
    """Data manifest, neighbour graph (one agent per sensor at most), heartbeat period and work
    directory."""
    manifest = declare_data(cfg.data, cfg.swarm.agents, cfg.seed, mode=cfg.model.mode)
    n = manifest.n_agents
    adjacency = neighbour_graph(cfg.swarm.topology, cfg.swarm.peers, n, cfg.seed)
    if len(adjacency) != n:
        raise LaunchError(f"the neighbour graph has {len(adjacency)} agents, the data {n}")
    topo = f"peers:{cfg.swarm.peers}" if cfg.swarm.peers else cfg.swarm.topology
    if cfg.process.workdir:
        workdir = Path(cfg.process.workdir)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="swarmgp-"))
    heartbeat, why = swarm_heartbeat(cfg, adjacency)
    return LocalPlan(adjacency, topo, manifest, workdir, heartbeat, why)


def score_swarm(
    cfg: RunConfig, swarm: LocalSwarm, replies: Mapping[int, Any], manifest: DataManifest
) -> Scores:
    """Each agent predicts the held-out points from its own, its fused and the exact model."""
    test = test_set(manifest, cfg.data, cfg.seed, cfg.scoring.test_points)
    exact = exact_sum([replies[i].local for i in sorted(replies)])
    preds = swarm.status(sorted(replies), timeout_s=10.0, X=test.X, summary=exact)
    if set(preds) != set(replies):
        raise LaunchError("some agents did not answer the prediction query")

    def units(yt: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
        # scores in the target's own units
        return test.y_std * rmse(yt, mean), nlpd(yt, mean, var) + float(np.log(test.y_std))

    rows: dict[str, list[tuple[float, float]]] = {"local": [], "fused": [], "given": []}
    for i, r in sorted(preds.items()):
        yt, p = test.y_of(i), r.predictions
        for kind in rows:
            rows[kind].append(units(yt, p[f"mean_{kind}"], p[f"var_{kind}"]))

    def mean(kind: str, j: int) -> float:
        return float(np.mean([row[j] for row in rows[kind]]))

    return Scores(
        rmse_local=mean("local", 0),
        nlpd_local=mean("local", 1),
        rmse_fused=mean("fused", 0),
        nlpd_fused=mean("fused", 1),
        rmse_oracle=mean("given", 0),
        nlpd_oracle=mean("given", 1),
    )


def _report(
    cfg: RunConfig,
    plan: LocalPlan,
    swarm: LocalSwarm,
    replies: Mapping[int, Any],
    err: float,
    t0: float,
    t_cons: float,
) -> dict[str, Any]:
    if plan.manifest.live:  # no held-out rows on a live feed: scores are null, with the reason
        nan = math.nan
        scores, note = Scores(nan, nan, nan, nan, nan, nan), "a live feed has no held-out rows"
    else:
        scores, note = score_swarm(cfg, swarm, replies, plan.manifest), ""
    final = swarm.status(sorted(replies), timeout_s=5.0)
    infos = [final[i].info for i in sorted(final)]  # by agent id
    lag_n = sum(int(i.get("ingest_lag_n") or 0) for i in infos)
    lag_sum = sum(
        float(i.get("ingest_lag_mean_s") or 0.0) * int(i.get("ingest_lag_n") or 0) for i in infos
    )
    received = [i.get("rows_received") for i in infos]
    counters = [r.info.get("counters", {}) for r in final.values()]
    rss = [float(r.info.get("peak_rss_mb", 0.0)) for r in final.values()]
    last_obs = max((r.info.get("last_observation_wall") or t0) for r in replies.values())
    batches = max((int(r.info.get("local_n_obs", 0)) for r in replies.values()), default=0)
    return build_report(
        cfg,
        agents=len(replies),
        topology=plan.topology,
        batches_per_agent=math.ceil(batches / cfg.data.batch_size),
        scores=scores,
        consistency_max_rel_err=err,
        baselines={},
        messages=int(sum(c.get("net.tx_msgs", 0) for c in counters)),
        bytes_sent=int(sum(c.get("net.tx_bytes", 0) for c in counters)),
        wall_s=time.time() - t0,
        peak_rss_mb=max(rss) if rss else 0.0,
        n_obs=int(max(r.fused.n_obs for r in replies.values())),
        extras={
            "nlpd_oracle": scores.nlpd_oracle,
            "fuse_messages": int(sum(c.get("tx.fuse", 0) for c in counters)),
            "rejected": int(
                sum(v for c in counters for k, v in c.items() if k.startswith("rejected."))
            ),
            "consistency_after_last_obs_s": t_cons - last_obs,
            "heartbeat_s": cfg.timing.heartbeat,  # the period every agent used
            "heartbeat_note": plan.heartbeat_note,
            "peak_rss_mb_total": float(sum(rss)),
            "workdir": str(plan.workdir),
            "scores_note": note,
            # rows each agent's feed handed on (None on synthetic data): their sum is n_obs
            "rows_received": (
                None if any(r is None for r in received) else int(sum(received))  # type: ignore[misc]
            ),
            "agents_rows_received": received,
            "agents_ingest_lag_max_s": [i.get("ingest_lag_max_s") for i in infos],
            "ingest_lag_mean_s": lag_sum / lag_n if lag_n else None,
            "ingest_lag_max_s": (
                max(float(i.get("ingest_lag_max_s") or 0.0) for i in infos) if lag_n else None
            ),
        },
    )


def _map(plan: LocalPlan, swarm: LocalSwarm, replies: Mapping[int, Any]) -> dict[str, Any]:
    """The report's ``map``: agent 0 predicts a grid from the exact collective model."""
    from swarmgp.agents.runtime.mapplot import lonlat_index, map_data, table_rows

    f = plan.manifest.features
    if f is None or lonlat_index(f.input_names) is None:
        return {}
    exact = exact_sum([replies[i].local for i in sorted(replies)])
    first = min(replies)

    def predict(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got = swarm.status([first], timeout_s=10.0, X=Z, summary=exact)
        if first not in got:
            raise LaunchError(f"agent {first} did not answer the map's prediction query")
        p = got[first].predictions
        return p["mean_fused"], p["var_fused"]

    return map_data(plan.manifest, table_rows(plan.manifest), predict)


def _wait_until(swarm: LocalSwarm, deadline_wall: float) -> None:
    """Sleep until ``deadline_wall`` (wall clock), failing early when an agent dies.

    Raises
    ------
    LaunchError
        An agent exited.
    """
    while time.time() < deadline_wall:
        dead = [i for i, p in swarm.procs.items() if p.poll() is not None]
        if dead:
            why = _last_line(swarm.dir / f"agent-{dead[0]}.stderr")
            raise LaunchError(
                f"agents {dead} exited while ingesting" + (f" ({why})" if why else "")
            )
        time.sleep(min(0.1, max(deadline_wall - time.time(), 0.0)))


def _last_line(path: Path) -> str:
    """The last non-empty line of a small text file ('' when unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def main(cfg: RunConfig) -> int:
    """``launch.py local``: run a real swarm of agent processes over ZeroMQ and report."""
    t0 = time.time()
    check_outputs(cfg.output.report, cfg.output.plot)  # fail now, not after the run
    state_dir = getattr(cfg.process, "state_dir", None)
    if state_dir:
        try:
            os.makedirs(state_dir, exist_ok=True)
        except OSError as exc:
            raise LaunchError(
                f"--state-dir {state_dir}: cannot use: {exc.strerror or exc}"
            ) from None
    if cfg.process.metrics_port is not None:  # one line here, not agents dying at start-up
        from swarmgp.agents.runtime.metrics import require_prometheus

        require_prometheus()
    plan = plan_local(cfg)
    if plan.heartbeat != cfg.timing.heartbeat:  # every agent reads it from swarm.toml
        cfg = cfg.replace(heartbeat=plan.heartbeat)
    if cfg.process.keys:  # a missing or bad keyring: one line here, not agents dying at start-up
        from swarmgp.protocol.keys import load_keyring

        for who in ("operator", *range(plan.manifest.n_agents)):
            load_keyring(cfg.process.keys, who)
    swarm = LocalSwarm(cfg, plan.adjacency, plan.workdir, plan.manifest)
    stop_now: dict[str, int | None] = {"sig": None}
    stop_fwd = threading.Event()
    forwarded: dict[str, int] = {}

    def on_signal(sig: int, _frame: Any) -> None:
        stop_now["sig"] = sig
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        progress(f"starting {swarm.n} agents on {plan.topology} (rendezvous {plan.workdir})")
        progress(f"heartbeat {plan.heartbeat:.3g} s ({plan.heartbeat_note})")
        swarm.start(timeout_s=cfg.process.start_timeout)
        if swarm.pipe_stdin:  # jsonl:-: each row of our stdin to the agent that owns it
            fwd = threading.Thread(
                target=lambda: forwarded.update(swarm.forward_stdin(sys.stdin.buffer, stop_fwd)),
                name="stdin-forward",
                daemon=True,
            )
            fwd.start()
        duration = cfg.scoring.duration
        if duration:
            progress(f"all agents published endpoints; ingesting for {duration:g} s")
            _wait_until(swarm, t0 + duration)
            stop_fwd.set()
            swarm.end_ingest()
            progress("ingest ended; waiting for the swarm to learn what it received and agree")
        else:
            progress("all agents published endpoints; waiting for consistency")
        replies, err, t_cons = swarm.wait_consistent(
            timeout_s=cfg.scoring.timeout, tol=cfg.scoring.tol, data_done=True
        )
        progress(f"consistent: max rel err {err:.2e}, {t_cons - t0:.2f} s after launch")
        report = _report(cfg, plan, swarm, replies, err, t0, t_cons)
        if forwarded:
            report["stdin_rows"] = forwarded
        if cfg.output.plot:  # lon/lat inputs: a map of the collective model (agent 0's view)
            report["map"] = _map(plan, swarm, replies)
        for line in summary_lines(report):
            progress(line.strip())
        if cfg.output.report:
            write_report(report, cfg.output.report)
            progress(f"report written to {cfg.output.report}")
        else:
            print(write_report_text(report))
        if cfg.output.plot:
            plot_report(report, cfg.output.plot)
            progress(f"plot written to {cfg.output.plot}")
        return 0
    except KeyboardInterrupt:
        sig = signal.Signals(stop_now["sig"] or signal.SIGINT)
        progress(f"interrupted ({sig.name}); stopping agents")
        return 130
    except LaunchError as e:
        progress(f"error: {e}")
        return 1
    finally:
        stop_fwd.set()
        for s in old:  # stopping the agents must not itself be interrupted
            signal.signal(s, signal.SIG_IGN)
        swarm.stop()
        progress(f"stopped {len(swarm.all_procs)} agent processes")
        for s, h in old.items():
            signal.signal(s, h)


def write_report_text(report: Mapping[str, Any]) -> str:
    """The report as the JSON text :func:`write_report` writes."""
    from swarmgp.agents.runtime.report import dumps

    return dumps(report)
