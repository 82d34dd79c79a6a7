"""The sample builder: exact samples on a hand-written frame, cutoff planning, properties."""

from __future__ import annotations

import itertools
import math
import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage_seq.common.times import parse_duration, parse_instant
from engage_seq.data.sampling import CutoffPlan, SamplingConfig, plan_cutoffs
from engage_seq.data.schema import to_canonical
from engage_seq.data.sequences import build_samples, samples_at_cutoff, user_histories
from engage_seq.data.tasks import HorizonTask, NextEventTask
from engage_seq.data.vocabulary import fit_vocabulary, numeric_moments

H = 3600
D = 86_400
C = parse_instant("2026-01-10")  # a Saturday, midnight UTC
TASK = HorizonTask(targets=("purchase",), horizon="7d", name="t")


def three_users() -> pl.DataFrame:
    rows = [
        # user a: three events before the cutoff, a purchase exactly AT the cutoff (label)
        ("a", C - 3 * D, "page_view", "web"),
        ("a", C - 2 * D, "add_to_cart", "web"),
        ("a", C - 1 * H, "product_view", "app"),
        ("a", C, "purchase", "web"),
        ("a", C + 1 * H, "page_view", "web"),
        # user b: two events at the same second (tie -> input order kept), and a
        # purchase exactly at cutoff + horizon, which is outside [C, C + 7d)
        ("b", C - 5 * D, "email_open", "email"),
        ("b", C - 5 * D, "email_click", "email"),
        ("b", C + 7 * D, "purchase", "web"),
        # user c: nothing before the cutoff -> no sample
        ("c", C + 1 * D, "purchase", "web"),
    ]
    return (
        pl.DataFrame(rows, schema=["user_id", "ts", "event_type", "channel"], orient="row")
        .with_columns(pl.from_epoch("ts", time_unit="s").alias("timestamp"))
        .drop("ts")
    )


def _sample(frame: pl.DataFrame, max_len: int = 2) -> dict[str, dict]:
    events = user_histories(to_canonical(frame.lazy()))
    out = samples_at_cutoff(events, TASK, C, "train", max_len).collect()
    keys = to_canonical(frame.lazy()).select("user_key", pl.col("user_key").alias("k")).collect()
    ids = dict(zip(frame["user_id"], keys["k"], strict=True))
    by_key = {row["user_key"]: row for row in out.to_dicts()}
    return {user: by_key[key] for user, key in ids.items() if key in by_key}


def test_exact_samples_on_three_users() -> None:
    samples = _sample(three_users())
    assert set(samples) == {"a", "b"}  # c has no history before the cutoff

    a = samples["a"]
    assert a["event_type"] == ["add_to_cart", "product_view"]  # last 2 of 3, oldest first
    assert a["channel"] == ["web", "app"]
    assert a["ts"] == [C - 2 * D, C - 1 * H]
    assert a["n_history"] == 3
    assert a["label_purchase"] is True  # the purchase AT the cutoff is a label, not a feature
    assert a["log_gap_h"] == pytest.approx([math.log1p(24), math.log1p(47)], rel=1e-6)
    assert a["log_age_h"] == pytest.approx([math.log1p(48), math.log1p(1)], rel=1e-6)
    assert a["log_type_gap_h"] == [-1.0, -1.0]  # first add_to_cart, first product_view
    # C - 1h is Friday 23:00 UTC: hour 23, weekday 4 (Monday = 0)
    assert a["hour_sin"][1] == pytest.approx(math.sin(2 * math.pi * 23 / 24), abs=1e-6)
    assert a["dow_cos"][1] == pytest.approx(math.cos(2 * math.pi * 4 / 7), abs=1e-6)

    b = samples["b"]
    assert b["event_type"] == ["email_open", "email_click"]  # same second: input order
    assert b["log_gap_h"] == [0.0, 0.0]
    assert b["label_purchase"] is False  # purchase at exactly C + horizon is outside
    assert b["n_history"] == 2


