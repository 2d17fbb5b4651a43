"""The ``synthetic:`` source: the one synthetic world (:mod:`~swarmgp.agents.sources.world`)
replayed as a stream of observations.

Agent ``a`` (key ``"a"``) observes the rows of :meth:`SyntheticWorld.rows` ``(a)``, the very
rows the simulator and a real agent process get for agent ``a`` from the same world: standard
normal inputs, ``y = signal * u(W_g x) + noise * eps`` with ``g = a % G``. Agents take turns:
step ``i`` yields one observation per agent at ``t = i * dt``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from swarmgp.agents.sources.base import Source
from swarmgp.agents.sources.errors import SourceConfigError
from swarmgp.agents.sources.record import Observation
from swarmgp.agents.sources.world import SyntheticWorld, rff_latent

__all__ = ["LatentFunction", "SyntheticSource", "SyntheticSpec", "rff_latent"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic stream (all serialisable; URI options of ``synthetic:``).

    Parameters
    ----------
    n_agents : int
        A (URI option ``agents``).
    d : int
        Input dimension.
    n : int
        Observations per agent (``0``: endless).
    n_features : int
        Random Fourier features of ``u`` (URI option ``features``).
    groups : int or None
        Distinct projections G (phenomena); default 1, as ``--groups``; None: ``min(n_agents, 8)``.
    spread : float
        Projection perturbation: ``W_g = I + spread * N(0, 1) / sqrt(d)``.
    noise : float
        Observation noise standard deviation.
    signal : float
        Scale ``s`` of the latent function.
    dt : float
        Time step.
    seed : int
    """

    n_agents: int = 4
    d: int = 2
    n: int = 1000
    n_features: int = 512
    groups: int | None = 1
    spread: float = 0.3
    noise: float = 0.1
    signal: float = 1.0
    dt: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_agents < 1 or self.d < 1 or self.n < 0 or self.n_features < 1:
            raise SourceConfigError(f"invalid synthetic spec {self}")
        if self.noise < 0 or self.dt <= 0 or (self.groups is not None and self.groups < 1):
            raise SourceConfigError(f"invalid synthetic spec {self}")

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> SyntheticSpec:
        """Build from URI options (``agents=4,d=2,n=1000,seed=0,noise=0.1,...``)."""
        aliases = {"agents": "n_agents", "features": "n_features"}
        fields = cls.__dataclass_fields__
        kw: dict[str, Any] = {}
        for key, value in opts.items():
            name = aliases.get(key, key)
            if name not in fields:
                raise SourceConfigError(f"synthetic: unknown option {key!r}")
            typ = fields[name].type
            try:
                kw[name] = int(value) if "int" in str(typ) else float(value)
            except ValueError:
                raise SourceConfigError(
                    f"synthetic: option {key}={value!r} is not a number"
                ) from None
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @property
    def world(self) -> SyntheticWorld:
        """The world these rows come from."""
        G = self.groups if self.groups is not None else min(self.n_agents, 8)
        return SyntheticWorld(
            seed=self.seed,
            d=self.d,
            groups=G,
            spread=self.spread,
            noise=self.noise,
            signal=self.signal,
            features=self.n_features,
        )


class LatentFunction:
    """The ground truth of a :class:`SyntheticSpec`: ``u``, the projections, ``f_a``."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        self.world = spec.world
        self.W = self.world.W  # [G, d, d]

    def u(self, Z: np.ndarray) -> np.ndarray:
        """Latent function at ``Z`` (n, d): shape (n,)."""
        return self.world.u(Z)

    def f(self, agent: int, X: np.ndarray) -> np.ndarray:
        """Noise-free ``f_a(X)`` for ``X`` (n, d): shape (n,)."""
        return self.world.f(agent, X)


class SyntheticSource(Source):
    """Endless or finite seeded stream of a :class:`SyntheticSpec` (agent keys ``"0"`` ...).

    A thin adapter over :class:`SyntheticWorld`: agent ``a``'s observations are the world's
    :meth:`~SyntheticWorld.rows` of ``a``, drawn ``chunk`` steps at a time.
    """

    def __init__(self, spec: SyntheticSpec, *, chunk: int = 256, **kwargs: Any) -> None:
        super().__init__(
            "synthetic:" + ",".join(f"{k}={v}" for k, v in spec.to_dict().items() if v is not None),
            **kwargs,
        )
        self.spec = spec
        self.world = spec.world
        self.truth = LatentFunction(spec)
        self.chunk = int(chunk)

    def _produce(self) -> Iterator[Observation]:
        s = self.spec
        streams = [self.world.rows(a) for a in range(s.n_agents)]
        keys = [str(a) for a in range(s.n_agents)]
        step = 0
        while s.n == 0 or step < s.n:
            steps = self.chunk if s.n == 0 else min(self.chunk, s.n - step)
            drawn = [r.take(steps) for r in streams]  # A x ([steps, d], [steps])
            for X, _ in drawn:
                X.flags.writeable = False
            for i in range(steps):
                t = (step + i) * s.dt
                for a in range(s.n_agents):
                    X, y = drawn[a]
                    yield Observation(keys[a], t, X[i], float(y[i]))
            step += steps
