"""One typed, frozen configuration of a run, from the command line or a TOML file.

A run (``launch.py sim``, ``local`` or ``agent``) is described by one :class:`RunConfig` made of
sections: :class:`SwarmConfig`, :class:`ModelConfig`, :class:`DataConfig`,
:class:`RunTiming`, :class:`FaultConfig`, :class:`ScoringConfig`, :class:`ProcessConfig` and
:class:`OutputConfig`. Every setting has ONE name: the field ``batch_size`` is the flag
``--batch-size`` and the TOML key ``batch_size`` (in its section, or at the top level). The
parser in ``launch.py`` is generated from these fields (:func:`add_config_options`), so a flag
and its field cannot drift apart. Library code takes these objects, never an argparse
``Namespace`` or a dict.

Values are checked when a section is built; a bad one raises :class:`ConfigError` with one
line naming the option, what was given and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from swarmgp.agents.collective_model import DEFAULT_MAX_EVALS, DEFAULT_STARTS
from swarmgp.agents.config import ConfigError
from swarmgp.agents.topology import TOPOLOGIES

__all__ = [
    "COMMANDS",
    "ConfigError",
    "DataConfig",
    "FaultConfig",
    "ModelConfig",
    "OutputConfig",
    "ProcessConfig",
    "RunConfig",
    "RunTiming",
    "ScoringConfig",
    "SwarmConfig",
    "add_config_options",
    "config_from_namespace",
    "dump_toml",
    "load_toml",
    "settings_of",
]

#: The run commands that take a :class:`RunConfig`.
COMMANDS = ("sim", "local", "agent")
_ALL = frozenset(COMMANDS)
_REAL = frozenset({"local", "agent"})

Check = Callable[[Any], str | None]


def _opt(
    default: Any,
    help: str,
    *,
    commands: frozenset[str] = _ALL,
    check: Check | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    per_command: Mapping[str, Any] | None = None,
    repeat: bool = False,
) -> Any:
    """A config field with its flag's help, commands, check and per-command default."""
    meta = {
        "help": help,
        "commands": commands,
        "check": check,
        "metavar": metavar,
        "choices": choices,
        "per_command": dict(per_command or {}),
        "repeat": repeat,
    }
    return field(default=default, metadata=meta)


def at_least(lo: float) -> Check:
    """Check: a number ``>= lo`` (None passes: 'not set')."""
    return lambda v: None if v is None or v >= lo else f"must be >= {lo:g}"


def above(lo: float) -> Check:
    """Check: a finite number ``> lo``."""
    return lambda v: None if v is None or (math.isfinite(v) and v > lo) else f"must be > {lo:g}"


def probability(v: Any) -> str | None:
    """Check: a probability in [0, 1)."""
    return None if v is None or 0.0 <= v < 1.0 else "must be a probability in [0, 1)"


