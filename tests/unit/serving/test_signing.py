"""Artifact provenance and bounded loading (issue 15): each attack on an artifact is played
here and must do no harm.

The artifact is a real TorchScript file with the metadata engage-score needs, around an
untrained seeded model (weights do not matter: the attacks are on the file).
"""

from __future__ import annotations

import base64
import builtins
import json
import logging
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers.frames import FrameSource
from helpers.untrained_serving import untrained_serving_module

from engage_seq.cli import backtest, drift, score
from engage_seq.data.cache import prepare_samples
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.schema import ColumnMapping
from engage_seq.data.tasks import HorizonTask
from engage_seq.serving import loading as jit
from engage_seq.serving import signing
from engage_seq.serving.loading import (
    LIMITS_ENV,
    ArchiveLimits,
    ArtifactIntegrityError,
    file_sha256,
    load_artifact,
    sidecar_path,
    sign_artifact,
    verify_provenance,
    write_sidecar,
)
from engage_seq.serving.scoring import ScoringError, open_scoring_artifact
from engage_seq.serving.signing import (
    REQUIRE_SIGNED_ENV,
    SIGNING_KEY_ENV,
    SIGNING_KEY_ID_ENV,
    VERIFY_KEYS_ENV,
    SigningError,
    fingerprint,
    signature_path,
    signing_key,
)

MAX_LEN = 8
KEY_A = bytes(range(32)).hex()  # fixed test keys; never real ones
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
ID_A = fingerprint(bytes.fromhex(KEY_A))
ID_B = fingerprint(base64.b64decode(KEY_B))
ENV = (SIGNING_KEY_ENV, SIGNING_KEY_ID_ENV, VERIFY_KEYS_ENV, REQUIRE_SIGNED_ENV, LIMITS_ENV)
EVENTS_CSV = (
    "user_id,timestamp,event_type,channel,order_value\n"
    "u1,1767600000,page_view,web,\n"
    "u1,1767600100,purchase,app,12.5\n"
    "u2,1767600200,email_open,email,\n"
)


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without keys or requirements from the environment."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def built(tiny_events: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scoring-ready artifact and its sidecar (not signed), as engage-export lays them out."""
    events = tiny_events.with_columns(
        pl.when(pl.col("event_type") == "purchase")
        .then(pl.col("timestamp").dt.second().cast(pl.Float64) * 3.5 - 20.0)
        .alias("order_value")
    )
    mapping = ColumnMapping(numeric=("order_value",))
    folder = tmp_path_factory.mktemp("signing")
    prepared = prepare_samples(
        FrameSource(events),
        HorizonTask(),
        SamplingConfig(max_len=MAX_LEN, n_train_cutoffs=2),
        folder / "cache",
        mapping=mapping,
    )
    metadata = {
        "format_version": 3,
        "output_names": ["purchase"],
        "vocabulary": prepared.vocabulary,
        "categorical_attributes": [],
        "numeric_attributes": ["num_order_value"],
        "numeric_scaling": prepared.numeric_scaling,
        "max_len": MAX_LEN,
        "task": {"kind": "horizon", "targets": ["purchase"], "horizon": "7d"},
        "column_mapping": {"numeric": ["order_value"]},
    }
    path = folder / "model.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        scripted = torch.jit.script(untrained_serving_module(prepared, MAX_LEN, "lstm"))
        torch.jit.save(scripted, str(path), _extra_files={"metadata.json": json.dumps(metadata)})
    write_sidecar(path)
    return path


@pytest.fixture()
def artifact(built: Path, tmp_path: Path) -> Path:
    """A private copy of the artifact and its sidecar."""
    target = tmp_path / built.name
    shutil.copy(built, target)
    shutil.copy(sidecar_path(built), sidecar_path(target))
    return target


def _signed(artifact: Path, monkeypatch: pytest.MonkeyPatch, key: str = KEY_A) -> Path:
    monkeypatch.setenv(SIGNING_KEY_ENV, key)
    sign_artifact(artifact, allow_unsigned=True)  # the test's own export, signed afterwards
    monkeypatch.delenv(SIGNING_KEY_ENV)
    return artifact


def _rewrite(
    artifact: Path, change: Callable[[str, bytes], bytes | None], deflate: str = "//"
) -> None:
    """Rebuild the zip with each entry's bytes passed through ``change`` (None drops it),
    keeping compression (entries ending in ``deflate`` are deflated), then recompute the
    sidecar: what an attacker with write access to the artifact's folder does."""
    entries = []
    with zipfile.ZipFile(artifact) as source:
        for info in source.infolist():
            data = change(info.filename, source.read(info))
            if data is not None:
                entries.append((info, data))
    with zipfile.ZipFile(artifact, "w") as target:
        for info, data in entries:
            deflated = info.filename.endswith(deflate)
            kind = zipfile.ZIP_DEFLATED if deflated else info.compress_type
            target.writestr(info, data, compress_type=kind)
    write_sidecar(artifact)


