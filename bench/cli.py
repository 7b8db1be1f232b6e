"""Command line: ``attention-limits list | run SWEEP [--profile quick|full] [--key=value ...] | report | check``;
``run SWEEP --help`` lists the sweep's options, generated from its Config.

User errors (unknown variant or sweep, bad length, bad flag, an unusable results file or folder; the catalogue is
docs/bad-input.md) print one line on stderr and exit 2 (``run_command``).
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Sequence

import variants
from bench import sweeps
from bench.config import ConfigError, apply_overrides, fields_help, parse_kv_args
from bench.sweep import Sweep
from bench.table import format_table


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for spec in variants.specs():
        if args.family and spec.family != args.family:
            continue
        params = ", ".join(f"{k}={v}" for k, v in spec.default_params.items()) or "-"
        rows.append((spec.name, spec.family, spec.time_complexity, spec.memory_complexity,
                     "yes" if spec.exact else "no", "yes" if spec.supports_causal else "no",
                     "yes" if spec.supports_key_valid else "no", params, str(spec.paper)))
    header = ("variant", "family", "time", "memory", "exact", "causal", "padding", "defaults", "paper")
    print(format_table(header, rows))
    return 0


def sweep_config(sweep: Sweep, profile: str, extra: Sequence[str]):
    """The profile's Config with the command line's ``--key=value`` overrides applied (typed, validated)."""
    if profile not in sweep.profiles:
        raise ConfigError(f"unknown profile {profile!r} for {sweep.name}; known: {', '.join(sweep.profiles)}")
    return apply_overrides(sweep.profiles[profile], parse_kv_args(extra))


def sweep_help(sweep: Sweep, profile: str) -> str:
    """The sweep's fields (--flag, type, default in ``profile``, doc), generated from its Config."""
    if profile not in sweep.profiles:
        raise ConfigError(f"unknown profile {profile!r} for {sweep.name}; known: {', '.join(sweep.profiles)}")
    return f"options of {sweep.name} (defaults of --profile {profile}):\n{fields_help(sweep.profiles[profile])}"


def cmd_run(args: argparse.Namespace) -> int:
    from bench import store
    from bench.run import run_sweep, summary_table

    if args.help or args.sweep is None:
        print(args.parser.format_help())
        if args.sweep is not None:
            print(sweep_help(sweeps.get(args.sweep), args.profile))
        return 0 if args.help else 2
    sweep = sweeps.get(args.sweep)
    cfg = sweep_config(sweep, args.profile, args.extra)
    path = run_sweep(sweep, cfg, profile=args.profile, out_dir=args.out_dir, resume=args.resume,
                     executor=args.executor, address=args.address)
    df = store.load(path)
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 40):
        summary = sweep.summarize(df) if sweep.summarize else None
        print(summary_table(df) if summary is None else summary)
    print(f"\nrows: {path}")
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    """The main job: every sweep's profile in turn (resumable), then the report."""
    import time

    for name in sweeps.MAIN_JOB:
        start = time.monotonic()
        print(f"== {name} ({args.profile})", flush=True)
        sub = argparse.Namespace(sweep=name, profile=args.profile, out_dir=args.out_dir, resume=args.resume,
                                 extra=[], help=False, executor=args.executor, address=args.address)
        cmd_run(sub)
        print(f"== {name}: {time.monotonic() - start:.0f} s", flush=True)
    return cmd_report(argparse.Namespace(results_root=args.out_dir, out_dir=args.report_dir))


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.report import build_report
    from bench.store import ResultsError, load_manifests, unwritable

    root = Path(args.results_root)
    if not root.is_dir() or not any(root.glob("*.jsonl")):
        what = "is not a folder" if not root.is_dir() else "holds no *.jsonl results files"
        raise ResultsError(f"--results-root {root} {what}; run a sweep first or pass the folder its rows went to")
    if load_manifests(root=root).empty:
        raise ResultsError(f"--results-root {root} holds no results records (empty files); run a sweep first")
    try:
        index = build_report(root, args.out_dir, progress=partial(print, file=sys.stderr, flush=True))
    except OSError as exc:
        raise unwritable(Path(exc.filename or args.out_dir), exc, "write the report to") from None
    print(f"report: {index}")
    return 0


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--help", action="store_true", help="this help, and with a sweep its options")
    p.add_argument("--profile", default="quick",
                   help="quick | full (each sweep defines both; efficiency also gpu, gpu_fp32)")
    p.add_argument("--resume", action="store_true", help="skip cases already in the results file")
    p.add_argument("--out-dir", default="results/runs", help="where the JSONL results go")
    add_executor_options(p)
    p.set_defaults(func=cmd_run, accepts_extra=True, parser=p)


def add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: isolated children here; ray: each case a Ray task (README, Scaling out)")
    p.add_argument("--address", default=None,
                   help="with --executor ray: auto | HOST:PORT of a running cluster; none: a Ray instance here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attention-limits", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every registered variant with its declared properties")
    p_list.add_argument("--family", choices=variants.FAMILIES)
    p_list.set_defaults(func=cmd_list)
    p_run = sub.add_parser("run", help="run a sweep; any --key=value sets a field of the sweep's Config",
                           epilog=f"sweeps: {', '.join(sweeps.names())}; `run SWEEP --help` lists its options",
                           add_help=False)
    p_run.add_argument("sweep", nargs="?")
    add_run_options(p_run)
    p_limits = sub.add_parser("limits", help="largest T under a memory and a time budget, per variant",
                              add_help=False)
    add_run_options(p_limits)
    p_limits.set_defaults(sweep="limits")
    p_all = sub.add_parser("all", help="the main job: every sweep's quick (or full) profile, then the report")
    p_all.add_argument("--profile", default="quick")
    p_all.add_argument("--resume", action="store_true")
    p_all.add_argument("--out-dir", default="results/runs")
    p_all.add_argument("--report-dir", default="reports")
    add_executor_options(p_all)
    p_all.set_defaults(func=cmd_all)
    from bench import gate

    p_check = sub.add_parser("check", help="regression gate: a quick measurement against results/baseline/gate.json")
    gate.add_arguments(p_check)
    p_check.set_defaults(func=gate.run)
    p_report = sub.add_parser("report", help="figures, report.md and a self-contained index.html from results/")
    p_report.add_argument("--results-root", default="results/runs")
    p_report.add_argument("--out-dir", default="reports")
    p_report.set_defaults(func=cmd_report)
    return parser


def run_command(func, args: argparse.Namespace) -> int:
    """The one place user errors become one stderr line: exit 2 for a problem the message names the fix of,
    130 for Ctrl-C (the finished rows stay in the results file)."""
    from bench.store import ResultsError

    try:
        return int(func(args) or 0)
    except (ConfigError, variants.UnknownVariantError, ResultsError) as exc:
        print(f"attention-limits: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attention-limits: interrupted; finished cases are saved (rerun with --resume)", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit: an EFBIG error row, not a core dump
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.extra = extra
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return run_command(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