class _Section:
    """Validation shared by every section: run each field's check."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if isinstance(value, float) and f.type in ("float", "float | None"):
                if not math.isfinite(value):
                    raise ConfigError(f"--{_flag(f.name)}: got {value!r}, must be finite")
            if check is not None:
                why = check(value)
                if why:
                    raise ConfigError(f"--{_flag(f.name)}: got {value!r}, {why}")


@dataclass(frozen=True)
class SwarmConfig(_Section):
    """Who is in the swarm and how they are wired."""

    agents: int | None = _opt(
        None,
        "number of agents (default: one per distinct --agent-column value, else 8)",
        check=at_least(1),
        metavar="N",
    )
    topology: str = _opt("ring", "neighbour graph", choices=TOPOLOGIES)
    peers: str | None = _opt(None, "neighbour graph from a peers file", metavar="FILE")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The local sparse GP of every agent."""

    mode: str = _opt(
        "collective",
        "collective: the swarm learns shared hyperparameters, then streams exactly; "
        "paper: COOL-GP's per-agent q(W)",
        choices=("collective", "paper"),
    )
    inducing: int = _opt(50, "inducing inputs m", check=at_least(1), metavar="m")
    samples: int = _opt(20, "samples M of W for the importance encoder", check=at_least(1))
    learn: bool = _opt(True, "learn hyperparameters (--no-learn: freeze the shared initial ones)")
    warmup_batches: int = _opt(
        2, "collective: batches each agent buffers for the swarm's warm-up fit", check=at_least(1)
    )
    site_effect: bool = _opt(
        False,
        "collective: per-agent offset b_a ~ N(0, tau^2) (one per agent; tau and sigma_n learned "
        "in the warm-up, then frozen; an unseen site adds tau^2)",
    )
    static_share: float = _opt(
        0.25,
        "collective: share of the inducing inputs given to a static component, a field over the "
        "inputs other than --time-column that persists in time (when the time column is an "
        "input and without --site-effect; 0: none)",
        check=probability,
    )
    warmup_starts: int = _opt(
        DEFAULT_STARTS,
        "collective: starts of the warm-up fit (initial length-scales geometric from half the "
        "box down to its inducing spacing, a 1/m-th); each is probed, the best goes on",
        check=at_least(1),
    )
    warmup_evals: int = _opt(
        DEFAULT_MAX_EVALS,
        "collective: most L-BFGS evaluations of the warm-up, every start together (each is "
        "two all-reduces over the tree); the best start's fit stops earlier once its last 8 "
        "evaluations gained under a nat each",
        check=at_least(1),
    )
    inducing_init: str = _opt(
        "halton",
        "collective: starting inducing inputs: a shared hash sample of the warm-up's inputs "
        "(data), or the Halton design over the agreed box (halton)",
        choices=("data", "halton"),
    )
    encoder: str = _opt(
        "analytic",
        "exact per-batch encoder, or the paper's importance-sampled one",
        choices=("analytic", "importance"),
    )


@dataclass(frozen=True)
class DataConfig(_Section):
    """Where observations come from, how they are split over agents, what is held out."""

    data: str = _opt("synthetic", "data source URI: synthetic (default), csv:PATH, ...")
    agent_column: str | None = _opt(None, "column naming the sensor (one agent per value)")
    inputs: tuple[str, ...] | None = _opt(None, "input columns", metavar="A,B,...")
    target: str | None = _opt(None, "target column (default: the table's last column)")
    time_column: str = _opt(
        "t", "time column (none: untimed rows, a row's time its line number)", metavar="COL"
    )
    batches: int | None = _opt(
        None,
        "batches per agent (default: all of each agent's rows on table data, 5 on synthetic)",
        check=at_least(1),
        metavar="B",
    )
    batch_size: int = _opt(50, "observations per batch", check=at_least(1), metavar="S")
    holdout: str = _opt(
        "random",
        "held-out test rows: random rows, or whole days (int(t) %% holdout-every == 0)",
        choices=("random", "time"),
    )
    holdout_every: int = _opt(
        10, "with --holdout time: every K-th day is held out", check=at_least(2)
    )
    order: str = _opt(
        "random", "order of each agent's rows on table data", choices=("random", "time")
    )
    features: str | None = _opt(
        None, "declared FeatureConfig JSON shared by the swarm", metavar="FILE"
    )
    pre_read: bool = _opt(
        True,
        "read a table file once before the agents start (sensor list, standardization); "
        "--no-pre-read streams it like a live feed (push feeds and jsonl:- never are)",
        commands=_REAL,
    )
    input_range: tuple[str, ...] = _opt(
        (),
        "collective: declared range NAME=LO:HI of an input (its inducing box; e.g. t=0:6574 so "
        "a time-ordered stream's later times are covered); repeatable",
        metavar="NAME=LO:HI",
        repeat=True,
    )  # collective mode (issue 9)
    dim: int = _opt(2, "synthetic: input dimension", check=at_least(1))
    groups: int = _opt(
        1,
        "synthetic: phenomena the agents see (agent a sees u through W_g, g = a mod G)",
        check=at_least(1),
    )
    spread: float = _opt(0.3, "synthetic: W_g = I + spread * N(0,1)/sqrt(d)", check=at_least(0.0))
    noise: float = _opt(0.1, "synthetic: observation noise std", check=above(0.0))


