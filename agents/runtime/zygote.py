"""A pre-imported zygote for ``launch.py local``: import the agent path once, fork the agents.

An agent process spends most of its start-up importing (numpy, scipy.linalg, zmq, the agent
core). :class:`Zygote` starts one helper process (``python -m swarmgp.agents.runtime.zygote
FD``) that imports all of it and then, per request on a ``SOCK_SEQPACKET`` socket, ``fork()``\\ s
a child that becomes exactly what ``launch.py agent ARGV`` would be: its own session
(``setsid``), stdin from ``/dev/null`` (or a pipe the launcher sends over the socket), stdout to
``/dev/null``, stderr appended to a file, signal dispositions as a fresh interpreter has them,
descriptors above 2 closed, numpy's global generator reseeded. The zygote creates no ZeroMQ
context and no thread (forking is safe; contexts are made after the fork, in the agent).

The zygote is the agents' parent: it reaps them and reports each exit status
(``Popen.returncode`` convention). It exits as soon as the launcher closes its end of the
socket, which the kernel does when the launcher dies, so the agents' parent-death watchdog
(:func:`swarmgp.agents.runtime.node.start_watchdog`) still stops them: no orphans.

On the launcher's side :class:`Forked` stands in for ``subprocess.Popen`` (``pid``, ``stdin``,
``returncode``, ``poll``, ``wait``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Forked", "Zygote", "ZygoteError"]

LAUNCH_PY = Path(__file__).resolve().parents[2] / "launch.py"
_BUF = 1 << 16


class ZygoteError(RuntimeError):
    """The zygote did not start or stopped answering."""


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# --------------------------------------------------------------------------- launcher side


class Forked:
    """An agent forked by the zygote, tracked by pid (a ``subprocess.Popen`` look-alike)."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str], stdin: Any = None) -> None:
        self._zygote = zygote
        self.pid = pid
        self.args = args
        self.stdin = stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._zygote.pump(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = 0.5 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._zygote.pump(min(left, 0.5))
        return self.returncode


class Zygote:
    """The launcher's handle on one zygote process.

    Parameters
    ----------
    env : mapping
        The agents' environment (the zygote's own; forked agents inherit it).
    stderr : path
        The zygote's own stderr (import errors land here).
    preload : sequence of str
        More modules to import once for every agent (``scipy.optimize`` in the collective
        mode, whose refits import it: 0.4 CPU-s per agent otherwise).
    """

    def __init__(self, env: dict[str, str], stderr: Path, preload: Sequence[str] = ()) -> None:
        self._lock = threading.RLock()
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stderr_path = Path(stderr)
        with open(stderr, "ab") as err:
            try:
                self.proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "swarmgp.agents.runtime.zygote",
                        str(theirs.fileno()),
                        *preload,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # Ctrl-C is the launcher's to relay
                )
            finally:
                theirs.close()
        self.children: dict[int, Forked] = {}
        self.dead = False
        self._replies: list[dict[str, Any]] = []

    def spawn(self, argv: list[str], stderr: Path, pipe_stdin: bool = False) -> Forked:
        """Fork ``launch.py agent argv``; returns once the child runs in its own session."""
        with self._lock:
            if self.dead:
                raise ZygoteError(self._why())
            req = json.dumps({"argv": argv, "stderr": str(stderr)}).encode()
            w = None
            try:
                if pipe_stdin:
                    r, w = os.pipe()
                    try:
                        socket.send_fds(self._sock, [req], [r])
                    finally:
                        os.close(r)
                else:
                    self._sock.send(req)
                deadline = time.monotonic() + 120.0  # the first waits for the imports
                while not self._replies:
                    self.pump(1.0)
                    if self.dead and not self._replies:
                        raise ZygoteError(self._why())
                    if time.monotonic() > deadline:
                        raise ZygoteError("the zygote did not answer within 120 s")
            except BaseException:
                if w is not None:
                    os.close(w)
                raise
            reply = self._replies.pop(0)
            if "error" in reply:
                if w is not None:
                    os.close(w)
                raise ZygoteError(f"zygote: {reply['error']}")
            stdin = open(w, "wb") if w is not None else None  # noqa: SIM115 - the agent's stdin
            child = Forked(self, int(reply["pid"]), [str(LAUNCH_PY), *argv], stdin)
            self.children[child.pid] = child
            return child

    def pump(self, timeout: float) -> None:
        """Read what the zygote sent (waiting up to ``timeout`` for a first message)."""
        with self._lock:
            if self.dead:
                self._check_orphans()
                return
            wait = timeout
            while True:
                try:
                    ready, _, _ = select.select([self._sock], [], [], wait)
                except (OSError, ValueError):
                    ready = [self._sock]
                if not ready:
                    return
                wait = 0.0
                try:
                    data = self._sock.recv(_BUF)
                except OSError:
                    data = b""
                if not data:  # the zygote is gone: its children were reparented
                    self.dead = True
                    self._check_orphans()
                    return
                msg = json.loads(data)
                if "exit" in msg:
                    child = self.children.get(int(msg["exit"]))
                    if child is not None and child.returncode is None:
                        child.returncode = int(msg["code"])
                else:
                    self._replies.append(msg)

    def _check_orphans(self) -> None:
        for child in self.children.values():
            if child.returncode is None and _gone(child.pid):
                child.returncode = -signal.SIGKILL  # unknown: the zygote died before reporting

    def _why(self) -> str:
        try:
            with open(self.stderr_path, "rb") as fh:
                lines = fh.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
        except OSError:
            lines = []
        last = lines[-1].strip()[:300] if lines else "no message"
        return f"the zygote exited ({last}; see {self.stderr_path})"

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the socket (the zygote exits) and reap the zygote."""
        with self._lock:
            try:
                self._sock.close()
            except OSError:
                pass
            self.dead = True
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- zygote side


def _preimport(extra: Sequence[str] = ()) -> Any:
    """Import the agent path (zmq through the protocol's transport; not torch, which only the
    paper mode's learner needs), and the modules ``extra``."""
    import importlib
    import importlib.util

    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401

    spec = importlib.util.spec_from_file_location("launch", LAUNCH_PY)
    assert spec is not None and spec.loader is not None
    launch = importlib.util.module_from_spec(spec)
    sys.modules["launch"] = launch
    spec.loader.exec_module(launch)
    import swarmgp.agents.factory  # noqa: F401
    import swarmgp.agents.runtime.node  # noqa: F401
    import swarmgp.agents.runtime.runner  # noqa: F401
    import swarmgp.protocol.keys  # noqa: F401
    import swarmgp.protocol.zmq_transport  # noqa: F401

    for name in extra:
        importlib.import_module(name)
    return launch


_FRESH: dict[int, Any] = {signal.SIGINT: signal.default_int_handler, signal.SIGPIPE: signal.SIG_IGN}


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _become_agent(launch: Any, req: dict[str, Any], fds: list[int], ready_w: int) -> None:
    """In the forked child: become ``launch.py agent argv``; never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                if signal.getsignal(sig) is not _FRESH.get(sig, signal.SIG_DFL):
                    signal.signal(sig, _FRESH.get(sig, signal.SIG_DFL))
            except (OSError, ValueError, TypeError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        stdin = fds[0] if fds else os.open(os.devnull, os.O_RDONLY)
        out = os.open(os.devnull, os.O_WRONLY)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(ready_w)  # the zygote answers the launcher now: we are in our own session
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        import numpy as np

        np.random.seed()  # a fresh process would have its own entropy
        argv = list(req["argv"])
        sys.argv = [str(LAUNCH_PY), *argv]
        code = _exit_code(launch.main(argv))
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            main = threading.main_thread()
            for t in threading.enumerate():  # as the interpreter does at exit
                if t is not main and not t.daemon:
                    t.join()
            import atexit

            atexit._run_exitfuncs()  # logging.shutdown and the like
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def serve(fd: int, preload: Sequence[str] = ()) -> int:
    """The zygote's loop: fork on request, report exits, end when the launcher hangs up."""
    launch = _preimport(preload)
    assert "torch" not in sys.modules
    sock = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher stops us by hanging up

    def send(msg: dict[str, Any]) -> None:
        try:
            sock.send(json.dumps(msg).encode())
        except OSError:
            pass

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            send({"exit": pid, "code": _status_code(status)})

    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [], 1.0)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        reap()
        if sock.fileno() not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, _BUF, 1)
        except OSError:
            data, fds = b"", []
        if not data:  # the launcher hung up (or died): agents see their parent go
            return 0
        try:
            req = json.loads(data)
            ready_r, ready_w = os.pipe()
            pid = os.fork()
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            for f in fds:
                os.close(f)
            send({"error": f"{type(exc).__name__}: {exc}"})
            continue
        if pid == 0:
            os.close(ready_r)
            _become_agent(launch, req, fds, ready_w)
        os.close(ready_w)
        for f in fds:
            os.close(f)
        while os.read(ready_r, 1):  # EOF once the child has its session (or died)
            pass
        os.close(ready_r)
        send({"pid": pid})


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), [m for m in sys.argv[2:] if m]))
