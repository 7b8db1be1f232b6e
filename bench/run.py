"""Run a sweep: its cases, one at a time, through one isolated ``Worker``, each row written as soon as it is done.

``run_sweep`` is resumable (finished case ids are skipped) and interruptible (Ctrl-C closes the file with every
finished case in it, then re-raises ``KeyboardInterrupt`` so the caller can exit non-zero).
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

from bench import store
from bench.config import Case, ConfigError
from bench.isolate import Worker
from bench.outcome import STATUSES, Outcome

DEFAULT_TIME_CAP_S = 600.0
ENVIRONMENT_TIMEOUT_S = 120.0
ProgressCallback = Callable[[Case, Outcome], None]


def sweep_cases(module: ModuleType, cfg: Any) -> list[Case]:
    """The sweep's cases in order; two cases with the same id are a sweep bug (``ConfigError``)."""
    cases = list(module.cases(cfg))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.id in seen:
            raise ConfigError(f"sweep {module.NAME!r} yields the same case twice: {case.as_dict()}")
        seen[case.id] = case
    return cases


def seeds_of(cfg: Any) -> list[int]:
    """The seeds a config declares (``seeds`` or ``seed``), for the manifest."""
    seeds = getattr(cfg, "seeds", None)
    if seeds is None:
        seed = getattr(cfg, "seed", None)
        seeds = () if seed is None else (seed,)
    return list(seeds)