def test_samples_do_not_depend_on_row_order() -> None:
    frame = three_users()
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert _sample(frame) == _sample(shuffled)


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * D
    assert parse_duration("12h") == 12 * H
    assert parse_duration("13w") == 13 * 7 * D
    assert parse_duration(90) == 90
    for bad in ("7", "seven days", "-1d", "0h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_plan_cutoffs_default_layout() -> None:
    start, end = parse_instant("2026-01-01"), parse_instant("2026-04-01T12:00:00") + 1
    plan = plan_cutoffs(start, end, TASK, SamplingConfig(n_train_cutoffs=3, cutoff_every="7d"))
    assert plan.test == (parse_instant("2026-03-25"),)  # last midnight with 7 full days after
    assert plan.val == (plan.test[0] - 7 * D,)
    assert plan.train == tuple(plan.val[0] - 7 * D - k * 7 * D for k in (2, 1, 0))


def test_plan_rejects_overlapping_windows_and_short_data() -> None:
    with pytest.raises(ValueError, match="leakage"):
        CutoffPlan(train=(10 * D,), val=(12 * D,), test=(30 * D,), horizon_seconds=7 * D)
    with pytest.raises(ValueError, match="too short"):
        plan_cutoffs(0, 10 * D, TASK, SamplingConfig())
    with pytest.raises(ValueError, match="censored"):
        plan_cutoffs(0, 100 * D, TASK, SamplingConfig(test_cutoff="1970-04-08"))


def test_vocabulary_uses_training_period_only() -> None:
    frame = pl.DataFrame(
        {
            "user_key": [1, 1, 2],
            "ts": [10, 20, 30],
            "event_type": ["a", "b", "late"],
            "channel": ["web", "web", "new"],
        }
    ).lazy()
    assert fit_vocabulary(frame, before=25) == {"event_type": ["a", "b"], "channel": ["web"]}


def test_an_event_exactly_at_the_training_cutoff_is_not_fitted() -> None:
    """The training period ends *before* its last cutoff (``ts < before``): an event at the
    cutoff is a label there, so neither its tokens nor its numeric values are fitted."""
    frame = pl.DataFrame(
        {
            "user_key": [1, 1, 2],
            "ts": [24, 25, 25],
            "event_type": ["a", "at_cutoff", "at_cutoff"],
            "channel": ["web", "web", "at_cutoff"],
            "num_value": [1.0, 1e6, 1e6],
        }
    ).lazy()
    assert fit_vocabulary(frame, before=25) == {"event_type": ["a"], "channel": ["web"]}
    assert numeric_moments(frame, before=25)["num_value"]["n"] == 1
    assert fit_vocabulary(frame, before=26)["event_type"] == ["a", "at_cutoff"]  # can fail


# --- properties -------------------------------------------------------------------------

event_rows = st.lists(
    st.tuples(
        st.integers(0, 4),  # user
        st.integers(0, 40 * D),  # ts
        st.sampled_from(["view", "cart", "purchase", "open"]),
        st.sampled_from(["web", "app"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(
    rows=event_rows,
    cutoff=st.integers(1, 40 * D),
    horizon_h=st.integers(1, 10 * 24),
    max_len=st.integers(1, 6),
)
def test_no_leakage_and_exact_truncation(rows, cutoff, horizon_h, max_len) -> None:
    task = HorizonTask(targets=("purchase", "cart"), horizon=f"{horizon_h}h", name="p")
    frame = pl.DataFrame(
        rows, schema=["user_key", "ts", "event_type", "channel"], orient="row"
    ).with_columns(pl.col("user_key").cast(pl.UInt64))
    events = user_histories(frame.lazy())
    out = samples_at_cutoff(events, task, cutoff, "train", max_len).collect()
    horizon = horizon_h * H
    for user in range(5):
        # stable sort by time: same-second events keep their input order, as the builder does
        mine = sorted((r for r in rows if r[0] == user), key=lambda r: r[1])
        history = [r for r in mine if r[1] < cutoff]
        got = out.filter(pl.col("user_key") == user)
        if not history:
            assert got.height == 0
            continue
        sample = got.row(0, named=True)
        kept = history[-max_len:]
        assert sample["ts"] == [r[1] for r in kept]  # most recent, oldest first
        assert sample["event_type"] == [r[2] for r in kept]
        assert all(t < cutoff for t in sample["ts"])  # features strictly before the cutoff
        assert sample["n_history"] == len(history)
        window = [r[2] for r in mine if cutoff <= r[1] < cutoff + horizon]
        assert sample["label_purchase"] == ("purchase" in window)
        assert sample["label_cart"] == ("cart" in window)


@settings(max_examples=40, deadline=None)
@given(rows=event_rows)
def test_every_event_lands_in_exactly_one_history_in_time_order(rows) -> None:
    frame = pl.DataFrame(
        rows, schema=["user_key", "ts", "event_type", "channel"], orient="row"
    ).with_columns(pl.col("user_key").cast(pl.UInt64))
    histories = user_histories(frame.lazy()).collect()
    assert histories["user_key"].n_unique() == histories.height  # one history per user
    assert histories["ts"].list.len().sum() == len(rows)  # no event lost or repeated
    for history in histories.iter_rows(named=True):
        mine = sorted((r for r in rows if r[0] == history["user_key"]), key=lambda r: r[1])
        got = list(zip(history["ts"], history["event_type"], history["channel"], strict=True))
        assert got == [r[1:] for r in mine]  # the user's own events, stably time-sorted


@settings(max_examples=25, deadline=None)
@given(rows=event_rows, seed=st.integers(0, 1000))
def test_build_is_permutation_invariant(rows, seed) -> None:
    frame = pl.DataFrame(
        rows, schema=["user_key", "ts", "event_type", "channel"], orient="row"
    ).with_columns(pl.col("user_key").cast(pl.UInt64))
    # Any permutation that keeps the relative order of events at the same (user, second):
    # the builder keeps input order for such ties, so only they may matter.
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    ties: dict[tuple[int, int], list] = {}
    for row in rows:
        ties.setdefault((row[0], row[1]), []).append(row)
    shuffled = [ties[(r[0], r[1])].pop(0) for r in shuffled]
    other = pl.DataFrame(
        shuffled, schema=["user_key", "ts", "event_type", "channel"], orient="row"
    ).with_columns(pl.col("user_key").cast(pl.UInt64))
    plan = CutoffPlan(train=(10 * D,), val=(20 * D,), test=(30 * D,), horizon_seconds=7 * D)
    a = build_samples(frame.lazy(), TASK, plan, 4).collect()
    b = build_samples(other.lazy(), TASK, plan, 4).collect()
    assert a.equals(b)


def test_split_label_windows_never_reach_the_next_split(tiny_events) -> None:
    sampling = SamplingConfig(n_train_cutoffs=3)
    events = to_canonical(tiny_events.lazy())
    lo, hi = (
        events.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
        .collect()
        .row(0)
    )
    plan = plan_cutoffs(lo, hi + 1, TASK, sampling)
    samples = build_samples(events, TASK, plan, 16).collect()
    h = TASK.horizon_seconds
    by_split = samples.group_by("split").agg(
        pl.col("cutoff").min().alias("lo"), pl.col("cutoff").max().alias("hi")
    )
    bounds = {r["split"]: (r["lo"], r["hi"]) for r in by_split.to_dicts()}
    assert bounds["train"][1] + h <= bounds["val"][0]
    assert bounds["val"][1] + h <= bounds["test"][0]
    assert samples.select((pl.col("ts").list.max() < pl.col("cutoff")).all()).item()


def test_next_event_labels_on_three_users() -> None:
    events = user_histories(to_canonical(three_users().lazy()))
    task = NextEventTask(max_gap="7d")
    out = samples_at_cutoff(events, task, C, "train", 2).collect()
    keys = to_canonical(three_users().lazy()).select("user_key").collect()["user_key"]
    a, b = keys[0], keys[5]
    row_a = out.filter(pl.col("user_key") == a).row(0, named=True)
    assert row_a["label_next_event"] == "purchase"  # exactly at the cutoff: it is the next one
    assert row_a["label_next_hours"] == 0.0
    row_b = out.filter(pl.col("user_key") == b).row(0, named=True)
    assert row_b["label_next_event"] is None  # next event at exactly C + 7d is beyond max_gap


def test_explicit_and_rolling_cutoffs() -> None:
    start, end = parse_instant("2026-01-01"), parse_instant("2026-04-01")
    explicit = SamplingConfig(
        train_cutoffs=("2026-02-01", "2026-02-10"),
        val_cutoffs=("2026-03-01",),
        test_cutoffs=("2026-03-15",),
    )
    plan = plan_cutoffs(start, end, TASK, explicit)
    assert plan.train == (parse_instant("2026-02-01"), parse_instant("2026-02-10"))
    assert plan.test == (parse_instant("2026-03-15"),)
    rolling = SamplingConfig(train_start="2026-02-01", cutoff_every="2d")
    plan = plan_cutoffs(start, end, TASK, rolling)
    assert plan.train[0] >= parse_instant("2026-02-01")
    assert all(b - a == 2 * D for a, b in itertools.pairwise(plan.train))
    assert plan.train[-1] == plan.val[0] - 7 * D
    with pytest.raises(ValueError, match="leakage"):
        plan_cutoffs(start, end, TASK, SamplingConfig(train_cutoffs=("2026-03-15",),
                                                      test_cutoffs=("2026-03-25",)))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(rows=event_rows, cutoff=st.integers(1, 40 * D), gap_h=st.integers(1, 10 * 24))
def test_next_event_label_is_the_first_event_at_or_after_the_cutoff(rows, cutoff, gap_h) -> None:
    frame = pl.DataFrame(
        rows, schema=["user_key", "ts", "event_type", "channel"], orient="row"
    ).with_columns(pl.col("user_key").cast(pl.UInt64))
    events = user_histories(frame.lazy())
    task = NextEventTask(max_gap=f"{gap_h}h")
    out = samples_at_cutoff(events, task, cutoff, "train", 4).collect()
    for sample in out.to_dicts():
        mine = sorted((r for r in rows if r[0] == sample["user_key"]), key=lambda r: r[1])
        after = [r for r in mine if cutoff <= r[1] < cutoff + gap_h * H]
        assert all(t < cutoff for t in sample["ts"])
        if after:
            assert sample["label_next_event"] == after[0][2]
            assert sample["label_next_hours"] == pytest.approx((after[0][1] - cutoff) / H)
        else:
            assert sample["label_next_event"] is None


def test_same_type_gap_reaches_back_beyond_the_window() -> None:
    rows = [
        ("u", C - 20 * D, "purchase", "web"),
        ("u", C - 9 * D, "page_view", "web"),
        ("u", C - 6 * D, "purchase", "web"),  # 14 days after the previous purchase
        ("u", C - 2 * D, "page_view", "web"),  # 7 days after the previous page view
    ]
    frame = (
        pl.DataFrame(rows, schema=["user_id", "ts", "event_type", "channel"], orient="row")
        .with_columns(pl.from_epoch("ts", time_unit="s").alias("timestamp"))
        .drop("ts")
    )
    sample = _sample(frame, max_len=2)["u"]  # the window holds only the last two events
    assert sample["event_type"] == ["purchase", "page_view"]
    assert sample["log_type_gap_h"] == pytest.approx([math.log1p(14 * 24), math.log1p(7 * 24)])
