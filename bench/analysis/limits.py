"""The limits sweep's numbers: the largest T each variant fits under a memory and a time budget."""
from __future__ import annotations

import pandas as pd

from bench.analysis.select import ok_rows

COLUMNS = ["variant", "budget", "budget_value", "max_fit_t", "min_fail_t", "min_fail_why", "censored"]
# The probe failure that is over the budget itself: a memory probe's oom (its cap is 1.5× the budget) and a time
# probe's timeout (its cap is far above the budget). Any other failure is the probe's cap or a crash: censoring.
OVER_BUDGET = {"memory": "oom", "time": "timeout"}


def censoring(budget: str, why: str) -> bool:
    """Whether a search that failed for ``why`` leaves the limit unknown (above the last T that fit)."""
    status = why.split(" ")[0] if why else ""
    return bool(why) and why != "over budget" and status != OVER_BUDGET.get(budget)


def censored_why(status: str) -> str:
    """``min_fail_why`` of a search stopped by a probe's cap."""
    return f"{status} (probe cap, not the budget: censored)"


def limit_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The records of a found limit (``kind == "limit"``), apart from the probes that found it."""
    return rows[rows["kind"] == "limit"]


def limits_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per budget × variant of the ok limit rows: the budget, the largest T that fit, the smallest that did not
    and why ("" where the row names no reason), and whether the search hit its cap (censored)."""
    found = ok_rows(limit_rows(rows), "max_fit_t", "min_fail_t")
    found["censored"] = found["censored"].fillna(False).astype(bool) if "censored" in found else False
    found["budget_value"] = [r.get("mem_budget_bytes") if r["budget"] == "memory" else r.get("time_budget_s")
                             for _, r in found.iterrows()]
    found["min_fail_why"] = found["min_fail_why"].fillna("") if "min_fail_why" in found else ""
    # records written before the probe-cap rule: a search that stopped on its probe's cap is censored too
    capped = pd.Series([censoring(b, w) for b, w in zip(found["budget"], found["min_fail_why"])],
                       index=found.index, dtype=bool)
    found["censored"] = found["censored"] | capped
    found["min_fail_why"] = [censored_why(w) if c and "probe cap" not in w else w
                             for c, w in zip(capped, found["min_fail_why"])]
    return found[COLUMNS].sort_values(["budget", "variant"]).reset_index(drop=True)


def summary(df: pd.DataFrame) -> str:
    """Max T under each budget per variant, one screen."""
    rows = limit_rows(df)
    rows = rows[rows["status"] == "ok"]
    if rows.empty:
        return "no limits found"
    table = rows.pivot_table(index="variant", columns="budget", values="max_fit_t", aggfunc="first")
    if table.empty:
        return "no variant fits even the smallest T tried under either budget; raise the budgets or try smaller T"
    return "largest T that fits (memory: bytes budget; time: forward median budget)\n" + table.to_string()
