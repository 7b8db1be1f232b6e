"""Helpers of the reliability tests: the sweep driver as a subprocess, and a hash of a results folder."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable


def env() -> dict[str, str]:
    """This process's environment with the project (and tests/) first on PYTHONPATH."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), out.get("PYTHONPATH", "")])
    return out


def driver(out_dir: Path, n: int, *args: str, **kw) -> subprocess.Popen:
    """Start ``sweep_driver.py OUT_DIR N ARGS`` (the fake sweep as a parent process of its own)."""
    return subprocess.Popen([PYTHON, str(HERE / "sweep_driver.py"), str(out_dir), str(n), *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def folder_hash(folder: Path) -> str:
    """sha256 over every file's relative path and bytes under ``folder`` (missing folder: a fixed value)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