def _always_099(name: str, data: bytes) -> bytes:
    """The attack of the issue: the scripted forward returns 0.99 for every user."""
    # the ServingModule's code: serving.py, or a mangled copy (serving/___torch_mangle_N.py)
    # when TorchScript compiled the class earlier in the process
    if "code/__torch__/engage_seq/serving" not in name or not name.endswith(".py"):
        return data
    if b"def output_names" not in data:
        return data
    code = data.decode()
    # the method before output_names is forward; its result's name (_0, _1, ...) depends on
    # what TorchScript compiled earlier in the process, so it is matched, not assumed
    honest = re.compile(r"    return (\w+)\n  def output_names")
    assert len(honest.findall(code)) == 1, "torch's generated code changed: update the attack"
    return honest.sub(
        lambda m: f"    return torch.full_like({m.group(1)}, 0.99)\n  def output_names", code
    ).encode()


def _compose(*changes: Callable[[str, bytes], bytes]) -> Callable[[str, bytes], bytes]:
    """One `_rewrite` change that applies each of ``changes`` in turn."""

    def change(name: str, data: bytes) -> bytes:
        for one in changes:
            data = one(name, data)
        return data

    return change


def _score(artifact: Path, tmp_path: Path, *extra: str) -> tuple[int, pl.DataFrame | None]:
    """engage-score in process; the scores it wrote, if any."""
    events = tmp_path / "events.csv"
    events.write_text(EVENTS_CSV)
    out = tmp_path / "scores.parquet"
    out.unlink(missing_ok=True)
    code = score.main([str(artifact), str(events), "--out", str(out), *extra])
    return code, pl.read_parquet(out) if out.exists() else None


def test_edited_code_with_a_recomputed_sidecar_is_refused_when_signatures_are_required(
    artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _signed(artifact, monkeypatch)
    honest_code, honest = _score(artifact, tmp_path, "--require-signed")
    assert honest_code == 1 and honest is None  # required, but no key to check the signature
    assert f"no key to check model.pt.sig with: set {VERIFY_KEYS_ENV}" in capsys.readouterr().err
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)
    honest_code, honest = _score(artifact, tmp_path, "--require-signed")
    assert honest_code == 0 and honest is not None
    assert honest["score_purchase"].n_unique() > 1  # the real model: scores differ

    _rewrite(artifact, _always_099)  # edited code, sidecar recomputed: integrity checks pass
    for required in (None, True):  # a signature that names other bytes: refused either way
        with pytest.raises(ArtifactIntegrityError, match=r"model\.pt was modified after it was"):
            load_artifact(artifact, require_signed=required)

    signature_path(artifact).unlink()  # ... so the attacker removes the signature too
    code, scores = _score(artifact, tmp_path)
    assert code == 0 and scores is not None  # the sidecar alone cannot tell: the attack works
    assert scores["score_purchase"].to_list() == pytest.approx([0.99, 0.99])
    for extra, env in ((("--require-signed",), None), ((), "1")):
        if env:
            monkeypatch.setenv(REQUIRE_SIGNED_ENV, env)
        code, scores = _score(artifact, tmp_path, *extra)
        assert code == 1 and scores is None
        err = capsys.readouterr().err
        assert "model.pt has no model.pt.sig and signed artifacts are required" in err
        assert "Traceback" not in err
    drift_args = ["--reference", "r.csv", "--current", "c.csv", "--out", str(tmp_path / "d")]
    backtest_args = ["--events", "e.csv", "--out", str(tmp_path / "b"), "--require-signed"]
    for main, args in ((drift.main, drift_args), (backtest.main, backtest_args)):
        assert main([*args, "--artifact", str(artifact)]) == 2  # bad input, nothing written
        assert "has no model.pt.sig and signed artifacts are required" in capsys.readouterr().err

    forged = signing.SigningKey("forged", b"\x07" * 32)  # a .sig made with the attacker's key
    signing.write_signature(artifact, file_sha256(artifact), forged)
    with pytest.raises(ScoringError, match=r"model\.pt\.sig does not verify with any key .*forged"):
        open_scoring_artifact(artifact)  # even when not required: a bad signature is refused
    assert not (tmp_path / "d").exists() and not (tmp_path / "b").exists()


