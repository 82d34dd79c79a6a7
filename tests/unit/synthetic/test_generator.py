"""The built-in generator: seeded, well-formed, and with signal that only order reveals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from engage_seq.common.times import parse_instant
from engage_seq.data.schema import to_canonical
from engage_seq.data.sequences import CutoffPlan, build_samples
from engage_seq.data.tasks import HorizonTask
from engage_seq.synthetic import (
    CHANNELS,
    EVENT_TYPES,
    ORACLE_KNOWLEDGE,
    SyntheticEventSource,
    generate_events,
    purchase_probability,
)
from engage_seq.synthetic import posterior as synthetic_posterior
from engage_seq.synthetic.behaviour import _DUE, _NEVER
from engage_seq.synthetic.clocks import _Clocks, _CycleClock
from engage_seq.synthetic.events import _first_events
from engage_seq.synthetic.generator import _simulate
from engage_seq.synthetic.history import _Past
from engage_seq.synthetic.posterior import _cycle_grid_posterior, _Posterior


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


@pytest.mark.slow  # Monte Carlo calibration on thousands of users
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


@pytest.mark.slow  # simulates and scores thousands of users
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
    past = _Past.at(source, 28 * DAY)
    posterior = _Posterior.of(past.evidence, source)
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
    sessions = _simulate(source).sessions
    clocks = _Clocks.of(source)
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
    sim = _simulate(source)
    first, _ = _first_events(sim)
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


# --- replenishment cycles -------------------------------------------------------------------

# 98 days: long enough for members with periods up to 56 days to show a gap or two
CYCLE_SOURCE = SyntheticEventSource(n_users=4000, days=98, seed=21, replenishment_share=0.6)
CYCLE_CUTOFF_DAYS = (70, 77, 84, 91)  # disjoint weekly windows; the last two are held out
CYCLE_FIT_DAYS = CYCLE_CUTOFF_DAYS[:2]  # the aggregate model's training cutoffs


def test_replenishment_is_off_by_default_and_draws_from_its_own_stream(tiny_events) -> None:
    """Share 0 draws nothing (the period bounds cannot matter); switching it on leaves the
    other hidden parameters, and so the planned sessions, as they were."""
    bounds_only = SyntheticEventSource(
        n_users=300, days=70, seed=1, replenishment_min_days=2.0, replenishment_max_days=3.0
    )
    assert generate_events(bounds_only).equals(tiny_events)
    off = _simulate(SyntheticEventSource(n_users=300, days=70, seed=1))
    on = _simulate(SyntheticEventSource(n_users=300, days=70, seed=1, replenishment_share=0.5))
    assert np.array_equal(off.population.organic_rate, on.population.organic_rate)
    assert np.array_equal(off.population.propensity, on.population.propensity)
    assert np.isinf(off.population.log_period).all()
    assert 0.4 < np.isfinite(on.population.log_period).mean() < 0.6


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"replenishment_share": 1.5}, "replenishment_share must be in"),
        ({"replenishment_share": -0.1}, "replenishment_share must be in"),
        ({"replenishment_min_days": 10.0, "replenishment_max_days": 10.0}, "0 < replenishment"),
        ({"replenishment_min_days": 0.0}, "0 < replenishment"),
    ],
)
def test_replenishment_rejects_bad_settings(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_events(SyntheticEventSource(n_users=10, days=7, **options))


def test_cycle_clock_inverts_and_follows_the_organic_schedule() -> None:
    source = SyntheticEventSource(n_users=10, days=28, seed=0)
    clock = _CycleClock.of(source)
    since = np.array([0, 5 * DAY + 17, 20 * DAY + 3600 * 3 + 5])
    elapsed = np.array([0.3, 2.5, 8.5])  # the last one ends past the period
    after = clock.after(since, elapsed)
    assert after[-1] == _NEVER
    assert np.all(after[:2] > since[:2])
    reached = clock.days_at(after[:2]) - clock.days_at(since[:2])
    assert np.all(reached <= elapsed[:2])
    assert np.all(clock.days_at(after[:2] + 1) - clock.days_at(since[:2]) > elapsed[:2])
    assert clock.days_at(source.days * DAY) == pytest.approx(source.days)
    # a cycle-clock day spans fewer real hours in the evening than at night
    evening, night = clock.days_at(np.array([19, 3]) * 3600 + 3600) - clock.days_at(
        np.array([19, 3]) * 3600
    )
    assert evening > 10 * night


def test_members_rebuy_on_their_period_and_due_visits_look_real() -> None:
    """Members' purchase gaps cluster at their own period, due-date visits open with a
    product view, follow the evening peak and come from members only."""
    source = SyntheticEventSource(n_users=4000, days=120, seed=7, replenishment_share=0.6)
    sim = _simulate(source)
    log, people = sim.sessions, sim.population
    bought = log.purchase > 0
    user, t = log.user[bought], log.t[bought]
    repeat = user[1:] == user[:-1]
    period_days = np.exp(people.log_period[user[1:][repeat]])
    member = np.isfinite(period_days)
    ratio = ((t[1:] - t[:-1])[repeat] / DAY)[member] / period_days[member]
    assert member.sum() > 1000
    assert 0.85 < np.median(ratio) < 1.0
    assert np.mean((ratio > 0.7) & (ratio < 1.2)) > 0.8
    member_users = np.isfinite(people.log_period)
    buys_per_user = np.bincount(log.user[bought], minlength=source.n_users)
    assert buys_per_user[member_users].mean() > 1.5 * buys_per_user[~member_users].mean()

    due = log.kind == _DUE
    assert np.isfinite(people.log_period[log.user[due]]).all()
    assert np.all(log.page_view[due] == 0) and np.all(log.product_view[due] > 0)
    first, _ = _first_events(sim)
    first_type = np.full(first.size, -1)
    is_first = np.r_[True, sim.event_session[1:] != sim.event_session[:-1]]
    first_type[sim.event_session[is_first]] = sim.event_type[is_first]
    assert np.all(first_type[due] == EVENT_TYPES.index("product_view"))
    hour = (log.t[due] // 3600) % 24
    assert np.isin(hour, [18, 19, 20, 21]).sum() > 5 * np.isin(hour, [2, 3, 4, 5]).sum()


def _aggregate_features(events: pl.DataFrame, cutoff: int) -> pl.DataFrame:
    """Recency / frequency aggregates per user with history, as an RFM model would use:
    log hours since the last event and the last purchase, and purchase, product-view and
    event counts over 7 and 30 days and the whole history."""
    ts = pl.col("timestamp").dt.epoch("s")
    hours = (cutoff - ts) / 3600.0
    is_buy = pl.col("event_type") == "purchase"
    is_view = pl.col("event_type") == "product_view"
    features = [
        hours.min().log1p().alias("since_last"),
        hours.filter(is_buy).min().log1p().fill_null(10.0).alias("since_buy"),
        is_buy.any().not_().cast(pl.Float64).alias("never_bought"),
    ]
    for name, flag in [("buys", is_buy), ("views", is_view), ("events", pl.lit(True))]:
        for days in (7, 30, None):
            within = flag if days is None else flag & (hours <= 24 * days)
            features.append(within.sum().cast(pl.Float64).log1p().alias(f"{name}_{days}"))
    return events.filter(ts < cutoff).group_by("user_id").agg(features)


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (a bias column is added)."""
    x = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(x.shape[1])
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        gradient = x.T @ (p - y) + l2 * len(y) * w
        hessian = (x.T * (p * (1 - p))) @ x + l2 * len(y) * np.eye(x.shape[1])
        w -= np.linalg.solve(hessian, gradient)
    return w


