"""The regression gate, ``attention-limits check``: a fresh quick measurement against the committed baseline.

Every check is chosen to be immune to the ±25% timing noise of a shared machine:

- exact (any change fails, either way): FLOPs counted by ``FlopCounterMode`` at fixed shapes (non-causal and,
  where supported, causal), the spec's analytic FLOPs and bytes, the small model's parameter count, and the test
  accuracy of a seeded tiny training run (deterministic algorithms, fixed threads: bit-identical on CPU);
- within a tolerance: the seeded training loss (relative 1e-4) and the forward's peak bytes at batch 4 and the
  largest T of the scaling grid, measured first in a fresh worker child (regressions beyond 5% or 1 MiB);
- on shape, not speed: time and memory exponents fitted over a T grid (medians of interleaved repeats, measured
  in the child) may exceed the spec's declared ``time_exponent`` / ``memory_exponent`` by at most 0.15;
- speed only as a ratio measured in one run: each variant's forward time over ``full_sdpa``'s at one T (medians
  of interleaved repeats), which may not grow past 1.5× the baseline ratio.

``--update-baseline`` rewrites ``results/baseline/gate.json`` on purpose. ``--variants a,b`` restricts the check;
``--plugin module`` imports a module that registers extra variants (here and in the worker child).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from bench.analysis.gate import exponents
from bench.config import ConfigError
from bench.outcome import one_line

DEFAULT_BASELINE = Path(__file__).resolve().parents[1] / "results" / "baseline" / "gate.json"
REFERENCE = "full_sdpa"  # the denominator of every speed ratio
MiB = 1 << 20


@dataclass(frozen=True)
class GateConfig:
    """Shapes, grids, repeats and tolerances of the gate; stored in the baseline so a change is visible."""

    threads: int = 1  # one thread: OpenMP barriers on an oversubscribed 2-core machine cost 25x (measured)
    flops_shape: tuple[int, int, int, int] = (1, 2, 256, 32)  # B, H, T, D
    model: dict = field(default_factory=lambda: {"vocab_size": 64, "max_seq_len": 128, "d_model": 64,
                                                 "n_heads": 2, "n_layers": 2})
    task: dict = field(default_factory=lambda: {"seq_len": 16, "n_pairs": 2, "vocab_size": 8})  # MQAR, learnt
    train: dict = field(default_factory=lambda: {"steps": 150, "batch_size": 16, "n_train": 512, "n_eval": 128,
                                                 "eval_every": 150, "warmup": 10, "lr": 3e-3, "seed": 0})
    scaling_shape: tuple[int, int, int] = (1, 2, 64)  # B, H, D
    grid_linear: tuple[int, ...] = (2048, 4096, 8192, 16384)  # declared exponent <= 1.5; below 2048 q, k, v sit in L2
    grid_quadratic: tuple[int, ...] = (128, 256, 512, 1024)  # T×T stays in L3: loaded machines fit 2.06-2.27 at 2048
    rounds: int = 9  # interleaved timing rounds per T
    block_s: float = 0.02  # each timing block runs the forward enough times to last this long
    peak_repeats: int = 7  # min over repeats: see measure_scaling
    peak_floor_bytes: int = MiB  # peaks below this are not resolvable by RSS: clamped before the memory fit
    peak_batch: int = 4  # the gated peak: batch 4 at the grid's largest T, so it is tens of MiB, not a few
    speed_T: int = 1024
    speed_rounds: int = 9
    exponent_slack: float = 0.15
    peak_rel_tol: float = 0.05
    peak_abs_tol: int = MiB  # page / arena granularity: matters only for peaks under 20 MiB (full_sdpa)
    loss_rel_tol: float = 1e-4
    speed_factor: float = 1.5


# ----------------------------------------------------------------------------------------------------------------
# Worker-child targets (each case is a plain dict; plugins are imported again in the child).

def _import_plugin(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        if os.getcwd() in sys.path:
            raise
        sys.path.append(os.getcwd())
        importlib.import_module(name)


def load_plugins(modules: Sequence[str]) -> None:
    """Import each plugin module (it registers variants on import); the current directory is tried as well.

    A plugin that does not import, or fails while registering (a duplicate name, say), is a ``ConfigError``."""
    for name in modules:
        try:
            _import_plugin(name)
        except Exception as exc:  # noqa: BLE001 - whatever a plugin raises on import is the user's to fix
            raise ConfigError(f"--plugin {name}: the module failed to import ({one_line(exc)}); pass an importable "
                              f"module (on PYTHONPATH or in this folder) that registers new names") from None


def _enter(case: dict) -> "GateConfig":
    import torch

    load_plugins(case["plugins"])
    cfg = GateConfig(**case["cfg"])
    torch.set_num_threads(cfg.threads)
    return cfg


def measure_static(case: dict) -> dict[str, Any]:
    """Deterministic metrics of one variant: counted and analytic FLOPs and bytes, parameters, seeded accuracy."""
    cfg = _enter(case)
    import variants
    from bench.measure import Shape, counted_flops

    name, (B, H, T, D) = case["variant"], cfg.flops_shape
    spec = variants.get(name).spec
    out = {"flops": counted_flops(name, Shape(B, H, T, D)),
           "flops_analytic": spec.analytic_flops(B, H, T, D, causal=False),
           "memory_analytic": spec.analytic_bytes(B, H, T, D, causal=False, elem_bytes=4)}
    if spec.supports_causal:
        out["flops_causal"] = counted_flops(name, Shape(B, H, T, D, causal=True))
    return {**out, **model_metrics(name, cfg)}


def model_metrics(variant: str, cfg: GateConfig = GateConfig()) -> dict[str, Any]:
    """Parameter count of the small model, and test accuracy / loss after a seeded tiny training run (MQAR)."""
    from bench.tasks import mqar
    from bench.train import TrainConfig, model_config_for, train
    from variants.model import ModelConfig, Transformer, count_parameters

    import torch

    torch.manual_seed(0)
    n_params = count_parameters(Transformer(ModelConfig(attention=variant, **cfg.model)))
    task = mqar.Config(**cfg.task)
    model_cfg = model_config_for(task, variant, causal=False, d_model=cfg.model["d_model"],
                                 n_heads=cfg.model["n_heads"], n_layers=cfg.model["n_layers"])
    result = train(model_cfg, "mqar", task, TrainConfig(threads=cfg.threads, **cfg.train))
    return {"params": n_params, "accuracy": result.accuracy, "loss": result.loss}


def measure_scaling(case: dict) -> dict[str, Any]:
    """Peak bytes (least of repeats) and forward seconds (interleaved medians) of one variant over a T grid.

    Peaks are read with large allocations mapped, so a freed temporary leaves RSS at once and the high-water mark
    is the live peak, first in a fresh worker child, least of ``peak_repeats`` (docs/measurement.md)."""
    cfg = _enter(case)
    from bench.measure import Shape, interleaved_medians, large_allocations_mapped, min_peak, phase_callable

    B, H, D = cfg.scaling_shape
    with large_allocations_mapped():
        gated = phase_callable(case["variant"], Shape(cfg.peak_batch, H, max(case["grid"]), D), "forward")
        gated()
        peak = min_peak(gated, cfg.peak_repeats)
        del gated
        fns = {T: phase_callable(case["variant"], Shape(B, H, T, D), "forward") for T in case["grid"]}
        for fn in fns.values():
            fn()  # warm-up: lazily built tables and first-use code pages are not the forward's memory
        peaks = {T: min_peak(fns[T], cfg.peak_repeats) for T in fns}
    calibration = {("linear", T): linear_work(Shape(B, H, T, D)) for T in case["grid"]}
    times = interleaved_medians({**fns, **calibration}, cfg.threads, cfg.block_s, cfg.rounds)
    return {"peak_bytes": peak, "times": {str(T): times[T] for T in fns},
            "linear_times": {str(T): times[("linear", T)] for T in fns},
            "peaks": {str(T): p for T, p in peaks.items()}}


def linear_work(shape) -> Callable[[], Any]:
    """An O(T) calibration on the same data sizes: (B, H, T, D) @ (D, D). On a CPU whose caches make even this
    grow faster than T over the grid, the excess is discounted from the variants' time exponents."""
    import torch
    from bench.measure import make_qkv

    x = make_qkv(shape)[0]
    w = torch.randn(shape.D, shape.D, generator=torch.Generator().manual_seed(0))

    def work() -> Any:
        with torch.inference_mode():
            return x @ w  # (B, H, T, D) @ (D, D) -> (B, H, T, D)
    return work


