"""The CUDA paths: every variant on the GPU agrees with itself on the CPU, and the harness measures a GPU case
(synchronised time, the allocator's peak, a memory cap that turns into an ``oom`` row, the sweeps end to end).

Skipped where ``torch.cuda.is_available()`` is False (CI has no GPU); run on a GPU machine with
``python -m pytest -q tests/test_cuda.py``.
"""
from __future__ import annotations

import os

import pytest
import torch

import variants
from bench import store
from bench.config import Case
from bench.isolate import Worker
from bench.measure import Shape, build_attention, make_qkv, peak_memory, phase_callable, time_callable

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MiB = 1 << 20
NAMES = tuple(variants.names())


def _forward_backward(shape: Shape, name: str) -> tuple[torch.Tensor, ...]:
    """Output and q, k, v gradients of one forward+backward of ``name`` at ``shape``, brought to the CPU."""
    attn = build_attention(name, shape)  # seeded: the same parameters on either device
    q, k, v = make_qkv(shape, seed=1, requires_grad=True)
    out = attn(q, k, v)
    out.square().sum().backward()
    return (out.detach().cpu(), *(t.grad.cpu() for t in (q, k, v)))


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 would make the GPU's fp32 matmuls ~1e-3 off the CPU's; the comparison is of the code, not of TF32."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_on_cuda_matches_itself_on_cpu(name, causal):
    """Same parameters, same inputs: outputs and input gradients agree to fp32 rounding (T = 300 is not a multiple
    of any block, window or landmark count, so the padding paths run too)."""
    spec = variants.get(name).spec
    if causal and not spec.supports_causal:
        pytest.skip(f"{name} has no causal form")
    cpu = _forward_backward(Shape(2, 3, 300, 32, causal=causal), name)
    gpu = _forward_backward(Shape(2, 3, 300, 32, device="cuda", causal=causal), name)
    for label, a, b in zip(("out", "dq", "dk", "dv"), cpu, gpu):
        assert torch.isfinite(b).all(), f"{name} {label} has non-finite values on CUDA"
        scale = a.abs().max().item()
        assert (a - b).abs().max().item() <= 1e-4 * max(scale, 1.0), f"{name} {label} differs from the CPU"


def test_time_callable_waits_for_the_gpu():
    """A kernel that spins ~20 ms reads ~20 ms, not the microseconds of its launch: the Timer synchronises."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 1 << 24
    torch.cuda._sleep(cycles)  # warm-up
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    event_s = start.elapsed_time(end) / 1e3
    t = time_callable(lambda: torch.cuda._sleep(cycles), threads=1, min_run_time=0.2)
    assert event_s > 1e-3
    assert t["median_s"] == pytest.approx(event_s, rel=0.25)
    assert t["first_call_s"] >= 0.5 * event_s


def test_peak_memory_sees_a_known_cuda_allocation():
    """256 MiB allocated and freed inside the call reads as 256 MiB (± 5%), whatever the process already holds."""
    held = torch.empty(64 * MiB // 4, device="cuda")
    peak = peak_memory(lambda: torch.empty(256 * MiB // 4, device="cuda").fill_(1.0), "cuda")
    assert abs(peak - 256 * MiB) <= 0.05 * 256 * MiB
    del held


def test_full_naive_peak_on_cuda_holds_its_score_matrix():
    """The O(T²) limit on the GPU: the naive forward's peak holds at least the B·H·T² fp32 scores."""
    shape = Shape(1, 4, 2048, 64, device="cuda")
    peak = peak_memory(phase_callable("full_naive", shape, "forward"), "cuda")
    assert peak >= 4 * 2048 * 2048 * 4


# -------------------------------------------------------------------------------------------- the worker on CUDA

