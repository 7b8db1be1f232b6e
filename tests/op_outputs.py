"""One ``TorchDispatchMode`` for the tests that bound what a variant allocates or writes, op by op: deterministic,
independent of the allocator and of timing."""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class OpOutputs(TorchDispatchMode):
    """While active, over the outputs of every dispatched op: the largest numel (and the op that made it), the
    largest storage in bytes, and the elements written by non-view ops (the work of a forward+backward)."""

    def __init__(self):
        super().__init__()
        self.largest, self.op, self.largest_bytes, self.elems_written = 0, None, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        for t in tensors:
            if t.numel() > self.largest:
                self.largest, self.op = t.numel(), func
            self.largest_bytes = max(self.largest_bytes, t.untyped_storage().nbytes())
        if not func.is_view:
            self.elems_written += sum(t.numel() for t in tensors)
        return out
