"""Run one case at a time in a persistent, capped child process and turn whatever happens into an ``Outcome``.

The parent (``Worker``) owns one child started with ``subprocess`` (a fresh interpreter: ``import torch`` once,
then reused for every case). Messages travel as pickles over two private pipes, so a case that prints to stdout
cannot corrupt the protocol. Out of memory, over time and killed are findings, never crashes:

- memory cap: the child lowers ``RLIMIT_AS`` to (its address-space size after start-up) + ``mem_cap_bytes``, the
  one limit Linux enforces at allocation time (torch then raises ``DefaultCPUAllocator: can't allocate memory``:
  ``oom``). CUDA maps terabytes of address space, so a CUDA worker (``Worker.for_device``) caps the caching
  allocator instead (``cap_cuda_memory``: over the cap, ``torch.OutOfMemoryError``).
- time cap: no answer within ``timeout_s`` → the child is SIGKILLed → ``timeout``.
- after ``oom``, ``timeout`` or ``killed`` the next case gets a fresh child (its heap may be fragmented or gone).

The child runs under ``ALLOCATOR_POLICY`` (``bench.measure.probes``; why: docs/measurement.md).
"""
from __future__ import annotations

import ctypes
import importlib
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

import psutil

from bench.measure.probes import ALLOCATOR_POLICY, address_space_bytes, release_free_memory
from bench.outcome import Outcome, classify, one_line

RESTART_AFTER = frozenset({"oom", "timeout", "killed"})
WHOLE_GPU = 1 << 60  # a CUDA worker's cap when none is given: the allocator's fraction 1.0


def default_mem_cap_bytes() -> int:
    """A safe share of this machine's RAM for one case: 60% of the total."""
    return int(0.6 * psutil.virtual_memory().total)


# ----------------------------------------------------------------------------------------------------------------
# The child.

def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child if the parent dies (prctl PR_SET_PDEATHSIG); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _start_up(settings: dict) -> dict:
    """Import torch, set threads, warm the thread pool, then cap the address space; return what was set."""
    sys.path[:0] = [p for p in settings["sys_path"] if p not in sys.path]
    import torch

    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    torch.ones(256, 256) @ torch.ones(256, 256)  # start the intra-op pool and BLAS before measuring the baseline
    baseline = address_space_bytes()
    limit = cuda_limit = None
    if settings["cap_address_space"]:
        limit = baseline + settings["mem_cap_bytes"]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    elif torch.cuda.is_available():
        cuda_limit = cap_cuda_memory(settings["mem_cap_bytes"])
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "as_baseline_bytes": baseline,
            "as_limit_bytes": limit, "cuda_limit_bytes": cuda_limit}


def cap_cuda_memory(cap_bytes: int) -> int:
    """The memory cap of a CUDA worker: the caching allocator's per-process fraction of the current device, so a
    case over ``cap_bytes`` raises ``torch.OutOfMemoryError`` (``oom``) at allocation. Returns the cap in bytes
    (never more than the device holds)."""
    import torch

    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    fraction = min(1.0, cap_bytes / total)
    torch.cuda.set_per_process_memory_fraction(fraction)
    return int(fraction * total)


def resolve(target: str) -> Callable:
    """``"package.module:function"`` → the function (imported here, in the child)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r} is not 'package.module:function'")
    return getattr(importlib.import_module(module_name), attr)


def _execute(target: str, case: Any) -> tuple[str, dict, str]:
    """Run one case; return ``(status, metrics, error)`` with the exception already classified."""
    try:
        metrics = resolve(target)(case)
        if not isinstance(metrics, dict):
            raise TypeError(f"{target} returned {type(metrics).__name__}, not a dict of metrics")
        pickle.dumps(metrics)
        return "ok", metrics, ""
    except Exception as exc:  # noqa: BLE001 - every failure of a case is a finding
        return classify(exc), {}, one_line(exc)
    finally:
        release_free_memory()


def _child_main() -> None:
    """The child's loop: handshake, then answer ``("run", target, case)`` until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    inbox = Connection(int(sys.argv[1]), writable=False)
    outbox = Connection(int(sys.argv[2]), readable=False)
    outbox.send(("ready", _start_up(inbox.recv())))
    while True:
        try:
            message = inbox.recv()
            if message[0] != "run":
                return
            outbox.send(_execute(message[1], message[2]))
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return  # the parent went away (Ctrl-C, a kill): nothing is left to answer, and nothing to print


# ----------------------------------------------------------------------------------------------------------------
# The parent.

