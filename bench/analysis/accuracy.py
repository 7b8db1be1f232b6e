"""The accuracy sweep's numbers: the learning-rate choice, accuracy against T per task and posing (median and
per-seed), where each budgeted variant falls behind full attention, and the run summary."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.analysis.select import ok_rows

LR_TOLERANCE = 0.005  # val accuracies this close count as tied; the faster lr wins
REFERENCE = "full_sdpa"  # the variant every other is measured against
KEEP_FRACTION = 0.9  # "keeps up": at least this share of the reference's median accuracy at the same T


def choose_lr(trials: Iterable[tuple[float, str, float | None, int | None]]) -> float:
    """The lr of the best tuning run: (lr, status, best val accuracy, step of that best). Highest val accuracy
    first; runs within ``LR_TOLERANCE`` of it tie, and the one that got there in fewest steps wins, then the
    smaller lr. Failed runs (status not ok) lose to any run that finished; all failed: the smallest lr."""
    trials = list(trials)

    def score(t: tuple[float, str, float | None, int | None]) -> float:
        ok = t[1] == "ok" and t[2] is not None and t[2] == t[2]
        return float(t[2]) if ok else -math.inf

    best = max(score(t) for t in trials)
    if best == -math.inf:
        return min(t[0] for t in trials)
    tied = [t for t in trials if score(t) >= best - LR_TOLERANCE]
    return min(tied, key=lambda t: (t[3] if t[3] is not None else math.inf, t[0]))[0]


def posing(causal: Any) -> str:
    return "causal" if bool(causal) else "bidirectional"


def lr_choices(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant): the tuning runs' best val accuracy per grid lr and the lr ``choose_lr`` picks, redone
    from the rows at ``tune_T`` with ``tune_seed`` (empty when the rows carry no lr grid)."""
    if not {"lr_grid", "tune_T", "tune_seed", "val_accuracy"} <= set(rows):
        return pd.DataFrame()
    records = []
    for (task, variant), g in rows.groupby(["task", "variant"], sort=True):
        trials = g[(g["T"] == g["tune_T"]) & (g["seed"] == g["tune_seed"])]
        if trials["lr"].nunique() < 2:
            continue
        picked = choose_lr((r.lr, r.status, r.val_accuracy, r.best_step) for r in trials.itertuples())
        record = {"task": task, "variant": variant, "tune_T": int(trials["tune_T"].iloc[0]), "lr": picked}
        record.update({f"val@{lr:g}": (v if s == "ok" else math.nan)
                       for lr, v, s in zip(trials["lr"], trials["val_accuracy"], trials["status"])})
        records.append(record)
    return pd.DataFrame(records)


def selected_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a figure reads: each (task, variant) at its chosen lr only (the other tuning runs dropped)."""
    choices = lr_choices(rows)
    if choices.empty:
        return rows
    chosen = rows.merge(choices[["task", "variant", "lr"]], on=["task", "variant", "lr"], how="inner")
    untuned = rows[~rows.set_index(["task", "variant"]).index.isin(choices.set_index(["task", "variant"]).index)]
    return pd.concat([chosen, untuned], ignore_index=True)


def accuracy_rows(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    """Ok rows with a numeric T and accuracy at the chosen lr, ``task`` and ``posing`` filled; None without them."""
    if rows is None or not {"T", "variant", "accuracy"} <= set(rows) or rows["accuracy"].isna().all():
        return None
    rows = ok_rows(rows, "T", "accuracy").dropna(subset=["accuracy"])
    rows = rows.assign(task=rows["task"].astype(str) if "task" in rows else "task",
                       posing=[posing(c) for c in rows["causal"]] if "causal" in rows else "bidirectional")
    rows = selected_rows(rows)
    return rows if not rows.empty else None


def accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per task × variant × posing × T: median, mean, std, min, max and count of accuracy over seeds, the per-seed
    values, censored runs, the median steps run, and the best trivial rule's accuracy (median over seeds)."""
    keys = ["task", "variant", "posing", "T"]
    records = []
    for key, g in rows.groupby(keys, sort=True):
        acc = g.sort_values("seed")["accuracy"] if "seed" in g else g["accuracy"]
        record = dict(zip(keys, key))
        record.update(accuracy_median=acc.median(), accuracy_mean=acc.mean(), accuracy_std=acc.std(ddof=1),
                      accuracy_min=acc.min(), accuracy_max=acc.max(), n_seeds=len(acc),
                      per_seed=" ".join(f"{a:.3f}" for a in acc))
        if "censored" in g:
            record["censored"] = int(g["censored"].fillna(False).astype(bool).sum())
        if "steps_run" in g:
            record["steps_median"] = float(g["steps_run"].median())
        if "trivial_accuracy" in g:
            record["trivial_accuracy"] = float(g["trivial_accuracy"].median())
        records.append(record)
    return pd.DataFrame(records)