@dataclass(frozen=True)
class RunTiming(_Section):
    """Protocol periods, in seconds of the driver's clock (virtual in ``sim``, wall otherwise)."""

    heartbeat: float = _opt(
        0.5,
        "beacon period in seconds (peer timeouts are several beacons; local: unless given, "
        "raised so a large swarm's beacons use at most half of this machine's cores)",
        check=above(0.0),
        per_command={"local": 0.1, "agent": 0.1},
        metavar="S",
    )
    fuse_interval: float = _opt(
        0.05,
        "coalescing interval of fusion rounds, seconds",
        check=at_least(0.0),
        per_command={"local": 0.005, "agent": 0.005},
        metavar="S",
    )
    batch_interval: float = _opt(
        1.0,
        "seconds between an agent's batches (0 in local/agent: as fast as they come)",
        check=at_least(0.0),
        per_command={"local": 0.0, "agent": 0.0},
        metavar="S",
    )
    fusion: str = _opt(
        "rounds",
        "fusion protocol on the spanning tree: 'rounds' (default) sends a changed message when "
        "the change round it is complete for advances (convergecast up, broadcast down; about "
        "one message per tree edge and direction per round) and resends only unacknowledged "
        "ones; 'tree' sends a message per change (coalesced by --fuse-interval) and resends all "
        "periodically",
        choices=("tree", "rounds"),
    )


@dataclass(frozen=True)
class FaultConfig(_Section):
    """Injected faults (``local``/``agent`` honour ``loss``; the simulator all of them)."""

    loss: float = _opt(0.0, "probability of dropping each message", check=probability, metavar="p")
    bursty: float | None = _opt(
        None,
        "Gilbert-Elliott bursty loss of this mean rate instead of Bernoulli",
        commands=frozenset({"sim"}),
        check=probability,
        metavar="p",
    )
    duplicate: float = _opt(
        0.0,
        "probability of duplicating a message",
        commands=frozenset({"sim"}),
        check=probability,
        metavar="p",
    )
    reorder: float = _opt(
        0.0,
        "probability of reordering a message",
        commands=frozenset({"sim"}),
        check=probability,
        metavar="p",
    )
    latency: float = _opt(
        0.005,
        "base link latency, seconds",
        commands=frozenset({"sim"}),
        check=at_least(0.0),
        metavar="S",
    )
    jitter: float = _opt(
        0.005,
        "link latency jitter, seconds",
        commands=frozenset({"sim"}),
        check=at_least(0.0),
        metavar="S",
    )
    churn_rate: float = _opt(
        0.0,
        "departures per virtual second (each restarts shortly after)",
        commands=frozenset({"sim"}),
        check=at_least(0.0),
        metavar="R",
    )
    churn: tuple[tuple[float, int, str], ...] = _opt(
        (),
        "one churn event T:AGENT:KIND (KIND crash|leave|join|restart); repeatable",
        commands=frozenset({"sim"}),
        metavar="T:AGENT:KIND",
        repeat=True,
    )
    partition: tuple[tuple[float, float, tuple[tuple[int, ...], ...]], ...] = _opt(
        (),
        "isolate agents A,B,.. from the rest during [T0, T1); repeatable",
        commands=frozenset({"sim"}),
        metavar="T0:T1:A,B,..",
        repeat=True,
    )


