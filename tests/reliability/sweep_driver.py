"""The fake sweep as a process of its own, for the tests that kill it, fill its disk or race two of it.

``python sweep_driver.py OUT_DIR N [--resume] [--kinds KIND] [--torn-s S] [--inline]`` runs N cases of
``tests/fake_sweep`` into OUT_DIR through ``bench.run.run_sweep`` and reports errors the way the CLI does
(``bench.cli.run_command``: one line, exit 2; Ctrl-C 130). ``--torn-s S`` writes each line in two halves S seconds
apart, so a kill at a random moment often lands in the middle of a row. ``--inline`` runs the cases in this
process (``InlineExecutor``): a start costs an interpreter, not a worker child's torch import (~3 s), so the kill
test can afford many trials; everything the parent writes goes through the same ``run_sweep`` and ``RunWriter``.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for fake_sweep

import fake_sweep  # noqa: E402
from bench import executors, isolate, store  # noqa: E402
from bench.outcome import Outcome  # noqa: E402
from bench.run import run_sweep  # noqa: E402

ENVIRONMENT = {"torch": "none (inline)", "parallel_info": "", "threads": 1, "device_name": "inline",
               "machine": "inline"}


class InlineExecutor:
    """Each job run in this process, one after another; the environment is a fixed record (no torch import)."""

    name = "inline"

    def __init__(self, *_: object, **__: object):
        pass

    def cluster(self) -> dict:
        return {"executor": self.name}

    def run(self, jobs):
        for job in jobs:
            start = time.monotonic()
            if job.target == "bench.store:describe":
                status, metrics, error = "ok", dict(ENVIRONMENT), ""
            else:
                status, metrics, error = isolate._execute(job.target, job.case)
            outcome = Outcome(status, metrics, error, time.monotonic() - start)
            yield executors.Done(job, outcome, {"mem_cap_bytes": job.mem_cap_bytes, "attempts": 1})

    def close(self) -> None:
        pass


def _torn_emit(pause_s: float):
    def emit(self, data: bytes) -> None:
        half = len(data) // 2
        self._fh.write(data[:half])
        os.fsync(self._fh.fileno())
        time.sleep(pause_s)
        self._fh.write(data[half:])
    return emit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("n", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kinds", default="nap")
    parser.add_argument("--torn-s", type=float, default=0.0)
    parser.add_argument("--inline", action="store_true")
    args = parser.parse_args()
    if args.inline:
        executors.create = InlineExecutor
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if args.torn_s:
        store.RunWriter._emit = _torn_emit(args.torn_s)
    cfg = fake_sweep.Config(kinds=(args.kinds,) * args.n, time_cap_s=60.0)

    try:
        run_sweep(fake_sweep.SWEEP, cfg, profile="quick", out_dir=args.out_dir, resume=args.resume, threads=1,
                  mem_cap_bytes=512 * 2**20, progress=lambda case, outcome: print("row", case["i"], flush=True))
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported as the CLI reports it (bench.cli imports torch: late)
        from bench.cli import run_command

        def reraise(_):
            raise exc

        return run_command(reraise, args)


if __name__ == "__main__":
    raise SystemExit(main())
