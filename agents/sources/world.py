"""The one synthetic world of ``sim``, ``local`` and ``agent``: the model itself, per agent.

One common latent function ``u ~ GP(0, exp(-|z - z'|^2 / 2))`` on R^d, drawn once by random
Fourier features (:func:`rff_latent`), is seen by agent ``a`` through the projection ``W_g``
of its group ``g = a % G`` (agents of a group share a phenomenon; COOL-GP Sec. 5a has two
agents and two groups)::

    f_a(x) = signal * u(W_g x),    W_g = I + spread * N(0, 1) / sqrt(d),    [d, d]
    y      = f_a(x) + noise * eps,  x ~ N(0, I_d),  eps ~ N(0, 1).

Every random choice comes from a :class:`numpy.random.SeedSequence` of ``seed`` spawned per
concern (``u``; the projections; the test set; agent ``a``'s inputs; agent ``a``'s noise), so
agent ``a`` computes its own rows from ``(seed, a)`` alone, without drawing anyone else's: a
real agent process observes exactly the rows the simulator gives agent ``a``. An agent's rows
are one endless stream: its first ``n`` rows do not depend on how they are cut into batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.agents.sources.settings import DataSettings

__all__ = ["AgentRows", "SyntheticWorld", "rff_latent"]

# spawn keys of the world's SeedSequence, one per concern
_U, _W, _TEST, _AGENT = 0, 1, 2, 3
_INPUTS, _NOISE = 0, 1

#: Batches per agent on synthetic data when the config leaves it open.
DEFAULT_BATCHES = 5
#: Agents of a synthetic swarm when the config leaves it open.
DEFAULT_AGENTS = 8


def rff_latent(
    d: int, features: int, rng: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray]:
    """A draw of ``u ~ GP(0, exp(-|z - z'|^2 / 2))`` on R^d by random Fourier features.

    ``u(z) = sqrt(2/F) * sum_j w_j cos(omega_j . z + b_j)`` with ``omega_j ~ N(0, I_d)``,
    ``b_j ~ U[0, 2 pi)``, ``w_j ~ N(0, 1)``.

    Parameters
    ----------
    d : int
        Latent dimension.
    features : int
        Number of random features F (more: closer to an exact GP draw).
    rng : numpy.random.Generator
        Draws the frequencies, phases and weights (in that order).

    Returns
    -------
    callable
        ``u(Z)`` for Z of shape (n, d), returning shape (n,).
    """
    omega = rng.standard_normal((features, d))  # [F, d] spectral density of the unit SE kernel
    phase = rng.uniform(0.0, 2.0 * np.pi, features)  # [F]
    w = rng.standard_normal(features)  # [F]
    scale = np.sqrt(2.0 / features)

    block = max(1, 65536 // features)  # rows per block: temporaries stay near 512 KB

    def u(Z: np.ndarray) -> np.ndarray:
        out = np.empty(Z.shape[0])  # [n]
        for i in range(0, Z.shape[0], block):
            out[i : i + block] = scale * (np.cos(Z[i : i + block] @ omega.T + phase) @ w)
        return out

    return u


@dataclass(frozen=True)
class SyntheticWorld:
    """The synthetic model (see the module docstring); every field is JSON-able.

    Parameters
    ----------
    seed : int
        Root of every draw.
    d : int
        Input (and latent) dimension.
    groups : int
        G, the distinct projections; agent ``a`` is in group ``a % G``.
    spread : float
        ``W_g = I + spread * N(0, 1) / sqrt(d)`` (0: every group sees the same function).
    noise : float
        Observation noise standard deviation (>= 0).
    signal : float
        ``s`` in ``f_a = s * u(W_g x)``.
    features : int
        Random Fourier features of ``u``.

    Raises
    ------
    SourceConfigError
        A value out of range.
    """

    seed: int = 0
    d: int = 2
    groups: int = 1
    spread: float = 0.3
    noise: float = 0.1
    signal: float = 1.0
    features: int = 512

    def __post_init__(self) -> None:
        for k in ("d", "groups", "features"):
            if int(getattr(self, k)) < 1:
                raise SourceConfigError(
                    f"synthetic world: {k} must be >= 1, got {getattr(self, k)}"
                )
        if self.seed < 0:
            raise SourceConfigError(f"synthetic world: seed must be >= 0, got {self.seed}")
        if not (self.noise >= 0 and self.signal > 0 and self.spread >= 0):
            raise SourceConfigError(
                "synthetic world: expected noise >= 0, signal > 0, spread >= 0, got "
                f"noise={self.noise}, signal={self.signal}, spread={self.spread}"
            )

    @classmethod
    def from_config(cls, data: DataSettings, n_agents: int, seed: int) -> SyntheticWorld:
        """The world of a run: ``G = data.groups`` (None: ``min(n_agents, 8)``), ``d = data.dim``.

        Parameters
        ----------
        data : DataConfig (any :class:`DataSettings`)
        n_agents : int
            A, the swarm size (only fixes the default G).
        seed : int
            The run seed.
        """
        if n_agents < 1:
            raise SourceConfigError(f"synthetic world: n_agents must be >= 1, got {n_agents}")
        G = data.groups if data.groups is not None else min(n_agents, 8)
        return cls(seed=seed, d=data.dim, groups=G, spread=data.spread, noise=data.noise)

    # ------------------------------------------------------------------ the model

    def _seq(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    @cached_property
    def _u(self) -> Callable[[np.ndarray], np.ndarray]:
        return rff_latent(self.d, self.features, self._seq(_U))

    @cached_property
    def W(self) -> np.ndarray:
        """Projections ``W_g``, shape (G, d, d); ``W[g]`` does not depend on G."""
        d = self.d
        G = self._seq(_W).standard_normal((self.groups, d, d))  # [G, d, d]
        W = np.eye(d)[None] + self.spread * G / math.sqrt(d)
        W.flags.writeable = False
        return W

    def u(self, Z: np.ndarray) -> np.ndarray:
        """The latent function at ``Z`` (n, d): shape (n,)."""
        return self._u(np.asarray(Z, dtype=np.float64))

    def group_of(self, agent: int) -> int:
        """Group of agent ``a``: ``a % G``."""
        if agent < 0:
            raise SourceConfigError(f"synthetic world: agent {agent} < 0")
        return int(agent) % self.groups

    def f_group(self, g: int, X: np.ndarray) -> np.ndarray:
        """Noise-free ``s * u(W_g x)`` of group ``g`` at ``X`` (n, d): shape (n,)."""
        X = np.asarray(X, dtype=np.float64)
        return self.signal * self.u(X @ self.W[g].T)  # [n]

    def f(self, agent: int, X: np.ndarray) -> np.ndarray:
        """Noise-free ``f_a(X)`` of agent ``a`` at ``X`` (n, d): shape (n,)."""
        return self.f_group(self.group_of(agent), X)

    # ------------------------------------------------------------------ observations

    def rows(self, agent: int) -> AgentRows:
        """Agent ``a``'s endless stream of rows (seeded by ``(seed, a)`` alone)."""
        return AgentRows(self, agent)

    def batches(
        self, agent: int, n_batches: int, batch_size: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Agent ``a``'s first ``n_batches * batch_size`` rows in batches.

        Returns
        -------
        list of (ndarray (S, d), ndarray (S,))
            ``n_batches`` pairs ``(X, y)``, S = ``batch_size``.
        """
        if n_batches < 0 or batch_size < 1:
            raise SourceConfigError(
                f"synthetic world: need n_batches >= 0 and batch_size >= 1, "
                f"got {n_batches}, {batch_size}"
            )
        X, y = self.rows(agent).take(n_batches * batch_size)  # [B*S, d], [B*S]
        S = batch_size
        return [(X[k * S : (k + 1) * S], y[k * S : (k + 1) * S]) for k in range(n_batches)]

    def test_set(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The shared test inputs and every group's noisy targets there.

        Returns
        -------
        X : ndarray of shape (n, d)
        Y : ndarray of shape (G, n)
            ``Y[g] = s * u(W_g X) + noise * eps``.
        """
        if n < 1:
            raise SourceConfigError(f"synthetic world: test set of {n} points")
        r = self._seq(_TEST)
        X = r.standard_normal((n, self.d))  # [n, d]
        Y = np.stack(
            [self.f_group(g, X) + self.noise * r.standard_normal(n) for g in range(self.groups)]
        )  # [G, n]
        return X, Y

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the fields)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticWorld:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SourceConfigError(f"synthetic world: unknown keys {sorted(unknown)}")
        return cls(**dict(data))


class AgentRows:
    """One agent's endless, seeded stream of rows; :meth:`take` continues where it stopped.

    Inputs and noise come from two generators of their own, so the rows do not depend on
    how many are taken at a time.

    Parameters
    ----------
    world : SyntheticWorld
    agent : int
    """

    def __init__(self, world: SyntheticWorld, agent: int) -> None:
        self.world = world
        self.agent = int(agent)
        self.group = world.group_of(agent)
        self._rx = world._seq(_AGENT, self.agent, _INPUTS)
        self._re = world._seq(_AGENT, self.agent, _NOISE)
        self.taken = 0

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` rows: ``X`` (n, d) and ``y`` (n,)."""
        w = self.world
        X = self._rx.standard_normal((n, w.d))  # [n, d]
        eps = self._re.standard_normal(n)  # [n]
        y = w.f_group(self.group, X) + w.noise * eps  # [n]
        self.taken += n
        return X, y
