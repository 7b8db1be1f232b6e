"""Learning curves (the data_scaling sweep): power laws error(n) = a·n^(−α) + c per task and model, the data
needed for a target, where the Transformer overtakes each attention-free baseline (with a CI from resampled
seeds, or "not identified"), and how many labels a pretrained body saves (``labels_saved``).

Nothing is extrapolated more than ``EXTRAPOLATE_FACTOR`` × the largest measured size: a fitted crossover or a
data-for-target beyond it is reported as not identified. Resamples draw, for every (model, size), its seeds with
replacement, so the CIs are over seeds (the training runs), never over the fixed test set."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.fit import PowerLaw, crossover, fit_power_law, power_law_point

FIT_METRIC = {"local_motif": "test_error", "text_kind": "test_error", "text_bytes": "bits_per_byte"}  # fitted
REFERENCE = "transformer"  # the model whose crossover with each baseline is reported
PRETRAINED = "pretrained"  # the model whose labels saved against REFERENCE (trained from scratch) are reported
EXTRAPOLATE_FACTOR = 4.0  # no fitted number is read beyond this multiple of the largest measured size
N_RESAMPLES = 100  # seed resamples behind a crossover's or a labels-saved factor's CI
IDENTIFIED_SHARE = 0.5  # a fitted crossover is reported when the data and this share of resamples find it


def baselines(rows: pd.DataFrame) -> set[str]:
    """The models whose rows are marked as attention-free baselines (the sweep's ``baseline`` column)."""
    if "baseline" not in rows:
        return set()
    return set(rows.loc[rows["baseline"].fillna(False).astype(bool), "model"])


def _resolution(group: pd.DataFrame, metric: str) -> float:
    """The smallest error the test set can tell from zero (one example in ``n_eval``); 0 for bits per byte."""
    return 1.0 / float(group["n_eval"].min()) if metric == "test_error" and "n_eval" in group else 0.0


def _flat(group: pd.DataFrame, metric: str) -> bool:
    """True when the mean metric falls by less than two test examples' worth from the smallest to the largest n."""
    means = group.groupby("n_train")[metric].mean()
    return metric == "test_error" and means.iloc[0] - means.iloc[-1] < 2 * _resolution(group, metric)


def fitted_law(group: pd.DataFrame, metric: str) -> PowerLaw | None:
    """The fitted power law of one (task, model) group; None with fewer than three sizes or a flat curve.

    Errors are floored at half the test set's resolution: the fit searches the floor c in [0, min(err)), so a
    single seed at exactly zero error would leave no admissible c."""
    if _flat(group, metric):
        return None
    err = group[metric].astype(float).clip(lower=0.5 * _resolution(group, metric))
    try:
        return fit_power_law(group["n_train"].astype(float), err, within_sizes=True)
    except ValueError:
        return None


MISFIT_SPREADS = 2.0  # a fit misses the data where it sits this many seed ranges from a size's median
MISSES = "misses the seeds"  # how law_status words a misfit


def misfit(group: pd.DataFrame, metric: str, law: PowerLaw) -> str:
    """Where the fitted law misses the measured curve ("" when it does not): the first size at which it lies
    more than MISFIT_SPREADS × the seeds' spread from their median: their range there or, if larger, the median
    range over all sizes (three seeds can agree by chance), at least two test examples, 0.01 bits and 2% of the
    median. A curve that is flat and then drops, as a model learns a rule only past some n, has no power-law
    shape."""
    floor = 2 * _resolution(group, metric) if metric == "test_error" else 0.01
    by_size = group.groupby("n_train", sort=True)[metric]
    pooled = float((by_size.max() - by_size.min()).median())
    for n, values in by_size:
        spread = max(float(values.max() - values.min()), pooled, floor, 0.02 * abs(float(values.median())))
        fitted = float(law.predict([n])[0])
        if abs(fitted - float(values.median())) > MISFIT_SPREADS * spread:
            return f"{MISSES} at n = {int(n)} (fit {fitted:.3g}, median {float(values.median()):.3g})"
    return ""


def law_status(group: pd.DataFrame, metric: str, law: PowerLaw | None) -> str:
    """"ok" when the fitted law may be shown and read (α has a CI narrower than itself and the curve follows the
    data), else "n/a: why"; "flat" or "too few sizes" with no law."""
    if law is None or law.a <= 0:
        return "flat" if _flat(group, metric) or law is not None else "too few sizes"
    if not law.alpha.usable:
        return f"n/a: {law.alpha.problem}"
    missed = misfit(group, metric, law)
    return f"n/a: {missed}" if missed else "ok"


def measured_data_for(group: pd.DataFrame, metric: str, target: float) -> tuple[float, str]:
    """The n at which the median curve over seeds reaches ``target`` (``matching_size``: interpolated in log n,
    never extrapolated) and as text: "≤ smallest n" when it starts there, "> largest n" when it never gets there."""
    med = group.groupby("n_train", sort=True)[metric].median()
    sizes = med.index.to_numpy(dtype=float)
    n = matching_size(sizes, med.to_numpy(dtype=float), target)
    text = f"> {int(sizes.max())}" if math.isinf(n) else f"≤ {int(sizes.min())}" if n == 0 else f"{n:.3g}"
    return n, text


def curve_stats(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std of ``metric`` over seeds per training-set size."""
    return group.groupby("n_train", sort=True)[metric].agg(["mean", "std"]).reset_index()


def resample_seeds(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Each (model, size) keeps as many rows as it has, drawn with replacement from its own seeds."""
    picks = [g.iloc[rng.integers(0, len(g), len(g))] for _, g in rows.groupby(["model", "n_train"], sort=True)]
    return pd.concat(picks, ignore_index=True)


def _law_of(group: pd.DataFrame, metric: str) -> tuple[float, float, float] | None:
    """(a, α, c) of one model's points (floored like ``fitted_law``); None when they cannot be fitted."""
    if group["n_train"].nunique() < 3 or _flat(group, metric):
        return None
    err = group[metric].astype(float).clip(lower=max(0.5 * _resolution(group, metric), 1e-12))
    a, alpha, c = power_law_point(group["n_train"], err)
    return (a, alpha, c) if a > 0 and alpha > 0 else None


def fitted_crossover(ref: tuple | None, base: tuple | None, sizes: Any) -> float:
    """The first n in [min(sizes), EXTRAPOLATE_FACTOR · max(sizes)] above which the fitted reference curve
    stays below the baseline's; NaN when there is none in that range or either curve has no fit."""
    if ref is None or base is None or len(sizes) == 0:
        return math.nan
    grid = np.geomspace(float(min(sizes)), EXTRAPOLATE_FACTOR * float(max(sizes)), 400)
    (a1, al1, c1), (a2, al2, c2) = ref, base
    below = a1 * grid ** -al1 + c1 < a2 * grid ** -al2 + c2
    if not below.any():
        return math.nan
    i = int(np.argmax(below))
    return float(grid[i]) if below[i:].all() else math.nan


def crossover_ci(rows: pd.DataFrame, metric: str, base: str, seed: int = 0) -> dict[str, Any]:
    """The fitted crossover of REFERENCE with ``base`` and its 95% CI over seed resamples; "not identified"
    (NaN) unless the data and at least IDENTIFIED_SHARE of the resamples find one within the range."""
    pair = rows[rows["model"].isin([REFERENCE, base])]
    sizes = sorted(pair["n_train"].unique())

    def once(d: pd.DataFrame) -> float:
        return fitted_crossover(_law_of(d[d["model"] == REFERENCE], metric), _law_of(d[d["model"] == base], metric),
                                sizes)

    point = once(pair)
    rng = np.random.default_rng(seed)
    boots = np.array([once(resample_seeds(pair, rng)) for _ in range(N_RESAMPLES)])
    found = boots[np.isfinite(boots)]
    ok = np.isfinite(point) and len(found) >= IDENTIFIED_SHARE * N_RESAMPLES
    lo, hi = np.quantile(found, [0.025, 0.975]) if ok else (math.nan, math.nan)
    return {f"fitted_crossover_vs_{base}": point if ok else math.nan, f"fitted_crossover_lo_vs_{base}": lo,
            f"fitted_crossover_hi_vs_{base}": hi, f"crossover_resamples_vs_{base}": f"{len(found)}/{N_RESAMPLES}"}


def _crossovers(rows: pd.DataFrame, metric: str, bases: list[str], missed: set[str]) -> dict[str, Any]:
    """For the reference model: the measured crossover size with each baseline (interpolated in log-log within
    the sizes; NaN: none) and the fitted one with its CI (``crossover_ci``); none fitted where either model is
    in ``missed`` (its law misses the data, ``misfit``)."""
    out: dict[str, Any] = {}
    if REFERENCE not in set(rows["model"]):
        return out
    means = rows.pivot_table(index="n_train", columns="model", values=metric, aggfunc="mean")
    for base in bases:
        pair = means[[REFERENCE, base]].dropna().clip(lower=1e-4)  # errors of 0 would break the log ratio
        at = crossover(pair.index, pair[REFERENCE], pair[base]) if len(pair) >= 2 else None
        out[f"crossover_vs_{base}"] = math.nan if at is None else at
        if {REFERENCE, base} & missed:
            out.update({f"{k}_vs_{base}": math.nan for k in ("fitted_crossover", "fitted_crossover_lo",
                                                              "fitted_crossover_hi")})
            out[f"crossover_resamples_vs_{base}"] = "none: a law misses the data"
        else:
            out.update(crossover_ci(rows, metric, base))
    return out


def _fit_row(task: str, model: str, group: pd.DataFrame, law: PowerLaw | None, target: float,
             base: bool) -> dict[str, Any]:
    means = group.groupby("n_train")[FIT_METRIC[task]].mean()
    row = {"task": task, "model": model, "baseline": base,
           "metric": FIT_METRIC[task], "n_sizes": int(group["n_train"].nunique()),
           "seeds": int(group["seed"].nunique()), "n_params": int(group["n_params"].median()),
           "metric_at_min": means.iloc[0], "metric_at_max": means.iloc[-1], "target": target}
    measured, measured_text = measured_data_for(group, FIT_METRIC[task], target)
    row.update(data_for_target_measured=measured, data_for_target_measured_text=measured_text)
    fit = law_status(group, FIT_METRIC[task], law)
    if law is None or law.a <= 0:  # no decrease to fit: α is undefined (NaN), not 0
        return {**row, "fit": fit}
    need = law.data_for(target) if fit == "ok" else None  # no prediction from a fit that is not one
    if need is not None and need > EXTRAPOLATE_FACTOR * group["n_train"].max():
        need = None  # further out than the fit may be read
    return {**row, "fit": fit, "alpha": law.alpha.value, "alpha_lo": law.alpha.lo, "alpha_hi": law.alpha.hi,
            "floor_c": law.c.value, "c_lo": law.c.lo, "c_hi": law.c.hi, "a": law.a,
            "data_for_target": math.nan if need is None else need}


def _task_rows(task: str, rows: pd.DataFrame, target: float) -> list[dict[str, Any]]:
    """Every model's fit on one task, the reference row carrying its crossovers with each baseline."""
    metric, bases = FIT_METRIC[task], baselines(rows)
    laws = {m: fitted_law(g, metric) for m, g in rows.groupby("model", sort=True)}
    out = [_fit_row(task, m, g, laws[m], target, m in bases) for m, g in rows.groupby("model", sort=True)]
    missed = {r["model"] for r in out if MISSES in r["fit"]}
    cross = _crossovers(rows, metric, sorted(m for m in laws if m in bases), missed)
    return [{**r, **cross} if r["model"] == REFERENCE else r for r in out]


def summary(df: pd.DataFrame | None, target_error: float = 0.1, target_bpb: float = 3.0,
            target_text_error: float = 0.25) -> pd.DataFrame:
    """Per (task, model): α and the floor c with 95% bootstrap CIs, n needed for the target (NaN beyond 4× the
    largest size), the metric at the smallest and largest n; on the ``transformer`` row, the size above which it
    beats each baseline (measured, interpolated in log-log; NaN when it never does within the range) and the
    fitted crossover with its CI and how many seed resamples identify it. Only rows with status ok count."""
    if df is None or len(df) == 0 or "n_train" not in df or "test_error" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    targets = {"local_motif": target_error, "text_kind": target_text_error, "text_bytes": target_bpb}
    rows = [r for task, g in ok.groupby("task", sort=True) if task in FIT_METRIC
            for r in _task_rows(task, g.dropna(subset=[FIT_METRIC[task]]), targets[task])]
    return pd.DataFrame(rows)


def crossover_table(fits: pd.DataFrame) -> pd.DataFrame:
    """``summary``'s crossover columns in long form: one row per (task, baseline) with the measured crossover
    size, the fitted one with its CI and how many seed resamples identify it (NaN: none, not identified)."""
    out = []
    for _, row in fits[fits["model"] == REFERENCE].iterrows() if "model" in fits else ():
        for col in (c for c in fits.columns if c.startswith("crossover_vs_")):
            base = col.removeprefix("crossover_vs_")
            out.append({"task": row["task"], "model": REFERENCE, "baseline": base, "measured": row[col],
                        **{k: row.get(f"{prefix}_vs_{base}") for k, prefix in (
                            ("fitted", "fitted_crossover"), ("fitted_lo", "fitted_crossover_lo"),
                            ("fitted_hi", "fitted_crossover_hi"), ("resamples", "crossover_resamples"))}})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------ labels saved

def matching_size(sizes: np.ndarray, errors: np.ndarray, target: float) -> float:
    """The n at which a measured curve (errors at increasing sizes) first reaches ``target``, interpolated
    linearly in log n between the two sizes around it; 0 when the smallest size already does (below the
    range), inf when no measured size does (beyond it). Never extrapolated."""
    reached = np.flatnonzero(errors <= target)
    if len(reached) == 0:
        return math.inf
    i = int(reached[0])
    if i == 0:
        return 0.0
    e0, e1, x0, x1 = errors[i - 1], errors[i], math.log(sizes[i - 1]), math.log(sizes[i])
    return float(math.exp(x0 + (x1 - x0) * (e0 - target) / (e0 - e1)))


def _factors(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Per labelled n: (scratch n reaching the pretrained error at n) / n, from the mean curves over seeds."""
    means = rows.pivot_table(index="n_train", columns="model", values=metric, aggfunc="mean").dropna()
    sizes, scratch = means.index.to_numpy(dtype=float), means[REFERENCE].to_numpy()
    return pd.Series({n: matching_size(sizes, scratch, e) / n for n, e in means[PRETRAINED].items()})


def _bound(value: float, n: float, sizes: np.ndarray) -> str:
    """The factor as text: a number, or the bound a censored match gives."""
    if math.isinf(value):
        return f"> {sizes.max() / n:.3g}"
    if value == 0:
        return f"< {sizes.min() / n:.3g}"
    return f"{value:.3g}"


def labels_saved(df: pd.DataFrame | None, seed: int = 0) -> pd.DataFrame:
    """Per task with a pretrained model and labelled n: the labels-saved factor of pretraining (``matching_size``
    of the scratch REFERENCE curve at the pretrained model's mean error at n, divided by n), its 95% CI over
    N_RESAMPLES seed resamples, and as text with censored bounds ("> 4": scratch never gets there within the
    measured sizes; "< 1": scratch's smallest size already does)."""
    if df is None or len(df) == 0 or "model" not in df:
        return pd.DataFrame()
    ok = df[(df["status"] == "ok") & df["model"].isin([REFERENCE, PRETRAINED])] if "status" in df else df
    out = []
    for task, g in ok.groupby("task", sort=True):
        metric = FIT_METRIC.get(task)
        if metric is None or g["model"].nunique() < 2:
            continue
        g = g.dropna(subset=[metric])
        sizes = np.sort(g["n_train"].unique()).astype(float)
        point = _factors(g, metric)
        rng = np.random.default_rng(seed)
        boots = pd.DataFrame([_factors(resample_seeds(g, rng), metric) for _ in range(N_RESAMPLES)])
        means = g.pivot_table(index="n_train", columns="model", values=metric, aggfunc="mean")
        cost = pretrain_cost(g)
        for n, value in point.items():
            lo, hi = np.quantile(boots[n].to_numpy(), [0.025, 0.975], method="inverted_cdf")
            out.append({"task": task, "n_train": int(n), "pretrained_error": means.loc[n, PRETRAINED],
                        "scratch_error": means.loc[n, REFERENCE], "labels_saved": value, "labels_saved_lo": lo,
                        "labels_saved_hi": hi, "labels_saved_text": f"{_bound(value, n, sizes)} "
                        f"[{_bound(lo, n, sizes)}, {_bound(hi, n, sizes)}]", **cost})
    return pd.DataFrame(out)


def pretrain_cost(rows: pd.DataFrame) -> dict[str, float]:
    """What the labels were traded for: the pretrained rows' pretraining steps, seconds and held-out bits per
    byte (median over seeds;
    each seed's body is trained once and its cost recorded on every row that fine-tunes it)."""
    pre = rows[rows["model"] == PRETRAINED]
    return {col: float(pre[col].median()) for col in ("pretrain_steps", "pretrain_s", "pretrain_bpb") if col in pre}
