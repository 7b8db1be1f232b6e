"""Results on disk: ``results/runs/<sweep>-<profile>-<device>.jsonl``, append-only JSON lines.

A file holds one or more segments. A segment starts with a manifest line (``kind="manifest"``: run id, git sha,
torch, threads, allocator policy, config, ``schema_version``, ...) and continues with one line per finished case
(``kind="row"``) or summary a sweep found (``kind="limit"``). The row schema: the ``COMMON_COLUMNS`` (kind, run id,
sweep, case id, status, one-line error, wall seconds), the case's params (``variant``, ``T`` for the sequence
length, ``seed``, ...) and the metric columns the sweep declares (``Sweep.metrics``); a record missing a common
column, or with an undeclared metric, is a sweep bug and raises on write.

A fresh run writes a new file (``run_sweep`` first moves an existing one to ``previous/``, ``keep_aside``); a
resumed run appends a new segment. Every line is written whole and fsync'ed, so a killed run loses at most the
line it was writing; that torn last line is skipped (and reported) when reading and cut before a resume appends.
One writer at a time: ``ResultsLock`` holds ``<file>.lock`` (with its pid) for the whole run. Problems a user can
cause (a file that cannot be written, from a newer schema, of another sweep) raise ``ResultsError``, a one-line
message naming the fix. Units are SI base units: s, bytes, FLOPs.

Old files are migrated on read (``migrate``), not rewritten: before schema 2 a limit found was a ``kind="row"``
record of the limits sweep with the sentinel ``T == 0``; it reads as ``kind="limit"`` without ``T``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator

from bench.guard import ResultsError, ResultsLock, unwritable  # noqa: F401 - the store's errors and its lock
from bench.outcome import Outcome

SCHEMA_VERSION = 2
KINDS = ("row", "limit")  # the kinds of record that hold results (besides the segment's "manifest")
COMMON_COLUMNS = ("kind", "run_id", "sweep", "case_id", "status", "error", "wall_s")
ROW_FIELDS = COMMON_COLUMNS[1:]  # the common columns of the loaded frame (``kind`` is added there per record)
SEGMENT_FIELDS = ("run_id", "git_sha", "device", "device_name", "threads", "profile")
STRING_COLUMNS = ("kind", "run_id", "sweep", "case_id", "status", "error", "git_sha", "device", "device_name",
                  "machine", "profile")
# Where a row's case ran, added by the executor (``bench.executors``): host, device, attempts (2: its Ray worker
# was lost once and the case ran again).
PLACEMENT_COLUMNS = ("node", "node_device", "attempts")
MANIFEST_COLUMNS = ("run_id", "sweep", "profile", "utc_start", "git_sha", "git_dirty", "torch", "device",
                    "device_name", "machine", "threads")
_ROOT = Path(__file__).resolve().parents[1]


def results_path(out_dir: str | Path, sweep: str, profile: str, device: str) -> Path:
    """Where a sweep's results live: ``<out_dir>/<sweep>-<profile>-<device>.jsonl`` (``cuda:0`` → ``cuda0``)."""
    return Path(out_dir) / f"{sweep}-{profile}-{device.replace(':', '')}.jsonl"


# ----------------------------------------------------------------------------------------------------------------
# The manifest.

SOURCE_SHA_ENV = "ATTENTION_LIMITS_SOURCE_SHA"  # the commit a copied tree was taken from, named by its copier


def git_state(root: str | Path = _ROOT) -> tuple[str, bool | None]:
    """``(HEAD sha, dirty)`` of the checkout at ``root``, ``("unknown", None)`` outside git; but
    ``(SOURCE_SHA_ENV's value, None)`` where whoever copied the tree (to a remote GPU machine, say) set it: that
    copy's ``.git``, if one came along, need not be the commit its files are (one sent here read as an older
    commit, dirty), and whether the copy is dirty is then unknown.

    Dirty means tracked code or configuration differs from HEAD; the measured outputs (``results/``,
    ``reports/``) do not count, or every sweep of the main job after the first would read dirty.
    """
    named = os.environ.get(SOURCE_SHA_ENV, "").strip()
    if named:
        return named, None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)results", ":(exclude)reports"], cwd=root,
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return sha, bool(status.strip())


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gib(n_bytes: float) -> str:
    return f"{round(n_bytes / 2**30)} GiB"


