"""Build samples once per (data, task, sampling, ingest) configuration and reuse them.

A sweep of 20 runs over model settings shares one cache entry. An entry is built inside a
temporary folder and renamed into place, so a crash or a concurrent run never leaves a
half-written entry that a later run would read; concurrent runs that need the same entry (a
sweep on a parallel launcher) wait on a lock file for the first builder instead of each
building it. The key covers the input files (size, mtime), every setting, the salt in use
(never the salt itself) and the builder's source code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from engage_seq import __version__
from engage_seq.build import BuildResult, EventSource, build_in_memory, build_sharded
from engage_seq.ingest import FileEventSource, IngestConfig, salt_fingerprint
from engage_seq.schema import ColumnMapping
from engage_seq.sequences import CutoffPlan, SamplingConfig, Task

log = logging.getLogger(__name__)
CACHE_FORMAT_VERSION = 2


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


def _code_fingerprint() -> str:
    """Hash of the modules that decide sample contents: editing them invalidates the cache."""
    from engage_seq import build, ingest, schema, sequences, synthetic

    digest = hashlib.sha256()
    for module in (schema, ingest, sequences, build, synthetic):
        digest.update(Path(module.__file__ or "").read_bytes())
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
        "vocabulary": result.vocabulary,
        "numeric_scaling": result.numeric_scaling,
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
        result = builder(source, mapping, task, sampling, ingest, tmp)
        (tmp / "manifest.json").write_text(json.dumps(_manifest(result), indent=2))
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


@contextlib.contextmanager
def _build_lock(entry: Path) -> Iterator[None]:
    """Exclusive while one process builds ``entry`` (POSIX ``flock``; released if it dies).

    Without ``fcntl`` (Windows), or on a filesystem that refuses locks (NFS without a lock
    daemon, Lustre without flock), concurrent builders stay correct through the atomic rename,
    only wasteful.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.parent / f".{entry.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            log.warning("cannot lock %s (%s); building without the lock", handle.name, error)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    if not (entry / "manifest.json").exists():
        with _build_lock(entry):
            if not (entry / "manifest.json").exists():  # nobody built it while we waited
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
    manifest = json.loads((entry / "manifest.json").read_text())
    plan = manifest["plan"]
    return PreparedSamples(
        files=[entry / name for name in manifest["files"]],
        vocabulary=manifest["vocabulary"],
        numeric_scaling=manifest["numeric_scaling"],
        plan=CutoffPlan(
            tuple(plan["train"]), tuple(plan["val"]), tuple(plan["test"]), plan["horizon_seconds"]
        ),
        report=manifest["report"],
        cache_dir=entry,
    )