def measure_speed(case: dict) -> dict[str, Any]:
    """Each variant's forward time over the reference's, paired (``bench.measure.ratios_to``): every round times
    the reference and each variant back to back and keeps their ratio; the median over rounds is returned.
    Pairing cancels load that drifts on a shared machine; the median drops the rounds another process disturbed."""
    import numpy as np

    cfg = _enter(case)
    from bench.measure import Shape, phase_callable, ratios_to

    B, H, D = cfg.scaling_shape
    fns = {name: phase_callable(name, Shape(B, H, cfg.speed_T, D), "forward")
           for name in sorted(set(case["names"]) | {REFERENCE})}
    ratios = ratios_to(fns.pop(REFERENCE), fns, cfg.threads, cfg.block_s, cfg.speed_rounds)
    return {"ratios": {REFERENCE: 1.0, **{name: float(np.median(v)) for name, v in ratios.items()}}}


# ----------------------------------------------------------------------------------------------------------------
# The parent: measure, compare, report.

def _run(worker, target: str, case: dict, label: str) -> dict[str, Any]:
    outcome = worker.run(target, case, timeout_s=600.0)
    if outcome.status != "ok":
        raise RuntimeError(f"gate: {label} failed in the worker: {outcome.status}: {outcome.error}")
    return outcome.metrics