def machine(device: str = "cpu") -> str:
    """The hardware class that measured: CPU model, cores usable and memory (``AMD EPYC, 2 cores, 23 GiB``), or
    the GPU's name and memory (``NVIDIA H200, 140 GiB``). Never the hostname, which changes with every VM of the
    same class; two runs with the same identity may share a figure, two with different ones may not."""
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"{props.name}, {_gib(props.total_memory)}"
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, {_gib(memory)}"


def machine_of(record: dict[str, Any]) -> str:
    """A manifest's machine; a manifest written before ``machine`` existed is known by its device name alone."""
    return str(record.get("machine") or record.get("device_name") or "unknown")


def environment(device: str = "cpu") -> dict[str, Any]:
    """torch version, ``parallel_info()``, threads, the device's name and the ``machine`` identity, as seen by the
    calling process."""
    import torch

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu_name()
    return {"torch": torch.__version__, "parallel_info": torch.__config__.parallel_info(),
            "threads": torch.get_num_threads(), "device_name": name, "machine": machine(device)}


def describe(case: Any) -> dict[str, Any]:
    """Worker target: ``environment(case["device"])`` measured inside the child that runs the cases."""
    return environment(case["device"])


def config_dict(cfg: Any) -> dict[str, Any]:
    """A sweep config as a dict (dataclass fields, a mapping as is, else its attributes; None → {})."""
    if cfg is None:
        return {}
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg) if isinstance(cfg, dict) else dict(vars(cfg))


def manifest(*, sweep: str, profile: str, device: str, config: Any = None, seeds: Iterable[int] = (),
             env: dict[str, Any] | None = None, allocator: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first line of a segment. ``env`` is ``environment()`` from the measuring process (computed here if
    None); ``allocator`` the policy its workers ran under (``Worker.allocator``); ``extra`` adds fields such as
    ``gemm_peak_flops``."""
    env = environment(device) if env is None else env
    sha, dirty = git_state()
    record = {"kind": "manifest", "run_id": uuid.uuid4().hex[:12], "sweep": sweep, "profile": profile,
              "utc_start": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_sha": sha,
              "git_dirty": dirty, "torch": env["torch"], "parallel_info": env["parallel_info"], "device": device,
              "device_name": env["device_name"], "machine": machine_of(env), "threads": env["threads"],
              "seeds": list(seeds), "allocator": dict(allocator or {}), "config": config_dict(config),
              "python": sys.version.split()[0], "schema_version": SCHEMA_VERSION}
    record.update(extra or {})
    return record


# ----------------------------------------------------------------------------------------------------------------
# Writing.

def _json_default(obj: Any) -> Any:
    """numpy / torch scalars via ``.item()``, tuples and sets as lists, anything else as its ``str``."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def row_record(run_id: str, case: Any, outcome: Outcome, *, kind: str = "row",
               metrics: Collection[str] | None = None) -> dict[str, Any]:
    """One result line. A case param named like a common column, a metric named like either, a metric not in
    ``metrics`` (when given), or a missing common column is a sweep bug and raises ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; known: {', '.join(KINDS)}")
    params = case.as_dict()
    reserved = sorted(set(params) & set(COMMON_COLUMNS))
    if reserved:
        raise ValueError(f"case params {reserved} of sweep {case.sweep!r} shadow row fields; rename them")
    record = {"kind": kind, "run_id": run_id, "sweep": case.sweep, "case_id": case.id, **params,
              "status": outcome.status, "error": outcome.error, "wall_s": float(outcome.wall_s)}
    clash = sorted(set(outcome.metrics) & (set(record) | set(params)))
    if clash:
        raise ValueError(f"metrics {clash} collide with row fields or case params of sweep {case.sweep!r}")
    undeclared = sorted(set(outcome.metrics) - set(metrics) - set(PLACEMENT_COLUMNS)) if metrics is not None else []
    if undeclared:
        raise ValueError(f"metrics {undeclared} are not declared in sweep {case.sweep!r}'s Sweep(metrics=...)")
    missing = [c for c in COMMON_COLUMNS if record[c] is None and c != "error"]
    if missing:
        raise ValueError(f"record of sweep {case.sweep!r} has no {missing}")
    record.update(outcome.metrics)
    return record


PREVIOUS_DIR = "previous"  # where a fresh run keeps the file it replaces; the loader reads only the folder's top


def keep_aside(path: str | Path, now: datetime | None = None) -> Path | None:
    """Move an existing results file to ``<its folder>/previous/<stem>.<UTC time>.jsonl`` before a fresh run
    rewrites it, so no run silently destroys another; returns where it went (None when there was no file)."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H%M%S")
    target = path.parent / PREVIOUS_DIR / f"{path.stem}.{stamp}{path.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while target.exists():  # two fresh runs within one second
        target, n = target.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}"), n + 1
    return path.rename(target)