@pytest.fixture(scope="module")
def cycle_oracle_vs_labels() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per oracle (and "aggregates": the RFM model): (probability, label, cutoff day)."""
    events = generate_events(CYCLE_SOURCE)
    pooled: dict[str, list[list[np.ndarray]]] = {k: [[], [], []] for k in ORACLE_KNOWLEDGE}
    frames = {}
    for day in CYCLE_CUTOFF_DAYS:
        cutoff = CYCLE_SOURCE.start_epoch + day * DAY
        labels = _realised_labels(events, cutoff, WEEK)
        frames[day] = _aggregate_features(events, cutoff).join(labels, on="user_id")
        for knows in ORACLE_KNOWLEDGE:
            oracle = purchase_probability(CYCLE_SOURCE, cutoff, WEEK, knows=knows, replicates=64)
            joined = oracle.join(labels, on="user_id", how="full", coalesce=True)
            assert joined.null_count().sum_horizontal().item() == 0
            for part, values in zip(
                pooled[knows],
                [joined["probability"], joined["label"], np.full(joined.height, day)],
                strict=True,
            ):
                part.append(np.asarray(values))
    out = {k: tuple(np.concatenate(part) for part in parts) for k, parts in pooled.items()}

    names = [c for c in frames[CYCLE_FIT_DAYS[0]].columns if c not in ("user_id", "label")]
    train = pl.concat([frames[d] for d in CYCLE_FIT_DAYS])
    weights = _fit_logistic(train.select(names).to_numpy(), train["label"].to_numpy())
    test = pl.concat([frames[d] for d in CYCLE_CUTOFF_DAYS if d not in CYCLE_FIT_DAYS])
    score = np.column_stack([np.ones(test.height), test.select(names).to_numpy()]) @ weights
    out["aggregates"] = (score, test["label"].to_numpy(), np.zeros(test.height))
    return out  # type: ignore[return-value]


@pytest.mark.slow  # Monte Carlo calibration on thousands of users
@pytest.mark.parametrize("knows", ORACLE_KNOWLEDGE)
def test_oracle_is_calibrated_with_replenishment(cycle_oracle_vs_labels, knows: str) -> None:
    probability, label, _ = cycle_oracle_vs_labels[knows]
    assert label.sum() > 800
    assert abs(probability.mean() - label.mean()) < 0.1 * label.mean()
    assert abs(_calibration_z(probability, label)) < 3.5
    top = probability >= np.quantile(probability, 0.9)
    assert label[top].mean() > 0.3
    assert abs(_calibration_z(probability[top], label[top])) < 3.5


@pytest.mark.slow  # simulates and scores thousands of users
def test_replenishment_signal_is_in_the_timing_not_the_aggregates(cycle_oracle_vs_labels) -> None:
    """On the held-out cutoffs the history oracle must beat a logistic regression on
    recency / count aggregates by a wide margin: knowing when a member is due takes their past
    inter-purchase gaps, which aggregates do not hold. Latent knowledge adds a little more."""
    probability, label, day = cycle_oracle_vs_labels["history"]
    held_out = ~np.isin(day, CYCLE_FIT_DAYS)
    history = _auroc(probability[held_out], label[held_out])
    latent_p, latent_label, latent_day = cycle_oracle_vs_labels["latent"]
    latent_held_out = ~np.isin(latent_day, CYCLE_FIT_DAYS)
    latent = _auroc(latent_p[latent_held_out], latent_label[latent_held_out])
    aggregates = _auroc(*cycle_oracle_vs_labels["aggregates"][:2])
    assert history > aggregates + 0.03  # measured 0.053 (0.89 vs 0.84)
    assert latent >= history - 0.01


def _marginal_cdf(
    points: np.ndarray, step: np.ndarray, weights: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """P(parameter <= value) per row of a piecewise-constant posterior on cells centred at
    `points` (rows, G) of width `step` (rows,) with probabilities `weights` (rows, G)."""
    covered = (value[:, None] - (points - step[:, None] / 2)) / step[:, None]
    return (weights * np.clip(covered, 0.0, 1.0)).sum(axis=1)


@pytest.mark.slow  # Monte Carlo calibration on thousands of users
def test_cycle_posterior_is_calibrated_against_the_hidden_truth() -> None:
    """Simulation-based calibration of the replenishment part of the history posterior: for
    users with a purchase, P(member) matches the realised share, and for members the joint
    posterior's marginal CDFs at the true log period and propensity are uniform. Due-date
    visits that are left out, or a compensator over the wrong interval, shift the period's."""
    source = SyntheticEventSource(n_users=6000, days=98, seed=22, replenishment_share=0.6)
    past = _Past.at(source, 91 * DAY)
    posterior = _Posterior.of(past.evidence, source)
    evidence, cycles = past.evidence.cycles, posterior.cycles
    assert evidence is not None and cycles is not None
    users = past.members[evidence.rows]
    log_period = past.population.log_period[users]
    member = np.isfinite(log_period)
    p_member = cycles.member
    assert abs(_calibration_z(p_member, member)) < 3.5
    assert np.all(p_member[evidence.has_due_visit] == 1.0)  # only members have due visits
    unsure = (p_member > 0.05) & (p_member < 0.95)
    assert unsure.sum() > 200
    assert abs(_calibration_z(p_member[unsure], member[unsure])) < 3.5

    k = np.flatnonzero(member)
    assert k.size > 800
    joint = cycles.joint
    period_weights = joint.weights[k].sum(axis=1)
    ranks = {
        "log_period": _marginal_cdf(joint.x[k], joint.x_step[k], period_weights, log_period[k]),
        "propensity": _marginal_cdf(
            joint.b[k],
            joint.b_step[k],
            joint.weights[k].sum(axis=2),
            past.population.propensity[users[k]],
        ),
    }
    for name, rank in ranks.items():
        assert abs(rank.mean() - 0.5) < 5 * 0.289 / np.sqrt(rank.size), name
        assert abs(rank.std() - 0.289) < 0.02, name
        assert abs((rank < 0.1).mean() - 0.1) < 0.03, name
    # the gaps pin the period down: most members' posterior sd of log period is small
    mean = (period_weights * joint.x[k]).sum(axis=1)
    second = (period_weights * joint.x[k] ** 2).sum(axis=1)
    assert np.median(np.sqrt(second - mean**2)) < 0.1  # measured 0.045


