"""``open_source(uri, ...)``: pick and build a source from a URI or a small config.

URIs::

    csv:PATH[?agent=station&time=t&inputs=lon,lat,t&target=wind_knots&speed=10x&time_unit_s=86400]
    jsonl:PATH | jsonl:-                        (JSON Lines file, or standard input)
    parquet:PATH[?...]                          (needs pyarrow)
    zmq+sub://HOST:PORT/TOPIC[?idle=5&hwm=10000]  (ZeroMQ SUB; topic may be empty)
    mqtt://HOST[:PORT]/TOPIC[?qos=1&idle=5]     (needs paho-mqtt>=2; topic may hold / + #)
    synthetic:agents=4,d=2,n=1000,seed=0,noise=0.1

Query options of the file sources: ``agent`` (``none`` = single agent), ``time``,
``inputs`` (comma separated), ``target``, ``d``, ``speed``, ``time_unit_s``,
``on_bad``; the push feeds also take the column options (``agent`` ... ``d``), ``idle``
(seconds without a message that end the stream), ``qos`` and ``client_id`` (MQTT) and ``hwm``
(ZeroMQ). Keyword arguments override the URI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO, Any
from urllib.parse import parse_qsl

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.replay import Pacer
from swarmgp.agents.sources.schema import ColumnSchema

__all__ = ["open_source", "parse_uri", "SCHEMES"]

SCHEMES = ("csv", "jsonl", "parquet", "zmq+sub", "mqtt", "synthetic")


def parse_uri(uri: str) -> tuple[str, str, dict[str, str]]:
    """Split a URI into ``(scheme, target, options)``.

    Raises
    ------
    SourceConfigError
        For an unknown scheme or a missing target.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in SCHEMES:
        raise SourceConfigError(f"unknown source URI {uri!r}: expected one of {SCHEMES}")
    opts: dict[str, str] = {}
    if scheme in ("zmq+sub", "mqtt"):
        if not rest.startswith("//"):
            raise SourceConfigError(f"{uri!r}: expected {scheme}://host:port/topic")
        target, q, query = rest[2:].partition("?")  # options: ?qos=1&idle=5&agent=station
        if q:
            opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        return scheme, target, opts
    if scheme == "synthetic":
        text = rest.lstrip("?")
        for part in text.replace("&", ",").split(","):
            if part.strip():
                k, eq, v = part.partition("=")
                if not eq:
                    raise SourceConfigError(f"{uri!r}: option {part!r} is not key=value")
                opts[k.strip()] = v.strip()
        return scheme, "", opts
    target, q, query = rest.partition("?")
    if q:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    if not target:
        raise SourceConfigError(f"{uri!r}: missing path")
    return scheme, target, opts


def _schema_from(opts: dict[str, str], base: ColumnSchema | None) -> ColumnSchema | None:
    keys = {"agent", "time", "inputs", "target", "d"}
    if not keys & set(opts):
        return base
    kw = base.to_dict() if base is not None else ColumnSchema().to_dict()
    for k in keys & set(opts):
        v = opts.pop(k)
        if k == "inputs":
            kw[k] = tuple(s.strip() for s in v.split(",") if s.strip())
        elif k == "agent":
            kw[k] = None if v.lower() in ("", "none") else v
        elif k == "d":
            kw[k] = int(v)
        else:
            kw[k] = v
    return ColumnSchema.from_dict(kw)


def _host_port(target: str, default_port: int | None, uri: str) -> tuple[str, int, str]:
    hostport, _, topic = target.partition("/")
    host, colon, port = hostport.rpartition(":")
    if not colon:
        host, port = hostport, ""
    if not host:
        raise SourceConfigError(f"{uri!r}: missing host")
    if not port:
        if default_port is None:
            raise SourceConfigError(f"{uri!r}: missing port")
        return host, default_port, topic
    try:
        return host, int(port), topic
    except ValueError:
        raise SourceConfigError(f"{uri!r}: bad port {port!r}") from None


#: Push-feed options settable in the URI query: name -> (keyword, type, schemes).
_PUSH_OPTIONS: dict[str, tuple[str, Callable[[str], Any], tuple[str, ...]]] = {
    "idle": ("idle_timeout_s", float, ("zmq+sub", "mqtt")),
    "idle_timeout_s": ("idle_timeout_s", float, ("zmq+sub", "mqtt")),
    "qos": ("qos", int, ("mqtt",)),
    "client_id": ("client_id", str, ("mqtt",)),
    "connect_timeout_s": ("connect_timeout_s", float, ("mqtt",)),
    "hwm": ("rcvhwm", int, ("zmq+sub",)),
}


def _push_options(scheme: str, opts: dict[str, str], uri: str) -> dict[str, Any]:
    """Keyword arguments of a push source from its URI query (``?qos=1&idle=5``); consumed
    entries are removed from ``opts``.

    Raises
    ------
    SourceConfigError
        A value of the wrong type, or an option of another scheme.
    """
    out: dict[str, Any] = {}
    for name in list(opts):
        spec = _PUSH_OPTIONS.get(name)
        if spec is None or scheme not in spec[2]:
            continue
        key, typ, _ = spec
        text = opts.pop(name)
        try:
            value = typ(text)
        except ValueError:
            raise SourceConfigError(
                f"{uri!r}: option {name}={text!r} is not a {typ.__name__}"
            ) from None
        if key == "idle_timeout_s" and not value > 0:
            raise SourceConfigError(f"{uri!r}: option {name} must be > 0 seconds")
        if key == "qos" and value not in (0, 1, 2):
            raise SourceConfigError(f"{uri!r}: option qos must be 0, 1 or 2")
        out[key] = value
    return out