def test_signed_artifacts_verify_and_unsigned_ones_say_so(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="engage_seq.serving.loading")
    load_artifact(artifact)  # not signed, not required: loads, and the log says what it lacks
    assert "artifact model.pt: sha256" in caplog.text
    assert "not signed (integrity only" in caplog.text
    with pytest.raises(ArtifactIntegrityError, match=r"has no model\.pt\.sig"):
        load_artifact(artifact, require_signed=True)

    _signed(artifact, monkeypatch)
    recorded = json.loads(signature_path(artifact).read_text())
    assert recorded["key_id"] == ID_A and recorded["sha256"] == file_sha256(artifact)
    assert recorded["algorithm"] == "HMAC-SHA256"
    assert KEY_A not in signature_path(artifact).read_text()
    assert "not checked" in verify_provenance(artifact)  # signed, but no key here: not required
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)
    module, metadata = load_artifact(artifact, require_signed=True)
    assert list(module.output_names()) == metadata["output_names"] == ["purchase"]
    assert f"signed by key {ID_A} at " in caplog.text and "signature valid" in caplog.text
    monkeypatch.setenv(REQUIRE_SIGNED_ENV, "1")
    open_scoring_artifact(artifact)
    assert signing.main(["verify", str(artifact)]) == 0

    for change in ({"algorithm": "md5"}, {"key_id": "a\nfake line"}, {"hmac": "00"}):
        signature_path(artifact).write_text(json.dumps({**recorded, **change}))
        with pytest.raises(ScoringError, match=r"model\.pt\.sig is not an engage_seq HMAC-SHA"):
            open_scoring_artifact(artifact)


def test_wrong_keys_are_refused_and_rotation_keeps_both_keys_during_the_rollover(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _signed(artifact, monkeypatch, KEY_A)
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_B)  # this scorer trusts only the new key
    with pytest.raises(ArtifactIntegrityError, match=rf"names key {ID_A}; configured: {ID_B}\)"):
        load_artifact(artifact)
    # rollover: both keys accepted, the exporter signs with the new one, artifacts re-signed
    monkeypatch.setenv(VERIFY_KEYS_ENV, f"{KEY_A}, new:{KEY_B}")
    assert f"signed by key {ID_A}" in verify_provenance(artifact, require_signed=True)
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY_B)
    monkeypatch.setenv(SIGNING_KEY_ID_ENV, "new")
    assert signing.main(["sign", str(artifact)]) == 0
    assert json.loads(signature_path(artifact).read_text())["key_id"] == "new"
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_B)  # the old key dropped: re-signed files still load
    assert signing.main(["verify", str(artifact)]) == 0
    assert f"signed by key {ID_B} at" in capsys.readouterr().out
    load_artifact(artifact, require_signed=True)
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)  # and a scorer left on the old key refuses them
    assert signing.main(["verify", str(artifact)]) == 1
    assert "made with a key you rotated out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ab" * 16, "decodes to 16 bytes; use at least 32"),
        ("not a key!", "is neither hex nor base64"),
    ],
)
def test_unusable_keys_are_named_without_showing_them(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, value)
    with pytest.raises(SigningError, match=rf"^{SIGNING_KEY_ENV} {message}") as raised:
        sign_artifact(artifact)
    assert value not in str(raised.value)
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.setenv(VERIFY_KEYS_ENV, f"{KEY_A},{value}")
    with pytest.raises(ScoringError, match=rf"{VERIFY_KEYS_ENV} entry 2 {message}") as raised:
        open_scoring_artifact(artifact, require_signed=True)
    assert value not in str(raised.value)
    assert "secret" not in repr(signing.SigningKey("k", b"secret"))


def test_key_formats_and_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    assert signing_key() is None
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY_B.rstrip("=").replace("+", "-").replace("/", "_"))
    key = signing_key()  # URL-safe base64 without padding reads as the same key
    assert key is not None and key.key_id == ID_B and KEY_B not in repr(key)
    monkeypatch.setenv(SIGNING_KEY_ID_ENV, "bad id!")
    with pytest.raises(SigningError, match=rf"{SIGNING_KEY_ID_ENV}: a key id is"):
        signing_key()


