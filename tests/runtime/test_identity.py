"""Identity from nested cluster launchers: every layout gives unique ids 0..world-1 or an error.

Each layout below produces the environment of every process it starts, the way SLURM, Open MPI
(4.x: ``OMPI_COMM_WORLD_*`` and ``PMIX_RANK``), MPICH/Hydra (``PMI_*``) and torchrun set it
(the SLURM batch script has no ``SLURM_STEP_ID``; an ``srun`` step has one). Then every
combination of the four families' variables for one process resolves or fails with a
:class:`LaunchError`, never anything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from swarmgp.agents.runtime.errors import LaunchError
from swarmgp.agents.runtime.identity import resolve_identity

Env = dict[str, str]


def slurm_step(n: int) -> list[Env]:
    """``srun -n N``: one task each."""
    return [
        {"SLURM_PROCID": str(i), "SLURM_NTASKS": str(n), "SLURM_STEP_ID": "0"} for i in range(n)
    ]


def slurm_batch(n: int) -> Env:
    """The environment of an ``sbatch -n N`` script (no step)."""
    return {"SLURM_PROCID": "0", "SLURM_NTASKS": str(n), "SLURM_JOB_ID": "7"}


def openmpi(n: int, local: int | None = None, pmix: bool = True) -> list[Env]:
    """``mpirun -n N`` (Open MPI 4), ``local`` ranks per node."""
    local = local or n
    return [
        {
            "OMPI_COMM_WORLD_RANK": str(r),
            "OMPI_COMM_WORLD_SIZE": str(n),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(r % local),
            "OMPI_COMM_WORLD_LOCAL_SIZE": str(local),
            **({"PMIX_RANK": str(r)} if pmix else {}),
        }
        for r in range(n)
    ]


def hydra(n: int) -> list[Env]:
    """MPICH's ``mpiexec -n N`` (Hydra, PMI-1)."""
    return [
        {
            "PMI_RANK": str(r),
            "PMI_SIZE": str(n),
            "MPI_LOCALRANKID": str(r),
            "MPI_LOCALNRANKS": str(n),
        }
        for r in range(n)
    ]


def torchrun(nproc: int, nnodes: int = 1, node: int = 0) -> list[Env]:
    """``torchrun --nnodes NN --nproc-per-node P`` on node ``node``."""
    return [
        {
            "RANK": str(node * nproc + r),
            "WORLD_SIZE": str(nproc * nnodes),
            "LOCAL_RANK": str(r),
            "LOCAL_WORLD_SIZE": str(nproc),
            "GROUP_RANK": str(node),
            "TORCHELASTIC_RUN_ID": "none",
        }
        for r in range(nproc)
    ]


def nest(outer: list[Env], inner: Callable[[int], list[Env]]) -> list[Env]:
    """Every outer process starts one inner group (``inner(outer_index)``)."""
    return [{**o, **e} for k, o in enumerate(outer) for e in inner(k)]


