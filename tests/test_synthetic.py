"""The built-in generator: seeded, well-formed, and with signal that only order reveals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engage_seq import synthetic
from engage_seq.schema import to_canonical
from engage_seq.sequences import CutoffPlan, HorizonTask, build_samples, parse_instant
from engage_seq.synthetic import (
    CHANNELS,
    EVENT_TYPES,
    ORACLE_KNOWLEDGE,
    SyntheticEventSource,
    generate_events,
    purchase_probability,
)


def test_same_seed_same_table_other_seed_other_table(tiny_source, tiny_events) -> None:
    assert tiny_source.scan().collect().equals(tiny_events)
    other = SyntheticEventSource(n_users=300, days=70, seed=2).scan().collect()
    assert not other.equals(tiny_events)


def test_schema_and_vocabulary(tiny_events) -> None:
    assert tiny_events.schema == pl.Schema(
        {
            "user_id": pl.String,
            "timestamp": pl.Datetime("us", "UTC"),
            "event_type": pl.String,
            "channel": pl.String,
        }
    )
    assert set(tiny_events["event_type"].unique()) <= set(EVENT_TYPES)
    assert set(tiny_events["channel"].unique()) == set(CHANNELS)
    assert tiny_events.null_count().sum_horizontal().item() == 0


def test_daily_seasonality() -> None:
    events = SyntheticEventSource(n_users=2000, days=28, seed=3).scan().collect()
    hours = events["timestamp"].dt.hour()
    evening = (hours.is_between(18, 21)).sum()
    night = (hours.is_between(2, 5)).sum()
    assert evening > 5 * night


def test_open_recent_cart_predicts_purchase() -> None:
    """An add_to_cart after the last purchase, within 2 days of the cutoff, must raise the
    purchase rate: the generator's order- and timing-dependent signal."""
    events = to_canonical(SyntheticEventSource(n_users=6000, days=70, seed=4).scan())
    d = 86_400
    test = parse_instant("2026-03-09")
    plan = CutoffPlan(
        train=(test - 14 * d,), val=(test - 7 * d,), test=(test,), horizon_seconds=7 * d
    )
    samples = build_samples(events, HorizonTask(), plan, max_len=64).collect()
    last = (
        samples.with_row_index("sample")
        .explode(["event_type", "ts"])
        .group_by("sample")
        .agg(
            pl.col("cutoff").first(),
            pl.col("label_purchase").first(),
            pl.col("ts").filter(pl.col("event_type") == "add_to_cart").max().alias("cart"),
            pl.col("ts").filter(pl.col("event_type") == "purchase").max().alias("buy"),
        )
    )
    open_cart = (
        pl.col("cart").is_not_null()
        & (pl.col("buy").is_null() | (pl.col("cart") > pl.col("buy")))
        & (pl.col("cutoff") - pl.col("cart") < 2 * d)
    )
    rates = (
        last.group_by(open_cart.alias("open_cart"))
        .agg(pl.col("label_purchase").mean())
        .to_dict(as_series=False)
    )
    rate = dict(zip(rates["open_cart"], rates["label_purchase"], strict=True))
    assert rate[True] > 2.5 * rate[False]


# --- oracle ---------------------------------------------------------------------------------

DAY = 86_400
WEEK = 7 * DAY
ORACLE_SOURCE = SyntheticEventSource(n_users=6000, days=42, seed=11)
ORACLE_CUTOFF_DAYS = (14, 21, 28, 35)  # disjoint weekly windows


def _realised_labels(events: pl.DataFrame, cutoff: int, horizon: int) -> pl.DataFrame:
    """The benchmark's label: any purchase in [cutoff, cutoff + horizon), for every user with
    an event before the cutoff."""
    ts = pl.col("timestamp").dt.epoch("s")
    in_window = (ts >= cutoff) & (ts < cutoff + horizon)
    return (
        events.group_by("user_id")
        .agg(
            (ts < cutoff).any().alias("has_history"),
            ((pl.col("event_type") == "purchase") & in_window).any().alias("label"),
        )
        .filter("has_history")
        .select("user_id", "label")
    )


def _auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct score
    ranks = average_rank[inverse]
    n_pos = int(label.sum())
    n_neg = label.size - n_pos
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _calibration_z(probability: np.ndarray, label: np.ndarray) -> float:
    """(observed - expected positives) / sd; ~N(0, 1) for calibrated probabilities. Valid when
    pooling disjoint windows too: each label's surprise is uncorrelated with earlier ones."""
    surprise = label.sum() - probability.sum()
    return float(surprise / np.sqrt((probability * (1.0 - probability)).sum()))


