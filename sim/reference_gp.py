"""Centralized GPyTorch baselines: SGPR on the pooled data, and a small exact GP.

These are the *centralized* references that swarmgp's decentralized COOL-GP models are compared
with in the benchmarks and in the simulator's report (``sgpr_pooled``): one machine sees every
agent's data and fits a sparse GP (Titsias 2009, via GPyTorch's ``InducingPointKernel``) with an
ARD squared-exponential kernel, learning the inducing inputs.

All inputs and outputs are numpy float64; torch is used inside only.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from swarmgp.fusion.errors import EmptyBatchError, NumericalWarning, ShapeError
from swarmgp.fusion.linalg import as_float64

__all__ = ["exact_gp_predict", "kmeans_init", "sgpr_pooled"]

_DT = torch.float64
#: Lloyd iterations of the k-means initialisation of the inducing inputs.
KMEANS_ITERS = 10
#: Points per chunk at prediction time, to bound memory.
PREDICT_CHUNK = 4096


def kmeans_init(X: np.ndarray, m: int, *, iters: int = KMEANS_ITERS, seed: int = 0) -> np.ndarray:
    """k-means centres (Lloyd, from a random subset) used to initialise inducing inputs.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    m : int
        Number of centres; if ``m >= n`` the rows of X (plus small seeded jitter for the excess)
        are returned.
    iters : int
        Lloyd iterations.
    seed : int

    Returns
    -------
    ndarray of shape (m, d)
    """
    rng = np.random.default_rng(seed)
    n, d = X.shape
    if m >= n:
        extra = X[rng.integers(0, n, m - n)] + 1e-3 * rng.standard_normal((m - n, d))
        return np.concatenate([X, extra], 0)
    C = X[rng.choice(n, m, replace=False)].copy()  # [m, d]
    x2 = (X * X).sum(1)
    for _ in range(iters):
        D = x2[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]  # [n, m]
        lab = np.argmin(D, 1)
        counts = np.bincount(lab, minlength=m)
        sums = np.zeros((m, d))
        np.add.at(sums, lab, X)
        keep = counts > 0
        C[keep] = sums[keep] / counts[keep, None]
    return C


def _check_xy(X: object, y: object, Xtest: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Xa = as_float64(X, "train X", (None, None))
    ya = as_float64(y, "train y", (Xa.shape[0],))
    if Xa.shape[0] == 0:
        raise EmptyBatchError("reference GP: expected at least one training point, got 0")
    Xs = as_float64(Xtest, "test X", (None, Xa.shape[1]))
    return Xa, ya, Xs


def _fit_and_predict(
    model: torch.nn.Module,
    lik: torch.nn.Module,
    Xt: torch.Tensor,
    yt: torch.Tensor,
    Xs: np.ndarray,
    iters: int,
    lr: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Adam on the exact (or collapsed SGPR) marginal likelihood, then predict y at Xs."""
    import gpytorch

    model.train()
    lik.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gpytorch.settings.max_cholesky_size(10**7):
            for _ in range(iters):
                opt.zero_grad()
                loss = -mll(model(Xt), yt)
                if not torch.isfinite(loss):
                    warnings.warn("reference GP: non-finite loss", RuntimeWarning, stacklevel=2)
                    break
                loss.backward()
                opt.step()
            model.eval()
            lik.eval()
            means, variances = [], []
            with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
                for lo in range(0, Xs.shape[0], PREDICT_CHUNK):
                    xs = torch.from_numpy(Xs[lo : lo + PREDICT_CHUNK])
                    pred = lik(model(xs))
                    means.append(pred.mean.numpy().copy())
                    variances.append(pred.variance.numpy().copy())
    numerical = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if numerical:
        warnings.warn(
            f"reference GP: {len(numerical)} numerical warning(s) while fitting, first: "
            f"{numerical[0].message}",
            NumericalWarning,
            stacklevel=3,
        )
    mean = np.concatenate(means) if means else np.zeros(0)
    var = np.concatenate(variances) if variances else np.zeros(0)
    return mean.astype(np.float64), var.astype(np.float64)


