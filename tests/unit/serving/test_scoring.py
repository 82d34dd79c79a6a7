"""engage-score: raw table + artifact -> scores.parquet; clear errors, nothing half-written."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
import torch
from helpers import VENV_BIN
from helpers.fault_injection import run_child
from hydra import compose, initialize_config_dir
from polars.testing import assert_frame_equal

from engage_seq.common.config_dir import CONF_DIR
from engage_seq.experiments.run import train
from engage_seq.serving.cutoff import far_future_limit
from engage_seq.serving.export import export_artifact, load_artifact
from engage_seq.serving.loading import write_sidecar
from engage_seq.serving.outputs import IncompleteOutputsError, check_score_outputs
from engage_seq.serving.parity import raw_arguments
from engage_seq.serving.scoring import ScoringError, parse_top, score_events
from engage_seq.synthetic import SyntheticEventSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("score")
    overrides = ["data=synthetic_tiny", "trainer=smoke", "batch_size=64"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"cache_dir={root / 'cache'}"])
    train(cfg, root / "run")
    return export_artifact(root / "run", root / "model.pt").path


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    SyntheticEventSource(n_users=300, days=70, seed=11).scan().collect().write_parquet(path)
    return path


def test_scores_match_the_raw_entry_point(artifact: Path, events: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    report = score_events(artifact, events, out)
    scores = pl.read_parquet(out)
    table = pl.read_parquet(events)
    assert scores.columns == [
        "user_id", "score_purchase", "rank_purchase", "decile_purchase", "suppressed"
    ]  # fmt: skip
    assert scores.height == table["user_id"].n_unique() == report["users_scored"]
    assert scores["rank_purchase"].to_list() == list(range(1, scores.height + 1))
    assert scores["score_purchase"].is_sorted(descending=True)
    assert scores["decile_purchase"].min() == 1 and scores["decile_purchase"].max() == 10
    # the batched Polars path and the artifact's own raw entry agree on real users
    module, _ = load_artifact(artifact)
    cutoff = int(table["timestamp"].max().timestamp()) + 1
    some = scores.head(5)["user_id"].to_list() + scores.tail(5)["user_id"].to_list()
    raw = (
        table.filter(pl.col("user_id").is_in(some))
        .with_columns(
            pl.col("user_id").alias("sample"),
            pl.col("timestamp").dt.epoch("s").alias("ts"),
            pl.lit(cutoff).alias("cutoff"),
        )
        .sort("sample", "ts")
    )
    arguments = raw_arguments(raw, [], [])
    with torch.inference_mode():
        direct = module.predict_events(*arguments)[:, 0]
    order = raw["sample"].unique(maintain_order=True).to_list()
    expected = scores.filter(pl.col("user_id").is_in(some))
    by_user = dict(zip(expected["user_id"], expected["score_purchase"], strict=True))
    assert torch.allclose(direct, torch.tensor([by_user[u] for u in order]), atol=1e-5)
    saved = (tmp_path / "scores.parquet.report.json").read_text()
    assert json.loads(saved)["rows_read"] == table.height
    assert not [u for u in table["user_id"].unique().to_list() if f'"{u}"' in saved]  # no ids


def test_cutoff_suppression_and_top_list(artifact: Path, events: Path, tmp_path: Path) -> None:
    table = pl.read_parquet(events)
    suppress = tmp_path / "dnc.csv"
    first_users = table.sort("timestamp")["user_id"].unique(maintain_order=True).head(40)
    pl.DataFrame({"user_id": first_users}).write_csv(suppress)
    early = "2026-02-01"
    report = score_events(
        artifact, events, tmp_path / "s.parquet", cutoff=early, suppress=str(suppress), top="10%"
    )
    scores = pl.read_parquet(tmp_path / "s.parquet")
    top = pl.read_parquet(tmp_path / "s_top.parquet")
    n_active = table.filter(pl.col("timestamp") < pl.lit(early).str.to_datetime(time_zone="UTC"))
    assert scores.height == n_active["user_id"].n_unique()
    assert (
        report["users_without_events_before_cutoff"] == table["user_id"].n_unique() - scores.height
    )
    assert report["users_suppressed"] == scores["suppressed"].sum() > 0
    assert report["categorical_missing"]["channel"] == table["channel"].null_count()
    assert top.height == parse_top("10%", scores.height) and not top["suppressed"].any()
    assert top["rank_purchase"].is_sorted()


def test_parse_top() -> None:
    assert parse_top("5%", 1000) == 50 and parse_top("0.1%", 999) == 1 and parse_top("7", 5) == 7
    for bad in ("0", "-3", "150%", "many"):
        with pytest.raises(ScoringError, match="--top"):
            parse_top(bad, 10)


def _resave(artifact: Path, target: Path, **changes) -> Path:
    module, metadata = load_artifact(artifact)
    metadata.update(changes)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
        torch.jit.save(module, str(target), _extra_files={"metadata.json": json.dumps(metadata)})
    write_sidecar(target)  # hand-made on purpose: vouch for it, so the metadata checks run
    return target


def test_bad_input_is_refused_and_nothing_is_written(
    artifact: Path, events: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never.parquet"
    renamed = tmp_path / "renamed.parquet"
    pl.read_parquet(events).rename({"user_id": "customer"}).write_parquet(renamed)
    with pytest.raises(ScoringError, match=r"user_id.*customer|customer.*user_id"):
        score_events(artifact, renamed, out)
    future = _resave(artifact, tmp_path / "future.pt", format_version=99)
    with pytest.raises(ScoringError, match="format 99"):
        score_events(future, events, out)
    altered = _resave(artifact, tmp_path / "altered.pt", output_names=["click"])
    with pytest.raises(ScoringError, match="do not match its metadata"):
        score_events(altered, events, out)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ScoringError, match="not a TorchScript artifact"):
        score_events(tmp_path / "junk.pt", events, out)
    with pytest.raises(ScoringError, match="no user has an event before the cutoff"):
        score_events(artifact, events, out, cutoff="2000-01-01")
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_cli(artifact: Path, events: Path, tmp_path: Path) -> None:
    command = [str(VENV_BIN / "engage-score"), str(artifact), str(events)]
    ok = subprocess.run(
        [*command, "--out", str(tmp_path / "s.parquet"), "--top", "25"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    users = pl.read_parquet(events)["user_id"].n_unique()
    assert f"scored {users} users" in ok.stdout and "top list: 25 users" in ok.stdout
    bad = subprocess.run(
        [str(VENV_BIN / "engage-score"), str(artifact), str(tmp_path / "none.parquet")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1 and "engage-score: error:" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_csv_ids_stay_text_and_suppression_matches(
    artifact: Path, events: Path, tmp_path: Path
) -> None:
    table = pl.read_parquet(events).with_columns(
        ("000" + pl.col("user_id").str.extract(r"(\d+)")).alias("user_id")  # "000123"
    )
    table.write_csv(tmp_path / "events.csv")
    dnc = table["user_id"].unique().sort().head(15)
    pl.DataFrame({"user_id": dnc}).write_csv(tmp_path / "dnc.csv")
    report = score_events(
        artifact,
        tmp_path / "events.csv",
        tmp_path / "s.parquet",
        suppress=str(tmp_path / "dnc.csv"),
        top="20",
    )
    scores = pl.read_parquet(tmp_path / "s.parquet")
    assert set(scores["user_id"]) == set(table["user_id"])  # leading zeros kept
    assert report["users_suppressed"] == 15
    top = pl.read_parquet(tmp_path / "s_top.parquet")
    assert not set(top["user_id"]) & set(dnc) and top.height == 20


def test_id_lists_match_float_ids_and_a_partial_match_is_counted(
    artifact: Path, events: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ids stored as Parquet Float64 (0.0, 1.0, …) against text lists ("0", "1"): the opted-out
    users are not scored and the suppressed ones are flagged (both used to match nobody);
    counts go to the report; a list with users not in the table warns, or with
    ``opt_out_must_match`` fails, naming the file and counts, never an id."""
    table = pl.read_parquet(events).with_columns(
        pl.col("user_id").str.extract(r"(\d+)").cast(pl.Float64)
    )
    table.write_parquet(tmp_path / "events.parquet")
    (tmp_path / "opt_out.csv").write_text("user_id\n0\n1\n")
    (tmp_path / "dnc.csv").write_text("user_id\n2\n3\nSECRET-9\n")
    lists = {"opt_out": str(tmp_path / "opt_out.csv"), "suppress": str(tmp_path / "dnc.csv")}
    floats = tmp_path / "events.parquet"
    with caplog.at_level("WARNING", logger="engage_seq.data.id_lists"):
        report = score_events(artifact, floats, tmp_path / "s.parquet", **lists)
    assert report["opt_out"] == {"users_listed": 2, "users_matched": 2}
    assert report["rows_dropped"]["consent_opt_out"] == table["user_id"].is_in([0.0, 1.0]).sum()
    assert report["users_suppressed"] == 2 and report["suppress_users_listed"] == 3
    assert "dnc.csv' matches 2 of its 3 users" in caplog.text and "SECRET" not in caplog.text
    with pytest.raises(ScoringError, match="matches 2 of its 3 users") as caught:
        score_events(artifact, floats, tmp_path / "t.parquet", **lists, opt_out_must_match=True)
    assert "SECRET" not in str(caught.value) and not (tmp_path / "t.parquet").exists()


