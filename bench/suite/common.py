"""The one parameter list every asv benchmark class shares, and the shape each parameter set measures."""
from __future__ import annotations

import torch

import variants
from bench.isolate import Worker
from bench.measure import Shape

VARIANTS = tuple(variants.names())
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SEQ_LENS = (256, 1024) + ((4096, 16384) if DEVICE == "cuda" else ())  # larger T only where a GPU makes it cheap
B, H, D = 1, 4, 64
THREADS = 2  # the sweeps' default (bench.sweeps.efficiency.Config.threads)

PARAMS = [list(VARIANTS), list(SEQ_LENS)]
PARAM_NAMES = ["variant", "T"]
# A train step at T=1024 for every variant is sweep work (bench.sweeps.efficiency); asv tracks the smallest T on CPU.
TRAIN_PARAMS = [list(VARIANTS), list(SEQ_LENS) if DEVICE == "cuda" else list(SEQ_LENS[:1])]


def shape(T: int) -> Shape:
    return Shape(B, H, T, D, device=DEVICE)


def prepare(name: str) -> None:
    """Per-setup: fixed threads, and an unsupported variant raises NotImplementedError (asv: skipped)."""
    torch.set_num_threads(THREADS)
    variants.get(name)


def synced(fn):
    """``fn`` followed by a CUDA synchronise, so asv's wall clock sees the kernels finish (no-op on CPU)."""
    if DEVICE != "cuda":
        return fn

    def call():
        fn()
        torch.cuda.synchronize()
    return call


def peak_bytes_of(keys, threads: int = THREADS) -> dict:
    """{(variant, T): peak bytes one forward adds, None when unsupported or failed}, in one worker child
    (``bench.measure.probes.forward_peak``, as the sweeps and the gate read a peak)."""
    peaks = {}
    with Worker.for_device(DEVICE, threads=threads) as worker:
        for name, T in keys:
            outcome = worker.run("bench.measure.probes:forward_peak",
                                 {"variant": name, "shape": shape(T), "threads": threads}, timeout_s=300.0)
            peaks[(name, T)] = outcome.metrics["peak_bytes"] if outcome.status == "ok" else None
    return peaks
