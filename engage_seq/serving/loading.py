"""Loading TorchScript artifacts (torch only, no model classes: used by export and scoring).

Every loader here runs three checks *before* ``torch.jit.load`` parses anything:

1. **Bounded archive** (`check_archive`, in `engage_seq.serving.archive`): the file is
   readable, a zip, and its directory stays inside `ArchiveLimits` (entries, each entry's and
   the total inflated size, and the compression ratio of large entries), so a small file
   cannot make the loader inflate gigabytes.
2. **Integrity** (`verify_artifact`): `engage-export` writes ``<artifact>.sha256`` (the
   ``sha256sum`` format, so ``sha256sum -c model.pt.sha256`` works in the artifact's folder).
   A mismatch is always refused. A missing sidecar is refused too unless the caller allows it
   (``allow_unverified=True``, ``engage-score --allow-unverified`` or
   ``ENGAGE_SEQ_ALLOW_UNVERIFIED=1``), for artifacts assembled by hand or by older versions.
   This stops accidents (a partial copy, a flipped bit, a file edited by mistake), not an
   attacker: whoever can replace the artifact can recompute its sidecar.
3. **Origin** (`verify_provenance`, keys in `engage_seq.serving.signing`): ``<artifact>.sig``, an
   HMAC-SHA256 of the artifact's SHA-256 under a key only the exporter (and trusted scorers)
   hold. A signature naming other bytes is always refused; one whose HMAC does not verify is
   refused where a key is configured (with no key and no requirement it is not checked, and
   the log says so); a missing one, or one with no key to check it, only when signed
   artifacts are required (``require_signed=True``, ``--require-signed``,
   ``ENGAGE_SEQ_REQUIRE_SIGNED=1``), which is what stops an edited, re-hashed artifact.

The file is read once (`read_artifact_bytes`); the checks and ``torch.jit.load`` all use those
bytes, so a file replaced on disk after it was checked is not what loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from engage_seq.common.io import file_sha256, write_text_atomic
from engage_seq.serving.archive import (
    LIMITS_ENV,
    ArchiveLimits,
    ArtifactIntegrityError,
    check_archive,
    read_artifact_bytes,
)
from engage_seq.serving.signing import (
    REQUIRE_SIGNED_ENV,
    SIGNING_KEY_ENV,
    VERIFY_KEYS_ENV,
    SigningError,
    env_flag,
    read_companion,
    read_signature,
    signature_path,
    signing_key,
    signing_key_that_verifies,
    verification_keys,
    write_signature,
)

__all__ = [  # the archive check lives in engage_seq.serving.archive; loaders import it here
    "ALLOW_UNVERIFIED_ENV",
    "LIMITS_ENV",
    "METADATA_FILE",
    "ArchiveLimits",
    "ArtifactIntegrityError",
    "check_archive",
    "file_sha256",
    "load_artifact",
    "quiet_jit_deprecation",
    "read_artifact_bytes",
    "read_sidecar",
    "sidecar_path",
    "sign_artifact",
    "verify_artifact",
    "verify_provenance",
    "write_sidecar",
]

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
SIDECAR_SUFFIX = ".sha256"
ALLOW_UNVERIFIED_ENV = "ENGAGE_SEQ_ALLOW_UNVERIFIED"
# torch 2.13 deprecates TorchScript; it is still the format our users asked for, so exactly
# that warning is silenced around the jit calls, nothing else.
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
_HEX = re.compile(r"[0-9a-f]{64}")
SIGN_HINT = (
    "python -m engage_seq.serving.signing sign --unsigned-ok <artifact> "
    f"with {SIGNING_KEY_ENV} set, only for an artifact you exported yourself"
)


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
    sidecar can never vouch for a file that is still being written. Also re-hashes a file you
    changed on purpose (then remove its old ``.sig`` and sign it again:
    ``sign_artifact(path, allow_unsigned=True)``).
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
    fields_ = read_companion(target, ArtifactIntegrityError).split(maxsplit=1)
    digest = fields_[0].lower() if fields_ else ""
    if not _HEX.fullmatch(digest):
        raise ArtifactIntegrityError(
            f"{target} is not a sha256sum line ('<64 hex digits>  <file name>'); "
            f"re-export {Path(artifact).name} or restore the original sidecar"
        )
    return digest


def verify_artifact(
    path: str | Path,
    allow_unverified: bool | None = None,
    expected_sha256: str | None = None,
    *,
    data: bytes | None = None,
) -> str | None:
    """Check the file against its sidecar (or ``expected_sha256``); returns the digest, or None
    when there was nothing to check and that was allowed.

    ``allow_unverified`` (None: the ``ENGAGE_SEQ_ALLOW_UNVERIFIED`` variable) only excuses a
    *missing* sidecar; a digest that does not match is refused whatever the setting.
    ``data``: the file's bytes, already read: they are hashed instead of the path, so the
    digest is that of the bytes the caller goes on to use.
    """
    path = Path(path)
    expected = expected_sha256 or read_sidecar(path)
    if expected is None:
        allowed = env_flag(ALLOW_UNVERIFIED_ENV) if allow_unverified is None else allow_unverified
        if allowed:
            return None
        raise ArtifactIntegrityError(
            f"{path} has no {sidecar_path(path).name} to verify it against; re-export it with "
            f"engage-export, or if you trust the file pass --allow-unverified (engage-score) / "
            f"allow_unverified=True, or set {ALLOW_UNVERIFIED_ENV}=1"
        )
    found = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
    if found != expected.lower():
        raise ArtifactIntegrityError(
            f"{path} was modified after export (sha256 {found[:12]}… ≠ {expected[:12]}… in "
            f"{sidecar_path(path).name}); re-export it or restore the original"
        )
    return found


def verify_provenance(
    path: str | Path, digest: str | None = None, require_signed: bool | None = None
) -> str:
    """Check ``<artifact>.sig`` against the configured keys; returns what was established, in
    words, for the log. ``digest``: the file's SHA-256 if already computed.

    A signature that is present is always checked when there is a key to check it with, and
    refused if it does not verify: it names other bytes, or no configured key made it. A
    missing signature (or no key) is refused only when ``require_signed`` (None: the
    ``ENGAGE_SEQ_REQUIRE_SIGNED`` variable); otherwise the artifact is accepted on its
    sidecar alone, and the returned text says so.
    """
    path = Path(path)
    required = env_flag(REQUIRE_SIGNED_ENV) if require_signed is None else require_signed
    how = f"--require-signed / {REQUIRE_SIGNED_ENV}=1"
    try:
        signature = read_signature(path)
        keys = verification_keys() if signature is not None or required else []
    except SigningError as exc:
        raise ArtifactIntegrityError(str(exc)) from None
    sig = signature_path(path).name
    if signature is None:
        if required:
            raise ArtifactIntegrityError(
                f"{path} has no {sig} and signed artifacts are required ({how}); sign it "
                f"({SIGN_HINT}) or re-export it with {SIGNING_KEY_ENV} set"
            )
        return "not signed (integrity only: anyone who can replace the file can re-hash it)"
    digest = digest or file_sha256(path)
    if signature["sha256"] != digest:
        raise ArtifactIntegrityError(
            f"{path} was modified after it was signed (sha256 {digest[:12]}… ≠ "
            f"{signature['sha256'][:12]}… in {sig}); re-export it or restore the original"
        )
    if not keys:
        if required:
            raise ArtifactIntegrityError(
                f"signed artifacts are required ({how}) but there is no key to check {sig} "
                f"with: set {VERIFY_KEYS_ENV} (or {SIGNING_KEY_ENV})"
            )
        return f"signed by key {signature['key_id']}, not checked (no key in {VERIFY_KEYS_ENV})"
    key = signing_key_that_verifies(signature, keys)
    if key is None:
        raise ArtifactIntegrityError(
            f"{signature_path(path)} does not verify with any key in {VERIFY_KEYS_ENV} / "
            f"{SIGNING_KEY_ENV} "
            f"(it names key {signature['key_id']}; configured: "
            f"{', '.join(k.key_id for k in keys)}): the signature is forged, or made with a "
            f"key you rotated out; add that key to {VERIFY_KEYS_ENV}, or re-export it"
        )
    return f"signed by key {key.key_id} at {signature['signed_at']}, signature valid"


def sign_artifact(path: str | Path, *, allow_unsigned: bool = False) -> Path:
    """Write ``<artifact>.sig`` with ``ENGAGE_SEQ_SIGNING_KEY``, to re-sign artifacts after a
    key rotation (or sign ones exported before a key was set).

    A signature must only vouch for bytes someone with a key already vouched for; a matching
    sidecar is not enough, since anyone who can edit the artifact can re-hash it, and
    ``sign artifacts/*.pt`` would then launder the edit under the new key. So the artifact must
    match its sidecar *and* carry a ``.sig`` that verifies under a key in
    ``ENGAGE_SEQ_SIGNING_KEYS`` (or the signing key). An artifact with no signature at all is
    signed only with ``allow_unsigned=True`` (``--unsigned-ok``): only for artifacts you
    exported yourself. engage-export signs the file it just wrote and checked without this.
    """
    path = Path(path)
    key = signing_key()
    if key is None:
        raise SigningError(f"{SIGNING_KEY_ENV} is not set: no key to sign {path} with")
    data = check_archive(path)
    digest = verify_artifact(path, allow_unverified=False, data=data)
    assert digest is not None  # allow_unverified=False raises instead
    sig = signature_path(path).name
    try:
        signature = read_signature(path)
    except SigningError as exc:
        raise SigningError(f"refusing to sign {path}: {exc}") from None
    if signature is None:
        if not allow_unsigned:
            raise SigningError(
                f"refusing to sign {path}: it has no {sig}, so nothing shows that a key holder "
                "made it (a matching sidecar proves nothing: anyone can re-hash an edited "
                "file); only for artifacts you exported yourself, pass --unsigned-ok "
                "(allow_unsigned=True)"
            )
        return write_signature(path, digest, key)
    if signature["sha256"] != digest:
        raise SigningError(
            f"refusing to sign {path}: it was modified after it was signed (sha256 "
            f"{digest[:12]}… ≠ {signature['sha256'][:12]}… in {sig}); re-export it or restore "
            "the original"
        )
    keys = verification_keys()
    if signing_key_that_verifies(signature, keys) is None:
        raise SigningError(
            f"refusing to sign {path}: its {sig} (key {signature['key_id']}) does not verify "
            f"with any key in {VERIFY_KEYS_ENV} / {SIGNING_KEY_ENV} (configured: "
            f"{', '.join(k.key_id for k in keys)}); during a rotation keep the old key in "
            f"{VERIFY_KEYS_ENV} until every artifact is re-signed"
        )
    return write_signature(path, digest, key)


def load_artifact(
    path: str | Path,
    *,
    allow_unverified: bool | None = None,
    expected_sha256: str | None = None,
    require_signed: bool | None = None,
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """`check_archive`, `verify_artifact`, `verify_provenance`, then torch.jit.load plus the
    parsed metadata (what any consumer does, shown once here). Raises
    `ArtifactIntegrityError` before loading.

    The file is read once and torch loads those bytes, not the path: a file replaced between
    the checks and the load cannot slip past them (`read_artifact_bytes`).

    ``expected_sha256`` pins the exact bytes, which says more than any signature: the
    signature is then not consulted (export reloads its temp file this way).
    """
    data = check_archive(path)  # the only read of the file: every check and the load use it
    digest = verify_artifact(path, allow_unverified, expected_sha256, data=data)
    if expected_sha256 is None:
        sha256 = digest or hashlib.sha256(data).hexdigest()
        provenance = verify_provenance(path, sha256, require_signed)
        checked = f"sha256 {digest[:12]}… matches its sidecar" if digest else "no sidecar"
        log.info("artifact %s: %s; %s", Path(path).name, checked, provenance)
    extra = {METADATA_FILE: ""}
    with quiet_jit_deprecation():
        module = torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