def alloc_on_cuda(case) -> dict:
    """Worker target: allocate ``case['mib']`` MiB on the GPU and touch it."""
    torch.empty(case["mib"] * MiB // 4, device="cuda").fill_(1.0)
    return {"pid": os.getpid()}


def test_over_the_cuda_memory_cap_is_oom_and_the_next_case_runs():
    with Worker.for_device("cuda", threads=1, mem_cap_bytes=512 * MiB) as worker:
        info = worker.start()
        assert info["cuda_limit_bytes"] == pytest.approx(512 * MiB, rel=0.01)
        over = worker.run("test_cuda:alloc_on_cuda", {"mib": 2048}, timeout_s=120)
        assert over.status == "oom", over.error
        assert "memory" in over.error.lower()
        under = worker.run("test_cuda:alloc_on_cuda", {"mib": 128}, timeout_s=120)
        assert under.status == "ok", under.error


def test_efficiency_cases_on_cuda_measure_every_phase():
    from bench.sweeps import efficiency

    for phase in ("forward", "forward_backward", "train_step"):
        case = Case.make("efficiency", variant="sparse_window", T=1024, phase=phase, causal=True, B=1, H=4, D=64,
                         dtype="float32", device="cuda", threads=1, min_run_time=0.05, seed=0)
        out = efficiency.execute(case)
        assert out["median_s"] > 0 and out["first_call_s"] > 0 and out["repeats"] >= 1
        assert out["peak_bytes"] > 0
        if phase == "forward":
            cpu = dict(case.as_dict(), device="cpu")
            assert out["flops"] == efficiency.counted_flops("sparse_window", efficiency.shape_of(cpu)) > 0
            assert "peak_live_bytes" not in out  # on CUDA the allocator's peak already is the live peak


def test_limits_memory_probe_on_cuda_counts_inputs_exactly():
    from bench.sweeps import limits

    cfg = limits.Config(device="cuda", mem_budget_bytes=1 << 30)
    out = limits.execute(limits.probe_case(cfg, "full_naive", "memory", 4096))
    assert out["input_bytes"] == 3 * 4 * 4096 * 64 * 4
    assert out["peak_bytes"] >= 4 * 4096 * 4096 * 4  # the scores
    assert out["fits"] == (out["total_bytes"] <= 1 << 30)


def test_sweeps_run_end_to_end_on_cuda(tmp_path):
    """A tiny efficiency sweep and a limits search on the GPU: rows ok, the manifest names the GPU, and the
    memory search of full_naive ends on an oom or over-budget probe under a 256 MiB budget."""
    from bench.run import run_sweep
    from bench.sweeps import efficiency, limits

    cfg = efficiency.Config(variants=("full_sdpa", "linear_elu"), seq_lens=(256, 512), phases=("forward",),
                            causal=(False,), device="cuda", threads=1, min_run_time=0.05)
    path = run_sweep(efficiency.SWEEP, cfg, profile="quick", out_dir=tmp_path, progress=False)
    df, manifests = store.load(path), store.load_manifests(path)
    assert (df["status"] == "ok").all() and len(df) == 4
    assert manifests["device_name"].iloc[0] == torch.cuda.get_device_name(0)
    assert manifests["machine"].iloc[0].startswith(torch.cuda.get_device_name(0) + ", ")  # e.g. "NVIDIA H200, 140 GiB"
    assert path.name == "efficiency-quick-cuda.jsonl"

    lcfg = limits.Config(variants=("full_naive",), budgets=("memory",), device="cuda", mem_budget_bytes=256 * MiB,
                         start_t=1024, max_t=1 << 16, bisect_steps=2, threads=1)
    lpath = run_sweep(limits.SWEEP, lcfg, profile="quick", out_dir=tmp_path, progress=False)
    rows = store.load(lpath)
    found = rows[rows["kind"] == "limit"].iloc[0]
    assert found["status"] == "ok" and 1024 <= found["max_fit_t"] < found["min_fail_t"] <= 1 << 16
    # full_naive's scores alone are 4·4·T² bytes: 256 MiB fits T = 4096 at most
    assert found["max_fit_t"] <= 4096 and found["min_fail_why"] in ("over budget", "oom")


def test_accuracy_trains_on_cuda_and_caches_a_cpu_loadable_model(tmp_path, monkeypatch):
    """The accuracy gpu profile's path: a tiny case trains on the GPU, deterministically, and its checkpoint
    loads on the CPU."""
    from bench import checkpoints
    from bench.sweeps import accuracy

    monkeypatch.setenv("ATTENTION_LIMITS_CACHE", str(tmp_path))
    cfg = accuracy.Config(tasks=("mqar",), variants=("full_sdpa",), seq_lens=(16,), seeds=(0,), steps=20,
                          batch_size=8, eval_every=10, warmup=1, n_train=64, n_eval=16, d_model=16, n_layers=1,
                          n_pairs=2, mqar_vocab=16, threads=1, lr_grid=(3e-3,), device="cuda")
    cfg.validate()
    (case,) = accuracy.grid_cases(cfg, {("mqar", "full_sdpa"): 3e-3})
    first, again = accuracy.execute(case), accuracy.execute(case)
    assert first["curve"] == again["curve"] and 0.0 <= first["accuracy"] <= 1.0
    model, _ = checkpoints.load(case.id)
    assert next(model.parameters()).device.type == "cpu"
