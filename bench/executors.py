"""Where a sweep's cases run: ``LocalExecutor`` (isolated ``Worker`` children on this machine, today's default) or
``RayExecutor`` (each case a Ray task that runs it in the same kind of capped child on some node of a cluster).

Both take ``Job``s and hand back ``Done(job, outcome, where)`` as the cases finish; ``where`` names the node and
device that ran the case (and the memory cap its child ran under). The driver (``bench.run.run_sweep``) alone
writes rows, so resume, the manifest and the row schema do not depend on the executor. Ray is optional
(``pip install 'attention-limits[ray]'``); ``create`` turns its absence into a one-line ``ConfigError``.
"""
from __future__ import annotations

import os
import queue
import socket
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, NamedTuple, Optional

from bench import store
from bench.config import Case, ConfigError
from bench.isolate import Worker
from bench.outcome import Outcome, one_line

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'attention-limits[ray]'"
TIMING_RESOURCE = "timing"  # a Ray resource of 1 per CPU node: one timing case per node at a time
DESCRIBE_TIMEOUT_S = 120.0
RAY_RETRIES = 1  # a case whose Ray worker was lost is run once more


@dataclass(frozen=True)
class Job:
    """One case as an executor runs it: the worker target, the case, its time and memory caps, and whether it
    needs a child that ran no other case."""

    target: str
    case: Case
    timeout_s: float
    mem_cap_bytes: Optional[int] = None
    fresh: bool = False


class Done(NamedTuple):
    """A finished job: its outcome and where it ran (``node``, ``node_device``, ``attempts``, ``mem_cap_bytes``)."""

    job: Job
    outcome: Outcome
    where: dict


_LABELS: "weakref.WeakKeyDictionary[Worker, str]" = weakref.WeakKeyDictionary()  # each Worker's device, once asked


def _device_label(worker: Worker, device: str) -> str:
    """The device that ran a case: the CPU model, or the GPU's name (asked of the child once) and which GPU."""
    if not device.startswith("cuda"):
        return store.cpu_name()
    if worker not in _LABELS:
        outcome = worker.run("bench.store:describe", Case.make("environment", device=device), DESCRIBE_TIMEOUT_S)
        name = outcome.metrics.get("device_name", f"unknown ({outcome.status})")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        _LABELS[worker] = f"{name} (CUDA_VISIBLE_DEVICES={visible})" if visible else name
    return _LABELS[worker]


def run_job(worker: Worker, job: Job, device: str) -> tuple[Outcome, dict]:
    """Run ``job`` in ``worker``'s child; return its outcome and where it ran."""
    outcome = worker.run(job.target, job.case, job.timeout_s, fresh=job.fresh)
    where = {"node": socket.gethostname(), "node_device": _device_label(worker, device), "attempts": 1,
             "mem_cap_bytes": worker.cap_bytes}
    return outcome, where


class _Slot:
    """One worker slot's children, by memory cap (an adaptive sweep may need two caps), started on first use."""

    def __init__(self, threads: int | None, device: str):
        self.threads, self.device = threads, device
        self._by_cap: dict[int | None, Worker] = {}

    def run(self, job: Job) -> Done:
        if job.mem_cap_bytes not in self._by_cap:
            self._by_cap[job.mem_cap_bytes] = Worker.for_device(self.device, self.threads, job.mem_cap_bytes)
        return Done(job, *run_job(self._by_cap[job.mem_cap_bytes], job, self.device))

    def close(self) -> None:
        for worker in self._by_cap.values():
            worker.close()


