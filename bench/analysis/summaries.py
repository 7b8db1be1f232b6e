"""The one-screen summary ``attention-limits run SWEEP`` prints at the end of a run, per sweep."""
from __future__ import annotations

from typing import Callable

import pandas as pd

from bench.analysis import accuracy, approximation, distillation, efficiency, learning, limits, peers, repeatability

SUMMARIES: dict[str, Callable[[pd.DataFrame], str | pd.DataFrame | None]] = {
    "accuracy": accuracy.summary, "approximation": approximation.summary, "data_scaling": learning.summary,
    "distillation": distillation.summary, "efficiency": efficiency.summary, "limits": limits.summary,
    "peers": peers.summary, "repeatability": repeatability.summary,
}


def summary(sweep: str, df: pd.DataFrame) -> str | pd.DataFrame | None:
    """The sweep's summary of its rows ``df``; None when it has none (the caller prints status counts)."""
    fn = SUMMARIES.get(sweep)
    return fn(df) if fn is not None else None