def _progress_bar(enabled: bool | None, total: int, done: int, desc: str):
    """A tqdm bar on stderr; ``enabled=None`` means only when stderr is a terminal."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, initial=done, desc=desc, unit="case", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


def _environment(worker: Worker, device: str) -> dict[str, Any]:
    """torch, parallel_info, threads and device name as seen by the worker child that measures."""
    outcome = worker.run("bench.store:describe", Case.make("environment", device=device), ENVIRONMENT_TIMEOUT_S)
    if outcome.status != "ok":
        raise RuntimeError(f"cannot describe the worker's environment: {outcome.status}: {outcome.error}")
    return outcome.metrics


def _calibration(worker: Worker, module: ModuleType, cfg: Any) -> dict[str, Any]:
    """Machine constants a sweep declares (``CALIBRATION = "module:function"``, e.g. the GEMM peak), measured
    in the same worker child as the cases and stored in the manifest."""
    target = getattr(module, "CALIBRATION", None)
    if target is None:
        return {}
    case = Case.make("calibration", device=getattr(cfg, "device", "cpu"), threads=getattr(cfg, "threads", 1))
    outcome = worker.run(target, case, ENVIRONMENT_TIMEOUT_S)
    if outcome.status != "ok":
        raise RuntimeError(f"calibration {target} failed: {outcome.status}: {outcome.error}")
    return outcome.metrics


def _run_cases(worker: Worker, target: str, cases: Iterable[Case], time_cap_s: float, writer: store.RunWriter,
               bar, callback: ProgressCallback | None, fresh_for: Callable[[Case], bool] = lambda case: False) -> None:
    """Execute and write each case in turn (in a child of its own where ``fresh_for(case)``)."""
    for case in cases:
        _record(writer, bar, callback, case, worker.run(target, case, time_cap_s, fresh=fresh_for(case)))


def _run_parallel(workers: list[Worker], target: str, cases: list[Case], time_cap_s: float,
                  writer: store.RunWriter, bar, callback: ProgressCallback | None,
                  fresh_for: Callable[[Case], bool] = lambda case: False) -> None:
    """Several workers take cases from one queue; rows are written (in completion order) under a lock.

    Only for sweeps whose metrics do not depend on the machine being otherwise idle (``PARALLEL = True``:
    training and approximation sweeps); timing sweeps always run one case at a time.
    """
    import threading

    lock, stop = threading.Lock(), threading.Event()
    pending = iter(cases)
    errors: list[BaseException] = []

    def loop(worker: Worker) -> None:
        try:
            while not stop.is_set():
                with lock:
                    case = next(pending, None)
                if case is None:
                    return
                outcome = worker.run(target, case, time_cap_s, fresh=fresh_for(case))
                if stop.is_set():
                    return
                with lock:
                    _record(writer, bar, callback, case, outcome)
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for w in workers:
            w.close()
        raise
    if errors:
        raise errors[0]


def _record(writer: store.RunWriter, bar, callback: ProgressCallback | None, case: Case, outcome: Outcome) -> None:
    writer.write(case, outcome)
    bar.set_postfix_str(f"{outcome.status} {outcome.wall_s:.1f}s", refresh=False)
    bar.update(1)
    if callback is not None:
        callback(case, outcome)


def run_sweep(module: ModuleType, cfg: Any, *, profile: str, out_dir: str | Path = "results/runs",
              resume: bool = False, device: str = "cpu", threads: int | None = None,
              progress: bool | ProgressCallback | None = None, extra_manifest: dict[str, Any] | None = None,
              mem_cap_bytes: int | None = None) -> Path:
    """Run every case of ``module`` (``NAME``, ``cases(cfg)``, ``execute(case)``) and return the results path.

    Each case runs as ``f"{module.__name__}:execute"`` in a capped child: time cap ``cfg.time_cap_s`` (else
    ``DEFAULT_TIME_CAP_S``), memory cap ``mem_cap_bytes`` (else ``cfg.mem_cap_bytes``, else the Worker's
    default; no address-space cap on CUDA). ``resume`` skips case ids already in the file and appends a new
    segment; otherwise the file is rewritten. ``progress``: None shows a bar when stderr is a terminal, a bool
    forces it, a callable ``(case, outcome)`` is called after each written row (and no bar is shown).
    A sweep that sets ``PARALLEL = True`` runs ``cfg.jobs`` workers at once (rows in completion order); one that
    defines ``fresh_child(cfg, case) -> bool`` runs the cases it names each in a new child process.
    """
    path = store.results_path(out_dir, module.NAME, profile, device)
    cases = sweep_cases(module, cfg)
    done = store.finished_case_ids(path) if resume else set()
    todo = [c for c in cases if c.id not in done]
    callback = progress if callable(progress) else None
    time_cap_s = float(getattr(cfg, "time_cap_s", None) or DEFAULT_TIME_CAP_S)
    cap = mem_cap_bytes if mem_cap_bytes is not None else getattr(cfg, "mem_cap_bytes", None)
    jobs = int(getattr(cfg, "jobs", 1)) if getattr(module, "PARALLEL", False) else 1
    chooser = getattr(module, "fresh_child", None)
    fresh_for = (lambda case: bool(chooser(cfg, case))) if chooser else (lambda case: False)
    with Worker.for_device(device, threads, cap) as worker:
        record = store.manifest(sweep=module.NAME, profile=profile, device=device, config=cfg, seeds=seeds_of(cfg),
                                env=_environment(worker, device), allocator=worker.allocator,
                                extra={"mem_cap_bytes": worker.mem_cap_bytes, "time_cap_s": time_cap_s,
                                       **_calibration(worker, module, cfg), **(extra_manifest or {})})
        bar = _progress_bar(None if progress is None else bool(progress) and not callback,
                            len(cases), len(cases) - len(todo), module.NAME)
        with store.RunWriter(path, record, resume=resume) as writer, bar:
            try:
                target = f"{module.__name__}:execute"
                if jobs > 1 and len(todo) > 1:
                    extra = [Worker.for_device(device, threads, cap) for _ in range(jobs - 1)]
                    try:
                        _run_parallel([worker, *extra], target, todo, time_cap_s, writer, bar, callback, fresh_for)
                    finally:
                        for w in extra:
                            w.close()
                else:
                    _run_cases(worker, target, todo, time_cap_s, writer, bar, callback, fresh_for)
            except KeyboardInterrupt:
                bar.write(f"interrupted: {path} holds every finished case; rerun with resume to go on",
                          file=sys.stderr)
                raise
    return path


def summary_table(df) -> str:
    """One screen: how many cases of each variant (or sweep) ended in each status."""
    if df is None or len(df) == 0:
        return "no results"
    key = "variant" if "variant" in df else "sweep"
    table = df.groupby([key, "status"]).size().unstack("status", fill_value=0)
    columns = [s for s in STATUSES if s in table.columns] + [s for s in table.columns if s not in STATUSES]
    table = table[columns]
    table["total"] = table.sum(axis=1)
    table.columns.name = None
    return table.to_string()
