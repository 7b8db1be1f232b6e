"""Run a sweep (``bench.sweep.Sweep``): its cases, or its adaptive plan's, through an executor (isolated ``Worker``
children here, or Ray tasks: ``bench.executors``), each row written by this process as soon as it is done.

``run_sweep`` is resumable (finished case ids are skipped), never silently replaces an earlier results file (a
fresh run keeps it aside in ``previous/``), shows progress on stderr (``bench.progress``) and is interruptible
(Ctrl-C closes the file with every finished case in it, then re-raises ``KeyboardInterrupt`` so the caller can exit
non-zero).
"""
from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Iterable, Union

from bench import executors, progress as progress_lines, store
from bench.config import Case, ConfigError
from bench.executors import Done, Job
from bench.isolate import Worker
from bench.outcome import STATUSES, Outcome
from bench.sweep import Plan, Summary, Sweep

ENVIRONMENT_TIMEOUT_S = 120.0
ProgressCallback = Callable[[Case, Outcome], None]
Executor = Union[executors.LocalExecutor, executors.RayExecutor]


def sweep_cases(sweep: Sweep, cfg: Any) -> list[Case]:
    """The sweep's cases in order; two cases with the same id are a sweep bug (``ConfigError``)."""
    cases = list(sweep.cases(cfg))
    seen: dict[str, Case] = {}
    for case in cases:
        if case.id in seen:
            raise ConfigError(f"sweep {sweep.name!r} yields the same case twice: {case.as_dict()}")
        seen[case.id] = case
    return cases


def _run_one(executor: Executor, job: Job) -> Done:
    (done,) = executor.run([job])
    return done


def _describe(executor: Executor, job: Job, what: str) -> Done:
    """Run a setup job (environment, calibration) through the executor; anything but ok stops the run."""
    done = _run_one(executor, job)
    if done.outcome.status != "ok":
        raise RuntimeError(f"{what} failed: {done.outcome.status}: {done.outcome.error}")
    return done


def _setup(executor: Executor, sweep: Sweep, cfg: Any, cap: int | None) -> tuple[dict, dict]:
    """The measuring environment (torch, parallel_info, threads, device name) and the sweep's ``calibration``
    (machine constants such as the GEMM peak), measured where the cases run, with the memory cap they ran under."""
    device = cfg.run_device
    env = _describe(executor, Job("bench.store:describe", Case.make("environment", device=device),
                                  ENVIRONMENT_TIMEOUT_S, cap), "describing the worker's environment")
    extra = {"mem_cap_bytes": env.where["mem_cap_bytes"], "time_cap_s": cfg.time_cap_s}
    if sweep.calibration is not None:
        case = Case.make("calibration", device=device, threads=cfg.threads)
        calibration = _describe(executor, Job(sweep.calibration, case, ENVIRONMENT_TIMEOUT_S, cap),
                                f"calibration {sweep.calibration}")
        extra.update(calibration.outcome.metrics)
    return env.outcome.metrics, extra


class _Recorder:
    """Writes each finished case (with where it ran) or summary, and advances the bar and the progress callback."""

    def __init__(self, writer: store.RunWriter, bar, callback: ProgressCallback | None):
        self.writer, self.bar, self.callback = writer, bar, callback

    def __call__(self, case: Case, outcome: Outcome, kind: str = "row", where: dict | None = None) -> None:
        placed = {k: where[k] for k in store.PLACEMENT_COLUMNS if k in (where or {})}
        self.writer.write(case, Outcome(outcome.status, {**outcome.metrics, **placed}, outcome.error,
                                        outcome.wall_s), kind=kind)
        if kind != "row":
            return
        self.bar.set_postfix_str(f"{outcome.status} {outcome.wall_s:.1f}s", refresh=False)
        self.bar.update(1)
        if self.callback is not None:
            self.callback(case, outcome)


def _drive(plan: Plan, run_batch: Callable[[list[Case]], Iterable[Done]], record: _Recorder) -> None:
    """Run an adaptive plan to its end: a yielded case is executed, recorded and its outcome sent back; a yielded
    list of cases runs as one batch (in parallel where the executor allows), and their outcomes go back as a list
    in the same order; a yielded ``Summary`` is written as its own kind."""
    sent: Outcome | list[Outcome] | None = None
    while True:
        try:
            item = plan.send(sent)
        except StopIteration:
            return
        if isinstance(item, Summary):
            record(item.case, item.outcome, kind=item.kind)
            sent = None
            continue
        batch = item if isinstance(item, list) else [item]
        by_id = {}
        for done in run_batch(batch):
            record(done.job.case, done.outcome, where=done.where)
            by_id[done.job.case.id] = done.outcome
        outcomes = [by_id[case.id] for case in batch]
        sent = outcomes if isinstance(item, list) else outcomes[0]


