"""engage-score's files as one unit, and nothing with raw ids left behind by a killed run.

Users rely on ``scores.parquet`` being a file with ``scores_top.parquet`` (``--top-out``) and
``scores.parquet.report.json`` next to it, so the outputs cannot be one folder renamed once.
Instead the report is the manifest (`write_outputs`):

1. every file is written into a staging folder ``.<out>-staging-XXXX`` next to ``--out`` (the
   same disk, so each move is one atomic rename);
2. the report, listing the SHA-256 of every other file, is written there too;
3. the previous report is removed, then the scores, the top list and, last, the report are
   renamed into place.

After a kill at any instant the folder holds the previous complete set and its report, or no
report at all (files of two runs, never vouched for), or the new complete set. A reader
trusts the files only when the report exists and they match its ``files``
(`check_score_outputs`).

Staging and ``--shards`` folders hold raw ids. A run creates them only while it holds
``.<out>.lock`` (``flock``, released by the kernel when the process dies), so whatever
matches their names while the lock is free was left by a killed run: any later run to the
same ``--out`` removes it, at its start (with or without ``--shards``, and before reading
the input, so a run that then fails still cleans) and again before it writes. Without
``flock`` (Windows, some network filesystems) nothing is removed automatically.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.io import atomic_path, exclusive_lock, file_sha256

log = logging.getLogger(__name__)

Writer = Callable[[Path], None]  # writes one output file at the path it is given


class IncompleteOutputsError(EngageSeqError, ValueError):
    """Score files that no complete engage-score run vouches for: rerun engage-score."""


def report_path(out: Path) -> Path:
    """``scores.parquet`` -> ``scores.parquet.report.json`` (the manifest)."""
    return out.with_name(out.name + ".report.json")


def _prefix(out: Path, kind: str) -> str:
    return f".{out.name}-{kind}-"


def leftovers(out: Path, others: Sequence[Path] = ()) -> list[Path]:
    """What killed runs to ``out`` can leave: staging and shard folders next to it, and
    ``.<name>.*.tmp`` files next to any of its outputs (``others``: e.g. a ``--top-out`` in
    another folder; older versions wrote such temp files, and a move across disks does)."""
    found = [
        path
        for kind in ("staging", "shards")
        for path in out.parent.glob(glob.escape(_prefix(out, kind)) + "*")
    ]
    for target in (out, report_path(out), *others):
        found += target.parent.glob(f".{glob.escape(target.name)}.*.tmp")
    return sorted(set(found))


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[bool]:
    """Exclusive while one run writes temp files for ``out`` (``.<out>.lock``); yields whether
    it is held: only then may leftovers be removed."""
    with exclusive_lock(out, "leftovers are not removed") as held:
        yield held


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        log.warning("removing %s, left by an interrupted engage-score run", path.name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def remove_leftovers(out: Path, others: Sequence[Path] = ()) -> int:
    """Remove what killed runs to ``out`` left (raw ids); returns how many. Takes the lock
    only when there is something to remove (waiting for a live run to finish with its own),
    so a run that finds nothing creates no lock file."""
    if not leftovers(out, others):
        return 0
    with output_lock(out) as held:
        if not held:
            return 0
        found = leftovers(out, others)
        _remove(found)
        return len(found)


@contextlib.contextmanager
def shard_workspace(out: Path, shards: int) -> Iterator[Path | None]:
    """A temp folder next to ``out`` (the disk the scores go to) for the ``--shards`` split
    files, or None for ``shards == 1``. The files hold raw ids: the folder goes when the
    block ends, or, after a kill, with the next run's leftovers (the lock is held while it
    exists)."""
    if shards == 1:
        yield None
        return
    with output_lock(out) as held:
        if held:
            _remove(leftovers(out))
        work = Path(tempfile.mkdtemp(prefix=_prefix(out, "shards"), dir=out.parent))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _move(source: Path, target: Path) -> None:
    """Rename into place; across disks (a ``--top-out`` elsewhere) copy next to the target
    first, so the last step is still one rename."""
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _listed_name(target: Path, folder: Path) -> str:
    """How the report names a file: relative to the report's folder."""
    return os.path.relpath(target.resolve(), folder.resolve())


def write_outputs(
    out: Path,
    writers: dict[Path, Writer],
    report: Callable[[], dict[str, Any]],
    manifest: Path | None = None,
) -> dict[str, str]:
    """Write every file of ``writers`` (target -> writer, in rename order) and then
    ``report()`` plus ``files`` (name -> SHA-256) as ``manifest`` (default `report_path(out)`),
    as one unit (see the module docstring). Returns the ``files`` entry. engage-drift and
    engage-backtest use it too, their ``.json`` being the manifest of the other files."""
    manifest = manifest or report_path(out)
    with output_lock(out) as held:
        if held:
            _remove(leftovers(out, list(writers)))
        for target in writers:
            target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_prefix(out, "staging"), dir=out.parent))
        try:
            staged = {}
            for i, (target, write) in enumerate(writers.items()):
                staged[target] = staging / f"{i}-{target.name}"
                write(staged[target])
            files = {_listed_name(t, manifest.parent): file_sha256(p) for t, p in staged.items()}
            text = json.dumps({**report(), "files": files}, indent=2, sort_keys=True) + "\n"
            (staging / "report.json").write_text(text)
            manifest.unlink(missing_ok=True)  # from here to the last rename: no report
            for target, path in staged.items():
                _move(path, target)
            _move(staging / "report.json", manifest)
            return files
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def check_score_outputs(
    out: str | Path, top_out: str | Path | None = None, manifest: str | Path | None = None
) -> dict[str, Any]:
    """The report of the run that wrote ``out``, once every file it lists matches its
    SHA-256 (and ``top_out``, when given, is one of them). Raises
    `IncompleteOutputsError` otherwise: the files are not one complete run's. ``manifest``
    as for `write_outputs` (e.g. ``drift/drift.json`` for ``drift/drift.csv``)."""
    out = Path(out)
    manifest = Path(manifest) if manifest is not None else report_path(out)
    try:
        report = json.loads(manifest.read_text())
        files = report["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except FileNotFoundError:
        raise IncompleteOutputsError(
            f"{manifest} is missing: the files next to it are not from one complete "
            "engage-score run (it was killed or failed while writing); rerun engage-score"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IncompleteOutputsError(
            f"{manifest} lists no files ({error}: damaged, or written by an engage-score "
            "before output manifests); rerun engage-score"
        ) from None
    wanted = [out] + ([Path(top_out)] if top_out is not None else [])
    for target in wanted:
        if _listed_name(target, manifest.parent) not in files:
            raise IncompleteOutputsError(
                f"{target} is not listed in {manifest.name}: it is not from the run that "
                "wrote the report; rerun engage-score"
            )
    for name, digest in files.items():
        file = manifest.parent / name
        if not file.is_file() or file_sha256(file) != digest:
            raise IncompleteOutputsError(
                f"{file} does not match the SHA-256 in {manifest.name} (it is from another "
                "run, or was changed since); rerun engage-score"
            )
    return report