def test_replenishment_oracle_is_deterministic_and_handles_no_buyers() -> None:
    source = SyntheticEventSource(n_users=300, days=70, seed=1, replenishment_share=0.6)
    cutoff = source.start_epoch + 35 * DAY

    def run(**kwargs: object) -> pl.DataFrame:
        return purchase_probability(source, cutoff, WEEK, replicates=16, **kwargs)

    assert run(seed=3).equals(run(seed=3))
    assert not run(seed=3).equals(run(seed=4))
    assert run(knows="latent", seed=3).equals(run(knows="latent", seed=3))
    # so early that nobody has purchased yet: no joint posterior rows at all
    past = _Past.at(source, DAY)
    assert past.evidence.cycles is not None and past.evidence.cycles.rows.size == 0
    early = purchase_probability(source, source.start_epoch + DAY, WEEK, replicates=4)
    assert early.height == past.members.size > 0
    assert early["probability"].is_between(0.0, 1.0).all()


def test_cycle_posterior_in_row_chunks_is_the_same(monkeypatch) -> None:
    source = SyntheticEventSource(n_users=1500, days=70, seed=3, replenishment_share=0.6)
    evidence = _Past.at(source, 63 * DAY).evidence.cycles
    assert evidence is not None and evidence.rows.size > 100
    whole = _cycle_grid_posterior(evidence)
    monkeypatch.setattr(synthetic_posterior, "_CYCLE_ROWS_PER_CHUNK", 37)
    chunked = _cycle_grid_posterior(evidence)
    np.testing.assert_array_equal(whole.x, chunked.x)
    np.testing.assert_allclose(whole.weights, chunked.weights, atol=1e-6)  # float32 sums
    np.testing.assert_allclose(whole.log_evidence, chunked.log_evidence, atol=1e-5)
