"""Run a sweep (``bench.sweep.Sweep``): its cases, or its adaptive plan's, through isolated ``Worker`` children,
each row written as soon as it is done; cases of a parallel sweep run on a few workers at once.

``run_sweep`` is resumable (finished case ids are skipped) and interruptible (Ctrl-C closes the file with every
finished case in it, then re-raises ``KeyboardInterrupt`` so the caller can exit non-zero).
"""
from __future__ import annotations

import queue
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable

from bench import store
from bench.config import Case, ConfigError
from bench.isolate import Worker
from bench.outcome import STATUSES, Outcome
from bench.sweep import Plan, Summary, Sweep

ENVIRONMENT_TIMEOUT_S = 120.0
ProgressCallback = Callable[[Case, Outcome], None]


def sweep_cases(sweep: Sweep, cfg: Any) -> list[Case]:
    """The sweep's cases in order; two cases with the same id are a sweep bug (``ConfigError``)."""
    cases = list(sweep.cases(cfg))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.id in seen:
            raise ConfigError(f"sweep {sweep.name!r} yields the same case twice: {case.as_dict()}")
        seen[case.id] = case
    return cases


def _progress_bar(enabled: bool | None, total: int | None, done: int, desc: str):
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


def _calibration(worker: Worker, sweep: Sweep, cfg: Any) -> dict[str, Any]:
    """Machine constants a sweep declares (``calibration``, e.g. the GEMM peak), measured in the same worker
    child as the cases and stored in the manifest."""
    if sweep.calibration is None:
        return {}
    case = Case.make("calibration", device=cfg.run_device, threads=cfg.threads)
    outcome = worker.run(sweep.calibration, case, ENVIRONMENT_TIMEOUT_S)
    if outcome.status != "ok":
        raise RuntimeError(f"calibration {sweep.calibration} failed: {outcome.status}: {outcome.error}")
    return outcome.metrics


class _Workers:
    """Worker children by memory cap, started on first use (an adaptive sweep may need two caps), plus the extra
    workers of a parallel sweep; ``close`` ends them all."""

    def __init__(self, threads: int | None, device: str):
        self.threads, self.device = threads, device
        self._by_cap: dict[int | None, Worker] = {}
        self._extra: list[Worker] = []

    def _new(self, cap: int | None) -> Worker:
        return Worker.for_device(self.device, self.threads, cap)

    def get(self, cap: int | None) -> Worker:
        if cap not in self._by_cap:
            self._by_cap[cap] = self._new(cap)
        return self._by_cap[cap]

    def spawn(self, cap: int | None) -> Worker:
        """A worker beside the pooled ones."""
        self._extra.append(self._new(cap))
        return self._extra[-1]

    def close(self) -> None:
        for worker in [*self._by_cap.values(), *self._extra]:
            worker.close()


class _Recorder:
    """Writes each finished case (or summary) and advances the bar and the progress callback."""

    def __init__(self, writer: store.RunWriter, bar, callback: ProgressCallback | None):
        self.writer, self.bar, self.callback = writer, bar, callback

    def __call__(self, case: Case, outcome: Outcome, kind: str = "row") -> None:
        self.writer.write(case, outcome, kind=kind)
        if kind != "row":
            return
        self.bar.set_postfix_str(f"{outcome.status} {outcome.wall_s:.1f}s", refresh=False)
        self.bar.update(1)
        if self.callback is not None:
            self.callback(case, outcome)


def _drive(plan: Plan, run_one: Callable[[Case], Outcome], record: _Recorder) -> None:
    """Run a plan to its end: each yielded case is executed, recorded and its outcome sent back; each yielded
    ``Summary`` is written as its own kind."""
    outcome: Outcome | None = None
    while True:
        try:
            item = plan.send(outcome)
        except StopIteration:
            return
        if isinstance(item, Summary):
            record(item.case, item.outcome, kind=item.kind)
            outcome = None
        else:
            outcome = run_one(item)
            record(item, outcome)


def _fixed(cases: Iterable[Case]) -> Plan:
    """A fixed case list as a plan that ignores the outcomes."""
    for case in cases:
        yield case