@dataclass(frozen=True)
class ScoringConfig(_Section):
    """How a run is judged and when it is done."""

    test_points: int = _opt(
        500,
        "held-out points to score on",
        check=at_least(1),
        per_command={"local": 200, "agent": 200},
    )
    tol: float = _opt(1e-9, "consistency tolerance (max relative difference)", check=above(0.0))
    max_settle: float = _opt(
        120.0,
        "virtual seconds to wait for consistency after the data",
        commands=frozenset({"sim"}),
        check=above(0.0),
        metavar="S",
    )
    probe: float = _opt(
        0.5,
        "virtual seconds between consistency probes",
        commands=frozenset({"sim"}),
        check=above(0.0),
        metavar="S",
    )
    score_agents: int = _opt(
        1000,
        "score at most this many agents (a seeded sample)",
        commands=frozenset({"sim"}),
        check=at_least(1),
    )
    series_agents: int = _opt(
        16, "agents scored after every batch round", commands=frozenset({"sim"}), check=at_least(1)
    )
    series_test: int = _opt(
        200, "test points of the per-round series", commands=frozenset({"sim"}), check=at_least(1)
    )
    baselines: tuple[str, ...] = _opt(
        ("local", "oracle", "gpoe", "rbcm", "dpitc"),
        "comma list of local,oracle,gpoe,rbcm,dpitc,sgpr_pooled ('' for none; sgpr_pooled, the"
        " centralized GPyTorch SGPR on the pooled data, is costly and off by default)",
        commands=frozenset({"sim"}),
        check=lambda v: (
            None
            if set(v) <= {"local", "oracle", "gpoe", "rbcm", "dpitc", "sgpr_pooled"}
            else "allowed: local,oracle,gpoe,rbcm,dpitc,sgpr_pooled"
        ),
    )
    sgpr_iters: int = _opt(
        150,
        "Adam steps of the pooled SGPR baseline",
        commands=frozenset({"sim"}),
        check=at_least(1),
    )
    sgpr_max_points: int = _opt(
        20000,
        "pooled SGPR baseline: at most this many points",
        commands=frozenset({"sim"}),
        check=at_least(1),
    )
    newcomers: int = _opt(
        0,
        "withhold N of the data's agents; after settling, each joins with k = 0, 5, 10, 20, 50"
        " of its rows: collective vs local RMSE/NLPD on its own held-out rows (report"
        " 'newcomers')",
        commands=frozenset({"sim"}),
        check=at_least(0),
        metavar="N",
    )
    timeout: float = _opt(
        120.0,
        "seconds to wait for consistency",
        commands=frozenset({"local"}),
        check=above(0.0),
        metavar="S",
    )
    duration: float | None = _opt(
        None,
        "ingest for S seconds of wall time, then stop ingesting (rows received are still "
        "learned), let the swarm agree and report (a live feed that never ends; sim records "
        "the feed for S seconds, then simulates it)",
        commands=_ALL,
        check=above(0.0),
        metavar="S",
    )


