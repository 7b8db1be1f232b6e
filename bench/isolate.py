"""Run one case at a time in a persistent, capped child process and turn whatever happens into an ``Outcome``.

The parent (``Worker``) owns one child started with ``subprocess`` (a fresh interpreter: ``import torch`` once,
~2 s and ~220 MiB, then reused for every case). Messages travel as pickles over two private pipes, so a case that
prints to stdout cannot corrupt the protocol. Out of memory, over time and killed are findings, never crashes:

- memory cap: the child lowers ``RLIMIT_AS`` to (its address-space size after start-up) + ``mem_cap_bytes``.
  Address space, not RSS, because it is the one limit Linux enforces at allocation time: an allocation over the cap
  fails inside the allocator and torch raises ``RuntimeError: DefaultCPUAllocator: can't allocate memory`` (``oom``)
  instead of the kernel OOM killer taking the machine. It counts reserved as well as touched pages (thread stacks,
  malloc arenas, imports made by the case), so it is a conservative upper bound of the memory a case may use.
  CUDA maps terabytes of virtual address space, so a Worker for CUDA passes ``cap_address_space=False``; its
  child caps the caching allocator instead (``cap_cuda_memory``: over the cap, ``torch.OutOfMemoryError``).
- time cap: no answer within ``timeout_s`` → the child is SIGKILLed → ``timeout``.
- after ``oom``, ``timeout`` or ``killed`` the next case gets a fresh child (its heap may be fragmented or gone).

Inside the child, ``peak_bytes(fn)`` measures the resident-set high-water mark of ``fn`` alone (see its docstring).
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

STATUSES = ("ok", "oom", "timeout", "unsupported", "error", "killed")
RESTART_AFTER = frozenset({"oom", "timeout", "killed"})
OOM_MARKERS = ("defaultcpuallocator", "out of memory", "can't allocate memory")
_TRIM_THRESHOLD = 1 << 40  # 1 TiB: never give the top of the heap back to the OS on free()
PEAK_MMAP_THRESHOLD = 1 << 20  # during an RSS peak probe, allocations of 1 MiB or more get their own mmap
M_MMAP_THRESHOLD, M_MMAP_MAX = -3, -4  # glibc mallopt parameters
GLIBC_MMAP_MAX = 65536  # glibc's default mmap_max (DEFAULT_MMAP_MAX)

ALLOCATOR_POLICY: dict[str, Any] = {
    "name": "glibc-retain-freed",
    "glibc_tunables": (f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={_TRIM_THRESHOLD}"
                       ":glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"),
    "mmap_max": 0,
    "trim_threshold_bytes": _TRIM_THRESHOLD,
    "tcache_count": 0,
    "mxfast": 0,
    "top_pad_bytes": "glibc default",
    "trim_between_cases": True,
    "peak_probe_mmap_threshold_bytes": PEAK_MMAP_THRESHOLD,
    "why": (
        "freshly faulted pages are written at ~2.4 GB/s vs ~25 GB/s for touched ones, and by default glibc "
        "returns blocks >= 32 MiB to the OS on free, so every large-T call would re-fault its buffers. With "
        "mmap disabled and trimming off, freed memory stays in the heap and steady-state repeats reuse touched "
        "pages (measured here: 1 GiB alloc+fill 0.29 s -> 0.036 s). The child calls malloc_trim(0) after every "
        "case and before every peak_bytes() probe, so first-call times (page faults included) and peaks do not "
        "depend on the order of cases. Per-thread caches and fastbins are off (tcache_count=0, mxfast=0): their "
        "small cached blocks are never coalesced, so they pinned the boundaries between large free blocks and "
        "the same fwd+bwd peaked 2-10 MiB (one or more (T, D) tensors) higher or lower from call to call and "
        "child to child; without them repeated probes agree to 0.1 MiB. Cost measured here: forward times "
        "0.99-1.04x at T=128..2048 for every variant."
    ),
    "peak_probe": (
        "the RSS peak probe (peak_bytes) is one call made with allocations >= peak_probe_mmap_threshold_bytes "
        "served by their own mmap and unmapped on free, so a freed temporary leaves RSS at once and the "
        "high-water mark is the pages the call holds at its peak, not how a retained heap happened to be laid "
        "out: under the retained heap alone, the same performer fwd+bwd at T=4096 peaked at 112.8, 120.6 or "
        "124.8 MiB in fresh children with 92.0 MiB of live tensors. Timing never runs under this setting."
    ),
    "address_space_creep": (
        "a retained heap fragments: VmSize (not RSS) creeps up across cases, which RLIMIT_AS counts; an oom in a "
        "child that already ran cases is therefore re-run once in a fresh child, so oom means 'does not fit "
        "under the cap from a clean start'"
    ),
}


@dataclass
class Outcome:
    """What happened to one case: a status from ``STATUSES``, its metrics, a one-line error and the wall time."""

    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; known: {', '.join(STATUSES)}")


def default_mem_cap_bytes() -> int:
    """A safe share of this machine's RAM for one case: 60% of the total."""
    return int(0.6 * psutil.virtual_memory().total)


