"""A tiny sweep for the harness tests: each case's ``kind`` says how it ends (ok, oom, sleep, sigkill, ...)."""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass

from bench.config import Case, RunConfig
from bench.sweep import Sweep

NAME = "fake"
MiB = 1 << 20
PROBE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Config(RunConfig):
    kinds: tuple[str, ...] = ("ok", "ok", "ok")  # how each case ends, in order
    time_cap_s: float = 30.0  # seconds one case may run
    seed: int = 0  # unused: a seed field like a real sweep's
    jobs: int = 1  # workers at once when the sweep is parallel
    marker: str = ""  # kill_ray_worker: a path prefix; the case kills its Ray worker until marker<i> exists

    @property
    def seed_list(self) -> list[int]:
        return [self.seed]


PROFILES = {"quick": Config()}


def cases(cfg: Config):
    """One case per entry of ``cfg.kinds``, in order; ``variant`` is the kind so summaries group by it."""
    for i, kind in enumerate(cfg.kinds):
        yield Case.make(NAME, i=i, variant=kind, **({"marker": f"{cfg.marker}{i}"} if cfg.marker else {}))


def _ok(case: Case) -> dict:
    return {"value": case["i"] ** 2, "pid": os.getpid()}


def _oom(case: Case) -> dict:
    import torch

    torch.empty(2**29).fill_(1.0)  # 2 GiB of float32, touched
    return {}


def _nap(case: Case) -> dict:
    """A short case (50 ms), so a sweep of them spends its time between rows and in writing them."""
    time.sleep(0.05)
    return {"value": case["i"], "pid": os.getpid()}


def _sleep(case: Case) -> dict:
    time.sleep(120)
    return {}


def _sigkill(case: Case) -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def _kill_ray_worker(case: Case) -> dict:
    """SIGKILL the Ray worker process this child runs under (its parent), the first time only: a worker lost
    mid-case. Refuses to run outside a Ray worker, so it never kills a test process."""
    import psutil

    parent = psutil.Process(os.getppid())
    if not " ".join(parent.cmdline()).startswith("ray::"):  # Ray titles its workers ray::<task>
        raise RuntimeError("kill_ray_worker runs only under a Ray worker")
    if case["variant"] == "kill_ray_worker_always" or not os.path.exists(case["marker"]):
        open(case["marker"], "w").close()
        parent.kill()
        time.sleep(60)  # dies with its parent (bench.isolate)
    return {"value": case["i"] ** 2, "pid": os.getpid()}


def _unsupported(case: Case) -> dict:
    raise NotImplementedError("this combination is not supported")


def _error(case: Case) -> dict:
    raise ValueError("first line\nsecond line")


def _exit(case: Case) -> dict:
    os._exit(3)


def _probe(case: Case) -> dict:
    """Peak of allocating and touching a PROBE_BYTES tensor, measured by bench.measure.probes.peak_bytes.

    A bigger tensor is touched and freed first: under the retaining allocator policy its pages stay resident,
    and without ``malloc_trim`` in the probe the PROBE_BYTES tensor would reuse them and read as ~0.
    """
    import torch

    from bench.measure.probes import peak_bytes

    torch.empty(2 * PROBE_BYTES // 4).fill_(1.0)

    _, peak = peak_bytes(lambda: torch.empty(PROBE_BYTES // 4).fill_(1.0))
    return {"peak_bytes": peak, "pid": os.getpid()}


@contextlib.contextmanager
def _heap_plugged_below(size: int, above: int):
    """While the block runs, every free heap chunk below the top that could serve a ``size`` allocation is held
    (malloc'd, never touched), so a ``size`` allocation made right after an ``above`` one lands above it.

    A trial ``above``-byte block goes where such a tensor will go (the heap's top); ``size`` blocks are held until
    one lands above it. Which free chunks torch's start-up leaves differs from child to child (docs/measurement.md:
    a 2.4 MiB one took the 2 MiB pin in most children, and the 32 MiB hole then merged with the top).
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    trial, plugs = libc.malloc(above), []
    while (block := libc.malloc(size)) and trial and block < trial:
        plugs.append(block)
    for ptr in (block, trial):
        libc.free(ptr)
    try:
        if not (block and trial):
            raise MemoryError("could not plug the heap's free chunks")
        yield len(plugs)
    finally:
        for ptr in plugs:
            libc.free(ptr)


def _holes(case: Case) -> dict:
    """Peaks of a call whose live peak is 42 MiB but which leaves a 32 MiB hole a 40 MiB tensor cannot fill.

    Measured three ways in this (retained-heap) child: by ``peak_bytes``; by the same probe with the policy left
    as it is (what ``peak_bytes`` did before it mapped large allocations); and by ``peak_bytes`` again inside an
    outer ``large_allocations_mapped`` block, after an inner block has exited (nesting must not switch it off).
    The heap's free chunks that could take the pin are plugged first, so the pin lands above ``a`` in every child.
    """
    import torch

    from bench.measure import probes

    def fn():
        a = torch.empty(32 * MiB // 4).fill_(1.0)
        pin = torch.empty(2 * MiB // 4).fill_(1.0)  # above ``a``: keeps its hole from merging with the top
        del a
        b = torch.empty(40 * MiB // 4).fill_(1.0)
        return float(b[0] + pin[0])

    def unmapped_peak():  # peak_bytes without the mapping: what the retained heap touches
        probes.release_free_memory()
        probes.reset_hwm()
        base = probes.rss_bytes()
        fn()
        return probes.hwm_bytes() - base

    with _heap_plugged_below(2 * MiB, 32 * MiB):
        fn()
        _, mapped = probes.peak_bytes(fn)
        retained = unmapped_peak()
        with probes.large_allocations_mapped():
            with probes.large_allocations_mapped():
                pass
            _, nested = probes.peak_bytes(fn)
            still_mapped = unmapped_peak()  # an inner block's exit left the outer mapping on
    return {"mapped": mapped, "retained": retained, "nested": nested, "still_mapped": still_mapped}


KINDS = {"ok": _ok, "nap": _nap, "oom": _oom, "sleep": _sleep, "sigkill": _sigkill, "unsupported": _unsupported,
         "error": _error, "exit": _exit,
         "kill_ray_worker": _kill_ray_worker, "kill_ray_worker_always": _kill_ray_worker, "probe": _probe,
         "holes": _holes}


def execute(case: Case) -> dict:
    return KINDS[case["variant"]](case)


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute,
              metrics=("value", "pid", "peak_bytes", "mapped", "retained", "nested", "still_mapped"))