@dataclass(frozen=True)
class ProcessConfig(_Section):
    """Real agent processes: identity, rendezvous, sockets, logs."""

    id: int | None = _opt(
        None,
        "agent id (else SLURM/Open MPI/PMI/torchrun rank)",
        commands=frozenset({"agent"}),
        check=at_least(0),
    )
    world: int | None = _opt(
        None,
        "number of agents (else from the environment)",
        commands=frozenset({"agent"}),
        check=at_least(1),
    )
    rendezvous: str | None = _opt(
        None, "shared directory for endpoints", commands=frozenset({"agent"}), metavar="DIR"
    )
    rendezvous_timeout: float = _opt(
        60.0,
        "seconds to wait for neighbours' endpoints",
        commands=frozenset({"agent"}),
        check=above(0.0),
        metavar="S",
    )
    join_alone: bool = _opt(
        False,
        "run even if neighbours never publish within --rendezvous-timeout (else exit 1)",
        commands=frozenset({"agent"}),
    )
    until: str = _opt(
        "consistent",
        "consistent: exit 0 once the data has ended and the swarm holds one collective model "
        "(after --report); never: serve until SIGINT/SIGTERM",
        commands=frozenset({"agent"}),
        choices=("consistent", "never"),
    )
    neighbors: tuple[int, ...] | None = _opt(
        None, "neighbour ids (overrides graphs)", commands=frozenset({"agent"}), metavar="I,J,..."
    )
    connect: tuple[str, ...] | None = _opt(
        None, "explicit neighbour endpoints", commands=frozenset({"agent"}), metavar="ID=EP,..."
    )
    bind: str = _opt(
        "tcp://127.0.0.1:*",
        "ROUTER bind address (tcp://*:* on a cluster)",
        commands=frozenset({"agent"}),
    )
    advertise_host: str | None = _opt(
        None, "host name peers use to reach this agent", commands=frozenset({"agent"})
    )
    keys: str | None = _opt(
        None,
        "swarm keyring directory (launch.py keys): CURVE-authenticated peers only",
        commands=_REAL,
        metavar="DIR",
    )
    # durable agents (issue 10)
    state_dir: str | None = _opt(
        None,
        "snapshot the agent's state here and restore it on restart ({id}: the agent id; "
        "local: DIR/agent-<i>)",
        commands=_REAL,
        metavar="DIR",
    )
    snapshot_every: int = _opt(
        1, "with --state-dir: snapshot after every K batches", commands=_REAL,
        check=at_least(1), metavar="K",
    )  # fmt: skip
    metrics_port: int | None = _opt(
        None,
        "serve Prometheus metrics on 127.0.0.1:N (local: agent i on N+i); needs "
        "prometheus_client (pip install 'swarmgp[metrics]')",
        commands=_REAL,
        check=lambda v: None if v is None or 0 <= v <= 65535 else "must be a port 0..65535",
        metavar="N",
    )
    log_file: str | None = _opt(
        None, "log here instead of stderr", commands=frozenset({"agent"}), metavar="PATH"
    )
    log_level: str = _opt(
        "INFO", "log level", commands=_REAL, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: str = _opt(
        "kv",
        "agent log lines: key=value text or one JSON object",
        commands=_REAL,
        choices=("kv", "json"),
    )
    start_timeout: float = _opt(
        60.0,
        "seconds for every agent to start and publish",
        commands=frozenset({"local"}),
        check=above(0.0),
        metavar="S",
    )
    workdir: str | None = _opt(
        None,
        "rendezvous/log directory (default: a new temp dir)",
        commands=frozenset({"local"}),
        metavar="DIR",
    )
    zygote: bool = _opt(
        True,
        "fork agents from one helper process that imported the agent code once (fast start-up);"
        " --no-zygote: start each agent as a new python process",
        commands=frozenset({"local"}),
    )


@dataclass(frozen=True)
class OutputConfig(_Section):
    """What a run writes."""

    report: str | None = _opt(None, "write the JSON run report here", metavar="PATH")
    plot: str | None = _opt(None, "write a plot here", metavar="PATH")
    quiet: bool = _opt(False, "no progress bar", commands=frozenset({"sim"}))


_SECTIONS: dict[str, type[Any]] = {
    "swarm": SwarmConfig,
    "model": ModelConfig,
    "data": DataConfig,
    "timing": RunTiming,
    "faults": FaultConfig,
    "scoring": ScoringConfig,
    "process": ProcessConfig,
    "output": OutputConfig,
}


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on. Build with :meth:`make`, from flags, or from TOML.

    Attributes
    ----------
    command : {"sim", "local", "agent"}
    seed : int
        Root of every random choice.
    swarm, model, data, timing, faults, scoring, process, output
        The sections (see their classes).
    given : frozenset of str
        The settings set explicitly (a flag, a ``--config`` file, a keyword of :meth:`make`
        or :meth:`replace`); the others hold their defaults. A driver may choose a value
        for a setting that is not given (``local``: a heartbeat floor for large swarms).
        Not part of equality.
    """

    command: str = "sim"
    seed: int = 0
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    timing: RunTiming = field(default_factory=RunTiming)
    faults: FaultConfig = field(default_factory=FaultConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    given: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ConfigError(f"command: got {self.command!r}, allowed: {', '.join(COMMANDS)}")
        if self.seed < 0:
            raise ConfigError(f"--seed: got {self.seed}, must be >= 0")

    @classmethod
    def make(cls, command: str = "sim", **settings: Any) -> RunConfig:
        """A config from flat settings named as their fields (``agents=8, loss=0.1``).

        Settings a command does not take keep their defaults; per-command defaults apply.

        Raises
        ------
        ConfigError
            An unknown name or a bad value.
        """
        return _build(command, settings)

    def replace(self, **settings: Any) -> RunConfig:
        """A copy with some flat settings replaced (``cfg.replace(loss=0.2)``)."""
        flat = self.flat()
        unknown = set(settings) - set(flat)
        if unknown:
            raise ConfigError(f"unknown setting {sorted(unknown)[0]!r}")
        flat.update(settings)
        command = flat.pop("command")
        return _build(command, flat, per_command_defaults=False, given=self.given | set(settings))

    def flat(self) -> dict[str, Any]:
        """Every setting by its one name (``command`` and ``seed`` included)."""
        out: dict[str, Any] = {"command": self.command, "seed": self.seed}
        for name in _SECTIONS:
            out.update(dataclasses.asdict(getattr(self, name)))
        return out

    def public(self) -> dict[str, Any]:
        """JSON-ready nested form (for reports): ``{section: {field: value}}``."""
        out: dict[str, Any] = {"command": self.command, "seed": self.seed}
        for name in _SECTIONS:
            out[name] = _jsonable(dataclasses.asdict(getattr(self, name)))
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _field_index() -> dict[str, tuple[str, dataclasses.Field[Any]]]:
    idx: dict[str, tuple[str, dataclasses.Field[Any]]] = {}
    for sec, cls in _SECTIONS.items():
        for f in fields(cls):
            assert f.name not in idx, f"setting {f.name} named twice"  # one name per setting
            idx[f.name] = (sec, f)
    return idx


_INDEX = _field_index()


def _build(
    command: str,
    settings: Mapping[str, Any],
    per_command_defaults: bool = True,
    given: Iterable[str] | None = None,
) -> RunConfig:
    """The config of ``command`` from flat ``settings``; ``given``: the settings set
    explicitly (default: every key of ``settings``)."""
    if command not in COMMANDS:
        raise ConfigError(f"command: got {command!r}, allowed: {', '.join(COMMANDS)}")
    per_sec: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    seed = 0
    for key, value in settings.items():
        if key == "seed":
            seed = _coerce_int("seed", value)
            continue
        if key not in _INDEX:
            raise ConfigError(f"unknown setting {key!r}")
        sec, f = _INDEX[key]
        per_sec[sec][key] = _coerce(f, value)
    if per_command_defaults:
        for key, (sec, f) in _INDEX.items():
            pc = f.metadata.get("per_command", {})
            if key not in per_sec[sec] and command in pc:
                per_sec[sec][key] = pc[command]
    try:
        sections = {s: _SECTIONS[s](**kw) for s, kw in per_sec.items()}
    except TypeError as exc:  # a value of the wrong kind slipped past coercion
        raise ConfigError(str(exc)) from None
    explicit = frozenset(settings if given is None else given) - {"command"}
    return RunConfig(command=command, seed=seed, given=explicit, **sections)  # type: ignore[arg-type]


def _hint(f: dataclasses.Field[Any]) -> str:
    return str(f.type)


def _coerce_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected an integer") from None


def _coerce_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected a number") from None


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(p).strip() for p in value]


def _churn(spec: Any) -> tuple[float, int, str]:
    if isinstance(spec, list | tuple) and len(spec) == 3:
        t, a, kind = spec
    else:
        try:
            t, a, kind = str(spec).split(":")
        except ValueError:
            raise ConfigError(f"--churn: got {spec!r}, expected T:AGENT:KIND") from None
    if kind not in ("crash", "leave", "join", "restart"):
        raise ConfigError(f"--churn: got {spec!r}, KIND must be crash, leave, join or restart")
    return _coerce_float("churn", t), _coerce_int("churn", a), str(kind)


def _partition(spec: Any) -> tuple[float, float, tuple[tuple[int, ...], ...]]:
    """``T0:T1:A,B,..`` (one isolated group) or ``[t0, t1, [[a, b], [c, d]]]`` (groups)."""
    if isinstance(spec, list | tuple) and len(spec) == 3:
        t0, t1, ids = spec
    else:
        try:
            t0, t1, ids = str(spec).split(":")
        except ValueError:
            raise ConfigError(f"--partition: got {spec!r}, expected T0:T1:A,B,..") from None
    items = list(ids) if isinstance(ids, list | tuple | frozenset | set) else _split(ids)
    if items and all(isinstance(g, list | tuple | frozenset | set) for g in items):
        groups = tuple(tuple(sorted(_coerce_int("partition", a) for a in g)) for g in items)
    else:
        groups = (tuple(sorted(_coerce_int("partition", a) for a in items)),)
    t0f, t1f = _coerce_float("partition", t0), _coerce_float("partition", t1)
    if not (t0f < t1f and all(groups)):
        raise ConfigError(f"--partition: got {spec!r}, need T0 < T1 and at least one agent")
    return t0f, t1f, groups


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Map a flag string or a TOML value onto the field's type."""
    name, typ = f.name, _hint(f)
    if value is None:
        return None
    if name == "churn":
        return tuple(_churn(v) for v in value)
    if name == "partition":
        return tuple(_partition(v) for v in value)
    if typ.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected true or false")
    if typ.startswith("int"):
        return _coerce_int(name, value)
    if typ.startswith("float"):
        return _coerce_float(name, value)
    if typ.startswith("tuple[int"):
        return tuple(_coerce_int(name, v) for v in _split(value))
    if typ.startswith("tuple[str"):
        return tuple(_split(value))
    if not isinstance(value, str):
        raise ConfigError(f"--{_flag(name)}: got {value!r}, expected a string")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"--{_flag(name)}: got {value!r}, allowed: {', '.join(choices)}")
    return value