def test_zip_bomb_is_refused_before_torch_loads_it(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's bomb, scaled down: a small file whose data.pkl inflates ~1000x, with a
    matching sidecar, so only the archive bounds stand between it and torch."""
    zeros = b"\0" * (48 << 20)  # deflates to ~48 KB

    def bomb(name: str, data: bytes) -> bytes:
        return zeros if name.endswith("/data.pkl") else data

    _rewrite(artifact, bomb, deflate="/data.pkl")
    assert artifact.stat().st_size < 1 << 20

    def must_not_run(*args, **kwargs):
        raise AssertionError("torch.jit.load reached a refused archive")

    monkeypatch.setattr(torch.jit, "load", must_not_run)
    with pytest.raises(ScoringError, match=r"model\.pt: entry '.*data\.pkl' inflates [\d,]+ bytes "
                       r"to 50,331,648 \([\d,]+x; limit ratio=100\): a zip bomb"):  # fmt: skip
        open_scoring_artifact(artifact)
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY_A)
    with pytest.raises(ArtifactIntegrityError, match="a zip bomb"):
        sign_artifact(artifact)  # nor will the signing command vouch for it
    for limit, message in (
        ("ratio=2000", None),  # raised past the bomb's ratio: the next bound holds it
        ("ratio=2000,entry=40M", r"inflates to 50,331,648 bytes \(limit entry=41,943,040\)"),
        ("ratio=2000,total=10M", r"model\.pt inflates to [\d,]+ bytes \(limit total=10,485,760"),
        ("entries=20", r"model\.pt holds \d+ zip entries \(limit entries=20\)"),
    ):
        monkeypatch.setenv(LIMITS_ENV, limit)
        if message is None:
            with pytest.raises(AssertionError, match="reached a refused archive"):
                load_artifact(artifact)
        else:
            with pytest.raises(ArtifactIntegrityError, match=message + r".*ENGAGE_SEQ_ARTIFACT"):
                load_artifact(artifact)
    monkeypatch.setenv(LIMITS_ENV, "total=lots")
    with pytest.raises(ArtifactIntegrityError, match=rf"{LIMITS_ENV}: cannot read 'total=lots'"):
        load_artifact(artifact)


def test_real_artifacts_are_far_inside_the_default_limits(built: Path) -> None:
    limits = ArchiveLimits()
    with zipfile.ZipFile(built) as archive:
        infos = archive.infolist()
    assert len(infos) < limits.entries / 50
    assert sum(i.file_size for i in infos) < limits.total / 1000
    assert max(i.file_size / max(i.compress_size, 1) for i in infos) < limits.ratio / 10


def test_unreadable_truncated_and_empty_files_are_named_precisely(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, message in (
        (cut, r"cut\.pt is truncated or damaged \(a zip archive whose directory cannot be read"),
        (empty, r"empty\.pt is not a TorchScript artifact \(an empty file\)"),
        (tmp_path, r"is a folder; pass the \.pt file in it"),
    ):
        with pytest.raises(ScoringError, match=message):
            open_scoring_artifact(path, allow_unverified=True)

    real_open = builtins.open

    def denied(file, *args, **kwargs):  # root reads any file: play the refusal for it
        if Path(str(file)) == artifact:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(ScoringError, match=r"^cannot read .*model\.pt: permission denied; give"):
        open_scoring_artifact(artifact)


def test_a_file_swapped_after_the_checks_is_not_what_loads(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOCTOU: the checks pass on the signed file, then an attacker puts another (re-hashed,
    unsigned) one in its place before torch opens it. torch must load the checked bytes."""
    _signed(artifact, monkeypatch)
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)
    swapped = tmp_path / "swapped" / artifact.name
    swapped.parent.mkdir()
    shutil.copy(artifact, swapped)

    def relabel(name: str, data: bytes) -> bytes:
        if not name.endswith("extra/metadata.json"):
            return data
        return json.dumps({**json.loads(data), "output_names": ["swapped"]}).encode()

    _rewrite(swapped, _compose(relabel, _always_099))
    checked = jit.verify_provenance

    def check_then_swap(*args, **kwargs):
        result = checked(*args, **kwargs)  # the last check passed on the signed file ...
        shutil.copy(swapped, artifact)  # ... and the file is replaced before the load
        return result

    monkeypatch.setattr(jit, "verify_provenance", check_then_swap)
    module, metadata = load_artifact(artifact, require_signed=True)
    assert file_sha256(artifact) == file_sha256(swapped)  # the swap did happen on disk
    assert metadata["output_names"] == ["purchase"] == list(module.output_names())
    assert "0.99" not in module.forward.code  # the signed model's code, not the attacker's


def test_a_file_larger_than_the_total_limit_is_refused_before_it_is_read(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LIMITS_ENV, "total=64K")  # the artifact itself is ~0.2 MB
    with pytest.raises(ArtifactIntegrityError, match=r"model\.pt is [\d,]+ bytes \(limit total="
                       r"65,536\); refused before loading"):  # fmt: skip
        load_artifact(artifact)


