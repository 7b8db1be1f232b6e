"""Command line: ``attention-limits list | run SWEEP [--profile quick|full] [--key=value ...] | report | check``.

User errors (unknown variant or sweep, bad length, bad flag) print one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import variants
from bench.config import ConfigError


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


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attention-limits", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every registered variant with its declared properties")
    p_list.add_argument("--family", choices=variants.FAMILIES)
    p_list.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.extra = extra
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (ConfigError, variants.UnknownVariantError) as exc:
        print(f"attention-limits: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attention-limits: interrupted; finished cases are saved (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
