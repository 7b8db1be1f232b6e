"""bench.outcome: statuses, and how an exception raised by a case becomes one."""
from __future__ import annotations

import pytest

from bench.outcome import Outcome, classify, one_line


def test_classify_and_one_line_without_a_child():
    assert classify(NotImplementedError()) == "unsupported"
    assert classify(MemoryError()) == "oom"
    assert classify(RuntimeError("DefaultCPUAllocator: can't allocate memory")) == "oom"
    assert classify(RuntimeError("CUDA out of memory. Tried to allocate")) == "oom"
    assert classify(RuntimeError("shape mismatch")) == "error"
    assert one_line(ValueError("a\nb")) == "ValueError: a" and one_line(KeyError()) == "KeyError"


def test_outcome_rejects_unknown_status():
    with pytest.raises(ValueError):
        Outcome("fine")