# ----------------------------------------------------------------------------- TOML and flags


def load_toml(path: str | Path) -> dict[str, Any]:
    """Flat settings from a TOML file: sections ``[swarm]``, ``[model]``, ... or top-level keys.

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, an unknown section or key.
    """
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            if key not in _SECTIONS:
                raise ConfigError(f"--config {path}: unknown section [{key}]")
            for k, v in value.items():
                if k not in _INDEX or _INDEX[k][0] != key:
                    raise ConfigError(f"--config {path}: unknown key {k!r} in [{key}]")
                flat[k] = v
        else:
            if key != "seed" and key not in _INDEX:
                raise ConfigError(f"--config {path}: unknown key {key!r}")
            flat[key] = value
    return flat


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} as TOML")


def dump_toml(cfg: RunConfig) -> str:
    """The config as TOML (sections as in :func:`load_toml`; unset settings left out)."""
    lines = [f"seed = {cfg.seed}"]
    for name in _SECTIONS:
        lines.append(f"\n[{name}]")
        for k, v in dataclasses.asdict(getattr(cfg, name)).items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def add_config_options(p: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of every setting ``command`` takes (defaults are left to the config)."""
    p.add_argument("--config", metavar="FILE.toml", help="read settings from TOML; flags override")
    p.add_argument("--seed", default=argparse.SUPPRESS, help="seed of every random choice (0)")
    for sec, cls in _SECTIONS.items():
        g = p.add_argument_group(sec)
        for f in fields(cls):
            if command not in f.metadata["commands"]:
                continue
            flag = "--" + _flag(f.name)
            default = f.metadata["per_command"].get(command, f.default)
            shown = (
                ",".join(default)
                if isinstance(default, tuple) and default and isinstance(default[0], str)
                else default
            )
            helptext = (
                f"{f.metadata['help']} ({shown})"
                if shown not in (None, (), False, True)
                else f.metadata["help"]
            )
            kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": helptext}
            if _hint(f).startswith("bool"):
                if f.default is True:  # --learn / --no-learn
                    kw["action"] = argparse.BooleanOptionalAction
                else:
                    kw["action"] = "store_true"
            else:
                if f.metadata["metavar"]:
                    kw["metavar"] = f.metadata["metavar"]
                if f.metadata["choices"]:
                    kw["choices"] = f.metadata["choices"]
                if f.metadata["repeat"]:
                    kw["action"] = "append"
            g.add_argument(flag, **kw)


def config_from_namespace(command: str, given: Mapping[str, Any]) -> RunConfig:
    """The run config of ``command`` from parsed flags (only those given) over ``--config``.

    Raises
    ------
    ConfigError
        A bad value in the file or the flags (one line naming the option).
    """
    flags = dict(given)
    path = flags.pop("config", None)
    settings = load_toml(path) if path else {}
    for key in list(settings):
        if key != "seed" and command not in _INDEX[key][1].metadata["commands"]:
            settings.pop(key)  # a shared file may hold settings of other commands
    settings.update(flags)
    return _build(command, settings)


def settings_of(command: str) -> Iterable[str]:
    """Names of the settings ``command`` takes."""
    return [k for k, (_, f) in _INDEX.items() if command in f.metadata["commands"]]