def _run_parallel(workers: list[Worker], run_on: Callable[[Worker, Case], Outcome], cases: list[Case],
                  record: _Recorder) -> None:
    """Several workers take cases from one queue; rows are written in completion order, by this thread.

    Only for sweeps whose metrics do not depend on the machine being otherwise idle (``Sweep.parallel``: training
    and approximation sweeps); timing sweeps always run one case at a time. Ctrl-C stops the workers (their
    children killed), keeps every written row and re-raises.
    """
    idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
    for worker in workers:
        idle.put(worker)

    def task(case: Case) -> tuple[Case, Outcome]:
        worker = idle.get()
        try:
            return case, run_on(worker, case)
        finally:
            idle.put(worker)

    pool = ThreadPoolExecutor(max_workers=len(workers))
    futures = [pool.submit(task, case) for case in cases]
    try:
        for future in as_completed(futures):
            record(*future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.close()
        raise
    pool.shutdown()


def run_sweep(sweep: Sweep, cfg: Any, *, profile: str, out_dir: str | Path = "results/runs",
              resume: bool = False, threads: int | None = None, progress: bool | ProgressCallback | None = None,
              extra_manifest: dict[str, Any] | None = None, mem_cap_bytes: int | None = None) -> Path:
    """Run every case of ``sweep`` under ``cfg`` (or its adaptive plan) and return the results path.

    Each case runs as ``sweep.target`` in a capped child: time cap ``cfg.time_cap_s``, memory cap
    ``mem_cap_bytes`` if given, else ``sweep.mem_cap(cfg, case)`` (default ``cfg.mem_cap_bytes``; None: the
    Worker's default; no address-space cap on CUDA). ``resume`` skips case ids already in the file and appends a
    new segment (refused, ``store.ResultsError``, on another sweep's file or a newer schema); otherwise the file
    is rewritten. One run per file at a time (``store.ResultsLock``; a second raises ``ResultsError``).
    ``progress``: None shows a bar when stderr is a terminal, a bool forces it, a callable ``(case, outcome)`` is
    called after each written row (and no bar is shown).
    """
    path = store.results_path(out_dir, sweep.name, profile, cfg.run_device)
    with store.ResultsLock(path):
        if resume and path.exists():
            store.check_resumable(path, sweep.name)
        return _run_locked(sweep, cfg, path, profile=profile, resume=resume, threads=threads, progress=progress,
                           extra_manifest=extra_manifest, mem_cap_bytes=mem_cap_bytes)


def _run_locked(sweep: Sweep, cfg: Any, path: Path, *, profile: str, resume: bool, threads: int | None,
                progress: bool | ProgressCallback | None, extra_manifest: dict[str, Any] | None,
                mem_cap_bytes: int | None) -> Path:
    """``run_sweep``'s body, run while this process holds the results file's lock."""
    device = cfg.run_device
    done = store.finished_case_ids(path) if resume else set()
    cases = None if sweep.plan else sweep_cases(sweep, cfg)
    todo = None if cases is None else [c for c in cases if c.id not in done]
    callback = progress if callable(progress) else None
    workers = _Workers(threads, device)

    def cap_of(case: Case) -> int | None:
        return mem_cap_bytes if mem_cap_bytes is not None else sweep.mem_cap(cfg, case)

    def run_on(worker: Worker, case: Case) -> Outcome:
        return worker.run(sweep.target, case, cfg.time_cap_s, fresh=sweep.fresh_child(cfg, case))

    try:
        first = workers.get(mem_cap_bytes if mem_cap_bytes is not None else cfg.mem_cap_bytes)
        record = store.manifest(sweep=sweep.name, profile=profile, device=device, config=cfg, seeds=cfg.seed_list,
                                env=_environment(first, device), allocator=first.allocator,
                                extra={"mem_cap_bytes": first.mem_cap_bytes, "time_cap_s": cfg.time_cap_s,
                                       **_calibration(first, sweep, cfg), **sweep.manifest(cfg),
                                       **(extra_manifest or {})})
        total = None if cases is None else len(cases)
        bar = _progress_bar(None if progress is None else bool(progress) and not callback, total,
                            len(done) if cases is None else len(cases) - len(todo), sweep.name)
        with store.RunWriter(path, record, resume=resume, metrics=sweep.metrics) as writer, bar:
            recorder = _Recorder(writer, bar, callback)
            try:
                if todo is not None and sweep.jobs(cfg) > 1 and len(todo) > 1:
                    pool = [first, *(workers.spawn(first.mem_cap_bytes) for _ in range(sweep.jobs(cfg) - 1))]
                    _run_parallel(pool, run_on, todo, recorder)
                else:
                    plan = _fixed(todo) if todo is not None else sweep.plan(cfg, done)
                    _drive(plan, lambda case: run_on(workers.get(cap_of(case)), case), recorder)
            except KeyboardInterrupt:
                bar.close()  # the caller says "interrupted" once, after the bar's last line
                raise
    finally:
        workers.close()
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
