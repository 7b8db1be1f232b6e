"""Fitted numbers with confidence intervals: complexity exponents, crossovers, power-law learning curves.

All fits are deterministic given their ``seed`` (the bootstrap's generator), so the regression gate can compare
them exactly when the inputs are identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


MIN_FIT_POINTS = 3  # two points always fit a line exactly: no scatter, so no interval either


def fit_problem(value: float, lo: float, hi: float, n: int) -> str:
    """Why a fit is not worth showing ("" when it is): fewer than ``MIN_FIT_POINTS`` points, a missing number,
    or a confidence interval wider than the estimate itself (its sign and size are then unknown)."""
    if not n or n < MIN_FIT_POINTS:
        return f"{int(n or 0)} points"
    if not all(np.isfinite([value, lo, hi])):
        return "no fit"
    if hi - lo > abs(value):
        return "CI wider than the estimate"
    return ""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap confidence interval (``level``, default 95%).

    ``usable`` is the one rule for whether a fitted number is shown (``fit_problem``); ``str`` prints "n/a" with
    the reason otherwise, so summaries, tables and legends never present a 2-point line or a CI that spans zero
    as a result."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def problem(self) -> str:
        return fit_problem(self.value, self.lo, self.hi, self.n)

    @property
    def usable(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        if self.problem:
            return f"n/a ({self.problem})"
        return f"{self.value:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def loglog_exponent(T, y, top: int = 4, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                    samples=None) -> Estimate:
    """Exponent k of y ∝ T^k from a log-log least-squares slope over the ``top`` largest distinct T.

    CI: a bootstrap that resamples the fit's residuals (model scatter) and, when ``samples`` gives each point's
    repeated measurements (e.g. timing blocks), also each point's median from its own resampled repeats
    (measurement noise). With two points and no samples the interval is the point itself (n says so).
    """
    T, y = np.asarray(T, dtype=float), np.asarray(y, dtype=float)
    reps = list(samples) if samples is not None else [None] * len(T)
    keep = np.isfinite(y) & (y > 0) & (T > 0)
    if len(np.unique(T[keep])) < 2:
        raise ValueError(f"need at least two distinct T to fit an exponent, got {len(np.unique(T[keep]))}")
    chosen = keep & np.isin(T, np.unique(T[keep])[-top:])
    x, z = np.log(T[chosen]), np.log(y[chosen])
    reps = [np.asarray(r, dtype=float) if r is not None and len(r) else None
            for r, c in zip(reps, chosen) if c]
    k, intercept = np.polyfit(x, z, 1)
    resid = z - (k * x + intercept)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        zb = k * x + intercept + rng.choice(resid, len(resid), replace=True)
        for i, r in enumerate(reps):
            if r is not None and len(r) > 1:
                zb[i] += np.log(np.median(rng.choice(r, len(r)))) - np.log(np.median(r))
        boots[b] = _slope(x, zb)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Estimate(float(k), float(min(lo, k)), float(max(hi, k)), int(len(x)))


K_GRID = np.round(np.arange(0.25, 3.5 + 1e-9, 0.0025), 4)  # exponents searched by offset_exponent


def _offset_fit(T: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(k, a, b) of y = a + b·T^k with a, b >= 0, least squares in relative error, k on ``K_GRID``.

    For each k the model is linear in (a, b): the 2×2 normal equations of the weighted fit, solved for every k at
    once; where the unconstrained offset comes out negative it is clamped to 0 and b refitted. Relative residuals
    weigh a 1 MiB miss at T=128 like a 256 MiB one at T=32768."""
    w = 1.0 / y
    p = T[None, :] ** K_GRID[:, None]  # (k, n)
    s00, s0 = np.sum(w * w), np.sum(w)
    s01, s11, s1 = (w * w * p).sum(1), (w * w * p * p).sum(1), (w * p).sum(1)
    det = s00 * s11 - s01 * s01
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(det > 0, (s11 * s0 - s01 * s1) / det, -1.0)
        b = np.where(det > 0, (s00 * s1 - s01 * s0) / det, 0.0)
        clamp = a < 0
        a = np.where(clamp, 0.0, a)
        b = np.where(clamp, s1 / s11, b)
    sse = np.where(b > 0, ((w * (a[:, None] + b[:, None] * p) - 1.0) ** 2).sum(1), np.inf)
    i = int(np.argmin(sse))
    return float(K_GRID[i]), float(a[i]), float(b[i])