@pytest.fixture(scope="module")
def oracle_vs_labels() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per oracle: (probability, realised label) over the pooled cutoffs."""
    events = generate_events(ORACLE_SOURCE)
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for knows in ORACLE_KNOWLEDGE:
        probabilities, labels = [], []
        for day in ORACLE_CUTOFF_DAYS:
            cutoff = ORACLE_SOURCE.start_epoch + day * DAY
            oracle = purchase_probability(ORACLE_SOURCE, cutoff, WEEK, knows=knows, replicates=64)
            joined = oracle.join(
                _realised_labels(events, cutoff, WEEK), on="user_id", how="full", coalesce=True
            )
            assert joined.null_count().sum_horizontal().item() == 0  # same users on both sides
            probabilities.append(joined["probability"].to_numpy())
            labels.append(joined["label"].to_numpy())
        pooled[knows] = (np.concatenate(probabilities), np.concatenate(labels))
    return pooled


@pytest.mark.parametrize("knows", ORACLE_KNOWLEDGE)
def test_oracle_is_calibrated(oracle_vs_labels, knows: str) -> None:
    """Expected positives match the realised ones overall and among the top 10% of users, the
    region that ranking metrics reward, within a few standard errors."""
    probability, label = oracle_vs_labels[knows]
    assert label.sum() > 500
    assert abs(probability.mean() - label.mean()) < 0.1 * label.mean()
    assert abs(_calibration_z(probability, label)) < 3.5
    top = probability >= np.quantile(probability, 0.9)
    assert abs(_calibration_z(probability[top], label[top])) < 3.5


def test_oracles_rank_and_latent_knows_more(oracle_vs_labels) -> None:
    history = _auroc(*oracle_vs_labels["history"])
    latent = _auroc(*oracle_vs_labels["latent"])
    assert history > 0.65
    assert latent > 0.65
    assert latent >= history - 0.02


def test_history_posterior_is_calibrated_against_the_hidden_truth() -> None:
    """Simulation-based calibration: the posterior CDF at the true hidden value is uniform
    when the likelihood and prior match the generator. A wrong exposure, a dropped
    unsubscribe or ignored buys shift or squeeze it."""
    source = SyntheticEventSource(n_users=6000, days=42, seed=12)
    past = synthetic._Past.at(source, 28 * DAY)
    posterior = synthetic._Posterior.of(past.evidence, source)
    truth = past.population
    users = past.members
    app = truth.app_user[users]

    def logit(p: np.ndarray) -> np.ndarray:
        return np.log(p / (1.0 - p))

    ranks = {
        "organic": posterior.log_organic.cdf(
            np.log(truth.organic_rate[users] / source.organic_sessions_per_day)
        ),
        "email": posterior.logit_email.cdf(logit(truth.email_open_p[users])),
        "propensity": posterior.propensity.cdf(truth.propensity[users]),
        # push's continuous part is the posterior given an app user: check those users only
        "push": posterior.logit_push.cdf(logit(np.where(app, truth.push_open_p[users], 0.5)))[app],
    }
    for name, rank in ranks.items():
        standard_error = 0.289 / np.sqrt(rank.size)
        assert abs(rank.mean() - 0.5) < 5 * standard_error, name
        assert abs(rank.std() - 0.289) < 0.02, name  # sd of Uniform(0, 1) is 0.289
        assert abs((rank < 0.1).mean() - 0.1) < 0.025, name
    # opens after an unsubscribe are unseen, so the exposure of these users ends there
    unsubscribed = past.state.unsubscribed[users]
    assert abs(ranks["email"][unsubscribed].mean() - 0.5) < 5 * 0.289 / np.sqrt(unsubscribed.sum())

    p_app = posterior.app_user
    assert abs(_calibration_z(p_app, app)) < 3.5
    assert np.all(p_app[past.evidence.n_push > 0] == 1.0)  # only app users open a push
    assert np.all(p_app[past.evidence.organic_channel == 1] == 1.0)  # ... or browse in the app
    web_only = (past.evidence.organic_channel == 0) & (past.evidence.n_push == 0)
    assert abs(_calibration_z(p_app[web_only], app[web_only])) < 3.5


def test_oracle_clocks_match_generated_session_times() -> None:
    """The oracle's seasonal schedules are the generator's: the share of session starts before
    every hour matches, and window samples follow the schedule inside partial hours too."""
    source = SyntheticEventSource(n_users=20_000, days=7, seed=5)
    sessions = synthetic._simulate(source).sessions
    clocks = synthetic._Clocks.of(source)
    hours = np.arange(0, source.days * DAY + 1, 3600)
    by_kind = [(clocks.organic, sessions.kind == 0), (clocks.marketing, sessions.kind > 0)]
    for clock, of_kind in by_kind:
        share_before = np.searchsorted(np.sort(sessions.t[of_kind]), hours) / of_kind.sum()
        assert np.abs(share_before - clock.fraction_before(hours)).max() < 0.02  # wrong: 0.3

    begin, end = 2 * DAY + 1234, 5 * DAY + 999
    sampled = np.sort(clocks.marketing.sample(np.random.default_rng(0), 100_000, begin, end))
    assert sampled[0] >= begin and sampled[-1] < end
    points = np.arange(begin, end + 1, 600)
    marketing = clocks.marketing
    expected = (marketing.fraction_before(points) - marketing.fraction_before(begin)) / (
        marketing.fraction_between(begin, end)
    )
    assert np.abs(np.searchsorted(sampled, points) / sampled.size - expected).max() < 0.01


def test_oracle_boundary_sessions_are_rare() -> None:
    """The oracle splits time at session starts (see `purchase_probability`). Count, over every
    whole-hour cutoff, how often a session's events straddle it, and how often a purchase is
    emitted after a cutoff by a session whose first event was before it (a positive label the
    oracle does not predict). A session straddles as many hourly cutoffs as there are hour
    boundaries in (first event, last event]."""
    source = SyntheticEventSource(n_users=6000, days=42, seed=11)
    sim = synthetic._simulate(source)
    first, _ = synthetic._first_events(sim)
    last = np.full(first.size, -1, np.int64)
    np.maximum.at(last, sim.event_session, sim.event_seconds)
    bought = sim.event_type == EVENT_TYPES.index("purchase")
    purchase_at = np.full(first.size, -1, np.int64)
    purchase_at[sim.event_session[bought]] = sim.event_seconds[bought]
    visible = last >= 0
    straddled = (last[visible] // 3600 - first[visible] // 3600).sum()
    spilled = (purchase_at // 3600 - first // 3600)[purchase_at >= 0].sum()
    n_cutoffs = source.days * 24

    buyer = sim.sessions.user[sim.event_session[bought]]
    week = sim.event_seconds[bought] // WEEK
    positives_per_week = np.unique(week * source.n_users + buyer).size / (source.days // 7)

    assert straddled / (n_cutoffs * source.n_users) < 5e-4  # measured 1.2e-4
    assert spilled / n_cutoffs < 1e-3 * positives_per_week  # measured 2.3e-4


def test_oracle_rows_are_the_users_with_history(tiny_source, tiny_events) -> None:
    cutoff = tiny_source.start_epoch + 35 * DAY
    oracle = purchase_probability(tiny_source, cutoff, WEEK, replicates=8)
    assert oracle.schema == pl.Schema({"user_id": pl.String, "probability": pl.Float64})
    expected = (
        tiny_events.filter(pl.col("timestamp").dt.epoch("s") < cutoff)["user_id"].unique().sort()
    )
    assert oracle["user_id"].to_list() == expected.to_list()
    assert oracle["probability"].is_between(0.0, 1.0).all()


def test_oracle_without_history_is_empty(tiny_source) -> None:
    oracle = purchase_probability(tiny_source, tiny_source.start_epoch + 1, WEEK)
    assert oracle.height == 0
    assert oracle.schema == pl.Schema({"user_id": pl.String, "probability": pl.Float64})


def test_oracle_is_deterministic_for_a_seed(tiny_source) -> None:
    cutoff = tiny_source.start_epoch + 35 * DAY

    def run(**kwargs: object) -> pl.DataFrame:
        return purchase_probability(tiny_source, cutoff, WEEK, replicates=16, **kwargs)

    assert run(seed=3).equals(run(seed=3))
    assert not run(seed=3).equals(run(seed=4))
    assert run(knows="latent", seed=3).equals(run(knows="latent", seed=3))


@pytest.mark.parametrize(
    ("cutoff_day", "horizon", "options", "error", "message"),
    [
        (65, WEEK, {}, ValueError, "ends after the simulated period"),
        (0, WEEK, {}, ValueError, "not after the start"),
        (-3, WEEK, {}, ValueError, "not after the start"),
        (35, 0, {}, ValueError, "horizon_seconds must be positive"),
        (35, WEEK, {"knows": "future"}, ValueError, "knows must be one of"),
        (35, WEEK, {"replicates": 0}, ValueError, "replicates must be a positive integer"),
        (35, WEEK, {"seed": -1}, ValueError, "seed must be a non-negative integer"),
        (35.5, WEEK, {}, TypeError, "must be integers"),
    ],
)
def test_oracle_rejects_bad_arguments(
    tiny_source, cutoff_day: float, horizon: int, options: dict, error: type, message: str
) -> None:
    cutoff = tiny_source.start_epoch + cutoff_day * DAY
    if isinstance(cutoff_day, int):
        cutoff = int(cutoff)
    with pytest.raises(error, match=message):
        purchase_probability(tiny_source, cutoff, horizon, **options)
