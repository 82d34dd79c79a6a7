"""Build samples once per (data, task, sampling, ingest) configuration and reuse them.

A sweep of 20 runs over model settings shares one cache entry. An entry is built inside a
temporary folder and renamed into place, so a crash or a concurrent run never leaves a
half-written entry that a later run would read; concurrent runs that need the same entry (a
sweep on a parallel launcher) wait on a lock file for the first builder instead of each
building it. The key covers the input files (size, mtime), every setting, the salt in use
(never the salt itself) and the builder's source code.

The manifest records the SHA-256 of every sample file, checked each time the entry is reused:
a file damaged after the fact (a bad disk, a partial copy of the cache, a hand edit) is found
before training reads it, and the entry is rebuilt. Temp folders left by a killed builder are
removed by the next builder of the same entry. Running out of disk while building is an
``CacheSpaceError`` that names the folder and the free space, not a bare Parquet error.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq import __version__
from engage_seq.common.errors import EngageSeqError
from engage_seq.common.io import exclusive_lock, file_sha256
from engage_seq.data.build import BuildResult, EventSource, build_in_memory, build_sharded
from engage_seq.data.encoding import Vocabulary, attribute_order, ordered_numeric_scaling
from engage_seq.data.ingest import FileEventSource, IngestConfig, salt_fingerprint
from engage_seq.data.sampling import CutoffPlan, SamplingConfig
from engage_seq.data.schema import ColumnMapping
from engage_seq.data.tasks import Task

log = logging.getLogger(__name__)
CACHE_FORMAT_VERSION = 6  # 3: per-file SHA-256 in the manifest; 4: explicit attribute order;
# 5: every sample carries its full-history aggregates (agg_* columns, data.aggregates);
# 6: first_h/<target> among them
# errno values (and the "os error N" Polars puts in its messages) that mean "no room left"
_NO_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this filesystem or process limit",
}


class CacheSpaceError(EngageSeqError, OSError):
    """The sample cache's disk (or quota, or file-size limit) ran out while building."""


class CacheEntryDamaged(EngageSeqError):
    """A cached entry no longer matches its manifest; the caller rebuilds it."""


@dataclass
class PreparedSamples:
    """Samples of every split (one Parquet file per shard) plus what was fitted on the
    training period. ``samples`` loads all shards on first use; ``scan()`` stays lazy."""

    files: list[Path]
    vocabulary: dict[str, list[str]]
    numeric_scaling: dict[str, dict[str, float]]
    plan: CutoffPlan
    report: dict[str, Any]
    cache_dir: Path
    preloaded: pl.DataFrame | None = None

    def scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.files)

    @cached_property
    def samples(self) -> pl.DataFrame:
        return self.preloaded if self.preloaded is not None else pl.read_parquet(self.files)

    def split(self, name: str) -> pl.DataFrame:
        return self.samples.filter(pl.col("split") == name)

    @property
    def fitted_vocabulary(self) -> Vocabulary:
        """The token maps as a `Vocabulary`, attributes in the model's order (``vocabulary``
        keeps the declared order: fresh from the builder, or restored from the manifest)."""
        return Vocabulary.from_lists(self.vocabulary, attribute_order(self.vocabulary))


