"""Time, FLOPs and the machine's GEMM peak for one attention case; the same calls serve the CLI sweeps and asv.

- Time: ``torch.utils.benchmark.Timer`` with explicit ``num_threads``; one timed first call (cold: page faults,
  lazy init) kept beside the steady state from ``blocked_autorange`` (median, IQR, repeats). The Timer
  synchronises CUDA itself.
- FLOPs: ``FlopCounterMode`` on the math path (it counts 0 for the fused CPU SDPA kernel), beside the spec's
  analytic count.
- Peak memory is measured by ``bench.isolate`` inside the worker child (never in the sweep's own process).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.utils.benchmark as tbench
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import variants
from variants.model import ModelConfig, Transformer

PHASES = ("forward", "forward_backward", "train_step")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


@dataclass(frozen=True)
class Shape:
    """One attention problem: batch, heads, length, head dim, dtype name, device, causal."""

    B: int
    H: int
    T: int
    D: int
    dtype: str = "float32"
    device: str = "cpu"
    causal: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def resolve_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N'; asking for CUDA without a GPU is a one-line error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but torch.cuda.is_available() is False")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use cpu or cuda")
    return torch.device(name)


def build_attention(name: str, shape: Shape, params: dict[str, Any] | None = None) -> variants.Attention:
    torch.manual_seed(0)
    attn = variants.create(name, d_head=shape.D, n_heads=shape.H, causal=shape.causal,
                           max_seq_len=shape.T, **(params or {}))
    return attn.to(device=resolve_device(shape.device), dtype=shape.torch_dtype)


def make_qkv(shape: Shape, seed: int = 0, requires_grad: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dev = resolve_device(shape.device)
    return [torch.randn(shape.B, shape.H, shape.T, shape.D, generator=g).to(dev, shape.torch_dtype)
            .requires_grad_(requires_grad) for _ in range(3)]


def phase_callable(name: str, shape: Shape, phase: str, params: dict[str, Any] | None = None,
                   seed: int = 0) -> Callable[[], Any]:
    """A zero-argument function that runs one phase of one case; inputs are built here, outside the timing."""
    if phase == "forward":
        attn = build_attention(name, shape, params)
        q, k, v = make_qkv(shape, seed)

        def forward() -> Any:
            with torch.inference_mode():
                return attn(q, k, v)
        return forward
    if phase == "forward_backward":
        attn = build_attention(name, shape, params)
        q, k, v = make_qkv(shape, seed, requires_grad=True)

        def forward_backward() -> None:
            attn(q, k, v).sum().backward()
            for t in (q, k, v):
                t.grad = None
        return forward_backward
    if phase == "train_step":
        return train_step_callable(name, shape, params, seed)
    raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")


def train_step_callable(name: str, shape: Shape, params: dict[str, Any] | None, seed: int,
                        vocab: int = 256) -> Callable[[], None]:
    """One AdamW step of the small model (d_model = H·D, 2 layers) on random tokens of length T."""
    torch.manual_seed(seed)
    dev = resolve_device(shape.device)
    cfg = ModelConfig(vocab_size=vocab, max_seq_len=shape.T, attention=name, attention_params=dict(params or {}),
                      d_model=shape.H * shape.D, n_heads=shape.H, n_layers=2, causal=shape.causal)
    model = Transformer(cfg).to(dev, shape.torch_dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, vocab, (shape.B, shape.T), device=dev)
    targets = torch.randint(0, vocab, (shape.B, shape.T), device=dev)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1).float(), targets.flatten())
        loss.backward()
        opt.step()
    return train_step


STABLE_REL_IQR = 0.03  # a steady-state time is "stable" when its IQR is within 3% of its median
MAX_TIMING_ROUNDS = 6
MIN_TIMING_REPEATS = 5  # a median and an IQR need several blocks: a call slower than min_run_time/5 gets more time
MIN_STABLE_MEDIAN_S = 1e-3  # below 1 ms, timer and scheduler granularity dominate the spread: no re-rounds


def time_callable(fn: Callable[[], Any], threads: int, min_run_time: float = 0.2, *,
                  max_rel_iqr: float = STABLE_REL_IQR, max_rounds: int = MAX_TIMING_ROUNDS,
                  min_repeats: int = MIN_TIMING_REPEATS) -> dict[str, Any]:
    """First (cold) call, then steady state: median and IQR over ``blocked_autorange`` blocks, in seconds.

    The run time is at least ``min_repeats`` times the first call, so a slow case still gets several blocks (an
    IQR over one or two blocks would read as a spread of 0). A round whose IQR/median exceeds ``max_rel_iqr`` (a
    burst of other load on a shared machine) is measured again, with the same run time, up to ``max_rounds``
    rounds, and the round with the smallest relative IQR is kept: ``rounds`` says how many were needed,
    ``stable`` whether the kept one meets the bound. The same run time, not a longer one: the noise here comes
    in spells (whole minutes ~25% slower, see ``paired_ratios``), and a longer round is only more likely to
    straddle the edge of one (every unstable case of the full profile run at 02dc8f5 was in its 4th round, 8×
    the first round's run time).
    Cases under 1 ms are measured once (their spread is the timer's, not the machine's).
    """
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    first = timer.timeit(number=1).median
    best, rounds, run_time = None, 0, max(min_run_time, min_repeats * first)
    while rounds < max_rounds:
        m = timer.blocked_autorange(min_run_time=run_time)
        rounds += 1
        rel = m.iqr / m.median if m.median > 0 else math.inf
        if best is None or rel < best[0]:
            best = (rel, m)
        if rel <= max_rel_iqr or m.median < MIN_STABLE_MEDIAN_S:
            break
    rel, m = best
    return {"first_call_s": first, "median_s": m.median, "iqr_s": m.iqr, "repeats": len(m.times),
            "number_per_run": m.number_per_run, "block_times_s": [float(f"{t:.4g}") for t in m.times],
            "rounds": rounds, "stable": bool(rel <= max_rel_iqr)}


def calibrated_timer(fn: Callable[[], Any], threads: int, block_s: float) -> tuple[tbench.Timer, int]:
    """(Timer, number): how many calls of ``fn`` make one timing block of about ``block_s`` seconds (after one
    warm-up call)."""
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    timer.timeit(number=1)
    single = timer.timeit(number=1).median
    return timer, max(1, math.ceil(block_s / max(single, 1e-7)))


def ratios_to(reference: Callable[[], Any], fns: dict[Any, Callable[[], Any]], threads: int, block_s: float = 0.04,
              rounds: int = 15) -> dict[Any, list[float]]:
    """Per round and per fn, its seconds per call over the reference's, their blocks timed back to back (the fn
    first on even rounds, the reference first on odd ones); every round visits every fn.

    Two medians measured a minute apart on a shared machine compare two machine states as much as two codes:
    here, whole minutes ran every op ~25% slower (one forward: 880 µs in some processes, 1110 µs in others
    started right after). A block of each, side by side, sees the same state, so the per-round ratio cancels
    that drift; report the median of the rounds and their spread.
    """
    ref = calibrated_timer(reference, threads, block_s)
    timers = {key: calibrated_timer(fn, threads, block_s) for key, fn in fns.items()}
    ratios: dict[Any, list[float]] = {key: [] for key in fns}
    for r in range(rounds):
        for key, own in timers.items():
            first, second = (own, ref) if r % 2 == 0 else (ref, own)
            s1, s2 = (timer.timeit(number=number).median for timer, number in (first, second))
            ratios[key].append(s1 / s2 if r % 2 == 0 else s2 / s1)
    return ratios


def paired_ratios(fn_a: Callable[[], Any], fn_b: Callable[[], Any], threads: int, block_s: float = 0.04,
                  rounds: int = 15) -> list[float]:
    """Per round, seconds per call of ``fn_a`` over ``fn_b``, timed side by side (``ratios_to``)."""
    return ratios_to(fn_b, {"a": fn_a}, threads, block_s, rounds)["a"]


def peak_memory(fn: Callable[[], Any], device: str = "cpu") -> int:
    """Bytes one call of ``fn`` adds at its peak over what is already held (its inputs).

    CUDA: the allocator's peak statistics. CPU: the RSS high-water mark of this (worker) process, reset before
    the call, minus the RSS just before it (``bench.isolate.peak_bytes``).
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    from bench.isolate import peak_bytes

    return int(peak_bytes(fn)[1])


