"""Vouching for a written artifact file: its ``.sha256`` sidecar and, with a signing key, its
``.sig`` signature (`engage_seq.serving.signing`), in the order that keeps them honest: any old
voucher is removed before the new file is renamed into place (`remove_vouchers`), the new ones
are written after it (`vouch`), so a voucher never names other bytes than the file beside it.
"""

from __future__ import annotations

from pathlib import Path

from engage_seq.serving.loading import sidecar_path, write_sidecar
from engage_seq.serving.signing import SigningKey, signature_path, write_signature


def remove_vouchers(out: Path) -> None:
    """Before the rename: no sidecar or signature of an older file stays next to the new one."""
    sidecar_path(out).unlink(missing_ok=True)
    signature_path(out).unlink(missing_ok=True)


def vouch(out: Path, digest: str, key: SigningKey | None) -> None:
    """After the rename: the sidecar, then (with a key) the signature of the same digest."""
    write_sidecar(out, digest)
    if key is not None:
        write_signature(out, digest, key)
