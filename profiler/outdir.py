"""The output folder of a profile: checked and locked before anything is measured or written.

`prepare_out` refuses, with one InputError line (exit status 2), an `--out` that

- cannot be a writable folder (it is a file, lies below a regular file, or is in a read-only folder);
- lies inside the submission directory (the reports would become part of the submission's files);
- holds another codec's report (`report.json` → `submission.codec`): refused for the default folder,
  allowed when `--out` names the folder explicitly, and always refused with `--resume`;
- is being written by another profile right now (an exclusive `fcntl.flock` on `LOCK_NAME` inside it,
  held until the profile and its tables are written).

The lock file stays in the folder afterwards (removing it would race with a second profile taking it);
`submission.files_hash` skips it, and any folder holding it, should an output folder sit in a submission.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from .errors import InputError

LOCK_NAME = ".jpegai-profile.lock"
OPTION = "--out"
WHERE = "command line"


class OutLock:
    """An exclusive lock on an output folder; a context manager that releases it on exit."""

    def __init__(self, out_dir: Path, fd: int):
        self.out_dir = out_dir
        self._fd: int | None = fd

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "OutLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a lock never outlives its owner, even if `release` was forgotten
        self.release()


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _report_codec(path: Path) -> str | None:
    """The codec a report.json in the folder belongs to; None when there is none or it cannot be read
    (an unreadable report is for `--resume` to judge, see runner.resumable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sub = data.get("submission") if isinstance(data, dict) else None
    codec = sub.get("codec") if isinstance(sub, dict) else None
    return codec if isinstance(codec, str) else None


def prepare_out(out_dir: Path | str, submission_dir: Path | str, codec_name: str, explicit: bool,
                resume: bool) -> OutLock:
    """Check `out_dir`, create it if needed, and lock it; the lock is released on leaving the `with`.

    `explicit`: the user named the folder with `--out` (so another codec's report there may be replaced);
    `resume`: `--resume` was given (another codec's report is then always refused).
    """
    out_dir = Path(out_dir)
    resolved = out_dir.resolve()
    sub = Path(submission_dir).resolve()
    if resolved == sub or resolved.is_relative_to(sub):
        raise InputError(WHERE, OPTION, f"{out_dir} is inside the submission directory {sub}; "
                                        "write the reports elsewhere (the submission's files are fingerprinted)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(WHERE, OPTION, f"{out_dir} exists and is not a folder")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a parent is a regular file
        raise InputError(WHERE, OPTION, f"cannot create {out_dir}: a parent is not a folder") from None
    except NotADirectoryError:
        raise InputError(WHERE, OPTION, f"cannot create {out_dir}: a parent is not a folder") from None
    except OSError as exc:
        raise InputError(WHERE, OPTION, f"cannot create {out_dir}: {_reason(exc)}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(WHERE, OPTION, f"{out_dir} is not writable")
    lock_path = out_dir / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise InputError(WHERE, OPTION, f"{out_dir} is not writable ({_reason(exc)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            holder = ""
            try:
                pid = lock_path.read_text().strip()
                holder = f" (pid {pid})" if pid.isdigit() else ""
            except OSError:
                pass
            raise InputError(WHERE, OPTION, f"another jpegai-profile{holder} is writing into {out_dir}; "
                                            "wait for it or choose another --out") from None
        raise InputError(WHERE, OPTION, f"cannot lock {lock_path} ({_reason(exc)})") from None
    lock = OutLock(out_dir, fd)
    try:
        if not created:
            other = _report_codec(out_dir / "report.json")
            if other is not None and other != codec_name:
                if resume:
                    raise InputError(WHERE, OPTION, f"{out_dir / 'report.json'} is a report of codec {other!r}, "
                                                    f"not {codec_name!r}: --resume cannot continue it")
                if not explicit:
                    raise InputError(WHERE, OPTION, f"{out_dir} holds a report of codec {other!r}, not "
                                                    f"{codec_name!r}; name the folder with --out to replace it")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        lock.release()
        raise
    return lock