def failed_reference(ref: pd.DataFrame) -> pd.Series:
    """Per T of the reference's table rows: True where its median accuracy is no better than the best trivial
    rule's (it did not learn the task there, so no variant can be said to keep up with it or fall behind)."""
    ref = ref.set_index("T")
    if "trivial_accuracy" not in ref:
        return pd.Series(False, index=ref.index)
    return ref["accuracy_median"] <= ref["trivial_accuracy"]


def falls_behind(table: pd.DataFrame, reference: str = REFERENCE, fraction: float = KEEP_FRACTION) -> pd.DataFrame:
    """Per (task, variant, posing): the shortest T at which its median accuracy is below ``fraction`` of the
    reference's median at the same T and in the same posing (NaN: it keeps up at every T compared), and the
    longest T at which it still keeps up. Lengths where the reference itself failed (``failed_reference``) are
    not compared and are listed instead; a posing without its own reference rows gets no line."""
    records = []
    for (task, pose), g in table.groupby(["task", "posing"], sort=True):
        ref_rows = g[g["variant"] == reference]
        failed = failed_reference(ref_rows)
        ref = ref_rows.set_index("T")["accuracy_median"][~failed]
        for variant, v in g[g["variant"] != reference].groupby("variant", sort=True):
            v = v[v["T"].isin(ref.index)].sort_values("T")
            if v.empty:
                continue
            behind = v["accuracy_median"].to_numpy() < fraction * ref.reindex(v["T"]).to_numpy()
            Ts = v["T"].to_numpy()
            records.append({"task": task, "variant": variant, "posing": pose,
                            "falls_below_at_T": float(Ts[behind][0]) if behind.any() else math.nan,
                            "keeps_up_to_T": float(Ts[~behind].max()) if (~behind).any() else math.nan,
                            "lengths": len(Ts),
                            "reference_failed_at_T": " ".join(str(int(T)) for T in failed.index[failed])})
    return pd.DataFrame(records)


def median_steps(steps: Any, budget: float) -> float:
    """Median steps_to_target with censored runs (NaN / None) counted as beyond the budget; NaN when the median
    itself is censored (half or more of the seeds never reached the target)."""
    values = sorted(math.inf if v is None or v != v else float(v) for v in steps)
    if not values:
        return math.nan
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return median if median <= budget else math.nan


def _summary_row(group: pd.DataFrame) -> dict[str, Any]:
    """One (task, variant, T) group of ok rows -> its summary line."""
    budget = float(group["steps"].max())
    reached = group["steps_to_target"].notna()
    row = {"posing": posing(group["causal"].iloc[0]) if "causal" in group else "",
           "lr": group["lr"].iloc[0] if "lr" in group else np.nan, "seeds": len(group),
           "acc_median": group["accuracy"].median(),
           "per_seed": " ".join(f"{a:.2f}" for a in group.sort_values("seed")["accuracy"]),
           "reached": f"{int(reached.sum())}/{len(group)}",
           "censored": int(group["censored"].fillna(False).astype(bool).sum()) if "censored" in group else 0,
           "steps_to_target_median": median_steps(group["steps_to_target"].where(reached), budget),
           "train_s_mean": group["train_s"].mean()}
    if "bits_per_byte" in group and group["bits_per_byte"].notna().any():
        row["bpb_mean"] = group["bits_per_byte"].mean()
    return row


def summary(df: pd.DataFrame | None) -> pd.DataFrame:
    """Per (task, variant, posing, T) at the chosen lr: posing, lr, median and per-seed test accuracy, seeds that reached
    the target, censored runs, and the median steps_to_target. Only rows with status ok count."""
    if df is None or len(df) == 0 or "accuracy" not in df:
        return pd.DataFrame()
    ok = df[df["status"] == "ok"] if "status" in df else df
    if len(ok) == 0:
        return pd.DataFrame()
    if "lr_grid" in ok:
        ok = selected_rows(ok)
    keys = ["task", "variant", "causal", "T"] if "causal" in ok else ["task", "variant", "T"]
    rows = [{**dict(zip(keys, key)), **_summary_row(group)} for key, group in ok.groupby(keys, sort=True)]
    rows = [{k: v for k, v in row.items() if k != "causal"} for row in rows]  # ``posing`` says it in words
    return pd.DataFrame(rows)
