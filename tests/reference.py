"""Slow, obviously correct oracles for the fast numerics (loops, explicit formulas).

Tolerances used across the tests are named here.
"""

from __future__ import annotations

import numpy as np

#: Exact algebra (fusion, tree messages): relative error allowed from float64 round-off.
RTOL_EXACT = 1e-9
#: Monte Carlo comparisons: absolute error allowed with the sample sizes used.
ATOL_MC = 3e-3


def psi1_loop(X, Z, mu, sigma2, s):
    """psi_1 by a double loop over points and inducing inputs (digest Sec. 2.4)."""
    n, m = X.shape[0], Z.shape[0]
    out = np.zeros((n, m))
    for a in range(n):
        nu = mu @ X[a]
        v = sigma2 @ (X[a] ** 2)
        for j in range(m):
            out[a, j] = s * np.prod((1 + v) ** -0.5 * np.exp(-((nu - Z[j]) ** 2) / (2 * (1 + v))))
    return out


def psi2_loop(X, Z, mu, sigma2, s):
    """sum_n Psi_2(x_n) by a triple loop (digest Sec. 2.4)."""
    m = Z.shape[0]
    out = np.zeros((m, m))
    for x in X:
        nu = mu @ x
        v = sigma2 @ (x**2)
        for j in range(m):
            for k in range(m):
                zbar = 0.5 * (Z[j] + Z[k])
                out[j, k] += s**2 * np.prod(
                    (1 + 2 * v) ** -0.5
                    * np.exp(-((Z[j] - Z[k]) ** 2) / 4 - (nu - zbar) ** 2 / (1 + 2 * v))
                )
    return out


def posterior_u_paper(K, C_II, C_ID_y, sn2):
    """q(u_I) of COOL-GP eq. (2) by explicit inverses: returns (mean m, covariance S)."""
    A = np.linalg.inv(sn2 * K + C_II)
    return K @ A @ C_ID_y, sn2 * K @ A @ K


def dtc_predictive_mean(X, y, Xs, Zx, kern, sn2):
    """Standard DTC/VFE predictive mean with inducing inputs Zx in input space, by inverses.

    ``mean = K_*u (K_uu + K_uf K_fu / sn2)^-1 K_uf y / sn2`` (Quinonero-Candela & Rasmussen 2005).
    """
    Kuu = kern(Zx, Zx)
    Kuf = kern(Zx, X)
    Sigma = np.linalg.inv(Kuu + Kuf @ Kuf.T / sn2)
    return kern(Xs, Zx) @ Sigma @ Kuf @ y / sn2


def mc_predictive(Xs, mean_u, S_u, K, Z, mu, sigma2, s, samples, rng):
    """Monte Carlo mean and variance of f(x*) = s u(W x*) under q(W) q(u_I)."""
    Kinv = np.linalg.inv(K)
    a = Kinv @ mean_u
    d = mu.shape[0]
    means = np.zeros((samples, Xs.shape[0]))
    vars_ = np.zeros((samples, Xs.shape[0]))
    B = Kinv @ S_u @ Kinv - Kinv
    for t in range(samples):
        W = mu + np.sqrt(sigma2) * rng.standard_normal((d, d))
        T = Xs @ W.T
        k = s * np.exp(-0.5 * ((T[:, None, :] - Z[None]) ** 2).sum(-1))
        means[t] = k @ a
        vars_[t] = s**2 + np.einsum("nj,jk,nk->n", k, B, k)
    mean = means.mean(0)
    var = vars_.mean(0) + (means**2).mean(0) - mean**2
    return mean, var


