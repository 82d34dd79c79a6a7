"""Artifact signatures: who made an artifact, not only whether its bytes changed (stdlib only).

The ``<artifact>.sha256`` sidecar (`engage_seq.serving.loading`) proves *integrity*: the file is
the one
the sidecar describes, so a partial copy or a flipped bit is caught. It proves nothing about
*origin*: anyone who can replace the artifact can recompute the sidecar next to it. A signature
adds origin: ``<artifact>.sig`` holds an HMAC-SHA256, under a secret key, of the artifact's
SHA-256, and only a holder of the key can make one that verifies.

Why HMAC and not Ed25519: HMAC-SHA256 is in the standard library (no new dependency on every
scoring host) and is one constant-time comparison to verify. Its limit is that it is
symmetric: whoever can verify can also sign, so the key belongs only on the exporting host and
on scorers you trust as much as the exporter. A scorer that must not be able to sign needs
public-key signatures (Ed25519), which this module does not do.

Keys come from the environment and are never written, logged or put in a message:

* ``ENGAGE_SEQ_SIGNING_KEY``: the key `engage-export` (and ``python -m engage_seq.serving.signing
  sign``) signs with: at least 32 random bytes, as hex or base64. Its id, recorded in the
  signature, is the first 8 hex digits of the key's SHA-256, or ``ENGAGE_SEQ_SIGNING_KEY_ID``.
* ``ENGAGE_SEQ_SIGNING_KEYS``: the keys a loader accepts, comma-separated, each ``key`` or
  ``id:key``; the signing key is always accepted too. Two keys during a rotation.
* ``ENGAGE_SEQ_REQUIRE_SIGNED=1`` (or ``--require-signed``): refuse an artifact without a
  signature that verifies.

Rotation: add the new key to ``ENGAGE_SEQ_SIGNING_KEYS`` on every scorer (old and new both
verify), switch ``ENGAGE_SEQ_SIGNING_KEY`` on the exporter to the new key, re-sign the
artifacts in service (``python -m engage_seq.serving.signing sign artifacts/*.pt``: only artifacts
whose ``.sig`` verifies under a configured key are re-signed, so an artifact edited and
re-hashed since is refused, not laundered; ``--unsigned-ok`` signs ones with no ``.sig``, only
for artifacts you exported yourself), check them with
only the new key (``ENGAGE_SEQ_SIGNING_KEYS=<new> python -m engage_seq.serving.signing verify
...``),
then drop the old key everywhere.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engage_seq.common.errors import EngageSeqError
from engage_seq.common.io import write_json_atomic
from engage_seq.common.times import now_text

SIGNING_KEY_ENV = "ENGAGE_SEQ_SIGNING_KEY"
SIGNING_KEY_ID_ENV = "ENGAGE_SEQ_SIGNING_KEY_ID"
VERIFY_KEYS_ENV = "ENGAGE_SEQ_SIGNING_KEYS"
REQUIRE_SIGNED_ENV = "ENGAGE_SEQ_REQUIRE_SIGNED"
SIGNATURE_SUFFIX = ".sig"
ALGORITHM = "HMAC-SHA256"
SIGNATURE_FORMAT = 1
MIN_KEY_BYTES = 32  # HMAC-SHA256's own output size: a shorter key only weakens it
KEY_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"
# what the HMAC covers besides the digest, so no recorded field can be swapped afterwards;
# the prefix keeps a key that is also used elsewhere from vouching for anything but this
_CONTEXT = "engage_seq-artifact-signature/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2})+")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_INSTANT = re.compile(r"[0-9T:.+Z-]{10,40}")
_FIELDS = ("format", "algorithm", "key_id", "sha256", "signed_at", "hmac")
# a .sig is ~300 bytes and a .sha256 ~80: anything near this is not one, and reading it whole
# would let whoever can write the folder make every load read gigabytes first
COMPANION_LIMIT = 64 << 10


class SigningError(EngageSeqError, ValueError):
    """A key in the environment is unusable, or a signature file is malformed."""


@dataclass(frozen=True)
class SigningKey:
    """One HMAC key and its public id; ``repr`` never shows the secret."""

    key_id: str
    secret: bytes = field(repr=False)


def signature_path(artifact: str | Path) -> Path:
    """``model.pt`` -> ``model.pt.sig``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIGNATURE_SUFFIX)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def decode_key(text: str, where: str) -> bytes:
    """Key bytes from hex (tried first) or base64 (standard or URL-safe); ``where`` names the
    variable in errors, which never quote the value."""
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        secret = bytes.fromhex(text)
    else:
        try:
            padded = text + "=" * (-len(text) % 4)
            secret = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise SigningError(
                f"{where} is neither hex nor base64; set it to a random key, e.g. {KEY_HINT}"
            ) from None
    if len(secret) < MIN_KEY_BYTES:
        raise SigningError(
            f"{where} decodes to {len(secret)} bytes; use at least {MIN_KEY_BYTES} random "
            f"bytes, e.g. {KEY_HINT}"
        )
    return secret


def fingerprint(secret: bytes) -> str:
    """The default key id: 8 hex digits of the key's SHA-256 (says which key, reveals nothing
    usable about it)."""
    return hashlib.sha256(secret).hexdigest()[:8]


def _key(secret: bytes, key_id: str | None, where: str) -> SigningKey:
    if key_id is not None and not _KEY_ID.fullmatch(key_id):
        raise SigningError(f"{where}: a key id is 1-64 of A-Z a-z 0-9 . _ -")
    return SigningKey(key_id or fingerprint(secret), secret)