def open_source(
    uri: str | Mapping[str, Any],
    *,
    schema: ColumnSchema | Mapping[str, Any] | None = None,
    speed: float | str | None = None,
    time_unit_s: float | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
    keep: Callable[[Observation], bool] | None = None,
    on_bad: str | None = None,
    stream: IO[str] | None = None,
    **options: Any,
) -> Source:
    """Build the source named by ``uri``.

    Parameters
    ----------
    uri : str or mapping
        A URI (see module doc), or a config ``{"uri": ..., "schema": {...}, "speed": ...,
        ...}`` whose other keys act as keyword arguments.
    schema : ColumnSchema or mapping, optional
        Column mapping (file sources need one unless the URI query gives it; JSON sources
        default to ``{"agent","t","x","y"}``).
    speed : float or str, optional
        Replay speed factor (``"10x"``) or ``"max"`` / ``None`` (as fast as possible).
    time_unit_s : float, optional
        Seconds per unit of ``t`` for pacing.
    clock, sleep : callable, optional
        Injected time functions for the pacer (tests never really sleep).
    keep : callable, optional
        Per-agent filter (see :func:`~swarmgp.agents.sources.split.agent_filter`).
    on_bad : {"count", "raise"}, optional
    stream : text file, optional
        Replacement for standard input (``jsonl:-``).
    **options
        Passed to the source class (e.g. ``idle_timeout_s``, ``qos``, ``delimiter``).

    Raises
    ------
    SourceConfigError
        Unknown scheme / option.
    SourceOpenError
        The source cannot be opened (file missing, header lacking a column, ...).
    """
    if isinstance(uri, Mapping):
        cfg = dict(uri)
        try:
            u = cfg.pop("uri")
        except KeyError:
            raise SourceConfigError("source config needs a 'uri'") from None
        kw: dict[str, Any] = dict(
            schema=schema,
            speed=speed,
            time_unit_s=time_unit_s,
            clock=clock,
            sleep=sleep,
            keep=keep,
            on_bad=on_bad,
            stream=stream,
        )
        kw = {k: v for k, v in kw.items() if v is not None}
        cfg.update(kw)
        cfg.update(options)
        return open_source(u, **cfg)
    scheme, target, opts = parse_uri(uri)
    if isinstance(schema, Mapping):
        schema = ColumnSchema.from_dict(schema)
    if scheme != "synthetic":
        schema = _schema_from(opts, schema)
    speed = opts.pop("speed", None) if speed is None else speed
    tu = float(opts.pop("time_unit_s", 1.0)) if time_unit_s is None else time_unit_s
    on_bad = opts.pop("on_bad", "count") if on_bad is None else on_bad
    common: dict[str, Any] = {"keep": keep, "on_bad": on_bad}
    if speed is not None:
        pk: dict[str, Any] = {"time_unit_s": tu}
        if clock is not None:
            pk["clock"] = clock
        if sleep is not None:
            pk["sleep"] = sleep
        pacer = Pacer(speed, **pk)
        if pacer.speed is not None:
            common["pacer"] = pacer
    if scheme == "synthetic":
        from swarmgp.agents.sources.synthetic import SyntheticSource, SyntheticSpec

        return SyntheticSource(SyntheticSpec.from_options(opts), **common, **options)
    if scheme in ("zmq+sub", "mqtt"):
        options = {**_push_options(scheme, opts, uri), **options}
    if opts:
        raise SourceConfigError(f"{uri!r}: unknown options {sorted(opts)}")
    if scheme == "csv":
        from swarmgp.agents.sources.csv_source import CsvSource

        if schema is None:
            raise SourceConfigError(
                "csv: sources need a schema (or agent/time/inputs/target in the URI query)"
            )
        return CsvSource(target, schema, **common, **options)
    if scheme == "jsonl":
        from swarmgp.agents.sources.jsonl_source import JsonlSource

        return JsonlSource(target, schema, stream=stream, **common, **options)
    if scheme == "parquet":
        from swarmgp.agents.sources.parquet_source import ParquetSource

        if schema is None:
            raise SourceConfigError("parquet: sources need a schema")
        return ParquetSource(target, schema, **common, **options)
    if scheme == "zmq+sub":
        from swarmgp.agents.sources.zmq_sub import ZmqSubSource

        host, port, topic = _host_port(target, None, uri)
        return ZmqSubSource(f"tcp://{host}:{port}", topic, schema, **common, **options)
    from swarmgp.agents.sources.mqtt_source import MqttSource

    host, port, topic = _host_port(target, 1883, uri)
    if not topic:
        raise SourceConfigError(f"{uri!r}: missing topic")
    return MqttSource(host, port, topic, schema, **common, **options)