def se_kernel_ard(A, B, ell):
    """ARD squared-exponential kernel with unit variance, by a double loop."""
    out = np.zeros((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            out[i, j] = np.exp(-0.5 * np.sum(((A[i] - B[j]) / ell) ** 2))
    return out


def collapsed_bound_direct(X, y, Z, ell, s, sn, sb, jitter):
    """Titsias (2009) collapsed bound with a bias feature, O(n^3), by explicit inverses.

    ``log N(y | 0, Q_ff + sn^2 I) - tr(K_ff - Q_ff) / (2 sn^2)`` with
    ``Q_ff = s^2 K_xz (K_zz + jitter I)^-1 K_zx + sb^2 1 1^T`` and ``K_ff = s^2 K_xx + sb^2 1 1^T``.
    """
    n = X.shape[0]
    Kzz = se_kernel_ard(Z, Z, ell) + jitter * np.eye(Z.shape[0])
    Kxz = se_kernel_ard(X, Z, ell)
    Q = s**2 * Kxz @ np.linalg.inv(Kzz) @ Kxz.T + sb**2 * np.ones((n, n))
    C = Q + sn**2 * np.eye(n)
    _, logdet = np.linalg.slogdet(C)
    loglik = -0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.inv(C) @ y)
    Kff_diag = s**2 * np.ones(n) + sb**2
    return loglik - (Kff_diag.sum() - np.trace(Q)) / (2 * sn**2)


def sgpr_bias_predict(X, y, Xs, Z, ell, s, sn, sb, jitter):
    """SGPR (Titsias / DTC) predictive with the bias as an extra inducing variable, by inverses.

    Inducing variables ``[u_Z, b]`` with ``K_uu = blockdiag(s^2 (K_zz + jitter I), sb^2)`` and
    ``K_xu = [s^2 K_xz, sb^2 1]``; ``Sigma = (K_uu + K_ux K_xu / sn^2)^-1``;
    ``mean = K_*u Sigma K_ux y / sn^2``;
    ``var_f = K_** - K_*u K_uu^-1 K_u* + K_*u Sigma K_u*`` (Quinonero-Candela & Rasmussen 2005).
    Returns (mean, var_f).
    """
    m = Z.shape[0]
    Kuu = np.zeros((m + 1, m + 1))
    Kuu[:m, :m] = s**2 * (se_kernel_ard(Z, Z, ell) + jitter * np.eye(m))
    Kuu[m, m] = sb**2

    def kxu(A):
        return np.hstack([s**2 * se_kernel_ard(A, Z, ell), sb**2 * np.ones((A.shape[0], 1))])

    Kfu, Ksu = kxu(X), kxu(Xs)
    Sigma = np.linalg.inv(Kuu + Kfu.T @ Kfu / sn**2)
    mean = Ksu @ Sigma @ Kfu.T @ y / sn**2
    Kss = s**2 + sb**2
    var = Kss - np.einsum("ij,jk,ik->i", Ksu, np.linalg.inv(Kuu), Ksu)
    var += np.einsum("ij,jk,ik->i", Ksu, Sigma, Ksu)
    return mean, var


def collapsed_bound_site_direct(parts, Z, ell, s, sn, sb, tau, jitter):
    """Collapsed bound with a per-agent offset (site effect), O(n^3), by explicit inverses.

    ``parts`` is ``[(X_a, y_a), ...]``, one site per agent. The offsets ``b_a ~ N(0, tau^2)``
    are exact latent variables: ``log N(y | 0, Q_ff + blockdiag_a(sn^2 I + tau^2 1 1^T))
    - tr(K_ff - Q_ff) / (2 sn^2)`` with ``Q_ff, K_ff`` of :func:`collapsed_bound_direct`
    (the offsets are not approximated, so they add nothing to the trace term).
    """
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n = X.shape[0]
    Kzz = se_kernel_ard(Z, Z, ell) + jitter * np.eye(Z.shape[0])
    Kxz = se_kernel_ard(X, Z, ell)
    Q = s**2 * Kxz @ np.linalg.inv(Kzz) @ Kxz.T + sb**2 * np.ones((n, n))
    R = sn**2 * np.eye(n)
    i = 0
    for Xa, _ in parts:
        k = Xa.shape[0]
        R[i : i + k, i : i + k] += tau**2
        i += k
    C = Q + R
    _, logdet = np.linalg.slogdet(C)
    loglik = -0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.inv(C) @ y)
    return loglik - (n * s**2 - s**2 * np.trace(Kxz @ np.linalg.inv(Kzz) @ Kxz.T)) / (2 * sn**2)


def site_posterior_direct(parts, Xs, a, Z, ell, s, sn, sb, tau, jitter):
    """Exact predictive of ``f(x*) + b_a`` (agent ``a``'s site; ``a=None``: an unseen site) in
    the DTC model ``f = [K_xz, 1] u`` with the offsets as extra exact weights, by inverses.

    Weights ``[u_Z, b, b_1..b_A]`` with prior ``blockdiag(s^2 K_zz, sb^2, tau^2 I)``; features
    ``[s^2 K_xz K_zz^-1 ..]``: built as an explicit Bayesian linear model. Returns
    (mean, var of f + b_a without the Nystrom residual and noise).
    """
    A = len(parts)
    m = Z.shape[0]
    Kzz = se_kernel_ard(Z, Z, ell) + jitter * np.eye(m)
    Lz = np.linalg.cholesky(Kzz)

    def feats(X, agent):
        F = np.zeros((X.shape[0], m + 1 + A))
        F[:, :m] = s * np.linalg.solve(Lz, se_kernel_ard(Z, X, ell)).T
        F[:, m] = sb
        if agent is not None:
            F[:, m + 1 + agent] = tau
        return F

    F = np.concatenate([feats(Xa, i) for i, (Xa, _) in enumerate(parts)])
    y = np.concatenate([p[1] for p in parts])
    Sigma = np.linalg.inv(np.eye(m + 1 + A) + F.T @ F / sn**2)
    mu = Sigma @ F.T @ y / sn**2
    Fs = feats(Xs, a)
    var = np.einsum("ij,jk,ik->i", Fs, Sigma, Fs)
    if a is None:
        var = var + tau**2
    return Fs @ mu, var