def one_line(exc: BaseException) -> str:
    """``"ExcType: first line of the message"`` (just ``"ExcType"`` when the message is empty)."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0].strip()}" if lines else name


def classify(exc: BaseException) -> str:
    """Map an exception raised by a case to a status: unsupported, oom or error."""
    if isinstance(exc, NotImplementedError):
        return "unsupported"
    torch = sys.modules.get("torch")
    torch_oom = getattr(torch, "OutOfMemoryError", None) if torch else None
    if isinstance(exc, MemoryError) or (torch_oom is not None and isinstance(exc, torch_oom)):
        return "oom"
    if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS):
        return "oom"
    return "error"


# ----------------------------------------------------------------------------------------------------------------
# Probes for code running inside the child (Linux /proc; glibc for malloc_trim).

def _status_bytes(key: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM, VmSize, ...) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not found in /proc/self/status")


def rss_bytes() -> int:
    """This process's resident set size now."""
    return _status_bytes("VmRSS")


def hwm_bytes() -> int:
    """This process's resident-set high-water mark since start-up or the last ``reset_hwm()``."""
    return _status_bytes("VmHWM")


def address_space_bytes() -> int:
    """This process's virtual address-space size (what ``RLIMIT_AS`` limits)."""
    return _status_bytes("VmSize")


def release_free_memory() -> bool:
    """Give memory that malloc keeps for reuse back to the OS (``malloc_trim(0)``); False where not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def reset_hwm() -> None:
    """Reset VmHWM to the current RSS (writing 5 to /proc/self/clear_refs, Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


_mapped_depth = 0  # nesting depth of large_allocations_mapped(): only the outermost block restores the policy


@contextlib.contextmanager
def large_allocations_mapped(threshold: int = PEAK_MMAP_THRESHOLD) -> Iterator[bool]:
    """While the block runs, glibc serves allocations >= ``threshold`` with their own mmap (fresh pages, unmapped
    on free) instead of the worker's retained heap; the process's mmap_max (``process_mmap_max``) is restored when
    the outermost block exits, the threshold stays. Yields False, and changes nothing, where the C library is not
    glibc."""
    global _mapped_depth
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        yield False
        return
    if _mapped_depth == 0:
        mallopt(M_MMAP_THRESHOLD, threshold)  # an explicit threshold also stops glibc from raising it on free
        mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
    _mapped_depth += 1
    try:
        yield True
    finally:
        _mapped_depth -= 1
        if _mapped_depth == 0:
            mallopt(M_MMAP_MAX, process_mmap_max())


def process_mmap_max() -> int:
    """This process's mmap_max as it started: 0 in a worker child (``ALLOCATOR_POLICY``), glibc's default in any
    other process (a test run, asv, a user's script), which a probe must not leave without mmap."""
    tunables = os.environ.get("GLIBC_TUNABLES", "").split(":")
    return ALLOCATOR_POLICY["mmap_max"] if "glibc.malloc.mmap_max=0" in tunables else GLIBC_MMAP_MAX


def peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Call ``fn()`` and return ``(result, peak resident bytes it added)``.

    Collects Python garbage and frees retained heap first (``gc.collect``, ``malloc_trim``), resets the
    high-water mark, takes RSS as the baseline (inputs the caller built already are in it), calls ``fn`` with the
    cyclic collector paused and large allocations mapped (``large_allocations_mapped``) and returns
    VmHWM − baseline. Without the collect, tensors of earlier calls held by reference cycles were freed, or not,
    during the probe depending on how many calls the timing had made: the same case in two fresh children read
    one (T, D) tensor apart. Without the mapping, the high-water mark counted every page a retained heap had
    handed out during the call, which depended on which freed hole the next tensor happened to fit (see
    ``ALLOCATOR_POLICY["peak_probe"]``). Warm ``fn`` up once before probing: first-time code pages and lazily
    built tables would otherwise count as its memory.
    """
    gc.collect()
    release_free_memory()
    reset_hwm()
    baseline = rss_bytes()
    enabled = gc.isenabled()
    gc.disable()
    try:
        with large_allocations_mapped():
            result = fn()
    finally:
        if enabled:
            gc.enable()
    return result, hwm_bytes() - baseline


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
        except EOFError:
            return
        if message[0] != "run":
            return
        outbox.send(_execute(message[1], message[2]))


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

    >>> with Worker(threads=2, mem_cap_bytes=4 << 30) as worker:
    ...     outcome = worker.run("bench.sweeps.efficiency:execute", case, timeout_s=60)
    """

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
        fragments the address space (see ``ALLOCATOR_POLICY``), so only an oom from a clean start is a finding.
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
