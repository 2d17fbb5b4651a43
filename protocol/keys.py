"""Swarm keyrings: one CURVE key pair per agent and an allow-list binding keys to agent ids.

Layout of a keyring directory (written by :func:`make_keyring`)::

    allow.json              {"version": 1, "agents": {"<id>": "<z85 public key>", ...},
                             "operators": ["<z85 public key>", ...]}
    agent-<id>.key          z85 public key (40 characters)
    agent-<id>.key_secret   z85 secret key, mode 0600
    operator.key            (optional) the operator's key pair, for ``launch.py status``
    operator.key_secret

:func:`load_keyring` reads the allow-list plus one identity's key pair and validates all of it
before anything uses it: a keyring that is half right (a key listed twice, a secret that does not
match its public key, a secret readable by others) is refused with one :class:`KeyringError`
line, never used partially. Keys are plain z85 text, never pickled.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from zmq.utils import z85

from swarmgp.protocol.errors import KeyringError

__all__ = ["ALLOW_FILE", "OPERATOR", "Keyring", "load_keyring", "make_keyring"]

#: File name of the allow-list inside a keyring directory.
ALLOW_FILE = "allow.json"
#: Identity name of the operator (status-only) key.
OPERATOR = "operator"
_VERSION = 1
_Z85_LEN = 40  # a 32-byte key in z85


@dataclass(frozen=True)
class Keyring:
    """One identity's view of a swarm keyring.

    Attributes
    ----------
    identity : int or str
        The agent id this key pair belongs to, or ``"operator"``.
    public, secret : bytes
        This identity's z85 CURVE key pair.
    members : mapping of bytes to int
        Allow-listed agent public key (z85) -> the agent id it is bound to.
    operators : frozenset of bytes
        Public keys (z85) allowed to query status only.
    """

    identity: int | str
    public: bytes
    secret: bytes = field(repr=False)
    members: Mapping[bytes, int]
    operators: frozenset[bytes]

    def key_of(self, agent_id: int) -> bytes | None:
        """The public key bound to ``agent_id`` (None if it is not a member)."""
        for k, a in self.members.items():
            if a == agent_id:
                return k
        return None

    def agent_of(self, public: bytes) -> int | None:
        """The agent id bound to ``public`` (None for an operator or unknown key)."""
        return self.members.get(public)

    def allowed(self, public: bytes) -> bool:
        """Whether ``public`` may connect at all (a member or an operator)."""
        return public in self.members or public in self.operators

    @property
    def n_members(self) -> int:
        """Number of agents in the swarm (the largest plausible ``n_agents`` of a model)."""
        return len(self.members)


def _name(identity: int | str) -> str:
    return OPERATOR if identity == OPERATOR else f"agent-{int(identity)}"


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(path, mode)


def make_keyring(out_dir: str | os.PathLike[str], n_agents: int, operator: bool = True) -> Path:
    """Write a fresh keyring for agents ``0 .. n_agents - 1`` (and an operator key).

    Guards against overwriting a keyring in place (an existing ``allow.json`` is refused) and
    against secrets readable by others (written with mode 0600).

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    KeyringError
        ``n_agents < 1``, the directory already holds a keyring, or it cannot be written.
    """
    if n_agents < 1:
        raise KeyringError(f"keyring: --agents must be at least 1, got {n_agents}")
    out = Path(out_dir)
    if (out / ALLOW_FILE).exists():
        raise KeyringError(f"keyring: {out / ALLOW_FILE} exists; refusing to overwrite keys")
    try:
        out.mkdir(parents=True, exist_ok=True)
        agents: dict[str, str] = {}
        ids: list[int | str] = list(range(n_agents))
        if operator:
            ids.append(OPERATOR)
        operators: list[str] = []
        for ident in ids:
            pub, sec = zmq.curve_keypair()
            _write(out / f"{_name(ident)}.key", pub.decode() + "\n", 0o644)
            _write(out / f"{_name(ident)}.key_secret", sec.decode() + "\n", 0o600)
            if ident == OPERATOR:
                operators.append(pub.decode())
            else:
                agents[str(ident)] = pub.decode()
        doc = {"version": _VERSION, "agents": agents, "operators": operators}
        _write(out / ALLOW_FILE, json.dumps(doc, indent=1, sort_keys=True) + "\n", 0o644)
    except OSError as e:
        raise KeyringError(f"keyring: cannot write {out}: {e.strerror or e}") from None
    return out


def _z85(text: object, what: str) -> bytes:
    if type(text) is not str or len(text) != _Z85_LEN:
        raise KeyringError(f"keyring: {what} is not a 40-character z85 key")
    try:
        raw = z85.decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, KeyError):
        raise KeyringError(f"keyring: {what} is not valid z85") from None
    if len(raw) != 32:
        raise KeyringError(f"keyring: {what} does not decode to 32 bytes")
    return text.encode("ascii")


def _read_key(path: Path, what: str) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyringError(f"keyring: {what} file {path} is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyringError(f"keyring: cannot read {what} file {path}: {e}") from None
    return _z85(text, f"{what} in {path}")


def load_keyring(key_dir: str | os.PathLike[str], identity: int | str) -> Keyring:
    """Load and validate the allow-list and the key pair of ``identity``.

    Guards against: a missing or malformed allow-list, duplicate keys (one key bound to two
    ids, which would let one member speak as another), negative or non-integer ids, a secret
    key readable by group or others, a secret that does not match its public key, and an
    identity whose public key is not on the allow-list.

    Parameters
    ----------
    key_dir : path
    identity : int or "operator"

    Raises
    ------
    KeyringError
        One line naming the file and what is wrong with it.
    """
    d = Path(key_dir)
    allow = d / ALLOW_FILE
    try:
        doc = json.loads(allow.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyringError(
            f"keyring: {allow} is missing (make one with `launch.py keys`)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise KeyringError(f"keyring: {allow} is not valid JSON: {type(e).__name__}") from None
    if type(doc) is not dict or doc.get("version") != _VERSION:
        raise KeyringError(f"keyring: {allow} is not a version-{_VERSION} allow-list")
    agents, ops = doc.get("agents"), doc.get("operators", [])
    if type(agents) is not dict or type(ops) is not list:
        raise KeyringError(f"keyring: {allow}: 'agents' must be a map and 'operators' a list")
    members: dict[bytes, int] = {}
    for sid, key in agents.items():
        if not (type(sid) is str and sid.isdigit() and len(sid) <= 18):
            raise KeyringError(f"keyring: {allow}: agent id {sid!r} is not a non-negative int")
        k = _z85(key, f"key of agent {sid} in {allow}")
        if k in members:
            raise KeyringError(f"keyring: {allow}: one key is bound to agents {members[k]}, {sid}")
        members[k] = int(sid)
    operators: set[bytes] = set()
    for key in ops:
        k = _z85(key, f"operator key in {allow}")
        if k in members or k in operators:
            raise KeyringError(f"keyring: {allow}: an operator key is listed twice")
        operators.add(k)
    if identity != OPERATOR and (type(identity) is not int or identity < 0):
        raise KeyringError(f"keyring: identity {identity!r} is neither an agent id nor operator")
    name = _name(identity)
    pub = _read_key(d / f"{name}.key", f"{name} public key")
    sec_path = d / f"{name}.key_secret"
    sec = _read_key(sec_path, f"{name} secret key")
    mode = stat.S_IMODE(sec_path.stat().st_mode)
    if mode & 0o077:
        raise KeyringError(
            f"keyring: {sec_path} is readable by others (mode {mode:04o}); chmod 600 it"
        )
    if zmq.curve_public(sec) != pub:
        raise KeyringError(f"keyring: {sec_path} does not match {name}.key")
    if identity == OPERATOR:
        if pub not in operators:
            raise KeyringError(f"keyring: the operator key is not on {allow}'s operator list")
    elif members.get(pub) != identity:
        raise KeyringError(f"keyring: {name}.key is not bound to agent {identity} in {allow}")
    return Keyring(identity, pub, sec, dict(members), frozenset(operators))
