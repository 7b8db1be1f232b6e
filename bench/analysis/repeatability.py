"""The repeatability sweep's numbers: how far the same case moves between fresh child processes."""
from __future__ import annotations

import pandas as pd

from bench.measure import MIN_STABLE_MEDIAN_S, STABLE_REL_IQR

NAME = "repeatability"
MEMORY_TOLERANCE = 0.05  # fresh-child peaks of one case within 5% of their mean


def spread(values: pd.Series) -> float:
    """max |x − mean| / mean."""
    return float((values - values.mean()).abs().max() / values.mean())


def repeat_row(g: pd.DataFrame) -> dict:
    """Peak memory, live bytes and timing spreads of one case's repeats."""
    peak, med = g["peak_bytes"].astype(float), g["median_s"].astype(float)
    live = g["peak_live_bytes"].astype(float) if "peak_live_bytes" in g else pd.Series([float("nan")])
    rel_iqr = (g["iqr_s"].astype(float) / med)[med >= MIN_STABLE_MEDIAN_S]
    mem_spread = spread(peak)
    return {"repeats": len(g), "peak_mib": peak.mean() / 2 ** 20, "mem_spread": mem_spread,
            "mem_ok": mem_spread <= MEMORY_TOLERANCE,
            "live_spread": spread(live) if live.notna().all() else float("nan"),
            "median_ms": med.mean() * 1e3, "median_spread": spread(med),
            "max_rel_iqr": float(rel_iqr.max()) if len(rel_iqr) else float("nan"),
            "time_ok": bool((rel_iqr <= STABLE_REL_IQR).all()) if len(rel_iqr) else None}


def repeat_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant × phase × T measured at least twice: fresh-child peak memory spread and whether it is within
    5%, the same spread of live bytes, the worst timing IQR/median among its repeats (cases >= 1 ms) and the
    spread of their medians."""
    ok = df[(df["sweep"] == NAME) & (df["status"] == "ok")]
    rows = [{"variant": name, "phase": phase, "T": int(T), **repeat_row(g)}
            for (name, phase, T), g in ok.groupby(["variant", "phase", "T"], sort=True) if len(g) >= 2]
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> str | None:
    """The table with percentages, then how many cases met the memory and timing targets (None: no repeats)."""
    table = repeat_table(df)
    if table.empty:
        return None
    mem = f"memory within {MEMORY_TOLERANCE:.0%} across fresh children: {int(table['mem_ok'].sum())}/{len(table)}"
    timed = table.dropna(subset=["time_ok"])
    tim = (f"timing IQR/median <= {STABLE_REL_IQR:.0%} (cases >= 1 ms): "
           f"{int(timed['time_ok'].astype(bool).sum())}/{len(timed)}")
    shown = table.copy()
    for col in ("mem_spread", "live_spread", "median_spread", "max_rel_iqr"):
        shown[col] = shown[col].map(lambda x: f"{x:.1%}")
    for col in ("peak_mib", "median_ms"):
        shown[col] = shown[col].map(lambda x: f"{x:.3g}")
    return f"{shown.to_string(index=False)}\n{mem}\n{tim}"
