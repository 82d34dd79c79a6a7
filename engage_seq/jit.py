"""Loading TorchScript artifacts (torch only, no model classes: used by export and scoring).

Integrity: `engage-export` writes ``<artifact>.sha256`` next to every artifact (the
``sha256sum`` format, so ``sha256sum -c model.pt.sha256`` works in the artifact's folder), and
every loader here checks the file against it *before* ``torch.jit.load`` parses anything. A
mismatch is always refused. A missing sidecar is refused too unless the caller allows it
(``allow_unverified=True``, ``engage-score --allow-unverified`` or the environment variable
``ENGAGE_SEQ_ALLOW_UNVERIFIED=1``), for artifacts assembled by hand or by older versions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from engage_seq.io import file_sha256, write_text_atomic

METADATA_FILE = "metadata.json"
SIDECAR_SUFFIX = ".sha256"
ALLOW_UNVERIFIED_ENV = "ENGAGE_SEQ_ALLOW_UNVERIFIED"
# torch 2.13 deprecates TorchScript; it is still the format our users asked for, so exactly
# that warning is silenced around the jit calls, nothing else.
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
_HEX = re.compile(r"[0-9a-f]{64}")


class ArtifactIntegrityError(ValueError):
    """The artifact is not the file engage-export wrote (or cannot be shown to be)."""


@contextlib.contextmanager
def quiet_jit_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        yield


def sidecar_path(artifact: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.sha256``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def write_sidecar(artifact: str | Path, digest: str | None = None) -> Path:
    """Write ``<artifact>.sha256`` ("<hex>  <name>", as ``sha256sum`` does) atomically.

    Call it only once the artifact is in its final place (export does, after the rename), so a
    sidecar can never vouch for a file that is still being written. Also re-signs a file you
    changed on purpose.
    """
    artifact = Path(artifact)
    digest = digest or file_sha256(artifact)
    target = sidecar_path(artifact)
    write_text_atomic(target, f"{digest}  {artifact.name}\n")
    return target


def read_sidecar(artifact: str | Path) -> str | None:
    """The recorded hex digest, or None when there is no sidecar."""
    target = sidecar_path(artifact)
    if not target.is_file():
        return None
    fields = target.read_text(errors="replace").split(maxsplit=1)
    digest = fields[0].lower() if fields else ""
    if not _HEX.fullmatch(digest):
        raise ArtifactIntegrityError(
            f"{target} is not a sha256sum line ('<64 hex digits>  <file name>'); "
            f"re-export {Path(artifact).name} or restore the original sidecar"
        )
    return digest


def _allowed_by_env() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in ("1", "true", "yes")


def verify_artifact(
    path: str | Path, allow_unverified: bool | None = None, expected_sha256: str | None = None
) -> str | None:
    """Check the file against its sidecar (or ``expected_sha256``); returns the digest, or None
    when there was nothing to check and that was allowed.

    ``allow_unverified`` (None: the ``ENGAGE_SEQ_ALLOW_UNVERIFIED`` variable) only excuses a
    *missing* sidecar; a digest that does not match is refused whatever the setting.
    """
    path = Path(path)
    expected = expected_sha256 or read_sidecar(path)
    if expected is None:
        allowed = _allowed_by_env() if allow_unverified is None else allow_unverified
        if allowed:
            return None
        raise ArtifactIntegrityError(
            f"{path} has no {sidecar_path(path).name} to verify it against; re-export it with "
            f"engage-export, or if you trust the file pass --allow-unverified (engage-score) / "
            f"allow_unverified=True, or set {ALLOW_UNVERIFIED_ENV}=1"
        )
    found = file_sha256(path)
    if found != expected.lower():
        raise ArtifactIntegrityError(
            f"{path} was modified after export (sha256 {found[:12]}… ≠ {expected[:12]}… in "
            f"{sidecar_path(path).name}); re-export it or restore the original"
        )
    return found


def check_archive(path: str | Path) -> None:
    """Refuse a foreign file before torch parses it: a TorchScript archive is a zip with a
    ``<name>/data.pkl`` and ``<name>/code/`` inside."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactIntegrityError(f"artifact {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ArtifactIntegrityError(
            f"{path} is not a TorchScript artifact (not a zip archive); pass a file written "
            "by engage-export"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.endswith("/data.pkl") for n in names) or not any("/code/" in n for n in names):
        raise ArtifactIntegrityError(
            f"{path} is not a TorchScript artifact (a zip without TorchScript code and data); "
            "pass a file written by engage-export"
        )


def load_artifact(
    path: str | Path,
    *,
    allow_unverified: bool | None = None,
    expected_sha256: str | None = None,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Verify (`verify_artifact`), then torch.jit.load plus the parsed metadata (what any
    consumer does, shown once here). Raises `ArtifactIntegrityError` before loading."""
    check_archive(path)
    verify_artifact(path, allow_unverified, expected_sha256)
    extra = {METADATA_FILE: ""}
    with quiet_jit_deprecation():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
