"""``launch.py local``, ``launch.py agent`` and ``launch.py status``.

- ``agent``: one agent process. Identity from ``--id/--world`` or the SLURM, Open MPI, PMI or
  torchrun environment; neighbours from ``--neighbors``, ``--peers FILE``, the rendezvous
  directory's ``swarm.json`` or ``--topology`` (computed identically by every agent from the
  seed); endpoints exchanged through a rendezvous directory (each agent binds a free port and
  writes ``agent-<id>.json`` atomically).
- ``local``: spawns N agent processes on 127.0.0.1 in their own sessions, waits until every
  agent's collective model equals the exact sum of all local summaries (polling status against
  a deadline), queries predictions, writes the JSON report, and stops every process it started
  (SIGTERM, then SIGKILL) on return, error, SIGINT or SIGTERM.
- ``status``: prints counts, tree state, health and fingerprint of agents.

Synthetic data: one latent function ``g`` (a fixed random sum of sinusoids, common to the
swarm) seen by agent a through its own projection ``W_a`` near the identity, with inputs
around an agent-specific centre, plus Gaussian noise. Everything is seeded by
``(seed, agent id)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fusion.errors import SwarmGPError
from ..fusion.summary import Summary, fuse
from .sources.synthetic import rff_latent

__all__ = [
    "LocalSwarm",
    "SyntheticTask",
    "agent_main",
    "local_main",
    "make_adjacency",
    "resolve_identity",
    "status_main",
]

LAUNCH_PY = Path(__file__).resolve().parents[1] / "launch.py"


class LaunchError(SwarmGPError):
    """A swarm could not be launched, wired or brought to consistency."""


def progress(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[swarmgp {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- topology


def make_adjacency(name: str, n: int, seed: int) -> dict[int, tuple[int, ...]]:
    """Neighbour graph by name, via :mod:`swarmgp.sim.topology` (ring/complete fallback)."""
    try:
        from ..sim.topology import make_topology
    except ImportError:  # sim package not present: the two graphs every test needs
        if name == "ring":
            return {i: tuple(sorted({(i - 1) % n, (i + 1) % n} - {i})) for i in range(n)}
        if name == "complete":
            return {i: tuple(j for j in range(n) if j != i) for i in range(n)}
        raise LaunchError(f"topology {name!r} needs swarmgp.sim.topology") from None
    return {int(k): tuple(int(x) for x in v) for k, v in make_topology(name, n, seed).items()}


def load_peers_file(path: str) -> dict[int, tuple[int, ...]]:
    """Adjacency from a peers file (see :func:`swarmgp.sim.topology.load_peers`)."""
    from ..sim.topology import load_peers

    return {int(k): tuple(int(x) for x in v) for k, v in load_peers(path).items()}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SyntheticTask:
    """Deterministic synthetic streams: one latent GP draw u through per-agent projections.

    Attributes
    ----------
    seed : int
    d : int
        Input dimension.
    noise : float
        Observation noise standard deviation.
    """

    seed: int
    d: int = 2
    noise: float = 0.1

    def __post_init__(self) -> None:
        # the same kind of draw of u as the synthetic source and the simulator use
        u = rff_latent(self.d, 64, np.random.default_rng([self.seed, 7919]))
        object.__setattr__(self, "_u", u)

    def latent(self, Z: np.ndarray) -> np.ndarray:
        """u(z) for Z of shape (n, d); returns (n,)."""
        return self._u(Z)  # type: ignore[attr-defined, no-any-return]

    def projection(self, agent: int) -> np.ndarray:
        """W_a of shape (d, d): identity plus a small agent-specific perturbation."""
        r = np.random.default_rng([self.seed, agent, 1])
        return np.eye(self.d) + 0.05 * r.standard_normal((self.d, self.d))

    def centre(self, agent: int, n_agents: int) -> np.ndarray:
        """Where agent a's inputs concentrate, shape (d,)."""
        ang = 2 * np.pi * agent / max(n_agents, 1)
        c = np.zeros(self.d)
        c[0], c[min(1, self.d - 1)] = 1.2 * np.cos(ang), 1.2 * np.sin(ang)
        return c

    def batches(
        self, agent: int, n_agents: int, n_batches: int, batch_size: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Agent a's stream: ``n_batches`` batches (X (s, d), y (s,))."""
        r = np.random.default_rng([self.seed, agent, 2])
        W, c = self.projection(agent), self.centre(agent, n_agents)
        out = []
        for _ in range(n_batches):
            X = c + 0.7 * r.standard_normal((batch_size, self.d))
            y = self.latent(X @ W.T) + self.noise * r.standard_normal(batch_size)
            out.append((X, y))
        return out

    def test_set(self, agent: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """Held-out points over the whole domain for agent a: X (n, d), y (n,)."""
        r = np.random.default_rng([self.seed, 3])
        X = r.uniform(-2.0, 2.0, (n, self.d))
        r2 = np.random.default_rng([self.seed, agent, 4])
        y = self.latent(X @ self.projection(agent).T) + self.noise * r2.standard_normal(n)
        return X, y


# --------------------------------------------------------------------------- identity


def resolve_identity(
    agent_id: int | None, world: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, int | None, str]:
    """Agent id and world size from flags, else SLURM, Open MPI, PMI or torchrun variables.

    Returns
    -------
    (id, world or None, source)
    """
    env = os.environ if env is None else env
    if agent_id is not None:
        return agent_id, world, "flags"
    for rank_var, size_var, src in (
        ("SLURM_PROCID", "SLURM_NTASKS", "slurm"),
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "openmpi"),
        ("PMI_RANK", "PMI_SIZE", "pmi"),
        ("RANK", "WORLD_SIZE", "torchrun"),
    ):
        if rank_var in env:
            try:
                return int(env[rank_var]), int(env[size_var]) if size_var in env else world, src
            except ValueError:
                raise LaunchError(f"{rank_var}={env[rank_var]!r} is not an integer") from None
    raise LaunchError(
        "agent id unknown: pass --id, or run under SLURM (srun), Open MPI (mpirun) or torchrun"
    )


# --------------------------------------------------------------------------- rendezvous


def write_record(rdv: Path, agent_id: int, record: dict[str, Any]) -> None:
    """Atomically publish ``agent-<id>.json`` (temp file + rename)."""
    tmp = rdv / f".agent-{agent_id}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, rdv / f"agent-{agent_id}.json")


def read_records(rdv: Path, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
    """Published agent records (all, or those of ``ids`` that exist)."""
    out: dict[int, dict[str, Any]] = {}
    if ids is None:
        paths = sorted(rdv.glob("agent-*.json"))
    else:
        paths = [rdv / f"agent-{i}.json" for i in ids]
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        out[int(rec["id"])] = rec
    return out


# --------------------------------------------------------------------------- agent


def agent_main(args: argparse.Namespace) -> int:
    """Run one agent process until SIGINT/SIGTERM (``launch.py agent``)."""
    from .runner import configure_threads

    configure_threads()
    from ..fusion.encoding import EncodingSpec, make_encoding
    from ..protocol.zmq_transport import ZmqTransport
    from .agent import Agent
    from .config import AgentConfig, TimingConfig
    from .local_model import LocalModel, LocalModelConfig
    from .runner import run, setup_logging

    agent_id, world, source = resolve_identity(args.id, args.world)
    world = world or args.agents
    incarnation = time.time_ns()  # grows across restarts: a restart supersedes its past life
    setup_logging(agent_id, incarnation, args.log_file, args.log_level)
    rdv = Path(args.rendezvous) if args.rendezvous else None
    adjacency: Mapping[int, Sequence[int]] | None = None
    if args.neighbors is not None:
        nbrs = tuple(int(x) for x in args.neighbors.split(",") if x.strip())
    else:
        if args.peers:
            adjacency = load_peers_file(args.peers)
        elif rdv is not None and (rdv / "swarm.json").exists():
            sw = json.loads((rdv / "swarm.json").read_text())
            adjacency = {int(k): tuple(v) for k, v in sw["adjacency"].items()}
        else:
            adjacency = make_adjacency(args.topology, world, args.seed)
        nbrs = tuple(adjacency.get(agent_id, ()))
    task = SyntheticTask(args.seed, d=args.dim)
    data_cfg = None
    if args.data != "synthetic":
        from .data_feed import swarm_data_config

        if rdv is not None and (rdv / "swarm.json").exists():
            data_cfg = json.loads((rdv / "swarm.json").read_text()).get("data")
        if data_cfg is None:  # no launcher declared it: derive it as every agent would
            data_cfg = swarm_data_config(args, world)
    d_in = data_cfg["d"] if data_cfg is not None else task.d
    enc = make_encoding(EncodingSpec(d=d_in, m=args.inducing, seed=args.seed))
    model = LocalModel(
        enc,
        LocalModelConfig(
            encoder=args.encoder,
            samples=args.samples,
            learn=not args.no_learn,
            stream_batches=args.batches,
        ),
        np.random.default_rng([args.seed, agent_id, 5]),
    )
    timing = TimingConfig.fast(args.heartbeat)
    host = args.advertise_host or (
        "127.0.0.1" if args.bind.startswith("tcp://127.") else socket.gethostname()
    )
    transport = ZmqTransport(
        agent_id,
        enc.m,
        enc.hash,
        bind=args.bind,
        advertise_host=host if "*" in args.bind.split("//")[1].split(":")[0] else None,
    )
    cfg = AgentConfig(
        agent_id,
        nbrs,
        enc.m,
        enc.hash,
        incarnation=incarnation,
        timing=timing,
        max_dist=max(2, world or len(adjacency or ()) or 64),
        endpoint=transport.endpoint,
    )
    agent = Agent(cfg, model, time.monotonic(), np.random.default_rng([args.seed, agent_id, 6]))
    transport.on_reject = None  # the transport adds rejected.* to agent.counters itself
    transport.stats = agent.counters
    if rdv is not None:
        write_record(
            rdv,
            agent_id,
            {
                "id": agent_id,
                "endpoint": transport.endpoint,
                "incarnation": incarnation,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "identity": source,
            },
        )
        deadline = time.monotonic() + args.rendezvous_timeout
        while True:
            recs = read_records(rdv, nbrs)
            if len(recs) == len(nbrs) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        transport.connect_many({i: r["endpoint"] for i, r in recs.items()})
    if args.connect:
        for item in args.connect.split(","):
            pid, _, ep = item.partition("=")
            transport.connect(int(pid), ep)
    if data_cfg is not None:
        from .data_feed import DataFeed

        batches: Any = DataFeed(
            data_cfg, agent_id, args.batch_size, args.batches if args.batches > 0 else None
        )
    else:
        batches = task.batches(agent_id, world or 1, args.batches, args.batch_size)
    if args.loss > 0:
        _inject_loss(transport, args.loss, np.random.default_rng([args.seed, agent_id, 8]))
    return run(
        agent,
        transport,
        batches=batches,
        batch_interval_s=args.batch_interval,
        status_period_s=max(1.0, 10 * args.heartbeat),
    )


def _inject_loss(transport: Any, p: float, rng: np.random.Generator) -> None:
    # --loss on real processes: drop outbound agent messages with probability p (seeded)
    send = transport.send

    def lossy_send(dest: int, msg: Any) -> None:
        if dest < (1 << 62) and rng.random() < p:
            transport.stats["net.injected_loss"] += 1
            return
        send(dest, msg)

    transport.send = lossy_send


# --------------------------------------------------------------------------- local swarm


def _shared_argv(args: argparse.Namespace) -> list[str]:
    argv = [
        "--inducing",
        str(args.inducing),
        "--samples",
        str(args.samples),
        "--batches",
        str(args.batches),
        "--batch-size",
        str(args.batch_size),
        "--loss",
        str(args.loss),
        "--seed",
        str(args.seed),
        "--data",
        args.data,
        "--encoder",
        args.encoder,
        "--dim",
        str(args.dim),
        "--heartbeat",
        str(args.heartbeat),
        "--batch-interval",
        str(args.batch_interval),
        "--log-level",
        args.log_level,
    ]
    return argv + (["--no-learn"] if args.no_learn else [])


class LocalSwarm:
    """N agent processes on this machine, wired through a rendezvous directory.

    Parameters
    ----------
    args : argparse.Namespace
        Shared options (``--inducing``, ``--batches``, ...; see ``launch.py``).
    adjacency : mapping of int to sequence of int
    workdir : path
        Rendezvous directory (records, ``swarm.json``, per-agent logs).
    """

    def __init__(
        self, args: argparse.Namespace, adjacency: Mapping[int, Sequence[int]], workdir: Path
    ) -> None:
        self.args = args
        self.adjacency = {int(k): tuple(v) for k, v in adjacency.items()}
        self.n = len(self.adjacency)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "swarm.json").write_text(
            json.dumps(
                {"world": self.n, "adjacency": {str(k): list(v) for k, v in self.adjacency.items()}}
            )
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self._client: Any = None
        self._client_eps: dict[int, str] = {}

    # processes
    def command(self, i: int) -> list[str]:
        """The ``launch.py agent`` command line of agent i."""
        return [
            sys.executable,
            str(LAUNCH_PY),
            "agent",
            "--id",
            str(i),
            "--world",
            str(self.n),
            "--rendezvous",
            str(self.dir),
            "--log-file",
            str(self.dir / f"agent-{i}.log"),
            *_shared_argv(self.args),
        ]

    def spawn(self, i: int) -> None:
        """Start agent i (replacing its rendezvous record)."""
        (self.dir / f"agent-{i}.json").unlink(missing_ok=True)
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        err = open(self.dir / f"agent-{i}.stderr", "ab")  # noqa: SIM115 - owned by the child
        try:
            p = subprocess.Popen(
                self.command(i),
                stdin=subprocess.DEVNULL,
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
                raise LaunchError(f"agents {dead} exited during start-up; see {self.dir}")
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
        if self._client is not None:
            self._client.close()
            self._client = None

    # status
    def client(self, ids: Iterable[int]) -> Any:
        """A status client connected to the current endpoints of ``ids``."""
        from ..protocol.zmq_transport import StatusClient

        if self._client is None:
            self._client = StatusClient({})
        recs = read_records(self.dir, ids)
        for i, r in recs.items():
            if self._client_eps.get(i) != r["endpoint"]:
                self._client.add(i, r["endpoint"])
                self._client_eps[i] = r["endpoint"]
        return self._client

    def status(self, ids: Iterable[int], timeout_s: float = 2.0, **kw: Any) -> dict[int, Any]:
        """StatusReply of each agent in ``ids`` that answered in time."""
        ids = list(ids)
        return self.client(ids).query(ids, timeout_s=timeout_s, **kw)

    def check(self, ids: Sequence[int], replies: Mapping[int, Any]) -> tuple[bool, float]:
        """Whether agents ``ids`` all hold the exact sum of their local summaries."""
        if set(replies) != set(ids) or any(replies[i].fused is None for i in ids):
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
    ) -> tuple[dict[int, Any], float, float]:
        """Poll status until consistent; return (replies, max rel err, time it became so).

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
            full, err = self.check(ids, replies)
            if full and err <= tol:
                return replies, err, time.time()
            time.sleep(poll_s)
        raise LaunchError(f"no consistency within {timeout_s} s (max rel err {err:.3g})")


def _signal_group(p: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exact_sum(locals_: Iterable[Summary]) -> Summary:
    """``sum_a R_a - (A - 1) R_0`` over local summaries, in a fixed order."""
    ls = list(locals_)
    return fuse(ls, ls[0].m, ls[0].encoding_hash)


# --------------------------------------------------------------------------- local


def local_main(args: argparse.Namespace) -> int:
    """``launch.py local``: run a real swarm of agent processes over ZeroMQ and report."""
    from ..fusion.metrics import nlpd, rmse

    t0 = time.time()
    if args.peers:
        adjacency = load_peers_file(args.peers)
        topo = f"peers:{args.peers}"
    else:
        adjacency = make_adjacency(args.topology, args.agents, args.seed)
        topo = args.topology
    n = len(adjacency)
    data_cfg = None
    if args.data != "synthetic":
        from .data_feed import swarm_data_config

        progress(f"reading {args.data} once to declare the swarm's data config")
        data_cfg = swarm_data_config(args, n)
        n_sensors = len(data_cfg["sensors"])
        if n_sensors < n:  # one agent per sensor at most: every agent must have data
            progress(f"{n_sensors} sensors: running {n_sensors} agents instead of {n}")
            adjacency = make_adjacency(args.topology, n_sensors, args.seed)
            n = n_sensors
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="swarmgp-"))
    swarm = LocalSwarm(args, adjacency, workdir)
    if data_cfg is not None:
        sw_path = workdir / "swarm.json"
        sw = json.loads(sw_path.read_text())
        sw["data"] = data_cfg
        sw_path.write_text(json.dumps(sw))
    stop_now: dict[str, int | None] = {"sig": None}

    def on_signal(sig: int, _frame: Any) -> None:
        stop_now["sig"] = sig
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        progress(f"starting {n} agents on {topo} (rendezvous {workdir})")
        swarm.start(timeout_s=args.start_timeout)
        progress("all agents published endpoints; waiting for consistency")
        replies, err, t_cons = swarm.wait_consistent(timeout_s=args.timeout, tol=args.tol)
        last_obs = max((r.info.get("last_observation_wall") or t0) for r in replies.values())
        progress(f"consistent: max rel err {err:.2e}, {t_cons - t0:.2f} s after launch")
        task = SyntheticTask(args.seed, d=args.dim)
        y_scale = 1.0  # scores are reported in the target's own units
        if data_cfg is not None:
            from .data_feed import held_out_rows

            Xt, yt_shared, _ = held_out_rows(data_cfg, args.test_points, args.seed)
            y_scale = float(data_cfg["features"].get("y_std") or 1.0)
        else:
            Xt, _ = task.test_set(0, args.test_points)
        exact = exact_sum([replies[i].local for i in sorted(replies)])
        preds = swarm.status(sorted(replies), timeout_s=10.0, X=Xt, summary=exact)
        if set(preds) != set(replies):
            raise LaunchError("some agents did not answer the prediction query")
        m_loc, m_fus, m_orc = [], [], []

        def score(yt: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
            return (
                y_scale * rmse(yt, mean),
                nlpd(yt, mean, var) + float(np.log(y_scale)),
            )

        for i, r in sorted(preds.items()):
            yt = yt_shared if data_cfg is not None else task.test_set(i, args.test_points)[1]
            p = r.predictions
            m_loc.append(score(yt, p["mean_local"], p["var_local"]))
            m_fus.append(score(yt, p["mean_fused"], p["var_fused"]))
            m_orc.append(score(yt, p["mean_given"], p["var_given"]))
        final = swarm.status(sorted(replies), timeout_s=5.0)
        counters = [r.info.get("counters", {}) for r in final.values()]
        rss = [float(r.info.get("peak_rss_mb", 0.0)) for r in final.values()]
        report = {
            "agents": n,
            "topology": topo,
            "inducing": args.inducing,
            "samples": args.samples,
            "batches_per_agent": args.batches,
            "batch_size": args.batch_size,
            "loss": args.loss,
            "seed": args.seed,
            "learn": not args.no_learn,
            "rmse_local": float(np.mean([a for a, _ in m_loc])),
            "nlpd_local": float(np.mean([b for _, b in m_loc])),
            "rmse_fused": float(np.mean([a for a, _ in m_fus])),
            "nlpd_fused": float(np.mean([b for _, b in m_fus])),
            "rmse_oracle": float(np.mean([a for a, _ in m_orc])),
            "nlpd_oracle": float(np.mean([b for _, b in m_orc])),
            "consistency_max_rel_err": float(err),
            "baselines": {},
            "messages": int(sum(c.get("net.tx_msgs", 0) for c in counters)),
            "bytes": int(sum(c.get("net.tx_bytes", 0) for c in counters)),
            "fuse_messages": int(sum(c.get("tx.fuse", 0) for c in counters)),
            "rejected": int(
                sum(v for c in counters for k, v in c.items() if k.startswith("rejected."))
            ),
            "wall_s": time.time() - t0,
            "consistency_after_last_obs_s": t_cons - last_obs,
            "peak_rss_mb": max(rss) if rss else 0.0,
            "peak_rss_mb_total": float(sum(rss)),
            "fingerprints": sorted({r.info.get("fingerprint") for r in replies.values()}),
            "workdir": str(workdir),
        }
        progress(
            f"rmse local {report['rmse_local']:.4f} fused {report['rmse_fused']:.4f} "
            f"oracle {report['rmse_oracle']:.4f}; {report['messages']} messages, "
            f"{report['bytes'] / 1e6:.2f} MB"
        )
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=2))
            progress(f"report written to {args.report}")
        else:
            print(json.dumps(report, indent=2))
        return 0
    except KeyboardInterrupt:
        progress(
            f"interrupted ({signal.Signals(stop_now['sig'] or signal.SIGINT).name}); "
            "stopping agents"
        )
        return 130
    except LaunchError as e:
        progress(f"error: {e}")
        return 1
    finally:
        for s in old:  # stopping the agents must not itself be interrupted
            signal.signal(s, signal.SIG_IGN)
        swarm.stop()
        progress(f"stopped {len(swarm.all_procs)} agent processes")
        for s, h in old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- status


def status_main(args: argparse.Namespace) -> int:
    """``launch.py status``: query agents by endpoint (or every agent of a rendezvous dir)."""
    from ..protocol.zmq_transport import StatusClient

    eps: dict[int, str] = {}
    if args.rendezvous:
        eps.update({i: r["endpoint"] for i, r in read_records(Path(args.rendezvous)).items()})
    for k, ep in enumerate(args.endpoints):
        eps[-1 - k] = ep
    if not eps:
        progress("status: give endpoints or --rendezvous DIR")
        return 2
    client = StatusClient(eps)
    try:
        replies = client.query(timeout_s=args.timeout)
    finally:
        client.close()
    rows = []
    for key in sorted(eps):
        r = replies.get(key)
        if r is None:
            rows.append({"endpoint": eps[key], "error": "no reply"})
            continue
        info = dict(r.info)
        c = info.pop("counters", {})
        info["health"] = {
            k: v for k, v in c.items() if k.startswith(("rejected.", "drop.", "expired", "net."))
        }
        rows.append(info)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['endpoint']}: {row['error']}")
                continue
            health: dict[str, int] = row["health"]  # type: ignore[assignment]
            bad = sum(v for k, v in health.items() if k.startswith("rejected."))
            print(
                f"agent {row['id']} inc {row['incarnation']}: covers {row['n_agents']} agents "
                f"{row['n_obs']} obs (local {row['local_n_obs']}); root {row['root']} dist "
                f"{row['dist']} parent {row['parent']} tree {row['tree_neighbors']}; live peers "
                f"{row['live_peers']}; rejected {bad}; fingerprint {row['fingerprint']}"
            )
    return 0 if len(replies) == len(eps) else 1
