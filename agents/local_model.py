"""The agent's local sparse GP: an online encoder, its hyperparameters and their learner.

Order of operations per batch (COOL-GP Sec. 3.2, supplementary Sec. 3.2): first the batch is
encoded into the local summary under the current q(W); then, if learning is on, one stochastic
gradient step on the batch's evidence lower bound moves q(W), s and sigma_n, using the current
*fused* q(u) when the agent has one (Remark 3) and its own otherwise. The importance-sampled
encoder re-weights on the next summary request; the analytic one keeps each batch as encoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from swarmgp.fusion.encoders import AnalyticEncoder, ImportanceEncoder, check_batch
from swarmgp.fusion.encoding import Encoding
from swarmgp.fusion.errors import SwarmGPError
from swarmgp.fusion.hyper import Hyperparameters
from swarmgp.fusion.predict import PredictiveCache, predict, predictive_cache
from swarmgp.fusion.summary import Summary

if TYPE_CHECKING:
    from swarmgp.agents.learner import Learner

__all__ = ["LocalModel", "LocalModelConfig"]


@dataclass(frozen=True)
class LocalModelConfig:
    """Settings of an agent's local model.

    Attributes
    ----------
    encoder : {"analytic", "importance"}
        Exact per-batch encoding, or the paper's importance-sampled estimator.
    samples : int
        M, prior samples of W for the importance encoder.
    learn : bool
        Whether hyperparameters are learned online; off freezes them at ``initial``.
    stream_batches : int or None
        N', the expected stream length in batches that scales the batch ELBO; None uses the
        number of batches seen so far.
    initial : Hyperparameters or None
        Shared initial hyperparameters; None means ``Hyperparameters.initial(d)``.
    learner : dict
        Keyword arguments of ``LearnerConfig``.
    warm_start : bool
        If learning, fit an ARD squared-exponential GP (gpytorch) on the first batch and start
        q(W), s and sigma_n from it, before that batch is encoded.
    """

    encoder: Literal["analytic", "importance"] = "analytic"
    samples: int = 20
    learn: bool = True
    stream_batches: int | None = None
    initial: Hyperparameters | None = None
    learner: dict[str, Any] = field(default_factory=dict)
    warm_start: bool = False


class LocalModel:
    """An agent's local model: encoder, hyperparameters, learner.

    Parameters
    ----------
    encoding : Encoding
        The swarm's common encoding.
    config : LocalModelConfig
    rng : numpy.random.Generator
        Draws the importance encoder's prior samples.
    """

    #: Its summaries come from ``identity_plus_psd``, whose Cholesky already checks that P is
    #: SPD, so the agent need not :meth:`~swarmgp.fusion.summary.Summary.validate` them again.
    summary_validated = True

    def __init__(
        self, encoding: Encoding, config: LocalModelConfig, rng: np.random.Generator
    ) -> None:
        self.encoding = encoding
        self.config = config
        d = encoding.d
        self.hyper = config.initial if config.initial is not None else Hyperparameters.initial(d)
        if self.hyper.d != d:
            raise SwarmGPError(
                f"local model: hyperparameters of dimension {self.hyper.d} for encoding d={d}"
            )
        self.encoder: AnalyticEncoder | ImportanceEncoder
        if config.encoder == "importance":
            self.encoder = ImportanceEncoder(encoding, config.samples, rng)
        elif config.encoder == "analytic":
            self.encoder = AnalyticEncoder(encoding)
        else:
            raise SwarmGPError(f"local model: unknown encoder {config.encoder!r}")
        self.batches = 0
        self.learner_failures = 0
        self._learner: Learner | None = None
        self._pred_cache: dict[int, tuple[Summary, PredictiveCache]] = {}

    @property
    def n_obs(self) -> int:
        """Observations encoded so far."""
        return self.encoder.n_obs

    def _get_learner(self) -> Learner:
        if self._learner is None:
            from swarmgp.agents.learner import Learner, LearnerConfig

            self._learner = Learner(LearnerConfig(**self.config.learner))
        return self._learner

    def observe(self, X: object, y: object, fused: Summary | None = None) -> None:
        """Encode one batch, then (if learning) take one step on its ELBO.

        Parameters
        ----------
        X : array_like of shape (n, d)
            Standardized inputs.
        y : array_like of shape (n,)
        fused : Summary or None
            The agent's current collective model, used for the hyperparameter gradient.

        Raises
        ------
        ShapeError, NonFiniteError, EmptyBatchError
            Bad batch; the model is left unchanged.
        """
        Xa, ya = check_batch(X, y, self.encoding.d)
        if self.config.learn and self.config.warm_start and self.batches == 0:
            from swarmgp.agents.learner import warm_start

            self.hyper = warm_start(Xa, ya)
        self.encoder.add_batch(Xa, ya, self.hyper)
        self.batches += 1
        if not self.config.learn:
            return
        q = fused if fused is not None and fused.n_obs > 0 else self.summary()
        mom = q.moments()
        n_scale = float(self.config.stream_batches or self.batches)
        try:
            self.hyper = self._get_learner().step(
                Xa, ya, self.hyper, self.encoding, mom.mean, mom.cov(), n_scale
            )
        except SwarmGPError:
            # a failed step keeps the previous hyperparameters; the batch stays encoded
            self.learner_failures += 1

    def summary(self) -> Summary:
        """The local summary ``R_a`` under the current hyperparameters."""
        return self.encoder.summary(self.hyper)

    def predict(self, X: object, fused: Summary | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance of y at test inputs.

        Parameters
        ----------
        X : array_like of shape (n, d)
        fused : Summary or None
            Predict from this collective model; None predicts from the local summary.

        Returns
        -------
        mean, var_y : ndarray of shape (n,)
        """
        s = fused if fused is not None else self.summary()
        hit = self._pred_cache.get(id(s))
        if hit is None or hit[0] is not s:
            if len(self._pred_cache) >= 2:  # local and fused; older snapshots are dropped
                self._pred_cache.pop(next(iter(self._pred_cache)))
            hit = (s, predictive_cache(s, self.encoding))
            self._pred_cache[id(s)] = hit
        mean, var = predict(np.asarray(X), hit[1], self.encoding, self.hyper)  # type: ignore[arg-type]
        return mean, var + self.hyper.sn2

    # --- durable agents (issue 10): state() / restore() for --state-dir -------------------

    def state(self) -> dict[str, Any]:
        """Everything learned so far, as arrays and scalars (``agents/runtime/snapshot.py``).

        The encoder's running sums, its observation count, q(W), s, sigma_n, the batch and
        failure counts and the learner's step counters and Adam moments.
        """
        enc = self.encoder
        h = self.hyper
        st: dict[str, Any] = {
            "kind": "paper",
            "encoder": self.config.encoder,
            "encoding": self.encoding.hash,
            "n_obs": int(enc.n_obs),
            "batches": self.batches,
            "learner_failures": self.learner_failures,
            "hyper.mu": h.mu.copy(),
            "hyper.log_sigma": h.log_sigma.copy(),
            "hyper.log_s": h.log_s,
            "hyper.log_sn": h.log_sn,
        }
        if isinstance(enc, ImportanceEncoder):
            st.update({"enc.W": enc.W.copy(), "enc.A": enc._A.copy(), "enc.b": enc._b.copy()})
        else:
            st.update({"enc.C": enc._C.copy(), "enc.c": enc._c.copy()})
        lr = self._learner
        if lr is not None:
            st.update({"learner.t": lr.t, "learner.n_batches": lr.n_batches})
            if lr._m1 is not None and lr._m2 is not None:
                st.update({"learner.m1": lr._m1.copy(), "learner.m2": lr._m2.copy()})
        return st

    def restore(self, state: dict[str, Any]) -> None:
        """Take a :meth:`state` back; all-or-nothing.

        Raises
        ------
        SwarmGPError
            Another kind of model, encoder or encoding, or arrays of the wrong shape or with
            non-finite entries (the model is unchanged).
        """
        d, m = self.encoding.d, self.encoding.m

        def arr(name: str, shape: tuple[int, ...]) -> np.ndarray:
            a = np.asarray(state[name], dtype=np.float64)
            if a.shape != shape or not np.isfinite(a).all():
                raise SwarmGPError(f"state {name}: expected finite {shape}, got {a.shape}")
            return a.copy()

        def count(name: str) -> int:
            v = state[name]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SwarmGPError(f"state {name}: expected a count, got {v!r}")
            return v

        if state.get("kind") != "paper" or state.get("encoder") != self.config.encoder:
            raise SwarmGPError(
                f"state of a {state.get('kind')!r}/{state.get('encoder')!r} model, "
                f"this is paper/{self.config.encoder}"
            )
        if state.get("encoding") != self.encoding.hash:
            raise SwarmGPError(f"state of encoding {state.get('encoding')!r}")
        hyper = Hyperparameters(
            arr("hyper.mu", (d, d)),
            arr("hyper.log_sigma", (d, d)),
            float(state["hyper.log_s"]),
            float(state["hyper.log_sn"]),
        )
        n_obs, batches, failures = count("n_obs"), count("batches"), count("learner_failures")
        enc = self.encoder
        sums: list[np.ndarray]
        if isinstance(enc, ImportanceEncoder):
            M = enc.samples
            sums = [arr("enc.W", (M, d, d)), arr("enc.A", (M, m, m)), arr("enc.b", (M, m))]
        else:
            sums = [arr("enc.C", (m, m)), arr("enc.c", (m,))]
        learner: tuple[int, int, np.ndarray | None, np.ndarray | None] | None = None
        if "learner.t" in state:
            m1 = m2 = None
            if "learner.m1" in state or "learner.m2" in state:  # Adam's moments: both
                P = (2 * d * d + 2,)
                m1, m2 = arr("learner.m1", P), arr("learner.m2", P)
            learner = (count("learner.t"), count("learner.n_batches"), m1, m2)
        # everything checked: apply
        if isinstance(enc, ImportanceEncoder):
            enc.W, enc._A, enc._b = sums
            enc._cache_key = None
        else:
            enc._C, enc._c = sums
        enc.n_obs = n_obs
        enc._cached = None
        self.hyper = hyper
        self.batches, self.learner_failures = batches, failures
        self._pred_cache.clear()
        if learner is not None:
            lr = self._get_learner()
            lr.t, lr.n_batches, lr._m1, lr._m2 = learner

    # --- end durable agents ----------------------------------------------------------------
