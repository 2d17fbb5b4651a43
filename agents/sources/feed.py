"""Payload validation shared by the push feeds (ZeroMQ SUB, MQTT).

A payload is one UTF-8 JSON object, parsed with the feed's :class:`ColumnSchema`.
Two control payloads are understood and never yielded as data:

- ``{"control": "sync"}``: a handshake probe (the publisher resends it until the
  subscriber has seen one: ``source.synced`` is set);
- ``{"control": "eos"}``: end of stream (the source's iteration ends).
"""

from __future__ import annotations

import json
from typing import Any

from swarmgp.agents.sources.errors import BadRowError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.schema import MAX_LINE, RowParser, loads_row

__all__ = ["MAX_PAYLOAD", "SYNC", "EOS", "decode_payload", "control_payload"]

MAX_PAYLOAD = MAX_LINE
SYNC = "sync"
EOS = "eos"


def control_payload(kind: str) -> bytes:
    """The bytes of a control message (``"sync"`` or ``"eos"``)."""
    return json.dumps({"control": kind}).encode()


def decode_payload(
    payload: bytes, parser: RowParser, *, default_agent: str | None, line: int
) -> Observation | str:
    """Validate one payload.

    Returns
    -------
    Observation or str
        The observation, or the control kind (``"sync"`` / ``"eos"``).

    Raises
    ------
    BadRowError
        Oversized, non-UTF-8, non-JSON, too deeply nested, non-object payloads, unknown
        control messages, and every row-level defect.
    """
    o = parser.origin
    if len(payload) > MAX_PAYLOAD:
        raise BadRowError(
            "oversized",
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}",
            origin=o,
            line=line,
        )
    row: Any = loads_row(payload, o, line)
    if isinstance(row, dict) and "control" in row:
        kind = row["control"]
        if kind in (SYNC, EOS):
            return str(kind)
        raise BadRowError("malformed", f"unknown control message {kind!r}", origin=o, line=line)
    return parser.parse_mapping(row, line, default_agent=default_agent)