def test_outputs_land_together_or_not_at_all(artifact: Path, events: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ScoringError, match="is not a folder"):
        score_events(
            artifact,
            events,
            tmp_path / "s.parquet",
            top="5",
            top_out=tmp_path / "file" / "t.parquet",
        )
    with pytest.raises(ScoringError, match="--batch-size"):
        score_events(artifact, events, tmp_path / "s.parquet", batch_size=0)
    with pytest.raises(ScoringError, match=r"suppression list 'nope\.csv' does not exist"):
        score_events(artifact, events, tmp_path / "s.parquet", suppress="nope.csv")
    assert not list(tmp_path.glob("s*"))


def test_sharded_scoring_gives_the_same_scores_and_counts(
    artifact: Path, events: Path, tmp_path: Path
) -> None:
    """--shards splits users by hash and scores one part at a time (bounded memory): the
    same scores, ranks and ingest counts, and no shard file (raw ids) left behind."""
    table = pl.read_parquet(events)
    dirty = tmp_path / "dirty.parquet"  # duplicates and null users, counted across shards
    pl.concat([table, table.head(7)]).with_columns(
        user_id=pl.when(pl.int_range(pl.len()) % 500 == 3).then(None).otherwise("user_id")
    ).write_parquet(dirty)
    whole = score_events(artifact, dirty, tmp_path / "whole.parquet", top="5%")
    split = score_events(artifact, dirty, tmp_path / "split.parquet", top="5%", shards=4)
    assert split["shards"] == 4 and split["rows_dropped"]["duplicate_event"] > 0
    counts = ("rows_read", "rows_kept", "rows_dropped", "numeric_missing", "categorical_missing")
    for key in (*counts, "users_scored", "users_in_table"):
        assert split[key] == whole[key], key
    by_user = [
        pl.read_parquet(tmp_path / f"{n}.parquet").sort("user_id") for n in ("whole", "split")
    ]
    # float32 scores may differ in the last bit (other batch mates); ranks and flags may not
    assert_frame_equal(by_user[1], by_user[0], check_exact=False, abs_tol=1e-6)
    assert by_user[1].drop("score_purchase").equals(by_user[0].drop("score_purchase"))
    assert [p.name for p in tmp_path.iterdir() if "-shards-" in p.name] == []  # raw ids gone
    csv = tmp_path / "late_iso.csv"  # a read error from the split is named, not a traceback
    csv.write_text("user_id,timestamp,event_type,channel\n" + "u1,1767225600,view,web\n" * 12_000
                   + "u2,2026-01-02T00:00:00Z,view,web\n")  # fmt: skip
    with pytest.raises(ScoringError, match=r"late_iso\.csv.*could not parse"):
        score_events(artifact, csv, tmp_path / "s.parquet", shards=2)
    with pytest.raises(ScoringError, match="--shards must be at least 1"):
        score_events(artifact, events, tmp_path / "s.parquet", shards=0)


