"""Fault injection on the sample cache: a killed build, a damaged entry and a full disk never
leave samples that are read later as if they were good. And on engage-score's outputs: a kill
at any step of writing them never leaves a set that verifies as one run's.

SIGKILL during training is tested in tests/integration/test_training.py, during export in
tests/reliability/test_safe_loading.py, during a whole engage-score run in
tests/unit/serving/test_scoring.py.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest
from helpers.fault_injection import run_child
from helpers.prerequisites import require_or_skip

import engage_seq.data.cache as sample_cache
from engage_seq.data.cache import CacheSpaceError, prepare_samples
from engage_seq.data.sampling import SamplingConfig
from engage_seq.data.tasks import HorizonTask
from engage_seq.serving import outputs as score_outputs
from engage_seq.serving.outputs import (
    IncompleteOutputsError,
    check_score_outputs,
    remove_leftovers,
    write_outputs,
)
from engage_seq.synthetic import SyntheticEventSource

SOURCE = "SyntheticEventSource(n_users=300, days=70, seed=1)"  # conftest's tiny_source
TASK = HorizonTask()
SAMPLING = {"max_len": 16, "n_train_cutoffs": 2}
IMPORTS = """
import polars as pl
from engage_seq.data import cache as sample_cache
from engage_seq.data.tasks import HorizonTask
from engage_seq.data.sampling import SamplingConfig
from engage_seq.synthetic import SyntheticEventSource
"""


def _child(body: str, cache: Path, fault: str = "") -> subprocess.CompletedProcess[str]:
    """Build samples into ``cache`` in a child process, with ``fault`` installed first."""
    return run_child(IMPORTS + fault + "\n" + textwrap.dedent(body), str(cache))


def _entries(cache: Path) -> tuple[list[str], list[str]]:
    """(complete entries, temp folders) in a cache folder."""
    names = sorted(p.name for p in cache.iterdir() if p.is_dir())
    return [n for n in names if n.startswith("samples-")], [n for n in names if n[0] == "."]


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory) -> dict[int, object]:
    """Uninterrupted builds to compare against, per shard count."""
    source = SyntheticEventSource(n_users=300, days=70, seed=1)
    root = tmp_path_factory.mktemp("clean")
    return {
        shards: prepare_samples(
            source, TASK, SamplingConfig(**SAMPLING, shards=shards), root / str(shards)
        ).samples
        for shards in (1, 3)
    }


KILL_POINTS = {
    # the in-memory builder's sample file, cut to half its size
    "mid_sample_file": "write = pl.DataFrame.write_parquet\n"
    "pl.DataFrame.write_parquet = half_written_then_die(write)",
    # every file and the manifest written, the rename into place not yet done
    "before_rename": "sample_cache.os.rename = lambda *args: die()",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "shards"),
    [("mid_sample_file", 1), ("mid_sample_file", 3), ("before_rename", 1)],
    ids=["mid_sample_file", "mid_shard_file", "before_rename"],
)
def test_killed_cache_build_is_never_read_and_the_next_run_rebuilds(
    tmp_path: Path, clean_build, point: str, shards: int, caplog
) -> None:
    cache = tmp_path / "cache"
    killed = _child(
        f"""
        sampling = SamplingConfig(**{SAMPLING!r}, shards={shards})
        sample_cache.prepare_samples({SOURCE}, HorizonTask(), sampling, sys.argv[1])
        print("NOT KILLED")
        """,
        cache,
        fault=KILL_POINTS[point],
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    complete, temp = _entries(cache)
    assert complete == [] and len(temp) == 1  # only the builder's own temp folder

    with caplog.at_level(logging.WARNING, logger="engage_seq.data.cache"):
        prepared = prepare_samples(
            SyntheticEventSource(n_users=300, days=70, seed=1),
            TASK,
            SamplingConfig(**SAMPLING, shards=shards),
            cache,
        )
    assert "left by an interrupted build" in caplog.text
    assert _entries(cache) == ([prepared.cache_dir.name], [])
    assert prepared.samples.equals(clean_build[shards])
    reused = prepare_samples(
        SyntheticEventSource(n_users=300, days=70, seed=1),
        TASK,
        SamplingConfig(**SAMPLING, shards=shards),
        cache,
    )
    assert reused.preloaded is None and reused.samples.equals(clean_build[shards])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_one_byte(path: Path) -> None:
    """Same size and mtime: only the checksum can tell."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