def sgpr_pooled(
    X: np.ndarray,
    y: np.ndarray,
    Xtest: np.ndarray,
    m: int,
    *,
    iters: int = 200,
    seed: int = 0,
    lr: float = 0.05,
    constant_mean: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Centralized SGPR baseline on the pooled data of all agents (Titsias 2009).

    GPyTorch ``InducingPointKernel`` over ``ScaleKernel(RBFKernel(ard_num_dims=d))`` with a
    Gaussian likelihood; the m inducing inputs start at k-means centres of X and are learned
    with the kernel hyperparameters by Adam on the collapsed bound.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Pooled training inputs.
    y : ndarray of shape (n,)
    Xtest : ndarray of shape (t, d)
    m : int
        Number of inducing inputs.
    iters : int
        Adam iterations.
    seed : int
        Seeds the k-means initialisation and (forked) torch RNG.
    lr : float
        Adam step size.
    constant_mean : bool
        Learn a constant mean (else zero mean, as in the COOL-GP model).

    Returns
    -------
    mean : ndarray of shape (t,)
        Predictive mean of y.
    var_y : ndarray of shape (t,)
        Predictive variance of y (noise included).

    Raises
    ------
    ShapeError, NonFiniteError, EmptyBatchError
    """
    import gpytorch

    Xa, ya, Xs = _check_xy(X, y, Xtest)
    if not (isinstance(m, int) and m >= 1):
        raise ShapeError(f"sgpr_pooled: expected m >= 1, got {m!r}")
    d = Xa.shape[1]
    Zi = kmeans_init(Xa, m, seed=seed)
    Xt, yt = torch.from_numpy(Xa), torch.from_numpy(ya)
    var_y = max(float(np.var(ya)), 1e-4)

    class _SGPR(gpytorch.models.ExactGP):
        def __init__(self, lik: gpytorch.likelihoods.GaussianLikelihood) -> None:
            super().__init__(Xt, yt, lik)
            self.mean_module = (
                gpytorch.means.ConstantMean() if constant_mean else gpytorch.means.ZeroMean()
            )
            self.base = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=d))
            self.covar_module = gpytorch.kernels.InducingPointKernel(
                self.base, inducing_points=torch.from_numpy(Zi.copy()), likelihood=lik
            )

        def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lik = gpytorch.likelihoods.GaussianLikelihood().to(_DT)
        model = _SGPR(lik).to(_DT)
        model.base.outputscale = torch.tensor(var_y, dtype=_DT)
        model.base.base_kernel.lengthscale = torch.ones(1, d, dtype=_DT)
        lik.noise = torch.tensor(max(0.1 * var_y, 2e-4), dtype=_DT)
        if constant_mean:
            model.mean_module.constant.data.fill_(float(np.mean(ya)))
        return _fit_and_predict(model, lik, Xt, yt, Xs, iters, lr)


def exact_gp_predict(
    X: np.ndarray,
    y: np.ndarray,
    Xtest: np.ndarray,
    *,
    iters: int = 100,
    seed: int = 0,
    lr: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ARD-SE GP regression (small n, O(n^3)) with zero mean, fitted by Adam.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    Xtest : ndarray of shape (t, d)
    iters : int
    seed : int
    lr : float

    Returns
    -------
    mean : ndarray of shape (t,)
    var_y : ndarray of shape (t,)
        Predictive variance of y (noise included).
    """
    import gpytorch

    Xa, ya, Xs = _check_xy(X, y, Xtest)
    d = Xa.shape[1]
    Xt, yt = torch.from_numpy(Xa), torch.from_numpy(ya)
    var_y = max(float(np.var(ya)), 1e-4)

    class _Exact(gpytorch.models.ExactGP):
        def __init__(self, lik: gpytorch.likelihoods.GaussianLikelihood) -> None:
            super().__init__(Xt, yt, lik)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=d)
            )

        def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lik = gpytorch.likelihoods.GaussianLikelihood().to(_DT)
        model = _Exact(lik).to(_DT)
        model.covar_module.outputscale = torch.tensor(var_y, dtype=_DT)
        model.covar_module.base_kernel.lengthscale = torch.ones(1, d, dtype=_DT)
        lik.noise = torch.tensor(max(0.1 * var_y, 2e-4), dtype=_DT)
        return _fit_and_predict(model, lik, Xt, yt, Xs, iters, lr)