def _code_fingerprint() -> str:
    """Hash of the code that decides sample contents: editing it invalidates the cache. That
    is every module of ``engage_seq/data/`` but this one, and of ``engage_seq/synthetic/``
    (the built-in source), read by path so the data layer never imports the generator. A
    list of "the modules that matter" would go stale as modules are split; all of them is
    at worst one rebuild too many."""
    package = Path(__file__).resolve().parent.parent
    files = [p for p in sorted((package / "data").glob("*.py")) if p.name != Path(__file__).name]
    files += sorted((package / "synthetic").glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig,
) -> str:
    payload = {
        "format": CACHE_FORMAT_VERSION,
        "engage_seq": __version__,
        "code": _code_fingerprint(),
        "polars": pl.__version__,  # unkeyed user hashes are only stable within a version
        "source": source.fingerprint(),
        "mapping": asdict(mapping),
        "task": {"type": type(task).__name__, **asdict(task)},
        "sampling": asdict(sampling),
        "ingest": asdict(ingest),
        # an edited opt-out list must rebuild: cached samples would still hold those users
        "opt_out": (
            FileEventSource(ingest.opt_out_path).fingerprint() if ingest.opt_out_path else None
        ),
        "salt": salt_fingerprint(ingest),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _manifest(result: BuildResult) -> dict[str, Any]:
    return {
        "files": [f.name for f in result.files],
        "sha256": {f.name: file_sha256(f) for f in result.files},
        "vocabulary": result.vocabulary,
        "numeric_scaling": result.numeric_scaling,
        # JSON sorts keys: the attribute order (the model's axes) is stored explicitly
        "categorical_attributes": attribute_order(result.vocabulary),
        "numeric_attributes": list(result.numeric_scaling),
        "plan": {
            "train": result.plan.train,
            "val": result.plan.val,
            "test": result.plan.test,
            "horizon_seconds": result.plan.horizon_seconds,
        },
        "report": result.report,
    }


def _build_entry(
    entry: Path,
    source: EventSource,
    mapping: ColumnMapping,
    task: Task,
    sampling: SamplingConfig,
    ingest: IngestConfig,
) -> BuildResult:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        builder = build_sharded if sampling.shards > 1 else build_in_memory
        try:
            result = builder(source, mapping, task, sampling, ingest, tmp)
            (tmp / "manifest.json").write_text(json.dumps(_manifest(result), indent=2))
        except (OSError, pl.exceptions.PolarsError) as error:
            reason = _no_space_reason(error)
            if reason is None:
                raise
            raise _space_error(entry, tmp, reason, error) from error
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "manifest.json").exists():  # not a concurrent writer: re-raise
                raise
        result.files = [entry / f.name for f in result.files]
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _no_space_reason(error: BaseException) -> str | None:
    """Why a write failed for lack of room, or None for any other failure. Polars reports
    I/O failures from its Rust writers as ``ComputeError("... (os error 28)")``."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return _NO_SPACE[error.errno]
    text = str(error)
    return next((why for code, why in _NO_SPACE.items() if f"os error {code})" in text), None)


def _space_error(entry: Path, tmp: Path, reason: str, error: BaseException) -> CacheSpaceError:
    written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    free = shutil.disk_usage(entry.parent).free
    return CacheSpaceError(
        errno.ENOSPC,
        f"cannot build the sample cache entry {entry.name} in {entry.parent}: {reason} "
        f"({_size(written)} written before it failed, {_size(free)} free there then; the "
        f"partial entry was removed; if Polars spills to another disk, POLARS_TEMP_DIR, that one "
        f"may be the full one). Free some space (old samples-* entries in that "
        f"folder can be deleted: they are rebuilt when needed), or point the cache at a bigger "
        f"disk with cache_dir=... or ENGAGE_SEQ_CACHE_DIR. ({type(error).__name__}: {error})",
    )


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:,.0f} {unit}" if unit == "B" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


def _remove_stale_temp_folders(entry: Path) -> None:
    """Delete what killed builders left in the cache folder. Called while holding ``entry``'s
    lock, so its own temp folders belong to no live builder; another entry's go only if its
    lock can be taken at once (nobody is building it), so a key that changed since the crash
    (an edited input, another sweep setting) does not leave gigabytes behind."""
    import fcntl  # only called with a lock held, so fcntl exists

    for stale in sorted(entry.parent.glob(".samples-*-*")):
        owner = stale.name[1:].rpartition("-")[0].split("-damaged")[0]  # samples-<key>
        if not stale.is_dir() or not owner.startswith("samples-"):
            continue
        if owner != entry.name:
            with open(entry.parent / f".{owner}.lock", "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # being built right now
                _remove_folder(stale, owner)
                fcntl.flock(lock, fcntl.LOCK_UN)
        else:
            _remove_folder(stale, owner)


def _remove_folder(stale: Path, owner: str) -> None:
    size = sum(f.stat().st_size for f in stale.rglob("*") if f.is_file())
    log.warning(
        "removing %s (%s) left by an interrupted build of %s", stale.name, _size(size), owner
    )
    shutil.rmtree(stale, ignore_errors=True)


def _set_aside(entry: Path) -> None:
    """Move a damaged entry out of the way, then delete it. The rename is atomic, so a reader
    sees the whole entry or none, and without a lock a concurrent rebuild is never deleted
    (the rename of an entry that another process already replaced fails instead)."""
    aside = entry.parent / f".{entry.name}-damaged-{os.getpid()}"
    try:
        os.rename(entry, aside)
    except OSError:
        return  # gone already: another process set it aside or rebuilt it
    shutil.rmtree(aside, ignore_errors=True)


def _read_verified_manifest(entry: Path) -> dict[str, Any]:
    """The entry's manifest, once every sample file matches its recorded SHA-256."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        expected = manifest["sha256"]
        names = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CacheEntryDamaged(f"its manifest is unreadable ({error})") from error
    started = time.perf_counter()
    for name in names:
        path = entry / name
        if not path.is_file():
            raise CacheEntryDamaged(f"{name} is missing")
        if name not in expected or file_sha256(path) != expected[name]:
            raise CacheEntryDamaged(f"{name} does not match the SHA-256 in its manifest")
    seconds = time.perf_counter() - started
    level = logging.INFO if seconds > 1.0 else logging.DEBUG  # large entries: say where it went
    log.log(level, "verified the SHA-256 of %d sample files in %.1f s", len(names), seconds)
    return manifest


