"""Progress on stderr wherever a user waits: a tqdm bar on a terminal, plain lines elsewhere (CI logs, pipes).

A plain line says ``<what>: case i/n, <elapsed> elapsed, ETA <left>`` (no n and no ETA for an adaptive plan, whose
length is not known ahead); it is printed for the first case, the last one, and otherwise at most once every
``PLAIN_INTERVAL_S`` seconds, so a log stays readable however many cases a sweep has.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

PLAIN_INTERVAL_S = 10.0


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class PlainProgress:
    """The part of tqdm's interface ``bench.run`` uses, writing whole lines at a bounded rate."""

    def __init__(self, total: int | None, initial: int, desc: str, file: TextIO | None = None,
                 interval_s: float | None = None):
        self.total, self.n, self.desc = total, initial, desc
        self.file = file if file is not None else sys.stderr
        self.interval_s = PLAIN_INTERVAL_S if interval_s is None else interval_s
        self.start, self.initial, self.postfix = time.monotonic(), initial, ""
        self._last: float | None = None

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        if self.total is None:
            text = f"{self.desc}: case {self.n}, {duration(elapsed)} elapsed"
        else:
            text = f"{self.desc}: case {self.n}/{self.total}, {duration(elapsed)} elapsed"
            ran = self.n - self.initial
            if ran > 0:
                text += f", ETA {duration(elapsed / ran * max(self.total - self.n, 0))}"
        return text + (f" (last: {self.postfix})" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        last = self.total is not None and self.n >= self.total
        if self._last is None or last or now - self._last >= self.interval_s:
            self._last = now
            print(self.line(), file=self.file, flush=True)

    def set_postfix_str(self, s: str, refresh: bool = False) -> None:
        self.postfix = s

    def write(self, s: str, file: TextIO | None = None) -> None:
        print(s, file=file or self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bar(enabled: bool | None, total: int | None, done: int, desc: str):
    """A tqdm bar on stderr when ``enabled`` (``None``: when stderr is a terminal), else plain lines (``None``
    and not a terminal) or nothing (``False``)."""
    from tqdm import tqdm

    if enabled is None and not sys.stderr.isatty():
        return PlainProgress(total, done, desc)
    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, initial=done, desc=desc, unit="case", file=sys.stderr, disable=not show,
                dynamic_ncols=True)