def measure(names: Sequence[str], plugins: Sequence[str] = (), cfg: GateConfig = GateConfig(),
            log=print) -> dict[str, dict[str, Any]]:
    """Every gate metric of every named variant, measured in one worker child."""
    import variants
    from bench.isolate import Worker

    common = {"plugins": list(plugins), "cfg": asdict(cfg)}
    found: dict[str, dict[str, Any]] = {}
    with Worker(threads=cfg.threads) as worker:
        for name in names:
            start = time.perf_counter()
            spec = variants.get(name).spec
            found[name] = _run(worker, "bench.gate:measure_static", {**common, "variant": name},
                               f"{name} static metrics")
            grid = cfg.grid_linear if spec.time_exponent <= 1.5 else cfg.grid_quadratic
            with Worker(threads=cfg.threads) as fresh:  # peaks depend on heap history: a clean child each
                scaling = _run(fresh, "bench.gate:measure_scaling", {**common, "variant": name, "grid": grid},
                               f"{name} scaling")
            found[name].update(exponents(scaling, cfg.peak_floor_bytes))
            found[name]["peak_bytes"] = scaling["peak_bytes"]
            log(f"gate: measured {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        ratios = _run(worker, "bench.gate:measure_speed", {**common, "names": list(names)},
                      "speed ratios")["ratios"]
    for name in names:
        found[name]["speed_ratio"] = round(ratios[name], 4)
    return found


@dataclass(frozen=True)
class Check:
    variant: str
    metric: str
    baseline: Any
    measured: Any
    rule: str
    ok: bool


def _check(variant: str, metric: str, base: Any, got: Any, cfg: GateConfig, spec) -> Check:
    """One metric of one variant against its rule; every metric without a rule of its own is exact (flops,
    flops_causal, flops_analytic, memory_analytic, params, accuracy)."""
    if metric in ("time_exponent", "memory_exponent"):
        limit = getattr(spec, metric) + cfg.exponent_slack
        return Check(variant, metric, base, got, f"<= declared {getattr(spec, metric):g} + {cfg.exponent_slack:g}",
                     got <= limit)
    if base is None:
        return Check(variant, metric, None, got, "no baseline value", False)
    if metric == "peak_bytes":
        slack = max(cfg.peak_rel_tol * base, cfg.peak_abs_tol)
        rule = f"<= baseline + max({cfg.peak_rel_tol:.0%}, {cfg.peak_abs_tol / MiB:g} MiB)"
        return Check(variant, metric, base, got, rule, got <= base + slack)
    if metric == "speed_ratio":
        rule = f"<= {cfg.speed_factor:g} x baseline"
        return Check(variant, metric, base, got, rule, got <= base * cfg.speed_factor)
    if metric == "loss":
        return Check(variant, metric, base, got, f"within {cfg.loss_rel_tol:g} relative",
                     abs(got - base) <= cfg.loss_rel_tol * abs(base))
    return Check(variant, metric, base, got, "exact", got == base)