def child_env(threads: int | None) -> dict[str, str]:
    """The child's environment: ours plus the allocator policy, the project on PYTHONPATH and OMP threads."""
    env = dict(os.environ)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.")]
    env["GLIBC_TUNABLES"] = ":".join(tunables + [ALLOCATOR_POLICY["glibc_tunables"]])
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Worker:
    """One persistent child process that runs cases; restarts it after oom, timeout or a death.

    >>> with Worker.for_device("cpu", threads=2, mem_cap_bytes=4 << 30) as worker:
    ...     outcome = worker.run("bench.sweeps.efficiency:execute", case, timeout_s=60)
    """

    allocator = ALLOCATOR_POLICY  # the glibc settings every child runs under (for the manifest)

    def __init__(self, threads: int | None = None, mem_cap_bytes: int | None = None, *,
                 cap_address_space: bool = True, startup_timeout_s: float = 120.0):
        self.threads = threads
        self.mem_cap_bytes = default_mem_cap_bytes() if mem_cap_bytes is None else int(mem_cap_bytes)
        self.cap_address_space = cap_address_space
        self.startup_timeout_s = startup_timeout_s
        self.info: dict = {}
        self.starts = 0
        self.last_child_cases = 0  # how many cases (this one included) the child that ran the last case had run
        self._cases_in_child = 0
        self._proc: subprocess.Popen | None = None
        self._inbox: Connection | None = None
        self._outbox: Connection | None = None

    @classmethod
    def for_device(cls, device: str, threads: int | None = None, mem_cap_bytes: int | None = None) -> "Worker":
        """A Worker whose memory cap suits ``device``: the address space on CPU, the caching allocator on CUDA
        (no cap given: the whole GPU, not the share of host RAM a CPU worker defaults to)."""
        cuda = device.startswith("cuda")
        cap = WHOLE_GPU if cuda and mem_cap_bytes is None else mem_cap_bytes
        return cls(threads, cap, cap_address_space=not cuda)

    @property
    def cap_bytes(self) -> int:
        """The cap in force: on CUDA what the running child set (at most the GPU's memory), else ``mem_cap_bytes``."""
        return self.info.get("cuda_limit_bytes") or self.mem_cap_bytes

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The current child's pid, None when no child is running."""
        return self._proc.pid if self._proc else None

    def start(self) -> dict:
        """Start a child if none is running and wait for its handshake; returns ``self.info``."""
        if self._proc is not None:
            return self.info
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        code = "from bench.isolate import _child_main; _child_main()"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(to_child_r), str(from_child_w)], env=child_env(self.threads),
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._outbox, self._inbox = Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)
        self._handshake()
        self.starts += 1
        self._cases_in_child = 0
        return self.info

    def _handshake(self) -> None:
        settings = {"sys_path": list(sys.path), "threads": self.threads, "mem_cap_bytes": self.mem_cap_bytes,
                    "cap_address_space": self.cap_address_space}
        try:
            self._outbox.send(settings)
            if not self._inbox.poll(self.startup_timeout_s):
                raise TimeoutError(f"no handshake within {self.startup_timeout_s:g} s")
            _, self.info = self._inbox.recv()
        except (EOFError, OSError, TimeoutError) as exc:
            code = self._stop()
            raise RuntimeError(f"worker child failed to start ({one_line(exc)}; exit code {code})") from None

    def run(self, target: str, case: Any, timeout_s: float, *, fresh: bool = False) -> Outcome:
        """Run ``target(case)`` in the child within ``timeout_s`` seconds; never raises because of the case.

        ``fresh``: in a child that has run no other case (the current one is replaced if it has; ~2 s).
        An ``oom`` in a child that already ran other cases is re-run once in a fresh child: the retained heap
        fragments the address space (docs/measurement.md), so only an oom from a clean start is a finding.
        """
        if fresh and self._cases_in_child:
            self.close()
        outcome = self._run_once(target, case, timeout_s)
        if outcome.status == "oom" and self.last_child_cases > 1:
            outcome = self._run_once(target, case, timeout_s)
        return outcome

    def _run_once(self, target: str, case: Any, timeout_s: float) -> Outcome:
        self.start()
        self._cases_in_child += 1
        self.last_child_cases = self._cases_in_child
        start = time.perf_counter()
        try:
            self._outbox.send(("run", target, case))
            answered = self._inbox.poll(timeout_s)
            reply = self._inbox.recv() if answered else None
        except (EOFError, OSError):
            return self._death(time.perf_counter() - start)
        wall = time.perf_counter() - start
        if reply is None:
            self._stop()
            return Outcome("timeout", {}, f"TimeoutError: no answer within {timeout_s:g} s", wall)
        outcome = Outcome(reply[0], reply[1], reply[2], wall)
        if outcome.status in RESTART_AFTER:
            self._stop()
        return outcome

    def _death(self, wall: float) -> Outcome:
        """The child vanished mid-case: report how, and forget it so the next case starts a fresh one."""
        code = self._stop(grace_s=5.0)  # it is exiting: reap it rather than kill it, to read how it ended
        if code is not None and code < 0:
            return Outcome("killed", {}, f"ChildKilled: killed by {_signal_name(code)}", wall)
        return Outcome("error", {}, f"ChildExited: child exited with code {code}", wall)

    def _stop(self, grace_s: float = 0.0) -> int | None:
        """End the child (politely within ``grace_s``, else SIGKILL), close the pipes; return its exit code."""
        proc, self._proc = self._proc, None
        for conn in (self._outbox, self._inbox):
            if conn is not None:
                conn.close()
        self._outbox = self._inbox = None
        self.info = {}
        if proc is None:
            return None
        try:
            return proc.wait(grace_s) if grace_s else _wait_or_kill(proc)
        except subprocess.TimeoutExpired:
            return _wait_or_kill(proc)

    def close(self) -> None:
        """Let the child exit (closing its pipe ends its loop); kill it if it has not within 5 s."""
        self._stop(grace_s=5.0)


def _wait_or_kill(proc: subprocess.Popen) -> int:
    """Return the exit code of an exited child, else SIGKILL it and reap it."""
    if proc.poll() is None:
        proc.kill()
    return proc.wait()