LAYOUTS: dict[str, list[Env]] = {
    "srun -n 6": slurm_step(6),
    "mpirun -n 6": openmpi(6),
    "mpirun -n 6 over 2 nodes": openmpi(6, local=3),
    "mpiexec (hydra) -n 6": hydra(6),
    "srun --mpi=pmix -n 6": [{**s, "PMIX_RANK": s["SLURM_PROCID"]} for s in slurm_step(6)],
    "srun --mpi=pmi2 -n 6": [
        {**s, "PMI_RANK": s["SLURM_PROCID"], "PMI_SIZE": "6"} for s in slurm_step(6)
    ],
    "torchrun --nproc-per-node 4": torchrun(4),
    "srun -n 1 torchrun --nproc-per-node 4": nest(slurm_step(1), lambda k: torchrun(4)),
    "srun -N2 torchrun --nproc-per-node 4 (standalone)": nest(slurm_step(2), lambda k: torchrun(4)),
    "srun -N2 torchrun --nnodes 2 --nproc-per-node 4": nest(
        slurm_step(2), lambda k: torchrun(4, nnodes=2, node=k)
    ),
    "sbatch -n 6 + mpirun -n 6": nest([slurm_batch(6)], lambda k: openmpi(6)),
    "sbatch -N2 + mpirun -n 6 (local ranks)": nest([slurm_batch(6)], lambda k: openmpi(6, 3)),
    "sbatch + torchrun --nproc-per-node 4": nest([slurm_batch(4)], lambda k: torchrun(4)),
    "srun -n 2 mpirun -n 3": nest(slurm_step(2), lambda k: openmpi(3)),
    "srun -n 2 mpiexec (hydra) -n 3": nest(slurm_step(2), lambda k: hydra(3)),
    "srun -n 2 mpiexec (hydra) -n 2": nest(slurm_step(2), lambda k: hydra(2)),
    "srun -n 2 mpirun -n 2": nest(slurm_step(2), lambda k: openmpi(2)),
    "mpirun -n 2 torchrun --nproc-per-node 3": nest(openmpi(2), lambda k: torchrun(3)),
    "srun -n 2 mpirun -n 2 torchrun --nproc-per-node 2": nest(
        nest(slurm_step(2), lambda k: openmpi(2)), lambda k: torchrun(2)
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_process_of_a_layout_gets_its_own_id(name: str) -> None:
    envs = LAYOUTS[name]
    got = [resolve_identity(None, None, env) for env in envs]
    ids = sorted(i for i, _, _ in got)
    worlds = {w for _, w, _ in got}
    assert ids == list(range(len(envs))), (name, got)
    assert worlds == {len(envs)}, (name, got)


FAMILIES: dict[str, list[Env]] = {
    "slurm": [
        {},
        slurm_step(4)[3],
        slurm_step(1)[0],
        slurm_batch(4),
        {"SLURM_PROCID": "2"},  # no size
    ],
    "openmpi": [{}, openmpi(3)[2], openmpi(4, local=2)[3], {"OMPI_COMM_WORLD_RANK": "1"}],
    "pmi": [
        {},
        hydra(3)[1],
        {"PMIX_RANK": "2"},
        {"PMI_RANK": "0"},
        {"PMI_RANK": "3", "PMI_SIZE": "4"},
    ],
    "torchrun": [
        {},
        torchrun(3)[2],
        torchrun(2, nnodes=2, node=1)[1],
        {"RANK": "1", "WORLD_SIZE": "2"},
        {"RANK": "1"},  # a lone RANK is not torchrun's
    ],
}


@pytest.mark.parametrize(
    "combo", list(itertools.product(*FAMILIES.values())), ids=lambda c: str(abs(hash(str(c))))
)
def test_every_combination_resolves_or_fails_clearly(combo: tuple[Env, ...]) -> None:
    env: Env = {}
    for part in combo:
        env.update(part)
    try:
        agent_id, world, source = resolve_identity(None, None, env)
    except LaunchError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg
        assert ("unknown" in msg) or ("--id" in msg) or ("outside" in msg), msg
        return
    assert agent_id >= 0 and source
    assert world is None or agent_id < world


def test_flags_win_and_bad_values_are_one_line() -> None:
    assert resolve_identity(7, 9, {"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}) == (7, 9, "flags")
    with pytest.raises(LaunchError, match="not an integer"):
        resolve_identity(None, None, {"SLURM_PROCID": "x"})
    with pytest.raises(LaunchError, match="agent id unknown"):
        resolve_identity(None, None, {"RANK": "3"})
    # an inner launcher without a size under a multi-task step: a clear error, no collision
    with pytest.raises(LaunchError, match="pass --id"):
        resolve_identity(None, None, {**slurm_step(2)[1], "PMIX_RANK": "0"})


def test_nested_ids_are_the_combined_rank() -> None:
    env = {**slurm_step(2)[1], **torchrun(4)[3]}
    assert resolve_identity(None, None, env) == (7, 8, "slurm+torchrun")
    env = {**slurm_batch(6), **openmpi(6)[4]}
    assert resolve_identity(None, None, env) == (4, 6, "openmpi")
