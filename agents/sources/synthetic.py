"""Seeded synthetic streams: one latent GP function seen through per-agent projections.

``u`` is a draw from a zero-mean GP with the unit squared-exponential kernel
(lengthscale 1, variance 1) in ``k`` latent dimensions, approximated by ``F`` random
Fourier features with a fixed seed::

    u(z) = sqrt(2/F) * sum_j w_j cos(omega_j . z + b_j),  omega_j ~ N(0, I_k),
    b_j ~ U[0, 2 pi),  w_j ~ N(0, 1).

Agent ``a`` sees ``f_a(x) = u(W_a x)`` with ``W_a = I_{k,d} + spread * G_a``,
``G_a ~ N(0, 1/d)`` (``spread = 0``: every agent sees the same function), and
observes ``y = f_a(x) + noise * eps`` at inputs ``x ~ U[-x_scale, x_scale]^d``.
Agents take turns: step ``i`` yields one observation per agent at ``t = i * dt``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .base import Source
from .errors import SourceConfigError
from .record import Observation

__all__ = ["SyntheticSpec", "SyntheticSource", "LatentFunction"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic stream (all serialisable).

    Parameters
    ----------
    n_agents : int
    d : int
        Input dimension.
    n : int
        Observations per agent (``0``: endless).
    latent_dim : int or None
        ``k``; default ``d``.
    n_features : int
        Random Fourier features.
    spread : float
        Per-agent projection perturbation.
    noise : float
        Observation noise standard deviation.
    x_scale : float
        Inputs uniform on ``[-x_scale, x_scale]^d``.
    dt : float
        Time step.
    seed : int
    """

    n_agents: int = 4
    d: int = 2
    n: int = 1000
    latent_dim: int | None = None
    n_features: int = 512
    spread: float = 0.3
    noise: float = 0.1
    x_scale: float = 2.0
    dt: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_agents < 1 or self.d < 1 or self.n < 0 or self.n_features < 1:
            raise SourceConfigError(f"invalid synthetic spec {self}")
        if self.noise < 0 or self.x_scale <= 0 or self.dt <= 0:
            raise SourceConfigError(f"invalid synthetic spec {self}")

    @classmethod
    def from_options(cls, opts: Mapping[str, str]) -> SyntheticSpec:
        """Build from URI options (``agents=4,d=2,n=1000,seed=0,noise=0.1,...``)."""
        aliases = {"agents": "n_agents", "features": "n_features", "k": "latent_dim"}
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


def rff_latent(
    d: int, features: int, rng: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray]:
    """A draw of ``u ~ GP(0, exp(-|z - z'|^2 / 2))`` on R^d by random Fourier features.

    Parameters
    ----------
    d : int
        Latent dimension.
    features : int
        Number of random features (more: closer to an exact GP draw).
    rng : numpy.random.Generator
        Draws the frequencies, phases and weights (in that order).

    Returns
    -------
    callable
        ``u(Z)`` for Z of shape (n, d), returning shape (n,).
    """
    omega = rng.standard_normal((features, d))  # spectral density of the unit SE kernel
    phase = rng.uniform(0.0, 2.0 * np.pi, features)
    w = rng.standard_normal(features)
    scale = np.sqrt(2.0 / features)

    block = max(1, 65536 // features)  # rows per block: temporaries stay near 512 KB

    def u(Z: np.ndarray) -> np.ndarray:
        out = np.empty(Z.shape[0])
        for i in range(0, Z.shape[0], block):
            out[i : i + block] = scale * (np.cos(Z[i : i + block] @ omega.T + phase) @ w)
        return out

    return u


class LatentFunction:
    """The ground truth of a :class:`SyntheticSpec`: ``u`` and the projections ``W_a``."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        k = spec.latent_dim or spec.d
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
        self._u = rff_latent(k, spec.n_features, rng)
        eye = np.eye(k, spec.d)
        self.W = np.stack(
            [
                eye + spec.spread * rng.standard_normal((k, spec.d)) / np.sqrt(spec.d)
                for _ in range(spec.n_agents)
            ]
        )

    def u(self, Z: np.ndarray) -> np.ndarray:
        """Latent function at ``Z [n, k]``."""
        return self._u(np.asarray(Z, dtype=np.float64))

    def f(self, agent: int, X: np.ndarray) -> np.ndarray:
        """Noise-free ``f_a(X)`` for ``X [n, d]``."""
        return self.u(np.asarray(X, dtype=np.float64) @ self.W[agent].T)


class SyntheticSource(Source):
    """Endless or finite seeded stream of a :class:`SyntheticSpec` (agent keys ``"0"`` ...)."""

    def __init__(self, spec: SyntheticSpec, *, chunk: int = 256, **kwargs: Any) -> None:
        super().__init__(
            "synthetic:" + ",".join(f"{k}={v}" for k, v in spec.to_dict().items() if v is not None),
            **kwargs,
        )
        self.spec = spec
        self.truth = LatentFunction(spec)
        self.chunk = int(chunk)

    def _produce(self) -> Iterator[Observation]:
        s = self.spec
        rng = np.random.default_rng(np.random.SeedSequence([s.seed, 1]))
        keys = [str(a) for a in range(s.n_agents)]
        step = 0
        while s.n == 0 or step < s.n:
            steps = self.chunk if s.n == 0 else min(self.chunk, s.n - step)
            X = rng.uniform(-s.x_scale, s.x_scale, (steps, s.n_agents, s.d))
            eps = rng.standard_normal((steps, s.n_agents))
            F = np.stack([self.truth.f(a, X[:, a, :]) for a in range(s.n_agents)], axis=1)
            Y = F + s.noise * eps
            X.flags.writeable = False
            for i in range(steps):
                t = (step + i) * s.dt
                for a in range(s.n_agents):
                    yield Observation(keys[a], t, X[i, a], float(Y[i, a]))
            step += steps