def live_peak_bytes(fn: Callable[[], Any]) -> int:
    """Most tensor bytes alive at once during one call of ``fn``, beyond those alive before it (CPU).

    From the allocation events of ``torch.profiler`` (``profile_memory``): every allocation and free of torch's CPU
    allocator, summed in order. Unlike the RSS high-water mark this does not depend on how the heap is laid out
    (a freed hole too small for the next tensor, a small block splitting a large hole), so it is the number to
    hold an analytic "bytes alive at the peak" model against; the RSS peak is what the process really takes.
    Memory that libraries allocate outside torch (MKL packing buffers) is not seen.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


def live_bytes_metric(fn: Callable[[], Any], device: str = "cpu") -> dict[str, int]:
    """``{"peak_live_bytes": live_peak_bytes(fn)}`` on CPU; nothing on CUDA, whose ``peak_memory`` already is the
    allocator's live bytes. What the sweeps add to a row beside its RSS peak."""
    return {"peak_live_bytes": live_peak_bytes(fn)} if resolve_device(device).type == "cpu" else {}


def counted_flops(name: str, shape: Shape, params: dict[str, Any] | None = None) -> int:
    """Matmul FLOPs of one forward, counted by FlopCounterMode on the math path (B as given).

    Counted on the meta device (shapes only, no memory: the math path of full attention at T = 32768 would
    materialise 17 GiB of scores); a variant whose forward needs real values (a data-dependent layout, say)
    is counted on its own device instead.
    """
    attn = build_attention(name, shape, params)
    try:
        q, k, v = (torch.empty(shape.B, shape.H, shape.T, shape.D, dtype=shape.torch_dtype, device="meta")
                   for _ in range(3))
        return _count_flops(attn.to("meta"), q, k, v)
    except (RuntimeError, NotImplementedError):
        attn = build_attention(name, shape, params)
        return _count_flops(attn, *make_qkv(shape))


