"""Bad input reaches the user as one line: ``launch.py sim``, ``local`` and ``agent``.

Table-driven: every case exits with its code (2: an invalid option value, refused by the
parser; 1: a run-time error: missing file, bad column, busy port, unwritable directory, missing
keyring, missing optional package) and prints exactly one line on stderr, never a traceback.

Most cases call ``launch.main`` in this process (a traceback would be an exception escaping
it); a few run ``launch.py`` as a real process to check the bytes on stderr. Every case fails
before any agent or simulation starts, so the whole file takes a few seconds.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import launch

ROOT = Path(launch.__file__).resolve().parent
FAST = ["--mode", "paper", "--no-learn", "--inducing", "4", "--batch-size", "5"]
QUIET = {"sim": ["--quiet"], "local": [], "agent": ["--log-level", "ERROR"]}


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Paths of the table: a good CSV, a regular file (never a directory), a free rendezvous."""
    csv = tmp_path / "d.csv"
    lines = ["station,t,x,y"] + [f"S{i % 2},{i},{i / 10},{(i % 7) / 3}" for i in range(60)]
    csv.write_text("\n".join(lines) + "\n")
    (tmp_path / "rv").mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    saved = logging.getLogger("swarmgp").handlers[:], logging.getLogger("swarmgp").level
    try:
        yield {
            "csv": str(csv),
            "file": str(csv),  # a regular file: a path under it cannot be a directory
            "rv": str(tmp_path / "rv"),
            "tmp": str(tmp_path),
            "busy": str(busy.getsockname()[1]),
        }
    finally:
        busy.close()
        log = logging.getLogger("swarmgp")
        log.handlers[:], log.level = saved[0], saved[1]


def _argv(command: str, args: list[str], env: dict[str, str]) -> list[str]:
    args = [a.format(**env) for a in args]
    extra = ["--id", "0", "--world", "1", "--rendezvous", env["rv"]] if command == "agent" else []
    if command == "agent" and "--rendezvous" in args:
        extra = ["--id", "0", "--world", "1"]
    return [command, *extra, *FAST, *QUIET[command], *args]


TABLE = "csv:{csv}"
# (command, arguments, exit code, a fragment of the one line)
CASES: list[tuple[str, list[str], int, str]] = [
    # invalid option values: the parser, exit 2
    ("sim", ["--agents", "0"], 2, "--agents"),
    ("local", ["--loss", "2"], 2, "--loss"),
    ("agent", ["--batch-size", "0"], 2, "--batch-size"),
    # missing file
    ("sim", ["--data", "csv:{tmp}/nope.csv"], 1, "nope.csv"),
    ("local", ["--data", "csv:{tmp}/nope.csv"], 1, "nope.csv"),
    ("agent", ["--data", "csv:{tmp}/nope.csv"], 1, "nope.csv"),
    (
        "sim",
        ["--data", TABLE, "--agent-column", "station", "--features", "{tmp}/f.json"],
        1,
        "f.json",
    ),
    # bad column name
    ("sim", ["--data", TABLE, "--agent-column", "nope"], 1, "'nope'"),
    ("local", ["--data", TABLE, "--agent-column", "station", "--target", "nope"], 1, "'nope'"),
    ("agent", ["--data", TABLE, "--agent-column", "station", "--inputs", "x,zz"], 1, "'zz'"),
    # busy port
    ("agent", ["--bind", "tcp://127.0.0.1:{busy}"], 1, "cannot bind"),
    # unwritable directories
    ("local", ["--workdir", "{file}/work"], 1, "work"),
    ("agent", ["--rendezvous", "{file}/rv"], 1, "rv"),
    ("sim", ["--report", "{file}/r.json"], 1, "--report"),
    ("local", ["--report", "{file}/r.json"], 1, "--report"),
    ("agent", ["--report", "{file}/r-{{id}}.json"], 1, "--report"),
    ("sim", ["--plot", "{tmp}"], 1, "is a directory"),
    ("local", ["--state-dir", "{file}/state"], 1, "--state-dir"),
    ("agent", ["--state-dir", "{file}/state"], 1, "--state-dir"),
    ("agent", ["--log-file", "{file}/agent.log"], 1, "--log-file"),
    # a keyring that does not exist
    ("local", ["--keys", "{tmp}/nokeys"], 1, "keyring"),
    ("agent", ["--keys", "{tmp}/nokeys"], 1, "keyring"),
    # an agent that is not part of the swarm it names
    ("agent", ["--neighbors", "7"], 1, "--neighbors"),
]


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    return lines[0]


# an agent that fails after making its ZeroMQ socket leaves it to process exit (these calls run
# in this process, the agent's own process would end)
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("command", "args", "code", "fragment"),
    CASES,
    ids=[f"{c}-{'_'.join(a)[:40]}" for c, a, _, _ in CASES],
)
def test_bad_case_is_one_line(
    command: str,
    args: list[str],
    code: int,
    fragment: str,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _argv(command, args, env)
    got: int | str | None
    try:
        got = launch.main(argv)
    except SystemExit as exc:  # the parser's exit
        got = exc.code
    gc.collect()  # a socket the failed agent left is collected here, under this test's filters
    out = capsys.readouterr()
    line = _one_line(out.err)
    assert got == code, line
    assert line.startswith(f"launch.py {command}: error: "), line
    assert fragment.format(**env) in line, line


@pytest.mark.parametrize("command", ["sim", "local", "agent"])
def test_missing_matplotlib_for_plot(
    command: str,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    got = launch.main(_argv(command, ["--plot", "{tmp}/p.png"], env))
    line = _one_line(capsys.readouterr().err)
    assert got == 1 and "matplotlib" in line and "--plot" in line, line


def _process(argv: list[str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys, runpy; {prelude or 'pass'}; sys.argv = ['launch.py', *{argv!r}]; "
        "runpy.run_path('launch.py', run_name='__main__')"
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_real_processes_print_one_line(env: dict[str, str]) -> None:
    """The bytes a user sees: one line, exit 1 (agent: busy port; local: missing matplotlib)."""
    agent = _process(_argv("agent", ["--bind", "tcp://127.0.0.1:{busy}"], env))
    assert agent.returncode == 1, agent.stderr
    assert "cannot bind" in _one_line(agent.stderr)
    local = _process(
        _argv("local", ["--plot", "{tmp}/p.png"], env), "sys.modules['matplotlib'] = None"
    )
    assert local.returncode == 1, local.stderr
    assert "matplotlib" in _one_line(local.stderr)


def test_debug_shows_the_traceback(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="nope.csv"):
        launch.main(_argv("local", ["--data", "csv:{tmp}/nope.csv", "--debug"], env))
