"""Which agent this process is: from flags, or from the cluster launchers' environment.

Launchers nest (``srun ... torchrun``, ``sbatch`` + ``mpirun``, ``srun ... mpirun``); the
innermost one wins, and where an inner launcher runs one independent group per task of an
outer one, the ranks are combined so that every process gets its own id:

* layers, innermost first: torchrun (``RANK``/``WORLD_SIZE`` with ``LOCAL_RANK``/
  ``LOCAL_WORLD_SIZE``), MPI (Open MPI's ``OMPI_COMM_WORLD_*``, else MPICH/Hydra's
  ``PMI_RANK``/``PMI_SIZE``, else ``PMIX_RANK``), SLURM (``SLURM_PROCID``/``SLURM_NTASKS``);
* an inner layer replaces an outer one when they are the same launch (``srun --mpi=pmix``
  sets both with equal ranks), when the outer one has a single task, when the outer one is a
  SLURM batch script rather than a step (``sbatch`` + ``mpirun``: no ``SLURM_STEP_ID``), or
  when the inner group spans several nodes or groups (torchrun's ``WORLD_SIZE >
  LOCAL_WORLD_SIZE``, Open MPI's ``OMPI_COMM_WORLD_SIZE > OMPI_COMM_WORLD_LOCAL_SIZE``: its
  rank is already global);
* otherwise every outer task runs one inner group of the same size ``k``:
  ``id = outer_rank * k + inner_rank``, ``world = outer_size * k``.

What cannot be combined (an inner launcher without a size under a multi-task outer one) is a
:class:`LaunchError` naming the variables, never a silent collision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from swarmgp.agents.runtime.errors import LaunchError

__all__ = ["Layer", "launcher_layers", "resolve_identity"]


@dataclass(frozen=True)
class Layer:
    """One launcher's view of this process.

    Attributes
    ----------
    name : str
        ``slurm``, ``openmpi``, ``pmi``, ``pmix`` or ``torchrun``.
    rank : int
    size : int or None
    spans : bool
        The group already spans several nodes or groups (its rank is global).
    step : bool
        SLURM only: inside a job step (``srun``), not the batch script.
    own_launcher : bool
        MPI only: started by ``mpirun``/``mpiexec`` (Open MPI's ``OMPI_COMM_WORLD_*``,
        Hydra's ``MPI_LOCALNRANKS``), so never the same launch as an enclosing ``srun``.
    """

    name: str
    rank: int
    size: int | None
    spans: bool = False
    step: bool = True
    own_launcher: bool = False


def _int(env: Mapping[str, str], var: str) -> int | None:
    if var not in env:
        return None
    try:
        return int(env[var])
    except ValueError:
        raise LaunchError(f"{var}={env[var]!r} is not an integer") from None


def launcher_layers(env: Mapping[str, str]) -> list[Layer]:
    """The launchers whose variables are set, outermost first (SLURM, MPI, torchrun)."""
    layers: list[Layer] = []
    rank = _int(env, "SLURM_PROCID")
    if rank is not None:
        size = _int(env, "SLURM_NTASKS") or _int(env, "SLURM_NPROCS")
        step = "SLURM_STEP_ID" in env or "SLURM_STEPID" in env
        layers.append(Layer("slurm", rank, size, step=step))
    rank = _int(env, "OMPI_COMM_WORLD_RANK")
    if rank is not None:
        size = _int(env, "OMPI_COMM_WORLD_SIZE")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
        spans = size is not None and local is not None and size > local
        layers.append(Layer("openmpi", rank, size, spans=spans, own_launcher=True))
    elif (rank := _int(env, "PMI_RANK")) is not None:
        hydra = "MPI_LOCALNRANKS" in env
        layers.append(Layer("pmi", rank, _int(env, "PMI_SIZE"), own_launcher=hydra))
    elif (rank := _int(env, "PMIX_RANK")) is not None:
        layers.append(Layer("pmix", rank, _int(env, "PMIX_SIZE")))
    rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and size is not None:  # a lone RANK is too generic a name to trust
        local = _int(env, "LOCAL_WORLD_SIZE")
        spans = local is not None and size > local
        layers.append(Layer("torchrun", rank, size, spans=spans))
    return layers


def _combine(outer: Layer, inner: Layer) -> Layer:
    # one launch seen twice (srun --mpi=pmix sets PMIX_RANK = SLURM_PROCID, and no size)
    same = not inner.own_launcher and inner.rank == outer.rank and inner.size in (None, outer.size)
    if same:
        return outer
    if outer.size in (None, 1) or not outer.step or inner.spans:
        return inner
    if inner.size is None:
        raise LaunchError(
            f"{inner.name} rank {inner.rank} without a size inside {outer.size} {outer.name} "
            "tasks: ids would collide; pass --id and --world"
        )
    assert outer.size is not None
    return Layer(
        f"{outer.name}+{inner.name}",
        outer.rank * inner.size + inner.rank,
        outer.size * inner.size,
        spans=True,
    )


def resolve_identity(
    agent_id: int | None, world: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, int | None, str]:
    """Agent id and world size from flags, else the cluster launchers' variables.

    Returns
    -------
    (id, world or None, source)
        ``source`` is ``flags`` or the launcher(s), e.g. ``slurm+torchrun``.

    Raises
    ------
    LaunchError
        No identity, a rank variable that is not an integer, ranks that cannot be combined,
        or a rank outside its world.
    """
    env = os.environ if env is None else env
    if agent_id is not None:
        return agent_id, world, "flags"
    layers = launcher_layers(env)
    if not layers:
        raise LaunchError(
            "agent id unknown: pass --id, or run under SLURM (srun), MPI (mpirun) or torchrun"
        )
    top = layers[0]
    for inner in layers[1:]:
        top = _combine(top, inner)
    size = top.size if top.size is not None else world
    if top.rank < 0 or (size is not None and top.rank >= size):
        raise LaunchError(f"{top.name}: rank {top.rank} is outside a world of {size}")
    return top.rank, size, top.name
