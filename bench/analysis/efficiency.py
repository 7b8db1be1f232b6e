"""The efficiency sweep's derived numbers: time and memory exponents with CIs, crossovers, memory ratios at the
largest T, the achieved fraction of the GEMM peak, and the one-screen summary.

One estimator per quantity: a time exponent is the log-log slope over the four largest T (a time's constant,
dispatch, is negligible there); a memory exponent is k of a + b·T^k over the five largest T (a fixed buffer is a
real constant term of an O(T) memory and bends a log-log slope below 1; docs/analysis.md).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

import variants
from bench.analysis.fit import Estimate, crossover, loglog_exponent, offset_exponent
from bench.analysis.select import curve, declared, ok_rows, sorted_table

NAME = "efficiency"
PHASES = ("forward", "forward_backward", "train_step")
REFERENCES = ("full_sdpa", "full_naive")
TIME_TOP, MEMORY_TOP = 4, 5
FAILED = ("oom", "timeout", "killed")  # statuses marked where a memory curve ends
NO_FAILURE = {"first_failure_t": np.nan, "failure": ""}
OTHER_MEMORY = (("forward", True, "exp_fwd_causal"), ("forward_backward", False, "exp_fwd_bwd"),
                ("forward_backward", True, "exp_fwd_bwd_causal"))


# ------------------------------------------------------------------------------------------------- estimators

def time_exponent(T, seconds) -> Estimate | None:
    """k of time ∝ T^k, the log-log slope over the four largest T; None with fewer than two distinct T."""
    try:
        return loglog_exponent(T, seconds, top=TIME_TOP)
    except ValueError:
        return None


def memory_exponent(T, peak_bytes) -> Estimate | None:
    """k of peak = a + b·T^k over the five largest T (``offset_exponent``); None below three distinct T."""
    try:
        return offset_exponent(T, peak_bytes, top=MEMORY_TOP)
    except ValueError:
        return None


def fit_values(e: Estimate | None) -> tuple[float, float, float, int]:
    """(k, lo, hi, n) of an estimate; NaNs and 0 points for none."""
    return (np.nan, np.nan, np.nan, 0) if e is None else (e.value, e.lo, e.hi, e.n)


def fit_flag(e: Estimate | None) -> str:
    """A table's ``fit`` column: "ok", or "n/a: <why>" where ``Estimate.usable`` says the fit is not one."""
    return "n/a: too few points" if e is None else ("ok" if e.usable else f"n/a: {e.problem}")


def value_or_na(e: Estimate | None) -> float | str:
    """An exponent shown without its interval: the value, or "n/a" where ``Estimate.usable`` says no fit (blank,
    NaN, is left for a curve with no rows at all: an unsupported combination)."""
    return e.value if e is not None and e.usable else "n/a"


def crossovers(mine: pd.DataFrame, refs: pd.DataFrame, variant: str, min_points: int = 1) -> dict[str, float | None]:
    """{reference: the T above which ``mine`` stays faster (``crossover``), None out of range} against each
    reference's median curve in ``refs``; needs ``min_points`` lengths in common. Columns: T, median_s."""
    out = {}
    for ref in REFERENCES:
        both = mine.merge(curve(refs[refs["variant"] == ref], "T", "median_s"), on="T", suffixes=("", "_ref"))
        enough = variant != ref and len(both) >= min_points
        out[ref] = crossover(both["T"], both["median_s"], both["median_s_ref"]) if enough else None
    return out


# ------------------------------------------------------------------------------------------------------ time

def time_record(sub: pd.DataFrame, group: pd.DataFrame, variant: str, causal, phase: str) -> dict:
    est = time_exponent(group["T"], group["median_s"])
    fit = fit_values(est)
    cross = crossovers(curve(group, "T", "median_s"), sub[sub["causal"] == causal], variant)
    return {"variant": variant, "phase": phase, "causal": bool(causal), "exponent": fit[0], "ci_lo": fit[1],
            "ci_hi": fit[2], "n_fit": fit[3], "fit": fit_flag(est), "declared": declared(variant, "time_exponent"),
            **{f"crossover_vs_{ref}": np.nan if x is None else x for ref, x in cross.items()}}


def time_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per phase × causal × variant of ok rows with a time: the exponent with its CI, the declared one, and the
    crossover T with each reference (smallest T: faster everywhere; NaN: not faster at the largest T)."""
    records = [time_record(sub, group, variant, causal, phase)
               for phase in PHASES for sub in [rows[rows["phase"] == phase]]
               for (variant, causal), group in sub.groupby(["variant", "causal"], sort=True)]
    return sorted_table(records, ["phase", "causal", "variant"])


# ---------------------------------------------------------------------------------------------------- memory

def first_failure(rows: pd.DataFrame, variant: str) -> dict:
    """The smallest T at which ``variant`` failed (oom, timeout, killed) and how; blank when it never did."""
    bad = rows[(rows["variant"] == variant) & rows["status"].isin(list(FAILED))]
    if bad.empty:
        return NO_FAILURE
    first = bad.sort_values("T").iloc[0]
    return {"first_failure_t": float(first["T"]), "failure": str(first["status"])}


def top_ratios(rows: pd.DataFrame) -> dict[str, float]:
    """At the largest T: measured peak over the spec's analytic bytes, and over the live tensor bytes (on CPU, the
    heap's fragmentation), where the rows have them."""
    if rows.empty:
        return {}
    top = rows.sort_values("T").iloc[-1]
    out = {"top_t": float(top["T"]), "peak_over_analytic": float(top["peak_bytes"]) / float(top["bytes_analytic"])}
    live = pd.to_numeric(top.get("peak_live_bytes", np.nan), errors="coerce")
    out["peak_over_live"] = float(top["peak_bytes"]) / live if live and np.isfinite(live) else np.nan
    return out