DAMAGE = {
    "truncated_file": lambda entry: _truncate(next(entry.glob("*.parquet"))),
    "flipped_byte": lambda entry: _flip_one_byte(next(entry.glob("*.parquet"))),
    "deleted_file": lambda entry: next(entry.glob("*.parquet")).unlink(),
    "garbage_manifest": lambda entry: (entry / "manifest.json").write_text("{not json"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cache_entry_is_detected_and_rebuilt(
    tiny_source, tmp_path: Path, damage: str, caplog, monkeypatch
) -> None:
    sampling = SamplingConfig(**SAMPLING)
    first = prepare_samples(tiny_source, TASK, sampling, tmp_path)
    DAMAGE[damage](first.cache_dir)
    builds = []
    real_build = sample_cache.build_in_memory
    monkeypatch.setattr(
        sample_cache,
        "build_in_memory",
        lambda *args: builds.append(1) or real_build(*args),
    )
    with caplog.at_level(logging.WARNING, logger="engage_seq.data.cache"):
        again = prepare_samples(tiny_source, TASK, sampling, tmp_path)
    assert builds == [1]
    assert f"cached samples in {first.cache_dir} are damaged" in caplog.text
    named = "manifest is unreadable" if damage == "garbage_manifest" else "samples-00000.parquet"
    assert named in caplog.text
    assert again.cache_dir == first.cache_dir
    assert again.samples.equals(first.samples)
    assert prepare_samples(tiny_source, TASK, sampling, tmp_path).preloaded is None  # reused


def test_no_space_error_names_the_folder_and_removes_the_partial_entry(
    tiny_source, tmp_path: Path, monkeypatch
) -> None:
    def disk_full(*args):
        out_dir = args[-1]
        (out_dir / "sample-00000.parquet").write_bytes(b"x" * 500)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sample_cache, "build_in_memory", disk_full)
    with pytest.raises(CacheSpaceError) as caught:
        prepare_samples(tiny_source, TASK, SamplingConfig(**SAMPLING), tmp_path)
    message = str(caught.value)
    assert f"in {tmp_path}: no space left on device" in message
    assert "500 B written before it failed" in message and "free there" in message
    assert "ENGAGE_SEQ_CACHE_DIR" in message
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


@pytest.mark.slow
def test_file_size_limit_from_the_kernel_gives_the_same_clear_error(tmp_path: Path) -> None:
    """A real write failure (EFBIG from the kernel, through Polars' Rust writer): the process
    may not write files over 64 KB, like a disk that fills up mid-build."""
    cache = tmp_path / "cache"
    result = _child(
        f"""
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
        try:
            sample_cache.prepare_samples(
                {SOURCE}, HorizonTask(), SamplingConfig(**{SAMPLING!r}), sys.argv[1]
            )
        except sample_cache.CacheSpaceError as error:
            print(error)
            sys.exit(3)
        """,
        cache,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "file too large" in result.stdout and "the partial entry was removed" in result.stdout
    assert _entries(cache) == ([], [])


@pytest.fixture()
def tiny_disk(tmp_path: Path):
    """A 256 KB tmpfs: a genuinely full disk. Needs mount rights (root in a container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    require_or_skip(
        made.returncode == 0,
        f"full-disk test on a real tmpfs NOT RUN: mount failed ({made.stderr.decode().strip()})",
        ci_may_skip="mounting needs root with CAP_SYS_ADMIN, which a CI container may lack; "
        "test_file_size_limit_from_the_kernel_gives_the_same_clear_error (RLIMIT_FSIZE, runs "
        "everywhere) proves the same clear error and clean-up",
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_gives_a_clear_error(tiny_source, tiny_disk: Path) -> None:
    with pytest.raises(CacheSpaceError, match="no space left on device"):
        prepare_samples(tiny_source, TASK, SamplingConfig(**SAMPLING), tiny_disk / "cache")
    assert _entries(tiny_disk / "cache") == ([], [])


def test_temp_folders_of_other_entries_go_unless_being_built(tiny_source, tmp_path: Path) -> None:
    """A build killed before its key changed (an edited input, another setting) is cleaned
    by any later build; a temp folder whose entry is being built right now is left alone."""
    import fcntl

    dead = tmp_path / ".samples-00000000deadbeef-x1y2z3"
    (dead / "_work").mkdir(parents=True)
    (dead / "_work" / "raw.parquet").write_bytes(b"raw rows" * 100)
    busy = tmp_path / ".samples-00000000cafecafe-a1b2c3"
    busy.mkdir()
    with open(tmp_path / ".samples-00000000cafecafe.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live builder of that entry
        prepare_samples(tiny_source, TASK, SamplingConfig(**SAMPLING), tmp_path)
    assert not dead.exists() and busy.is_dir()


def test_an_unreadable_event_file_is_named_before_any_work(
    tiny_events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file without read permission in an input folder: engage-train (prepare_samples)
    gave a bare OS error from inside Polars; now an EventSchemaError names the file and what
    to do. Root reads anything, so the refusal is injected at open() unless the suite runs
    as another user, where chmod 0 is real."""
    from engage_seq.data.ingest import FileEventSource
    from engage_seq.data.schema import EventSchemaError

    folder = tmp_path / "parts"
    folder.mkdir()
    tiny_events.head(1000).write_parquet(folder / "a.parquet")
    tiny_events.tail(1000).write_parquet(folder / "b.parquet")
    locked = folder / "b.parquet"
    locked.chmod(0)
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(EventSchemaError, match=r"cannot open event file '.*b\.parquet': "
                       r"Permission denied\. Give the account .* read permission"):  # fmt: skip
        prepare_samples(FileEventSource(str(folder)), TASK, SamplingConfig(**SAMPLING), tmp_path)


# --- engage-score's outputs ----------------------------------------------------------------


def _write_set(out: Path, top: Path, tag: str) -> dict[str, str]:
    """A complete output set whose every file says which run wrote it."""
    return write_outputs(
        out,
        {out: lambda p: p.write_text(f"{tag} scores"), top: lambda p: p.write_text(f"{tag} top")},
        lambda: {"run": tag},
    )


COMMIT_KILLS = {
    # staged and vouched for in the staging folder; the previous report not yet removed
    "staged": "import pathlib\nunlink = pathlib.Path.unlink\n"
    "pathlib.Path.unlink = lambda self, **kw: die() if self.name.endswith('.report.json') "
    "else unlink(self, **kw)",
    # the previous report removed, nothing renamed yet
    "before_first_rename": "os.replace = lambda *args: die()",
    # the scores renamed, the top list and the report not
    "between_renames": "replace, calls = os.replace, []\n"
    "os.replace = lambda *a: die() if calls.append(1) or len(calls) == 2 else replace(*a)",
    # both data files renamed, the report not
    "before_report": "replace, calls = os.replace, []\n"
    "os.replace = lambda *a: die() if calls.append(1) or len(calls) == 3 else replace(*a)",
}


@pytest.mark.parametrize("point", COMMIT_KILLS)
def test_killed_score_output_commit_never_verifies_as_a_mix(tmp_path: Path, point: str) -> None:
    """Whatever step of the commit a SIGKILL hits, the files either verify as the previous
    run's complete set or do not verify at all; the next run removes the staging folder
    (raw ids) and leaves a complete set."""
    out, top = tmp_path / "scores.parquet", tmp_path / "scores_top.parquet"
    _write_set(out, top, "old")
    killed = run_child(
        "from pathlib import Path\nfrom engage_seq.serving.outputs import write_outputs\n"
        + COMMIT_KILLS[point]
        + "\nout, top = Path(sys.argv[1]), Path(sys.argv[2])\n"
        "write_outputs(out, {out: lambda p: p.write_text('new scores'), "
        "top: lambda p: p.write_text('new top')}, lambda: {'run': 'new'})\n"
        "print('NOT KILLED')\n",
        str(out),
        str(top),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    staging = list(tmp_path.glob(".scores.parquet-staging-*"))
    assert (
        len(staging) == 1 and json.loads((staging[0] / "report.json").read_text())["run"] == "new"
    )
    texts = {out.read_text().split()[0], top.read_text().split()[0]}
    if point == "staged":
        assert check_score_outputs(out, top)["run"] == "old" and texts == {"old"}
    else:
        with pytest.raises(IncompleteOutputsError, match=r"scores\.parquet\.report\.json is"):
            check_score_outputs(out, top)
        assert texts == {"between_renames": {"new", "old"}, "before_report": {"new"}}.get(
            point, {"old"}
        )

    assert remove_leftovers(out, [top]) == 1
    assert list(tmp_path.glob(".scores.parquet-staging-*")) == []
    _write_set(out, top, "next")
    assert check_score_outputs(out, top)["run"] == "next"
    assert out.read_text() == "next scores" and top.read_text() == "next top"


def test_score_outputs_that_do_not_match_their_report_are_refused(tmp_path: Path) -> None:
    out, top = tmp_path / "scores.parquet", tmp_path / "lists" / "top.csv"
    files = _write_set(out, top, "one")
    assert files == {
        "scores.parquet": files["scores.parquet"],
        "lists/top.csv": files["lists/top.csv"],
    }
    assert check_score_outputs(out, top)["files"] == files
    top.write_text("one top, edited")
    with pytest.raises(IncompleteOutputsError, match=r"top\.csv does not match the SHA-256"):
        check_score_outputs(out)
    write_outputs(out, {out: lambda p: p.write_text("two scores")}, lambda: {"run": "two"})
    with pytest.raises(IncompleteOutputsError, match=r"top\.csv is not listed"):
        check_score_outputs(out, top)  # a top list from an earlier run than the report
    report = out.with_name("scores.parquet.report.json")
    report.write_text(json.dumps({"run": "old engage-score"}))
    with pytest.raises(IncompleteOutputsError, match="lists no files"):
        check_score_outputs(out)


def test_leftovers_of_killed_score_runs_go_unless_a_live_run_holds_the_lock(
    tmp_path: Path, caplog
) -> None:
    out, elsewhere = tmp_path / "scores.parquet", tmp_path / "lists" / "top.parquet"
    staged = tmp_path / ".scores.parquet-staging-abc123"
    shards = tmp_path / ".scores.parquet-shards-def456" / "raw" / "_shard=0"
    for folder in (staged, shards, elsewhere.parent):
        folder.mkdir(parents=True)
    (staged / "0-scores.parquet").write_bytes(b"raw ids")
    (shards / "0.parquet").write_bytes(b"raw ids")
    old_tmp = tmp_path / ".scores.parquet.x1y2.tmp"  # atomic_path of older versions
    far_tmp = elsewhere.parent / ".top.parquet.z3.tmp"  # a copy across disks
    for file in (old_tmp, far_tmp):
        file.write_bytes(b"raw ids")
    unrelated = [tmp_path / "scores.parquet.bak", tmp_path / ".other.parquet-staging-1"]
    unrelated[0].write_text("kept")
    unrelated[1].mkdir()

    with open(tmp_path / ".scores.parquet.lock", "a") as live:  # a live run to the same out
        fcntl.flock(live, fcntl.LOCK_EX)
        cleaner = threading.Thread(target=remove_leftovers, args=(out, [elsewhere]))
        with caplog.at_level(logging.WARNING, logger="engage_seq.serving.outputs"):
            cleaner.start()
            cleaner.join(timeout=0.5)
            assert cleaner.is_alive() and staged.is_dir()  # waits for the live run
            fcntl.flock(live, fcntl.LOCK_UN)
            cleaner.join(timeout=30)
    assert not cleaner.is_alive()
    assert not any(p.exists() for p in (staged, shards.parents[1], old_tmp, far_tmp))
    assert all(p.exists() for p in unrelated)
    assert caplog.text.count("left by an interrupted engage-score run") == 4
    assert remove_leftovers(out, [elsewhere]) == 0


def test_top_list_on_another_disk_is_copied_then_renamed(tmp_path: Path, monkeypatch) -> None:
    out, top = tmp_path / "scores.parquet", tmp_path / "mounted" / "top.parquet"
    replace = os.replace

    def across_disks(source, target):
        if Path(target).parent.name == "mounted" and ".tmp" not in Path(source).name:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(score_outputs.os, "replace", across_disks)
    _write_set(out, top, "one")
    assert check_score_outputs(out, top)["run"] == "one" and top.read_text() == "one top"
    assert [p.name for p in top.parent.iterdir()] == ["top.parquet"]
