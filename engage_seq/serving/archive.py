"""The first check on an artifact, before torch parses anything: a bounded zip archive.

`check_archive`: the file is readable, a zip, and its directory stays inside `ArchiveLimits`
(entries, each entry's and the total inflated size, and the compression ratio of large
entries), so a small file cannot make the loader inflate gigabytes. torch's reader inflates
each record to the size the zip directory declares (checked on torch 2.13: a directory that
lies smaller is read only that far), so the directory is what bounds memory. The file is read
once (`read_artifact_bytes`), and every later check and the load use those bytes
(`engage_seq.serving.loading`). Standard library only.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

from engage_seq.common.errors import EngageSeqError

LIMITS_ENV = "ENGAGE_SEQ_ARTIFACT_LIMITS"
_SIZE = re.compile(r"(\d+)\s*([KMG]?)i?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_ZIP_MAGIC = b"PK\x03\x04"


class ArtifactIntegrityError(EngageSeqError, ValueError):
    """The artifact is not the file engage-export wrote (or cannot be shown to be)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What an artifact's zip directory may declare before torch is allowed to inflate it.

    Measured: engage-export artifacts of the default LSTM and Transformer are 0.2-0.3 MB with
    66-97 entries; tensors are stored uncompressed (ratio 1) and the deflated code files reach
    ratio ~4. The defaults leave room for vocabularies of millions of values (a 1M x 64 float
    embedding is 256 MB) while refusing a deflated 3 GB record: deflate reaches ~1000x on
    repetitive data, so a bomb of any size over ``ratio_floor`` is caught by ``max_ratio``, and
    ``max_total`` bounds what even an honest-looking (stored) archive can make us allocate.
    A small entry may have any ratio (short code files compress well), but not thousands of
    them: the whole archive, once it inflates past ``ratio_floor``, is held to ``ratio`` too
    (total inflated / total compressed), or many 1 MiB entries of zeros would inflate ~2 GiB
    from a few MB.
    Override with ``ENGAGE_SEQ_ARTIFACT_LIMITS`` (e.g. ``total=4G,entry=2G,ratio=200``).
    """

    total: int = 2 << 30  # bytes, all entries inflated
    entry: int = 1 << 30  # bytes, any one entry inflated
    entries: int = 10_000
    ratio: int = 100  # inflated / compressed, per entry and overall, past ratio_floor bytes
    ratio_floor: int = 1 << 20

    @classmethod
    def from_env(cls) -> ArchiveLimits:
        """The defaults, with any ``key=value`` of ``ENGAGE_SEQ_ARTIFACT_LIMITS`` applied
        (sizes take K/M/G suffixes, powers of 1024)."""
        text = os.environ.get(LIMITS_ENV, "").strip()
        if not text:
            return cls()
        names = [f.name for f in fields(cls)]
        changes = {}
        for item in (i.strip() for i in text.split(",") if i.strip()):
            key, _, value = item.partition("=")
            size = _SIZE.fullmatch(value.strip())
            if key.strip() not in names or size is None:
                raise ArtifactIntegrityError(
                    f"{LIMITS_ENV}: cannot read {item!r}; use key=value pairs with keys "
                    f"{names} and whole numbers (sizes may end in K, M or G), e.g. total=4G"
                )
            changes[key.strip()] = int(size[1]) * _UNITS[size[2].upper()]
        return replace(cls(), **changes)


def read_artifact_bytes(path: str | Path, limits: ArchiveLimits | None = None) -> bytes:
    """The artifact's bytes, read once, through one open file handle.

    Every check then runs on these bytes and torch loads these same bytes, so a file swapped
    on disk between the checks and the load (the threat signatures exist for) changes nothing.
    A file larger than ``limits.total`` is refused from its ``fstat`` size before any of it is
    read: a zip is never larger than what it inflates to plus its headers, so nothing honest is
    refused, and memory stays bounded by the same limit.
    """
    path = Path(path)
    limits = limits or ArchiveLimits.from_env()
    if not path.exists():
        raise ArtifactIntegrityError(f"artifact {path} does not exist")
    if path.is_dir():
        raise ArtifactIntegrityError(f"artifact {path} is a folder; pass the .pt file in it")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limits.total:
                raise ArtifactIntegrityError(
                    f"{path} is {size:,} bytes (limit total={limits.total:,}); refused before "
                    f"loading; if you trust this file, raise the limit with {LIMITS_ENV} "
                    "(e.g. total=4G)"
                )
            # read one byte past the size seen: a file that grew meanwhile is refused too
            data = handle.read(limits.total + 1)
    except PermissionError:
        raise ArtifactIntegrityError(
            f"cannot read {path}: permission denied; give the user running this read access"
        ) from None
    except OSError as exc:
        raise ArtifactIntegrityError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limits.total:
        raise ArtifactIntegrityError(
            f"{path} grew past {limits.total:,} bytes while it was read; refused before loading"
        )
    return data


def _read_directory(path: Path, data: bytes) -> list[zipfile.ZipInfo]:
    """The zip directory of ``data`` (the bytes of ``path``); every way it can fail gets its
    own words."""
    head = data[: len(_ZIP_MAGIC)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        if head == _ZIP_MAGIC:  # a zip's first bytes, its directory at the end lost
            raise ArtifactIntegrityError(
                f"{path} is truncated or damaged (a zip archive whose directory cannot "
                f"be read: {exc}); copy it again or re-export it"
            ) from None
        raise ArtifactIntegrityError(
            f"{path} is not a TorchScript artifact ("
            + ("an empty file" if not head else "not a zip archive")
            + "); pass a file written by engage-export"
        ) from None


def check_archive(
    path: str | Path, limits: ArchiveLimits | None = None, *, data: bytes | None = None
) -> bytes:
    """Refuse a foreign, unreadable or oversized file before torch parses it: a TorchScript
    archive is a zip with a ``<name>/data.pkl`` and ``<name>/code/`` inside, and its directory
    must stay inside ``limits`` (None: `ArchiveLimits.from_env`). Inflates nothing.

    ``data``: the file's bytes, already read (`read_artifact_bytes`); returns the bytes checked,
    so a caller loads exactly those and never opens the path again.
    """
    path = Path(path)
    limits = limits or ArchiveLimits.from_env()
    if data is None:
        data = read_artifact_bytes(path, limits)
    entries = _read_directory(path, data)
    what_to_do = (
        f"refused before loading; if you trust this file, raise the limit with {LIMITS_ENV} "
        "(e.g. total=4G)"
    )
    if len(entries) > limits.entries:
        raise ArtifactIntegrityError(
            f"{path} holds {len(entries):,} zip entries (limit entries={limits.entries:,}); "
            + what_to_do
        )
    for entry in entries:
        name = entry.filename[:80]
        if entry.file_size > limits.entry:
            raise ArtifactIntegrityError(
                f"{path}: entry {name!r} inflates to {entry.file_size:,} bytes (limit "
                f"entry={limits.entry:,}); " + what_to_do
            )
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= limits.ratio_floor and ratio > limits.ratio:
            raise ArtifactIntegrityError(
                f"{path}: entry {name!r} inflates {entry.compress_size:,} bytes to "
                f"{entry.file_size:,} ({ratio:,.0f}x; limit ratio={limits.ratio}): a zip "
                "bomb, not an engage-export artifact; " + what_to_do
            )
    total = sum(e.file_size for e in entries)
    if total > limits.total:
        raise ArtifactIntegrityError(
            f"{path} inflates to {total:,} bytes (limit total={limits.total:,}); " + what_to_do
        )
    packed = sum(e.compress_size for e in entries)
    overall = total / max(packed, 1)
    if total >= limits.ratio_floor and overall > limits.ratio:
        raise ArtifactIntegrityError(
            f"{path}: its {len(entries):,} entries inflate {packed:,} bytes to {total:,} "
            f"({overall:,.0f}x overall; limit ratio={limits.ratio}): a zip bomb, not an "
            "engage-export artifact; " + what_to_do
        )
    names = [e.filename for e in entries]
    if not any(n.endswith("/data.pkl") for n in names) or not any("/code/" in n for n in names):
        raise ArtifactIntegrityError(
            f"{path} is not a TorchScript artifact (a zip without TorchScript code and data); "
            "pass a file written by engage-export"
        )
    return data
