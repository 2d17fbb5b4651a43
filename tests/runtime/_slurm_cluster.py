"""A throw-away single-node SLURM cluster on localhost (munged, slurmctld, slurmd) for tests.

:func:`start_cluster` writes ``slurm.conf`` and a munge key into a temporary directory, starts
the three daemons in the foreground as child processes (root is needed for slurmd), waits until
the node is idle, and returns a :class:`Cluster` whose :meth:`Cluster.env` points ``srun``,
``sbatch`` and ``squeue`` at it. :meth:`Cluster.stop` stops them. Any step that cannot be done
raises :class:`Unavailable` with the reason, for the tests to skip with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cluster", "Unavailable", "start_cluster"]

SBIN = ("/usr/sbin", "/usr/bin", "/sbin")


class Unavailable(RuntimeError):
    """The daemons cannot be had here (why: not root, not installed, failed to start)."""


def _which(name: str) -> str:
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if path is None:
        raise Unavailable(f"{name} is not installed (apt-get install slurm-wlm munge)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """Running daemons and the environment that reaches them."""

    dir: Path
    conf: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` set (and no SLURM/MPI/torchrun variables)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_"))
            and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
        }
        env["SLURM_CONF"] = str(self.conf)
        env.update(extra)
        return env

    def stop(self) -> None:
        """Cancel jobs, then stop slurmd, slurmctld and munged (SIGTERM, then SIGKILL)."""
        subprocess.run(
            ["scancel", "--user", "root"], env=self.env(), capture_output=True, timeout=10
        )
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def log_tail(self, n: int = 2000) -> str:
        """The end of the daemons' logs (for failure messages)."""
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            p = self.dir / name
            if p.exists():
                out.append(f"--- {name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(out)


def start_cluster(base: Path, cpus: int | None = None, timeout_s: float = 30.0) -> Cluster:
    """Start munged, slurmctld and slurmd on localhost under ``base``.

    Raises
    ------
    Unavailable
        Not root, a program missing, or a daemon that did not come up in ``timeout_s``.
    """
    if os.geteuid() != 0:
        raise Unavailable("slurmd needs root")
    munged, slurmctld, slurmd = _which("munged"), _which("slurmctld"), _which("slurmd")
    _which("sbatch")
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    cpus = cpus or os.cpu_count() or 1
    for sub in ("state", "spool", "munge"):
        (base / sub).mkdir(exist_ok=True)
    (base / "munge").chmod(0o700)
    key = base / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = base / "munge" / "munge.socket"
    host = socket.gethostname()
    conf = base / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=swarmgptest",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                f"AuthInfo=socket={sock}",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={base / 'state'}",
                f"SlurmdSpoolDir={base / 'spool'}",
                f"SlurmctldPidFile={base / 'slurmctld.pid'}",
                f"SlurmdPidFile={base / 'slurmd.pid'}",
                f"SlurmctldLogFile={base / 'slurmctld.log'}",
                f"SlurmdLogFile={base / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "SchedulerType=sched/builtin",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "ReturnToService=2",
                "JobCompType=jobcomp/none",
                "AccountingStorageType=accounting_storage/none",
                "SlurmctldTimeout=30",
                "SlurmdTimeout=30",
                "InactiveLimit=0",
                "KillWait=5",
                "MinJobAge=30",
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
                f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP "
                "OverSubscribe=FORCE:64",
                "",
            ]
        )
    )
    cluster = Cluster(base, conf)
    env = cluster.env()
    log = {name: open(base / f"{name}.out", "wb") for name in ("munged", "slurmctld", "slurmd")}  # noqa: SIM115
    try:
        cluster.procs.append(
            subprocess.Popen(
                [
                    munged,
                    "-F",
                    "-f",
                    f"--key-file={key}",
                    f"--socket={sock}",
                    f"--pid-file={base / 'munge' / 'munged.pid'}",
                    f"--log-file={base / 'munged.log'}",
                    f"--seed-file={base / 'munge' / 'munged.seed'}",
                ],
                stdout=log["munged"],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        _wait(lambda: sock.exists(), timeout_s, "munged", cluster)
        cluster.procs.append(
            subprocess.Popen(
                [slurmctld, "-D", "-i", "-f", str(conf)],
                stdout=log["slurmctld"],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        cluster.procs.append(
            subprocess.Popen(
                [slurmd, "-D", "-f", str(conf), "-N", host],
                stdout=log["slurmd"],
                stderr=subprocess.STDOUT,
                env=env,
            )
        )

        def idle() -> bool:
            r = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=10
            )
            return r.returncode == 0 and r.stdout.strip().rstrip("*") in ("idle", "mixed")

        _wait(idle, timeout_s, "the SLURM node", cluster)
    except BaseException:
        cluster.stop()
        raise
    finally:
        for fh in log.values():
            fh.close()
    return cluster


def _wait(ok: object, timeout_s: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():  # type: ignore[operator]
            return
        if any(p.poll() is not None for p in cluster.procs):
            raise Unavailable(f"{what} did not start:\n{cluster.log_tail()}")
        time.sleep(0.2)
    raise Unavailable(f"{what} not ready within {timeout_s:g} s:\n{cluster.log_tail()}")


if __name__ == "__main__":  # manual probe: start, show the node, stop
    import sys
    import tempfile

    c = start_cluster(Path(tempfile.mkdtemp(prefix="slurm-")))
    try:
        print(subprocess.run(["sinfo"], env=c.env(), capture_output=True, text=True).stdout)
        if len(sys.argv) > 1:
            subprocess.run(sys.argv[1:], env=c.env())
    finally:
        c.stop()