@contextlib.contextmanager
def _build_lock(entry: Path) -> Iterator[bool]:
    """Exclusive while one process builds ``entry`` (POSIX ``flock``; released if it dies).

    Without ``fcntl`` (Windows), or on a filesystem that refuses locks (NFS without a lock
    daemon, Lustre without flock), concurrent builders stay correct through the atomic rename,
    only wasteful. Yields whether the lock is held (only then may stale temp folders go).
    """
    with exclusive_lock(entry, "building without the lock") as held:
        yield held


def prepare_samples(
    source: EventSource,
    task: Task,
    sampling: SamplingConfig,
    cache_dir: str | Path,
    mapping: ColumnMapping | None = None,
    ingest: IngestConfig | None = None,
) -> PreparedSamples:
    """Samples for ``task``, from the cache when this configuration was built before."""
    mapping = mapping or ColumnMapping()
    ingest = ingest or IngestConfig()
    entry = Path(cache_dir) / f"samples-{cache_key(source, mapping, task, sampling, ingest)}"
    manifest = _reusable_manifest(entry, warn=False)
    if manifest is None:
        with _build_lock(entry) as locked:
            manifest = _reusable_manifest(entry)  # somebody may have built it while we waited
            if manifest is None:
                if locked:
                    _remove_stale_temp_folders(entry)
                if entry.exists():  # damaged: rebuilt from scratch, never patched
                    _set_aside(entry)
                log.info("building samples into %s", entry)
                result = _build_entry(entry, source, mapping, task, sampling, ingest)
                return PreparedSamples(
                    result.files,
                    result.vocabulary,
                    result.numeric_scaling,
                    result.plan,
                    result.report,
                    entry,
                    preloaded=result.samples,
                )
    log.info("reusing cached samples from %s", entry)
    plan = manifest["plan"]
    return PreparedSamples(
        files=[entry / name for name in manifest["files"]],
        vocabulary={
            column: manifest["vocabulary"][column]
            for column in ["event_type", "channel", *manifest["categorical_attributes"]]
        },
        numeric_scaling=ordered_numeric_scaling(
            manifest["numeric_scaling"], manifest["numeric_attributes"]
        ),
        plan=CutoffPlan(
            tuple(plan["train"]), tuple(plan["val"]), tuple(plan["test"]), plan["horizon_seconds"]
        ),
        report=manifest["report"],
        cache_dir=entry,
    )


def _reusable_manifest(entry: Path, warn: bool = True) -> dict[str, Any] | None:
    """The verified manifest of a complete entry; None when it must be (re)built."""
    if not (entry / "manifest.json").exists():
        return None
    try:
        return _read_verified_manifest(entry)
    except CacheEntryDamaged as damage:
        if warn:
            log.warning("the cached samples in %s are damaged: %s; rebuilding them", entry, damage)
        return None