def keep_earlier(path: Path) -> None:
    """Before a fresh run rewrites ``path``: move the earlier file aside (``store.keep_aside``) and say so."""
    kept = store.keep_aside(path)
    if kept is not None:
        print(f"attention-limits: {path} existed; kept it as {kept} (--resume appends to it instead)",
              file=sys.stderr)


def run_sweep(sweep: Sweep, cfg: Any, *, profile: str, out_dir: str | Path = "results/runs",
              resume: bool = False, threads: int | None = None, progress: bool | ProgressCallback | None = None,
              extra_manifest: dict[str, Any] | None = None, mem_cap_bytes: int | None = None,
              executor: str = "local", address: str | None = None) -> Path:
    """Run every case of ``sweep`` under ``cfg`` (or its adaptive plan) and return the results path.

    Each case runs as ``sweep.target`` in a capped child: time cap ``sweep.time_cap(cfg, case)`` (default
    ``cfg.time_cap_s``), memory cap
    ``mem_cap_bytes`` if given, else ``sweep.mem_cap(cfg, case)`` (default ``cfg.mem_cap_bytes``; None: the
    Worker's default; no address-space cap on CUDA). ``executor``: ``local`` (children of this process) or ``ray``
    (Ray tasks, on the cluster at ``address``; ``bench.executors``); either way only this process writes rows.
    ``resume`` skips case ids already in the file and appends a new segment (refused, ``store.ResultsError``, on
    another sweep's file or a newer schema); otherwise an existing file is first kept aside (``keep_earlier``) and
    a new one written. One run per file at a time (``store.ResultsLock``; a second raises ``ResultsError``).
    ``progress``: None shows a bar when stderr is a terminal and plain lines when it is not (``bench.progress``), a
    bool forces the bar on or off, a callable ``(case, outcome)`` is called after each written row (no bar).
    """
    path = store.results_path(out_dir, sweep.name, profile, cfg.run_device)
    with store.ResultsLock(path):
        if resume and path.exists():
            store.check_resumable(path, sweep.name)
        return _run_locked(sweep, cfg, path, profile=profile, resume=resume, threads=threads, progress=progress,
                           extra_manifest=extra_manifest, mem_cap_bytes=mem_cap_bytes, executor=executor,
                           address=address)


def _run_locked(sweep: Sweep, cfg: Any, path: Path, *, profile: str, resume: bool, threads: int | None,
                progress: bool | ProgressCallback | None, extra_manifest: dict[str, Any] | None,
                mem_cap_bytes: int | None, executor: str, address: str | None) -> Path:
    """``run_sweep``'s body, run while this process holds the results file's lock."""
    device = cfg.run_device
    done = store.finished_records(path) if resume else {}
    cases = None if sweep.plan else sweep_cases(sweep, cfg)
    todo = None if cases is None else [c for c in cases if c.id not in done]
    callback = progress if callable(progress) else None

    def job(case: Case) -> Job:
        cap = mem_cap_bytes if mem_cap_bytes is not None else sweep.mem_cap(cfg, case)
        return Job(sweep.target, case, sweep.time_cap(cfg, case), cap, sweep.fresh_child(cfg, case))

    runner = executors.create(executor, threads=threads, device=device, cpus=cfg.threads, jobs=sweep.jobs(cfg),
                              timing=not sweep.parallel, address=address)
    try:
        env, extra = _setup(runner, sweep, cfg, mem_cap_bytes if mem_cap_bytes is not None else cfg.mem_cap_bytes)
        record = store.manifest(sweep=sweep.name, profile=profile, device=device, config=cfg, seeds=cfg.seed_list,
                                env=env, allocator=Worker.allocator,
                                extra={**extra, **sweep.manifest(cfg), **runner.cluster(), **(extra_manifest or {})})
        total = None if cases is None else len(cases)
        bar = progress_lines.bar(None if progress is None else bool(progress) and not callback, total,
                                 len(done) if cases is None else len(cases) - len(todo), sweep.name)
        if not resume:
            keep_earlier(path)
        with store.RunWriter(path, record, resume=resume, metrics=sweep.metrics) as writer, bar:
            recorder = _Recorder(writer, bar, callback)
            try:
                if todo is not None:
                    with closing(runner.run(job(case) for case in todo)) as finished:
                        for item in finished:
                            recorder(item.job.case, item.outcome, where=item.where)
                else:
                    _drive(sweep.plan(cfg, done), lambda batch: runner.run(job(c) for c in batch), recorder)
            except KeyboardInterrupt:
                bar.close()  # the caller says "interrupted" once, after the bar's last line
                raise
    finally:
        runner.close()
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
