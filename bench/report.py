"""The report: every figure of ``bench.plots`` from the stored results, in one command.

``build_report(results_root, out_dir)`` loads the results once, draws each figure and writes
``<out_dir>/figures/*.png|svg``, ``<out_dir>/report.md`` and ``<out_dir>/index.html`` (one self-contained page:
images inlined as base64 data URIs, no external scripts or styles). Each figure comes with its caption, the table
of the numbers it shows and the manifests of the runs it was drawn from; a sweep with no rows gets a "not measured
yet" section naming the command that measures it. The output is byte-stable given the same results and the same
matplotlib: no timestamps, no absolute paths, sorted tables.
"""
from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from bench import plots, store
from bench.plots.common import FigureResult, NotMeasured

TITLE = "attention-limits: where attention stops scaling"
MANIFEST_FIELDS = ("file", "machine", "torch", "threads", "git_sha", "git_dirty", "profile", "utc_start",
                   "gemm_peak_flops")
CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;height:auto;border:1px solid #ddd}table{border-collapse:collapse;font-size:13px;margin:.6em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
.caption{font-size:15px}.missing{color:#555;background:#fafafa;border-left:4px solid #bbb;padding:.4em 1em}
section{margin-bottom:2.5em}code{background:#f3f3f3;padding:0 3px}.wide{overflow-x:auto;max-width:100%}"""


# ------------------------------------------------------------------------------------------------- formatting

def cell(value: Any) -> str:
    """One table cell: blank for missing, integers below 10⁷ without a point, other numbers to 4 significant
    digits."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, (int, float)) or hasattr(value, "dtype"):
        x = float(value)
        return str(int(x)) if x.is_integer() and abs(x) < 1e7 else f"{x:.4g}"
    return str(value)


def cells(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of a table."""
    header = [str(c) for c in table.columns]
    return header, [[cell(v) for v in row] for row in table.itertuples(index=False, name=None)]


def markdown_table(table: pd.DataFrame) -> str:
    header, rows = cells(table)
    esc = [[c.replace("|", "\\|") for c in row] for row in [header, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in esc]
    lines.insert(1, "|" + "|".join("---:" for _ in header) + "|")
    return "\n".join(lines)


def html_table(table: pd.DataFrame) -> str:
    """A table in a box of its own that scrolls sideways when wider than the page (the page itself never does)."""
    header, rows = cells(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return (f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>'
            "</div>")


def provenance(sources: pd.DataFrame) -> pd.DataFrame:
    """The manifest fields worth showing, one row per run segment (file name only, short sha)."""
    frame = sources.copy()
    frame["file"] = [Path(str(p)).name for p in frame.get("path", [""] * len(frame))]
    if "git_sha" in frame:
        frame["git_sha"] = frame["git_sha"].astype(str).str[:12]
    for col in MANIFEST_FIELDS:
        if col not in frame:
            frame[col] = None
    return frame[list(MANIFEST_FIELDS)].sort_values(["file", "utc_start"], kind="stable").reset_index(drop=True)


def commits_note(sources: pd.DataFrame) -> str:
    """A figure whose rows come from several commits says so beside its table (the code may differ between
    them); empty when they share one."""
    shas = sorted({str(s)[:12] for s in sources.get("git_sha", [])})
    if len(shas) < 2:
        return ""
    return (f"Rows from runs of {len(shas)} commits ({', '.join(shas)}), whose code may differ; the table below "
            "says which run measured what.")


# ------------------------------------------------------------------------------------------------------ pages

def markdown_section(i: int, result: FigureResult | NotMeasured) -> str:
    if isinstance(result, NotMeasured):
        return (f"## {i}. {result.title}\n\n**Not measured yet**: run `{result.command}` ({result.reason}).\n")
    note = commits_note(result.sources)
    extra = "".join(f"{heading}\n\n{markdown_table(table)}\n\n" for heading, table in result.extra)
    return (f"## {i}. {result.title}\n\n![{result.title}](figures/{result.name}.png)\n\n{result.caption}\n\n"
            f"{markdown_table(result.table)}\n\n{extra}Measured by:{' ' + note if note else ''}\n\n"
            f"{markdown_table(provenance(result.sources))}\n")


def markdown_page(results: Sequence[FigureResult | NotMeasured], files: Iterable[str]) -> str:
    listed = ", ".join(f"`{f}`" for f in files) or "none"
    intro = (f"# {TITLE}\n\nGenerated by `attention-limits report` from the results files {listed}. "
             "Times in seconds, memory in bytes, FLOPs as counts; exponents are log-log slopes with 95% "
             "bootstrap intervals.\n")
    return "\n".join([intro, *(markdown_section(i, r) for i, r in enumerate(results, 1))])


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_section(i: int, result: FigureResult | NotMeasured) -> str:
    title = html.escape(f"{i}. {result.title}")
    if isinstance(result, NotMeasured):
        return (f'<section id="{result.name}"><h2>{title}</h2>\n<p class="missing">Not measured yet: run '
                f"<code>{html.escape(result.command)}</code> ({html.escape(result.reason)}).</p></section>")
    note = commits_note(result.sources)
    html_note = f"<p>{html.escape(note)}</p>\n" if note else ""
    return (f'<section id="{result.name}"><h2>{title}</h2>\n'
            f'<img src="{data_uri(result.paths[0])}" alt="{html.escape(result.title)}">\n'
            f'<p class="caption">{html.escape(result.caption)}</p>\n{html_table(result.table)}\n'
            + "".join(f"<p>{html.escape(heading)}</p>\n{html_table(table)}\n" for heading, table in result.extra) +
            f"<details><summary>Measured by</summary>\n{html_note}{html_table(provenance(result.sources))}\n"
            "</details></section>")


def html_page(results: Sequence[FigureResult | NotMeasured], files: Iterable[str]) -> str:
    listed = ", ".join(f"<code>{html.escape(f)}</code>" for f in files) or "none"
    toc = "".join(f'<li><a href="#{r.name}">{html.escape(r.title)}</a>'
                  f"{' (not measured yet)' if isinstance(r, NotMeasured) else ''}</li>" for r in results)
    body = "\n".join(html_section(i, r) for i, r in enumerate(results, 1))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(TITLE)}</title>\n'
            f"<style>{CSS}</style></head>\n<body><h1>{html.escape(TITLE)}</h1>\n"
            f"<p>Generated by <code>attention-limits report</code> from {listed}.</p>\n<ol>{toc}</ol>\n"
            f"{body}\n</body></html>\n")


# ------------------------------------------------------------------------------------------------ entry point

def clear_figures(figures: Path) -> None:
    """Remove figures of an earlier build, so a figure that is no longer measured leaves no stale file."""
    for path in sorted(figures.glob("*.png")) + sorted(figures.glob("*.svg")):
        path.unlink()


def draw_all(df: pd.DataFrame, manifests: pd.DataFrame, figures: Path,
             progress: Callable[[str], None] | None) -> list[FigureResult | NotMeasured]:
    """Every figure of ``plots.FIGURES`` in order; ``progress`` gets one line per figure (name, what, seconds)."""
    results = []
    for i, figure in enumerate(plots.FIGURES, 1):
        start = time.monotonic()
        results.append(figure(df, manifests, figures))
        if progress is not None:
            what = "not measured yet" if isinstance(results[-1], NotMeasured) else "drawn"
            progress(f"report: figure {i}/{len(plots.FIGURES)} {results[-1].name} {what} "
                     f"({time.monotonic() - start:.1f} s)")
    return results


def build_report(results_root: str | Path = "results/runs", out_dir: str | Path = "reports",
                 progress: Callable[[str], None] | None = None) -> Path:
    """Draw every figure from the results under ``results_root``; write ``out_dir``; return index.html's path.
    ``progress`` (e.g. ``print`` to stderr) is told as each figure is done: the report takes half a minute."""
    df = store.load(root=results_root)
    manifests = store.load_manifests(root=results_root)
    out, figures = Path(out_dir), Path(out_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    clear_figures(figures)
    results = draw_all(df, manifests, figures, progress)
    files = sorted({Path(str(p)).name for p in manifests.get("path", [])})
    (out / "report.md").write_text(markdown_page(results, files), encoding="utf-8")
    index = out / "index.html"
    index.write_text(html_page(results, files), encoding="utf-8")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report [RESULTS_ROOT [OUT_DIR]]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    print(build_report(*args[:2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