def signing_key() -> SigningKey | None:
    """The exporter's key (``ENGAGE_SEQ_SIGNING_KEY``), or None when unset."""
    text = os.environ.get(SIGNING_KEY_ENV, "").strip()
    if not text:
        return None
    key_id = os.environ.get(SIGNING_KEY_ID_ENV, "").strip() or None
    return _key(decode_key(text, SIGNING_KEY_ENV), key_id, SIGNING_KEY_ID_ENV)


def verification_keys() -> list[SigningKey]:
    """Every key a loader accepts: ``ENGAGE_SEQ_SIGNING_KEYS`` entries, then the signing key."""
    keys = []
    entries = os.environ.get(VERIFY_KEYS_ENV, "").split(",")
    for number, entry in enumerate((e.strip() for e in entries if e.strip()), start=1):
        key_id, _, text = entry.rpartition(":")
        where = f"{VERIFY_KEYS_ENV} entry {number}"
        keys.append(_key(decode_key(text, where), key_id or None, where))
    own = signing_key()
    if own is not None and all(k.secret != own.secret for k in keys):
        keys.append(own)
    return keys


def _mac(secret: bytes, key_id: str, digest: str, signed_at: str) -> str:
    message = "\n".join((_CONTEXT, ALGORITHM, key_id, digest, signed_at)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def write_signature(artifact: str | Path, digest: str, key: SigningKey) -> Path:
    """Write ``<artifact>.sig`` (JSON, atomically) for the file whose SHA-256 is ``digest``.
    Signing the digest, not the bytes, costs nothing more than the integrity check already
    spends hashing the file, and is as strong as SHA-256's collision resistance."""
    signed_at = now_text()
    target = signature_path(artifact)
    write_json_atomic(
        target,
        {
            "format": SIGNATURE_FORMAT,
            "algorithm": ALGORITHM,
            "key_id": key.key_id,
            "sha256": digest,
            "signed_at": signed_at,
            "hmac": _mac(key.secret, key.key_id, digest, signed_at),
        },
    )
    return target


def read_companion(path: Path, error: type[ValueError] = SigningError) -> str:
    """The text of a small file next to an artifact (``.sig``, ``.sha256``), read at most
    `COMPANION_LIMIT` bytes (plus one, to tell a larger file): refused with ``error``."""
    with open(path, "rb") as handle:
        data = handle.read(COMPANION_LIMIT + 1)
    if len(data) > COMPANION_LIMIT:
        raise error(
            f"{path} is larger than {COMPANION_LIMIT:,} bytes, so it is not the small file "
            "engage-export writes; remove it and re-export the artifact"
        )
    return data.decode(errors="replace")


def read_signature(artifact: str | Path) -> dict[str, Any] | None:
    """The parsed ``<artifact>.sig``, or None when there is none."""
    target = signature_path(artifact)
    if not target.is_file():
        return None
    try:
        signature = json.loads(read_companion(target))
    except json.JSONDecodeError:
        signature = None
    valid = (
        isinstance(signature, dict)
        and all(isinstance(signature.get(k), str) for k in _FIELDS[1:])
        and signature.get("format") == SIGNATURE_FORMAT
        and signature["algorithm"] == ALGORITHM
        and _HEX64.fullmatch(signature["sha256"]) is not None
        and _HEX64.fullmatch(signature["hmac"]) is not None
        # both are shown in messages before the HMAC is checked: keep them one plain word
        and _KEY_ID.fullmatch(signature["key_id"]) is not None
        and _INSTANT.fullmatch(signature["signed_at"]) is not None
    )
    if not valid:
        raise SigningError(
            f"{target} is not an engage_seq {ALGORITHM} signature (format {SIGNATURE_FORMAT}); "
            f"remove it; re-export {Path(artifact).name} to sign it again"
        )
    return signature


def signing_key_that_verifies(
    signature: dict[str, Any], keys: list[SigningKey]
) -> SigningKey | None:
    """The configured key that made ``signature`` (compared in constant time), or None."""
    recorded = signature["hmac"]
    named = (signature["key_id"], signature["sha256"], signature["signed_at"])
    for key in keys:
        expected = _mac(key.secret, *named)
        if hmac.compare_digest(expected, recorded):
            return key
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m engage_seq.serving.signing sign|verify ARTIFACT...`` (see the module
    docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m engage_seq.serving.signing",
        description=f"sign: write <artifact>.sig with {SIGNING_KEY_ENV} (the artifact must "
        f"match its .sha256 sidecar and its .sig must verify with a key in {VERIFY_KEYS_ENV} / "
        f"{SIGNING_KEY_ENV}; --unsigned-ok for one you exported yourself). verify: check "
        "archive, sidecar and signature with the "
        f"keys in {VERIFY_KEYS_ENV} / {SIGNING_KEY_ENV}, as a loader with --require-signed "
        "does, without loading the model. Exit status 1 if any file fails.",
    )
    parser.add_argument("action", choices=("sign", "verify"))
    parser.add_argument("artifacts", nargs="+", help="artifact files (.pt)")
    parser.add_argument(
        "--unsigned-ok",
        action="store_true",
        help="sign: also sign artifacts that have no .sig yet. Only for artifacts you exported "
        "yourself: without a signature, nothing shows a key holder made the file (re-signing "
        "otherwise needs its .sig to verify with a configured key)",
    )
    args = parser.parse_args(argv)
    from engage_seq.serving import (
        loading as jit,  # torch: only for the command, never for importers
    )

    failed = 0
    for artifact in args.artifacts:
        try:
            if args.action == "sign":
                written = jit.sign_artifact(artifact, allow_unsigned=args.unsigned_ok)
                print(f"signed {artifact} -> {written.name}")
            else:
                print(f"{artifact}: {jit.verify_provenance(artifact, require_signed=True)}")
        except (ValueError, OSError) as exc:  # SigningError, ArtifactIntegrityError
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