def test_killed_sharded_scoring_leaves_no_raw_ids_after_the_next_run(
    artifact: Path, events: Path, tmp_path: Path
) -> None:
    """The shard files hold raw ids: a run killed while scoring leaves them, and the next
    run writing the same output removes them before it starts."""
    out = tmp_path / "scores.parquet"
    fault = (
        "from engage_seq.serving import scoring as score\n"
        "score.encode_events_at_cutoff = lambda *a: die()\n"
    )
    killed = run_child(
        fault + "score.score_events(sys.argv[1], sys.argv[2], sys.argv[3], shards=2)",
        str(artifact), str(events), str(out),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(list(tmp_path.glob(".scores.parquet-shards-*"))) == 1 and not out.exists()
    score_events(artifact, events, out, shards=2)
    assert list(tmp_path.glob(".scores.parquet-shards-*")) == [] and out.is_file()


def test_far_future_rows_are_dropped_named_and_never_move_the_cutoff(
    artifact: Path, events: Path, tmp_path: Path, caplog
) -> None:
    """One 9999-12-31 row used to move the default cutoff there (every user scored at the
    end of time). Rows more than a year after now are dropped as out_of_date_range, counted,
    and the warning names the first row and its timestamp, never its user."""
    table = pl.read_parquet(events)
    placeholder = datetime(9999, 12, 31, tzinfo=timezone.utc)
    far_rows = pl.DataFrame(
        {"user_id": ["u007", "zz-only-in-the-future"], "timestamp": [placeholder] * 2},
        schema_overrides={"timestamp": table["timestamp"].dtype},
    ).with_columns(event_type=pl.lit("purchase"), channel=pl.lit("web"))
    far = tmp_path / "far.parquet"
    pl.concat([table.head(100), far_rows, table.slice(100)]).write_parquet(far)
    clean = score_events(artifact, events, tmp_path / "clean.parquet")
    with caplog.at_level(logging.WARNING):
        report = score_events(artifact, far, tmp_path / "far_scores.parquet")
    assert report["cutoff"] == clean["cutoff"] < "2026-04"
    assert report["rows_dropped"]["out_of_date_range"] == 2
    assert report["far_future"] == {
        "limit": report["far_future"]["limit"],
        "rows_dropped": 2,
        "first_row": 101,
        "first_timestamp": "9999-12-31T00:00:00+00:00",
    }
    assert report["users_in_table"] == clean["users_in_table"]
    assert pl.read_parquet(tmp_path / "far_scores.parquet").equals(
        pl.read_parquet(tmp_path / "clean.parquet")
    )
    assert "data row 101 with timestamp 9999-12-31T00:00:00+00:00" in caplog.text
    assert "u007" not in caplog.text and "zz-only" not in caplog.text
    saved = json.loads((tmp_path / "far_scores.parquet.report.json").read_text())
    assert saved["far_future"] == report["far_future"]
    sharded = score_events(artifact, far, tmp_path / "sharded.parquet", shards=3)
    assert sharded["cutoff"] == clean["cutoff"]
    assert sharded["far_future"] | {"limit": None} == report["far_future"] | {"limit": None}
    day = 86_400
    assert far_future_limit(None, now=0) == 366 * day + 1  # training's tolerance, from now
    assert far_future_limit(400 * day, now=0) == 400 * day  # a later --cutoff raises it
    # an explicit --cutoff still decides, and the far-future rows are still counted
    early = score_events(artifact, far, tmp_path / "early.parquet", cutoff="2026-02-01")
    assert early["cutoff"] == "2026-02-01T00:00:00+00:00"
    assert early["rows_dropped"]["out_of_date_range"] == 2

    many = tmp_path / "many.parquet"  # 10 % placeholders: above the drop limit, one line
    table.with_columns(
        timestamp=pl.when(pl.int_range(pl.len()) % 10 == 3)
        .then(pl.lit(placeholder, dtype=table["timestamp"].dtype))
        .otherwise("timestamp")
    ).write_parquet(many)
    for shards in (1, 2):
        with pytest.raises(ScoringError) as caught:
            score_events(artifact, many, tmp_path / "never.parquet", shards=shards)
        message = str(caught.value)
        assert "above max_drop_fraction" in message and "\n" not in message
        assert "the far-future limit" in message
        assert "data row 4 with timestamp 9999-12-31" in message
    with pytest.raises(ScoringError, match="outside the years 1-9999"):
        score_events(artifact, events, tmp_path / "never.parquet", cutoff="1767225600000")
    assert not list(tmp_path.glob("never*"))


def test_scoring_killed_between_renames_is_never_trusted_and_the_next_run_cleans_up(
    artifact: Path, events: Path, tmp_path: Path
) -> None:
    """SIGKILL after the new scores are renamed into place, before the top list and the
    report: there is no report (so no reader trusts the mix of new scores and the old top
    list), the staging folder holds raw ids, and the next run removes it."""
    out, top = tmp_path / "scores.parquet", tmp_path / "scores_top.parquet"
    score_events(artifact, events, out, top="5")
    assert check_score_outputs(out, top)["files"].keys() == {out.name, top.name}
    old_top = top.read_bytes()
    fault = (
        "from engage_seq.serving import scoring as score\nreplace, calls = os.replace, []\n"
        "os.replace = lambda *a: die() if calls.append(1) or len(calls) == 2 else replace(*a)\n"
    )
    killed = run_child(
        fault + "score.score_events(*sys.argv[1:4], top='5', cutoff='2026-02-01')",
        str(artifact), str(events), str(out),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert top.read_bytes() == old_top and not out.with_name(out.name + ".report.json").exists()
    with pytest.raises(IncompleteOutputsError, match="is missing"):
        check_score_outputs(out, top)
    staged = list(tmp_path.glob(".scores.parquet-staging-*"))
    assert len(staged) == 1 and (staged[0] / "1-scores_top.parquet").is_file()  # raw ids
    with pytest.raises(ScoringError, match="would overwrite the scores or their report"):
        score_events(artifact, events, out, top="5", top_out=tmp_path / "scores.parquet")
    report = score_events(artifact, events, out, top="5")
    assert list(tmp_path.glob(".scores.parquet-*")) == []
    assert check_score_outputs(out, top)["files"] == report["files"]


def test_scoring_killed_during_the_shard_split_is_cleaned_by_a_run_without_shards(
    artifact: Path, events: Path, tmp_path: Path, caplog
) -> None:
    """SIGKILL right after the streaming split wrote every user's raw rows: the next run to
    the same --out removes them at its start, without --shards and even if it then fails."""
    out = tmp_path / "scores.parquet"
    fault = (
        "from engage_seq.serving import scoring as score, event_table\n"
        "split = event_table.split_by_user\n"
        "event_table.split_by_user = lambda *a: (split(*a), die())\n"
    )
    killed = run_child(
        fault + "score.score_events(sys.argv[1], sys.argv[2], sys.argv[3], shards=3)",
        str(artifact), str(events), str(out),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (work,) = tmp_path.glob(".scores.parquet-shards-*")
    assert list(work.rglob("*.parquet")) and not out.exists()  # the raw split, with raw ids
    failing = pytest.raises(ScoringError, match="no user has an event before the cutoff")
    with caplog.at_level(logging.WARNING, logger="engage_seq.serving.outputs"), failing:
        score_events(artifact, events, out, cutoff="2000-01-01")  # fails, still cleans
    assert f"removing {work.name}, left by an interrupted engage-score run" in caplog.text
    assert not work.exists() and not out.exists()
    score_events(artifact, events, out)
    assert check_score_outputs(out)["shards"] == 1
