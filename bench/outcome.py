"""What happened to one case: a status from ``STATUSES``, its metrics, a one-line error and the wall time.

Out of memory, over time and killed are findings, not crashes: ``classify`` maps an exception raised by a case
to a status. The CPU OOM is a ``RuntimeError`` ("DefaultCPUAllocator"), not ``torch.OutOfMemoryError``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

STATUSES = ("ok", "oom", "timeout", "unsupported", "error", "killed")
OOM_MARKERS = ("defaultcpuallocator", "out of memory", "can't allocate memory")


@dataclass
class Outcome:
    """What happened to one case: a status from ``STATUSES``, its metrics, a one-line error and the wall time."""

    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; known: {', '.join(STATUSES)}")


def one_line(exc: BaseException) -> str:
    """``"ExcType: first line of the message"`` (just ``"ExcType"`` when the message is empty)."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0].strip()}" if lines else name


def classify(exc: BaseException) -> str:
    """Map an exception raised by a case to a status: unsupported, oom or error."""
    if isinstance(exc, NotImplementedError):
        return "unsupported"
    torch = sys.modules.get("torch")  # never import torch here: a case that raised without it is no oom of torch's
    torch_oom = getattr(torch, "OutOfMemoryError", None) if torch else None
    if isinstance(exc, MemoryError) or (torch_oom is not None and isinstance(exc, torch_oom)):
        return "oom"
    if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS):
        return "oom"
    return "error"
