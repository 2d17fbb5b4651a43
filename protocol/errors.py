"""Errors of the wire protocol and transports.

Hierarchy::

    SwarmGPError (ValueError)
    └── ProtocolError
        ├── DecodeError            a received frame set is rejected (``reason`` says why)
        │   ├── BadSignature       frame 0 is not b"SWGP" + version
        │   ├── VersionMismatch    the peer speaks another major version
        │   ├── BadChecksum        the frames do not match the checksum in frame 0
        │   ├── BadFrames          wrong frame count or frame sizes over the caps
        │   ├── BadHeader          the msgpack header is malformed or fails the schema
        │   ├── BadArray           an array frame has the wrong dtype, shape, size or values
        │   ├── BadSummary         the summary is not finite symmetric positive definite
        │   └── EncodingMismatch   the message refers to another common encoding
        ├── TransportError         a transport could not be set up or used
        └── KeyringError           a swarm keyring is missing, malformed or inconsistent

A decoder raises only :class:`DecodeError` subclasses for bad input, never anything else, so
a receive loop can drop and count them by ``reason`` without touching state.
"""

from __future__ import annotations

from swarmgp.fusion.errors import SwarmGPError

__all__ = [
    "BadArray",
    "BadChecksum",
    "BadFrames",
    "BadHeader",
    "BadSignature",
    "BadSummary",
    "DecodeError",
    "EncodingMismatch",
    "KeyringError",
    "ProtocolError",
    "TransportError",
    "VersionMismatch",
]


class ProtocolError(SwarmGPError):
    """Base class of the protocol errors."""


class DecodeError(ProtocolError):
    """A received message is rejected; ``reason`` is a short counter key."""

    reason = "decode"


class BadSignature(DecodeError):
    """Frame 0 is not the protocol signature."""

    reason = "signature"


class VersionMismatch(DecodeError):
    """The peer speaks another major version of the protocol."""

    reason = "version"


class BadChecksum(DecodeError):
    """The checksum carried in frame 0 does not match the other frames."""

    reason = "checksum"


class BadFrames(DecodeError):
    """Wrong number of frames, or a frame over its size cap."""

    reason = "frames"


class BadHeader(DecodeError):
    """The header is not valid msgpack or fails the schema of its kind."""

    reason = "header"


class BadArray(DecodeError):
    """An array frame has a disallowed dtype, a wrong shape or size, or non-finite values."""

    reason = "array"


class BadSummary(DecodeError):
    """A summary's precision is not symmetric positive definite."""

    reason = "summary"


class EncodingMismatch(DecodeError):
    """The message refers to a different common encoding (hash or m)."""

    reason = "encoding"


class TransportError(ProtocolError):
    """A transport could not be set up or used."""


class KeyringError(ProtocolError):
    """A swarm keyring (CURVE keys and allow-list) is missing, malformed or inconsistent."""