def _cut_partial_line(path: Path) -> None:
    """Drop an unterminated last line (a run killed mid-write) so appended lines start on a line of their own."""
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def check_resumable(path: Path, sweep: str) -> None:
    """Before a resume appends to ``path``: every segment must be of ``sweep`` and of a schema this code reads."""
    for record in read_records(path):
        if record.get("kind") != "manifest":
            continue
        version = record.get("schema_version", 1)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise ResultsError(f"{path} was written with results schema {version}, newer than this code's "
                               f"{SCHEMA_VERSION}; update attention-limits or start a fresh file")
        if record.get("sweep") != sweep:
            raise ResultsError(f"{path} holds results of sweep {record.get('sweep')!r}, not {sweep!r}; "
                               f"--resume continues the same sweep's file (drop --resume or pass another --out-dir)")


class RunWriter:
    """Writes one segment: the manifest on open, then ``write(case, outcome)`` per finished case.

    ``resume=False`` truncates ``path``; ``resume=True`` appends a new segment to it. ``metrics``: the metric
    columns the sweep declares (every other metric raises on write). Each line goes out in one unbuffered write
    and is fsync'ed; an OS refusal (disk full, read-only) is a ``ResultsError`` naming the file.
    """

    def __init__(self, path: str | Path, manifest_record: dict[str, Any], *, metrics: Collection[str],
                 resume: bool = False):
        self.path = Path(path)
        self.metrics = frozenset(metrics)
        self.run_id = manifest_record["run_id"]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume and self.path.exists():
                _cut_partial_line(self.path)
            self._fh = open(self.path, "ab" if resume else "wb", buffering=0)
        except OSError as exc:
            raise unwritable(self.path, exc) from None
        self._write(manifest_record)

    def _write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, default=_json_default) + "\n").encode("utf-8")
        try:
            self._emit(data)
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise unwritable(self.path, exc) from None

    def _emit(self, data: bytes) -> None:
        """Write all of ``data`` (a raw file may take it in parts)."""
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view):]

    def write(self, case: Any, outcome: Outcome, kind: str = "row") -> dict[str, Any]:
        """Append and sync one record (a row, or a summary of another ``kind``); returns the record written."""
        record = row_record(self.run_id, case, outcome, kind=kind, metrics=self.metrics)
        self._write(record)
        return record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------------
# Reading.

def migrate(record: dict[str, Any]) -> dict[str, Any]:
    """A record of an older schema as the current one: a limit found (limits sweep, ``T == 0``) -> kind "limit"."""
    if record.get("kind") == "row" and record.get("sweep") == "limits" and record.get("T") == 0:
        record = {k: v for k, v in record.items() if k != "T"}
        record["kind"] = "limit"
    return record


def _parse(line: str) -> dict[str, Any] | None:
    """One line as a record, or None when it is not a JSON object with a string ``kind`` (and a row's case id)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        return None
    if record["kind"] in KINDS and not isinstance(record.get("case_id"), str):
        return None
    return record


def read_records(path: str | Path, skipped: list[int] | None = None) -> Iterator[dict[str, Any]]:
    """Every record of a results file (migrated). A line that does not parse (a torn last line of a killed run, a
    corrupt line) is skipped and its number appended to ``skipped``; with ``skipped=None`` one line per file on
    stderr says how many were skipped. Unreadable or non-UTF-8 files raise ``ResultsError``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().split("\n")
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") from None
    bad = [] if skipped is None else skipped
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _parse(line)
        if record is None:
            bad.append(number)
            continue
        yield migrate(record)
    if skipped is None and bad:
        warn_skipped(path, bad, len(lines) - (lines[-1] == ""))