class LocalExecutor:
    """Cases in isolated worker children on this machine: one at a time, or ``jobs`` at once from one queue
    (only for sweeps whose metrics do not need an idle machine: ``Sweep.parallel``)."""

    name = "local"

    def __init__(self, *, threads: int | None, device: str, jobs: int = 1):
        self.slots = [_Slot(threads, device) for _ in range(max(1, jobs))]
        self._pool: ThreadPoolExecutor | None = None

    def cluster(self) -> dict[str, Any]:
        return {"executor": self.name}

    def run(self, jobs: Iterable[Job]) -> Iterator[Done]:
        """Each job's ``Done`` as it finishes; the environment, calibration and a serial sweep use slot 0."""
        jobs = list(jobs)
        if len(self.slots) == 1 or len(jobs) <= 1:
            for job in jobs:
                yield self.slots[0].run(job)
            return
        yield from self._parallel(jobs)

    def _parallel(self, jobs: list[Job]) -> Iterator[Done]:
        """Several slots take jobs from one queue; an interrupt (the consumer closing this generator) kills the
        children, so the threads waiting on them return at once. The threads live as long as the executor: a
        child is started by the thread that first needs it and dies with that thread (``PR_SET_PDEATHSIG``), so
        a pool per call would kill the children it started before the next batch of an adaptive plan."""
        idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self.slots:
            idle.put(slot)

        def task(job: Job) -> Done:
            slot = idle.get()
            try:
                return slot.run(job)
            finally:
                idle.put(slot)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self.slots))
        futures = [self._pool.submit(task, job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            self.close()
            raise

    def close(self) -> None:
        for slot in self.slots:
            slot.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# ----------------------------------------------------------------------------------------------------------------
# Ray.

_RAY_WORKERS: dict[tuple, Worker] = {}  # this Ray worker process's children, by (device, threads, cap, GPUs)


def run_in_ray_worker(job: Job, device: str, threads: int | None) -> tuple[Outcome, dict]:
    """The body of a case's Ray task: the case in a capped child of this Ray worker process, kept for the next
    case with the same caps and GPU (the child dies with this process: ``bench.isolate``)."""
    key = (device, threads, job.mem_cap_bytes, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if key not in _RAY_WORKERS:
        _RAY_WORKERS[key] = Worker.for_device(device, threads, job.mem_cap_bytes)
    return run_job(_RAY_WORKERS[key], job, device)


def import_ray():
    """The ``ray`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` where nothing listens is a one-line ``ConfigError`` now (Ray itself retries for minutes)."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address}: {one_line(exc)}") from None


class RayExecutor:
    """Each case a Ray task reserving ``cpus`` CPUs (and one GPU on CUDA; and, for a timing sweep on CPU, the
    node's one ``timing`` resource), run in a capped child as locally. A task whose Ray worker is lost is run
    once more; lost twice, the case is a ``killed`` row. Connects to ``address`` (``auto`` or ``HOST:PORT``), or,
    without one, starts a Ray instance on this machine that declares ``timing`` = 1 (and stops it on ``close``)."""

    name = "ray"

    def __init__(self, *, threads: int | None, device: str, cpus: int, timing: bool, address: str | None = None):
        self.ray = import_ray()
        self.device, self.threads, self.cpus = device, threads, cpus
        self._owned = not self.ray.is_initialized()
        if self._owned:
            self._init(address)
        cuda = device.startswith("cuda")
        resources = {TIMING_RESOURCE: 1} if timing and not cuda else {}
        self._check_resources(resources)
        self._remote = self.ray.remote(run_in_ray_worker).options(
            num_cpus=cpus, num_gpus=1 if cuda else 0, resources=resources, max_retries=0)

    def _init(self, address: str | None) -> None:
        options = {"address": address} if address else {"resources": {TIMING_RESOURCE: 1}}
        _check_reachable(address)
        try:
            self.ray.init(include_dashboard=False, log_to_driver=False, **options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address or 'a new local instance'}: "
                              f"{one_line(exc)}") from None

    def _check_resources(self, resources: dict) -> None:
        """A task asking for what no node has would wait forever: say what the cluster lacks instead."""
        have = self.ray.cluster_resources()
        need = {**resources, **({"GPU": 1} if self.device.startswith("cuda") else {}), "CPU": self.cpus}
        missing = [k for k, v in need.items() if have.get(k, 0) < v]
        if missing:
            self.close()
            raise ConfigError(f"the Ray cluster has no {', '.join(missing)} for these cases (it has "
                              f"{ {k: v for k, v in have.items() if k.isupper() or k == TIMING_RESOURCE} }); "
                              f"start each CPU node with --resources='{{\"{TIMING_RESOURCE}\": 1}}' for timing sweeps")

    def cluster(self) -> dict[str, Any]:
        """The cluster for the manifest: Ray version, alive nodes with their CPUs and GPUs."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"executor": self.name, "ray": {
            "version": self.ray.__version__, "nodes": len(nodes),
            "cpus": sum(n["Resources"].get("CPU", 0) for n in nodes),
            "gpus": sum(n["Resources"].get("GPU", 0) for n in nodes),
            "node_list": [{"host": n.get("NodeManagerHostname"), "address": n.get("NodeManagerAddress"),
                           "cpus": n["Resources"].get("CPU", 0), "gpus": n["Resources"].get("GPU", 0)}
                          for n in nodes]}}

    def run(self, jobs: Iterable[Job]) -> Iterator[Done]:
        """Submit every job at once; hand back each ``Done`` as its task finishes (Ray schedules by resources)."""
        pending = {}
        for job in jobs:
            pending[self._submit(job)] = (job, 1, time.perf_counter())
        try:
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                job, attempt, start = pending.pop(ready[0])
                done = self._collect(ready[0], job, attempt, start)
                if done is None:
                    pending[self._submit(job)] = (job, attempt + 1, time.perf_counter())
                else:
                    yield done
        finally:
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def _submit(self, job: Job):
        return self._remote.remote(job, self.device, self.threads)

    def _collect(self, ref, job: Job, attempt: int, start: float) -> Done | None:
        """The task's ``Done``; None when its Ray worker was lost and it gets another attempt."""
        exceptions = self.ray.exceptions
        try:
            outcome, where = self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # our task code raised (the child could not start, say)
            return Done(job, Outcome("error", {}, one_line(exc.cause or exc), time.perf_counter() - start),
                        {"attempts": attempt})
        except exceptions.RayError as exc:  # the Ray worker or its node died mid-case
            if attempt <= RAY_RETRIES:
                print(f"ray: case {job.case.id} lost its worker ({one_line(exc)}); running it once more",
                      file=sys.stderr)
                return None
            error = f"RayWorkerLost: {one_line(exc)} (attempt {attempt})"
            return Done(job, Outcome("killed", {}, error, time.perf_counter() - start), {"attempts": attempt})
        return Done(job, outcome, {**where, "attempts": attempt})

    def close(self) -> None:
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()


def create(name: str, *, threads: int | None, device: str, cpus: int = 1, jobs: int = 1, timing: bool = True,
           address: str | None = None):
    """The executor called ``name``: ``local`` (``jobs`` at once) or ``ray`` (at ``address``; each case reserves
    ``cpus`` CPUs; ``timing``: one case per node or GPU at a time); ``threads``: each worker child's torch
    threads. An unknown name, or Ray missing, is a one-line ``ConfigError``."""
    if name == "local":
        if address:
            raise ConfigError("--address is for --executor ray")
        return LocalExecutor(threads=threads, device=device, jobs=jobs)
    if name == "ray":
        return RayExecutor(threads=threads, device=device, cpus=cpus, timing=timing, address=address)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
