"""Guards of a results file: one writer at a time (``ResultsLock``), and the one-line ``ResultsError`` for what a
user can fix about a results file or folder (unwritable, full, locked, of another sweep or a newer schema).

``bench.store`` raises them and re-exports both; the CLI prints a ``ResultsError`` as one line and exits 2.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class ResultsError(ValueError):
    """A results file or folder a user can fix (unwritable, locked, newer schema, another sweep's): one line."""


def unwritable(path: Path, exc: OSError, action: str = "write") -> ResultsError:
    """The one-line error for a results path the OS refused (no space, read-only, not a folder, ...)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        fix = "free space (or raise the file-size limit), then rerun with --resume"
    else:
        fix = "pass a writable --out-dir"
    return ResultsError(f"cannot {action} {path}: {reason}; {fix}")


class ResultsLock:
    """One writer per results file: an exclusive ``flock`` on ``<file>.lock``, which holds the holder's pid.

    A second run on the same file raises ``ResultsError`` naming the holder. The kernel drops the lock when its
    holder dies, so a lock file left by a killed run is stale and simply taken over. The lock file is removed on
    release; a run that locked a file another run just removed tries again.
    """

    def __init__(self, results: str | Path):
        self.path = Path(f"{results}.lock")
        self._fd: int | None = None

    def acquire(self) -> "ResultsLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while self._fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                if not self._lock(fd):
                    raise ResultsError(f"{self.path.with_suffix('')} is being written by another run "
                                       f"(pid {self._holder(fd)}); wait for it to finish or pass another --out-dir")
                if self._same_file(fd):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                    self._fd = fd
                else:
                    os.close(fd)
        except OSError as exc:
            raise unwritable(self.path.parent, exc, "write results under") from None
        return self

    @staticmethod
    def _lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            return os.pread(fd, 32, 0).decode().strip() or "unknown"
        finally:
            os.close(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ResultsLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