_WARNED: set[tuple[str, int, int]] = set()  # (path, mtime, size) already warned about: one line per file state


def warn_skipped(path: str | Path, numbers: list[int], last: int) -> None:
    """One stderr line: which lines of ``path`` were skipped (a torn last line is what a killed run leaves)."""
    stat = os.stat(path)
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _WARNED:
        return
    _WARNED.add(key)
    torn = " (the last one torn: a run killed while writing)" if numbers[-1] == last else ""
    shown = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
    print(f"attention-limits: warning: {path}: skipped {len(numbers)} unreadable line(s) (line {shown}){torn}",
          file=sys.stderr)


def finished_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """The last record of every case id already in ``path`` (a row of any status, or a summary), by case id;
    empty if the file does not exist. A resumed adaptive plan reads what it decided on from here."""
    if not Path(path).exists():
        return {}
    return {r["case_id"]: r for r in read_records(path) if r.get("kind") in KINDS}


def finished_case_ids(path: str | Path) -> set[str]:
    """Case ids that already have a record in ``path`` (a row of any status, or a summary); empty if the file does
    not exist."""
    return set(finished_records(path))


def _paths(paths: str | Path | Iterable[str | Path] | None, root: str | Path) -> list[Path]:
    if paths is None:
        return sorted(Path(root).glob("*.jsonl"))
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


def _rows_with_segment(path: Path, kinds: Collection[str]) -> Iterator[dict[str, Any]]:
    """Records of the given kinds in one file, each carrying its segment's manifest fields."""
    segment: dict[str, Any] = {}
    for record in read_records(path):
        kind = record.get("kind")
        if kind == "manifest":
            segment = {k: record.get(k) for k in SEGMENT_FIELDS}
        elif kind in kinds:
            yield {**record, **{k: v for k, v in segment.items() if k != "run_id"}}


def _typed(frame, columns: Iterable[str]):
    """Fixed columns, fixed dtypes: text as pandas ``string``, wall_s float64, threads Int64 (absent ones added)."""
    for col in columns:
        if col not in frame:
            frame[col] = None
    for col in STRING_COLUMNS:
        if col in frame:
            frame[col] = frame[col].astype("string")
    if "wall_s" in frame:
        frame["wall_s"] = frame["wall_s"].astype("float64")
    if "threads" in frame:
        frame["threads"] = frame["threads"].astype("Int64")
    return frame


def load(paths: str | Path | Iterable[str | Path] | None = None, root: str | Path = "results/runs",
         kinds: Collection[str] = KINDS):
    """The records of ``kinds`` (default: rows and limits) of the given files (default: every ``*.jsonl`` under
    ``root``) as one tidy DataFrame; select one kind with ``df[df["kind"] == "limit"]`` or ``kinds=("row",)``.

    Columns: ``kind``, the row fields, every case param and metric, and the segment's run_id, git_sha, device,
    device_name, threads and profile. No files → an empty frame with the fixed columns, well typed.
    """
    import pandas as pd

    rows = [row for path in _paths(paths, root) for row in _rows_with_segment(path, kinds)]
    fixed = COMMON_COLUMNS + tuple(c for c in SEGMENT_FIELDS if c not in COMMON_COLUMNS)
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(fixed))
    return _typed(frame, fixed)


def load_manifests(paths: str | Path | Iterable[str | Path] | None = None, root: str | Path = "results/runs"):
    """Every manifest line of the given files as a DataFrame (one row per segment; nested fields kept as dicts;
    ``machine`` derived where an old manifest lacks it)."""
    import pandas as pd

    records = [{**{k: v for k, v in r.items() if k != "kind"}, "machine": machine_of(r), "path": str(path)}
               for path in _paths(paths, root) for r in read_records(path) if r.get("kind") == "manifest"]
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=[*MANIFEST_COLUMNS, "path"])
    return _typed(frame, MANIFEST_COLUMNS)