def memory_record(ok: pd.DataFrame, everything: pd.DataFrame, variant: str) -> dict:
    group = ok[ok["variant"] == variant]
    c, a = curve(group, "T", "peak_bytes"), curve(group, "T", "bytes_analytic")
    est = memory_exponent(c["T"], c["peak_bytes"])
    k, lo, hi, n = fit_values(est)
    failure = first_failure(everything, variant) if not c.empty else NO_FAILURE
    return {"variant": variant, "exponent": k, "ci_lo": lo, "ci_hi": hi, "n_fit": n, "fit": fit_flag(est),
            "analytic_exponent": value_or_na(memory_exponent(a["T"], a["bytes_analytic"])),
            "declared": declared(variant, "memory_exponent"), **failure, **top_ratios(group)}


def memory_table(ok: pd.DataFrame, everything: pd.DataFrame, all_ok: pd.DataFrame) -> pd.DataFrame:
    """Per variant of the forward non-causal ok rows ``ok``: the memory exponent of the measured peak with its CI
    and of the analytic bytes, the declared one, the first failed T in ``everything`` (its rows of any status),
    the ratios at the largest T, and the measured exponent of the other phases × causal in ``all_ok``."""
    table = sorted_table([memory_record(ok, everything, v) for v in sorted(ok["variant"].unique())], ["variant"])
    if table.empty:
        return table
    for phase, causal, col in OTHER_MEMORY:
        sub = all_ok[(all_ok["phase"] == phase) & (all_ok["causal"] == causal)]
        curves = {v: curve(sub[sub["variant"] == v], "T", "peak_bytes") for v in table["variant"]}
        table[col] = [value_or_na(memory_exponent(c["T"], c["peak_bytes"])) if len(c) else np.nan
                      for c in curves.values()]
    return table


# ----------------------------------------------------------------------------------------------------- FLOPs

def executed_flops(row: pd.Series) -> float:
    """The FLOPs the row's kernel executed: its spec's ``executed_flops`` at the row's shape (the efficiency sweep
    runs default params), so a causal kernel that skips masked blocks counts T(T+1)/2 pairs; the stored
    ``flops_analytic`` for a variant no longer registered."""
    try:
        spec = variants.get(row["variant"]).spec
    except variants.UnknownVariantError:
        return float(row["flops_analytic"])
    return float(spec.executed_flops(int(row["B"]), int(row["H"]), int(row["T"]), int(row["D"]),
                                     causal=bool(row["causal"])))


def flops_rows(rows: pd.DataFrame, manifests: pd.DataFrame) -> pd.DataFrame:
    """Forward ok rows with the executed FLOPs, the achieved FLOP/s (executed FLOPs / median time) and its
    fraction of the run's GEMM peak (from the manifest)."""
    rows = ok_rows(rows, "T", "median_s", "flops_analytic")
    rows = rows[(rows["phase"] == "forward") & rows["flops_analytic"].notna()]
    peaks = pd.to_numeric(manifests.set_index("run_id")["gemm_peak_flops"], errors="coerce")
    rows = rows.assign(gemm_peak_flops=rows["run_id"].map(peaks),
                       flops_executed=[executed_flops(r) for _, r in rows.iterrows()])
    rows = rows.assign(achieved_flops=rows["flops_executed"] / rows["median_s"])
    return rows.assign(fraction_of_peak=rows["achieved_flops"] / rows["gemm_peak_flops"]).dropna(
        subset=["fraction_of_peak"])


def flops_table(rows: pd.DataFrame) -> pd.DataFrame:
    """``flops_rows`` at each (variant, causal) curve's largest T."""
    last = rows[rows["T"] == rows.groupby(["variant", "causal"])["T"].transform("max")]
    cols = ["variant", "causal", "T", "flops_analytic", "flops_executed", "median_s", "achieved_flops",
            "gemm_peak_flops", "fraction_of_peak"]
    return last[cols].sort_values(["causal", "variant"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------- summary

def exponent_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant × phase × causal of the sweep's ok rows: time and memory exponents (``Estimate`` or None), the
    declared ones, and the crossover T with each reference (same phase and causal; None: none in range)."""
    ok = df[(df["sweep"] == NAME) & (df["status"] == "ok")]
    rows = []
    for (name, phase, causal), g in ok.groupby(["variant", "phase", "causal"], sort=True):
        if g["T"].nunique() < 2:
            continue
        spec = variants.get(name).spec
        refs = ok[(ok["phase"] == phase) & (ok["causal"] == causal)]
        cross = crossovers(curve(g, "T", "median_s"), refs, name, min_points=2)
        rows.append({"variant": name, "phase": phase, "causal": bool(causal),
                     "time_exp": time_exponent(g["T"], g["median_s"]), "time_declared": spec.time_exponent,
                     "mem_exp": memory_exponent(g["T"], g["peak_bytes"]), "mem_declared": spec.memory_exponent,
                     **{f"crossover_{ref}": x for ref, x in cross.items()}})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> str | None:
    """One screen: exponents with CIs and crossovers for the forward and forward+backward phases (None: nothing
    to fit)."""
    table = exponent_table(df)
    if table.empty:
        return None
    table = table[table["phase"] != "train_step"].copy()
    for col in ("time_exp", "mem_exp"):
        table[col] = table[col].map(lambda e: "n/a (too few points)" if e is None else str(e))
    for col in ("crossover_full_sdpa", "crossover_full_naive"):
        table[col] = table[col].map(lambda x: "-" if x is None or x != x else f"{x:.0f}")
    return table.to_string(index=False)
