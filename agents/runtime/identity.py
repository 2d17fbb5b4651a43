"""Which agent this process is: from flags, or from the cluster launcher's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from swarmgp.agents.runtime.errors import LaunchError

__all__ = ["resolve_identity"]


def resolve_identity(
    agent_id: int | None, world: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, int | None, str]:
    """Agent id and world size from flags, else SLURM, Open MPI, PMI or torchrun variables.

    Returns
    -------
    (id, world or None, source)

    Raises
    ------
    LaunchError
        No identity, or a rank variable that is not an integer.
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