def offset_exponent(T, y, top: int = 5, n_boot: int = 300, level: float = 0.95, seed: int = 0) -> Estimate:
    """Exponent k of y = a + b·T^k (a, b >= 0) over the ``top`` largest distinct T, with a bootstrap CI.

    A cost that is "O(T)" is a + b·T (a fixed workspace, a weight matrix, a cache-sized buffer); over a finite
    range the offset bends a log-log slope below 1, so it is fitted instead (docs/analysis.md). Needs three
    distinct T; with exactly three the fit is exact and the interval is the point itself. CI: residual bootstrap
    in relative error around the fitted curve."""
    T, y = np.asarray(T, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & (y > 0) & (T > 0)
    distinct = np.unique(T[keep])
    if len(distinct) < 3:
        raise ValueError(f"need at least three distinct T to fit a + b·T^k, got {len(distinct)}")
    chosen = keep & np.isin(T, distinct[-top:])
    x, z = T[chosen], y[chosen]
    k, a, b = _offset_fit(x, z)
    fitted = a + b * x ** k
    rel = z / fitted - 1.0
    rng = np.random.default_rng(seed)
    boots = np.array([_offset_fit(x, fitted * (1.0 + rng.choice(rel, len(rel), replace=True)))[0]
                      for _ in range(n_boot)]) if len(np.unique(x)) > 3 else np.array([k])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return Estimate(float(k), float(min(lo, k)), float(max(hi, k)), int(len(x)))


def crossover(T, t_variant, t_reference) -> float | None:
    """The T above which the variant stays faster than the reference, interpolated in log-log.

    Returns the smallest measured T if the variant is faster everywhere, None if it is not faster at the largest
    measured T (no crossover within the range).
    """
    T = np.asarray(T, dtype=float)
    order = np.argsort(T)
    T = T[order]
    ratio = np.log(np.asarray(t_variant, dtype=float)[order] / np.asarray(t_reference, dtype=float)[order])
    if ratio[-1] >= 0:
        return None
    i = len(T) - 1
    while i > 0 and ratio[i - 1] < 0:
        i -= 1
    if i == 0:
        return float(T[0])
    x0, x1 = np.log(T[i - 1]), np.log(T[i])
    r0, r1 = ratio[i - 1], ratio[i]
    return float(np.exp(x0 + (x1 - x0) * r0 / (r0 - r1)))


@dataclass(frozen=True)
class PowerLaw:
    """error(D) = a·D^(−alpha) + c, with bootstrap CIs for alpha and c."""

    a: float
    alpha: Estimate
    c: Estimate

    def predict(self, D) -> np.ndarray:
        return self.a * np.asarray(D, dtype=float) ** (-self.alpha.value) + self.c.value

    def data_for(self, target_error: float) -> float | None:
        """Training-set size at which the fitted curve reaches ``target_error`` (None if never: c ≥ target)."""
        if target_error <= self.c.value or self.a <= 0 or self.alpha.value <= 0:
            return None
        return float(((target_error - self.c.value) / self.a) ** (-1.0 / self.alpha.value))


def _fit_power_law_once(D: np.ndarray, err: np.ndarray, n_grid: int = 200) -> tuple[float, float, float]:
    """Least squares over a grid of the floor c in [0, min(err)); for each c, a and alpha are a log-log line
    (ordinary least squares in closed form, every c at once; the first c of the smallest squared error wins)."""
    cs = np.linspace(0.0, float(np.min(err)), n_grid, endpoint=False)  # (G,)
    x = np.log(D) - np.log(D).mean()  # (N,) centred log sizes
    y = np.log(err[None, :] - cs[:, None])  # (G, N), every residual positive since c < min(err)
    slope = (y - y.mean(axis=1, keepdims=True)) @ x / (x @ x)  # (G,)
    intercept = y.mean(axis=1) - slope * np.log(D).mean()  # (G,)
    pred = np.exp(intercept)[:, None] * D[None, :] ** slope[:, None] + cs[:, None]  # (G, N)
    best = int(np.argmin(((pred - err[None, :]) ** 2).sum(axis=1)))
    return float(np.exp(intercept[best])), float(-slope[best]), float(cs[best])


def power_law_point(D, err) -> tuple[float, float, float]:
    """(a, alpha, c) of the least-squares fit of error(D) = a·D^(−alpha) + c, without a bootstrap: the refit of
    one resample (errors positive, at least three distinct D)."""
    return _fit_power_law_once(np.asarray(D, dtype=float), np.asarray(err, dtype=float))


def fit_power_law(D, err, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                  within_sizes: bool = False) -> PowerLaw:
    """Fit error(D) = a·D^(−alpha) + c; points may repeat D (one per seed). Pairs bootstrap for the CIs, or with
    ``within_sizes`` each resample redraws the points of every distinct D from its own (a CI over seeds, with
    every size kept).

    The floor c is searched on [0, min(err)); errors must be positive (floor exact zeros at the test set's
    resolution before fitting)."""
    D, err = np.asarray(D, dtype=float), np.asarray(err, dtype=float)
    if np.any(err <= 0):
        raise ValueError("errors must be positive: floor zeros at the evaluation's resolution before fitting")
    if len(np.unique(D)) < 3:
        raise ValueError("need at least three distinct training-set sizes to fit a power law")
    a, alpha, c = _fit_power_law_once(D, err)
    rng = np.random.default_rng(seed)
    alphas, cs = [], []
    members = [np.flatnonzero(D == d) for d in np.unique(D)] if within_sizes else [np.arange(len(D))]
    for _ in range(n_boot):
        idx = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        if len(np.unique(D[idx])) < 3:
            continue
        _, al, cc = _fit_power_law_once(D[idx], err[idx])
        alphas.append(al)
        cs.append(cc)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    a_lo, a_hi = np.quantile(alphas, q) if alphas else (alpha, alpha)
    c_lo, c_hi = np.quantile(cs, q) if cs else (c, c)
    # a percentile interval can miss a point estimate that sits at the edge of its bootstrap distribution
    return PowerLaw(a, Estimate(alpha, float(min(a_lo, alpha)), float(max(a_hi, alpha)), len(D)),
                    Estimate(c, float(min(c_lo, c)), float(max(c_hi, c)), len(D)))