def compare(baseline: dict, fresh: dict, cfg: GateConfig = GateConfig()) -> list[Check]:
    """Every check of every freshly measured variant; a variant absent from the baseline fails once."""
    import variants

    checks: list[Check] = []
    for name, metrics in fresh.items():
        base = baseline.get("variants", {}).get(name)
        if base is None:
            checks.append(Check(name, "(all)", None, None, "needs a baseline entry: check --update-baseline", False))
            continue
        spec = variants.get(name).spec
        for metric in sorted(set(metrics) | set(base)):
            if metric not in metrics:
                checks.append(Check(name, metric, base[metric], None, "not measured any more", False))
                continue
            checks.append(_check(name, metric, base.get(metric), metrics[metric], cfg, spec))
    return checks


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(checks: Sequence[Check]) -> str:
    """The table CI prints: every check, then the failures again with their variant and metric."""
    from bench.table import format_table

    header = ("variant", "metric", "baseline", "measured", "rule", "status")
    rows = [(c.variant, c.metric, _show(c.baseline), _show(c.measured), c.rule, "ok" if c.ok else "FAIL")
            for c in checks]
    failed = [r for r, c in zip(rows, checks) if not c.ok]
    text = format_table(header, rows)
    if failed:
        text += f"\n\nREGRESSION: {len(failed)} check(s) failed\n" + format_table(header, failed)
    else:
        text += f"\n\ngate: all {len(checks)} checks passed"
    return text


def read_baseline(path: Path) -> dict:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_baseline(path: Path, fresh: dict, cfg: GateConfig, keep: dict) -> None:
    """Merge ``fresh`` into the baseline at ``path`` (other variants' entries in ``keep`` stay) with a manifest."""
    import torch
    from bench.store import cpu_name, git_state

    sha, dirty = git_state()
    entries = {**keep.get("variants", {}), **fresh}
    record = {"manifest": {"git_sha": sha, "git_dirty": dirty, "torch": torch.__version__, "cpu": cpu_name(),
                           "threads": cfg.threads, "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "config": asdict(cfg)},
              "variants": {name: dict(sorted(entries[name].items())) for name in sorted(entries)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--update-baseline", action="store_true", help="rewrite the baseline from this run")
    parser.add_argument("--variants", default="", help="comma-separated variants (default: every registered one)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (it registers extra variants); repeatable")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="baseline JSON file")


def run(args: argparse.Namespace) -> int:
    """Measure, then either rewrite the baseline (exit 0) or compare against it (exit 1 on any failure)."""
    import variants

    start = time.perf_counter()
    load_plugins(args.plugin)
    names = [n.strip() for n in args.variants.split(",") if n.strip()] or variants.names()
    for name in names:
        variants.get(name)
    cfg = GateConfig()
    fresh = measure(names, args.plugin, cfg)
    baseline = read_baseline(args.baseline)
    if args.update_baseline:
        write_baseline(args.baseline, fresh, cfg, baseline)
        print(f"gate: baseline written to {args.baseline} ({len(fresh)} variants, "
              f"{time.perf_counter() - start:.0f} s)")
        return 0
    if not baseline:
        print(f"gate: no baseline at {args.baseline}; run `attention-limits check --update-baseline`")
        return 1
    checks = compare(baseline, fresh, cfg)
    print(render(checks))
    print(f"gate: {time.perf_counter() - start:.0f} s")
    return 0 if all(c.ok for c in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attention-limits check", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