def _count_flops(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        attn(q, k, v)
    return int(counter.get_total_flops())


def gemm_peak(threads: int, device: str = "cpu", n: int = 2048, dtype: str = "float32",
              min_run_time: float = 0.5) -> dict[str, float]:
    """Achievable matmul FLOP/s of this machine: an n×n×n GEMM timed the same way as the cases."""
    dev = resolve_device(device)
    a = torch.randn(n, n, device=dev).to(DTYPES[dtype])
    b = torch.randn(n, n, device=dev).to(DTYPES[dtype])
    t = time_callable(lambda: torch.mm(a, b), threads, min_run_time)
    return {"gemm_n": n, "gemm_median_s": t["median_s"], "gemm_peak_flops": 2 * n ** 3 / t["median_s"]}


def gemm_calibration(case) -> dict[str, float]:
    """Worker target: the GEMM peak for a sweep's manifest (``CALIBRATION = "bench.measure:gemm_calibration"``)."""
    torch.set_num_threads(case["threads"])
    return gemm_peak(case["threads"], case["device"])


def log2_grid(lo: int, hi: int) -> tuple[int, ...]:
    """Powers of two from lo to hi inclusive (lo, hi themselves powers of two)."""
    return tuple(2 ** e for e in range(int(math.log2(lo)), int(math.log2(hi)) + 1))
