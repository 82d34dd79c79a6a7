"""Atomic writes: a temp file in the target folder, then rename, so readers never see half."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``target``; it replaces ``target`` only if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it (mkstemp makes it 0600),
    so shared outputs stay readable by the team as the process umask intends.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | Path, payload: Any) -> None:
    write_text_atomic(target, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (artifacts and sample files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(target: Path, without: str) -> Iterator[bool]:
    """Exclusive while one process works on ``target`` (POSIX ``flock`` on the hidden file
    ``.<name>.lock`` next to it, released by the kernel if the process dies). Yields whether
    the lock is held: without ``fcntl`` (Windows) or on a filesystem that refuses locks (NFS
    without a lock daemon, Lustre without flock) it yields False, and a refused lock is logged
    with ``without`` (what the caller does instead)."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            logging.getLogger(__name__).warning(
                "cannot lock %s (%s); %s", handle.name, error, without
            )
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