def test_signing_refuses_to_launder_an_edited_or_unsigned_artifact(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rotation step `sign artifacts/*.pt` must not vouch, with the new key, for an
    artifact someone edited and re-hashed: only a verifying .sig may be re-signed."""
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY_B)
    unsigned = r"refusing to sign .*model\.pt: it has no model\.pt\.sig.*only for artifacts you "
    with pytest.raises(SigningError, match=unsigned + "exported yourself, pass --unsigned-ok"):
        sign_artifact(artifact)
    assert signing.main(["sign", str(artifact)]) == 1 and not signature_path(artifact).exists()
    assert "--unsigned-ok" in capsys.readouterr().err
    assert signing.main(["sign", "--unsigned-ok", str(artifact)]) == 0  # exported it yourself
    assert json.loads(signature_path(artifact).read_text())["key_id"] == ID_B

    signature_path(artifact).unlink()
    _signed(artifact, monkeypatch, KEY_A)  # signed with the old key ...
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY_B)  # ... rotation: the exporter has the new one
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)
    honest = signature_path(artifact).read_text()
    _rewrite(artifact, _always_099)  # edited and re-hashed: the sidecar matches
    for allow in (False, True):
        with pytest.raises(SigningError, match=r"refusing to sign .*modified after it was signed"):
            sign_artifact(artifact, allow_unsigned=allow)
    assert signing.main(["sign", "--unsigned-ok", str(artifact)]) == 1
    assert signature_path(artifact).read_text() == honest  # the old signature left as it was

    forged = signing.SigningKey("forged", b"\x07" * 32)  # a .sig the attacker made to match
    signing.write_signature(artifact, file_sha256(artifact), forged)
    with pytest.raises(SigningError, match=r"its model\.pt\.sig \(key forged\) does not verify"):
        sign_artifact(artifact, allow_unsigned=True)
    with pytest.raises(ArtifactIntegrityError):
        load_artifact(artifact)  # and it still does not load


def test_many_small_deflated_entries_are_held_to_the_ratio_overall(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries under ratio_floor escape the per-entry ratio; thousands of them must not
    escape the archive's overall ratio (scaled down: 24 entries of 1 MiB - 1 of zeros)."""
    with zipfile.ZipFile(artifact, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        prefix = archive.namelist()[0].split("/")[0]
        for number in range(24):
            archive.writestr(f"{prefix}/extra/pad{number}", b"\0" * ((1 << 20) - 1))
    write_sidecar(artifact)
    assert artifact.stat().st_size < 1 << 20

    def must_not_run(*args, **kwargs):
        raise AssertionError("torch.jit.load reached a refused archive")

    monkeypatch.setattr(torch.jit, "load", must_not_run)
    overall = r"model\.pt: its \d+ entries inflate [\d,]+ bytes to [\d,]+ \([\d,]+x overall; "
    with pytest.raises(ArtifactIntegrityError, match=overall + r"limit ratio=100\): a zip bomb"):
        load_artifact(artifact)


@pytest.mark.parametrize("companion", [sidecar_path, signature_path])
def test_oversized_sidecar_or_signature_files_are_refused_unread(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, companion: Callable[[Path], Path]
) -> None:
    _signed(artifact, monkeypatch)
    target = companion(artifact)
    with target.open("a") as handle:  # still valid in front, padded past the cap
        handle.write(" " * (64 << 10))
    larger = rf"{re.escape(target.name)} is larger than 65,536 bytes, so it is not the small file "
    with pytest.raises(ArtifactIntegrityError, match=larger + "engage-export writes"):
        load_artifact(artifact)


def test_without_a_key_a_signature_is_matched_to_the_bytes_but_its_hmac_is_not_checked(
    artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What docs/serving.md's Integrity paragraph says: with no key and no requirement a forged
    .sig loads (and says so); one naming other bytes is refused; required, it is refused."""
    forged = signing.SigningKey("forged", b"\x07" * 32)
    signing.write_signature(artifact, file_sha256(artifact), forged)
    assert verify_provenance(artifact) == (
        f"signed by key forged, not checked (no key in {VERIFY_KEYS_ENV})"
    )
    load_artifact(artifact)
    with pytest.raises(ArtifactIntegrityError, match=r"no key to check model\.pt\.sig with"):
        load_artifact(artifact, require_signed=True)
    monkeypatch.setenv(VERIFY_KEYS_ENV, KEY_A)
    with pytest.raises(ArtifactIntegrityError, match=r"does not verify with any key"):
        load_artifact(artifact)
    monkeypatch.delenv(VERIFY_KEYS_ENV)
    signing.write_signature(artifact, "0" * 64, forged)
    with pytest.raises(ArtifactIntegrityError, match="was modified after it was signed"):
        load_artifact(artifact)
