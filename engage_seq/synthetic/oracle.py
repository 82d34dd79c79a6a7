"""The oracle: the ground-truth probability that a user purchases in a label window.

**Oracle.** `purchase_probability` gives the ground-truth probability that a user purchases in
``[cutoff, cutoff + horizon)``, i.e. the best any model can do on this data, to print next to
trained models. It re-runs the generator (same seed, so the same users and past), rebuilds each
user's state at the cutoff from their past sessions, and simulates the window forward by Monte
Carlo, vectorised over (user × replicate) lanes. Two levels of knowledge:

* ``knows="history"`` (what benchmarks compare to): Bayes-optimal given only the events before
  the cutoff. The hidden per-user parameters are integrated over their posterior (the
  generator's own priors × the likelihood of the observed past, one 1-D grid per parameter;
  with replenishment cycles, membership × a joint 2-D grid of propensity and period, which
  share the buy log-odds, for users with a purchase);
* ``knows="latent"``: the generator's true hidden parameters, an upper bound no model reaches.

With drift the oracle answers only windows that end by ``drift_start`` and refuses later
ones. Both oracles split time at session starts: a session is history if its first event is before
the cutoff, and the window holds the sessions that start in it. Events that a session emits
minutes past either boundary are therefore not modelled exactly; see `purchase_probability`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from engage_seq.common.times import format_instant as _iso
from engage_seq.synthetic.behaviour import (
    _DUE_VISITS_PER_CYCLE,
    _BehaviourState,
    _due_boost,
    _due_visit_log_elapsed,
    _due_visits_before,
    _play_session,
    _sigmoid,
)
from engage_seq.synthetic.clocks import _Clocks
from engage_seq.synthetic.events import _user_ids
from engage_seq.synthetic.generator import SyntheticEventSource
from engage_seq.synthetic.history import _Past
from engage_seq.synthetic.posterior import _ParameterSource, _Posterior, _Rates, _TrueParameters

ORACLE_KNOWLEDGE: tuple[str, ...] = ("history", "latent")
_LANES_PER_CHUNK = 1 << 20  # (user × replicate) lanes simulated at once; bounds memory


def purchase_probability(
    source: SyntheticEventSource,
    cutoff: int,
    horizon_seconds: int,
    *,
    knows: str = "history",
    replicates: int = 256,
    seed: int = 0,
) -> pl.DataFrame:
    """Ground-truth probability that each user purchases in ``[cutoff, cutoff + horizon)``.

    One row per user with at least one event before ``cutoff`` (epoch seconds UTC, as the
    samples' ``ts``): ``user_id`` as `generate_events` emits it and ``probability``. Compare it
    with the labels "any purchase event with cutoff <= ts < cutoff + horizon".

    ``knows="history"`` is the Bayes-optimal forecast from the events before the cutoff alone,
    the ceiling for any model trained on them; ``knows="latent"`` also knows each user's hidden
    rates and propensity, so it is an upper bound that no model can reach.

    How: the generator is re-run with the source's seed, each user's state at the cutoff is
    rebuilt from their past sessions (`_replay_history`), and ``replicates`` Monte Carlo paths
    per user simulate the sessions starting in the window, with the hidden parameters drawn
    from their posterior (history) or fixed at the truth (latent). Each path is simulated on
    the condition "no purchase yet" and carries P(no purchase) = prod(1 - p_buy) over its
    sessions (Rao-Blackwellisation), so the estimate is smooth even for rare buyers. With
    replenishment cycles the window's due-date visits depend on the last purchase, which that
    condition keeps fixed at the one before the cutoff, so they are simulated exactly too; the
    history posterior then also weighs membership and the period (`_CyclePosterior`).

    Boundary sessions: a session is history when its first event is before the cutoff (its
    later events included) and the window holds sessions that *start* in it. So a purchase a
    history session emits at or after the cutoff is a positive label the oracle does not
    predict, a session starting a few seconds before the cutoff with all its events after it
    is ignored, and a window session's purchase may land a few minutes after the window.
    Sessions last a minute or two and windows days, so this is rare: on the default data
    0.012% of users have a session straddling a given hourly cutoff, and over 100 midnight
    cutoffs 13 of 85,618 positive labels came only from such a late purchase and 15 users had
    a window purchase land after the window (`test_oracle_boundary_sessions_are_rare`).

    ``seed`` drives the Monte Carlo only; the data always come from ``source.seed``.

    Drift: the oracle models the undrifted behaviour only. For a drifted source it answers
    windows that end by ``drift_start`` (whose past and window are exactly the undrifted
    data's) and refuses later ones with a ValueError rather than return wrong ground truth.
    """
    if not isinstance(source, SyntheticEventSource):
        raise TypeError(f"the oracle needs a SyntheticEventSource, got {type(source).__name__}")
    begin, end = _window_since_start(source, cutoff, horizon_seconds)
    source = _undrifted(source, cutoff, horizon_seconds)
    _check_oracle_options(knows, replicates, seed)
    past = _Past.at(source, begin)
    if past.members.size == 0:
        return pl.DataFrame(schema={"user_id": pl.String, "probability": pl.Float64})
    parameters = _parameters(past, knows, source)
    probability = _monte_carlo(past, parameters, begin, end, source, replicates, seed)
    members = _user_ids(past.members, source.n_users)
    return pl.DataFrame({"user_id": members, "probability": probability})


def _parameters(past: _Past, knows: str, source: SyntheticEventSource) -> _ParameterSource:
    """Where the lanes' hidden parameters come from: the truth, or the history's posterior."""
    if knows == "latent":
        return _TrueParameters(past.population, past.members, source.replenishment_share > 0)
    return _Posterior.of(past.evidence, source)


def _undrifted(
    source: SyntheticEventSource, cutoff: int, horizon_seconds: int
) -> SyntheticEventSource:
    """`source` without its drift, after checking the window ends by ``drift_start``."""
    drift = source.drift_epoch
    if drift is None:
        return source
    if cutoff + horizon_seconds > drift:
        raise ValueError(
            f"the label window [{_iso(cutoff)}, {_iso(cutoff + horizon_seconds)}) ends after "
            f"drift_start ({_iso(drift)}): the oracle knows the undrifted behaviour only, so "
            "its probabilities would be wrong there; use a window that ends by drift_start"
        )
    return replace(source, drift_start=None)  # identical data before the drift


def _monte_carlo(
    past: _Past,
    parameters: _ParameterSource,
    begin: int,
    end: int,
    source: SyntheticEventSource,
    replicates: int,
    seed: int,
) -> np.ndarray:
    """P(purchase in [begin, end)) per member: 1 - the mean survival over its replicates."""
    members = past.members
    clocks = _Clocks.of(source)
    rng = np.random.default_rng(seed)
    probability = np.empty(members.size)
    rows_per_chunk = max(1, _LANES_PER_CHUNK // replicates)
    for lo in range(0, members.size, rows_per_chunk):
        rows = np.arange(lo, min(lo + rows_per_chunk, members.size))
        rates = parameters.draw(rng, rows, replicates)
        start = past.state.take(np.repeat(members[rows], replicates))
        survival = _window_survival(rng, start, rates, begin, end, source, clocks)
        probability[rows] = 1.0 - survival.reshape(rows.size, replicates).mean(axis=1)
    return probability


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _window_since_start(
    source: SyntheticEventSource, cutoff: int, horizon_seconds: int
) -> tuple[int, int]:
    """The label window as seconds since the period start, after checking it lies inside."""
    if not _is_integer(cutoff) or not _is_integer(horizon_seconds):
        raise TypeError(
            "cutoff and horizon_seconds must be integers (epoch seconds UTC and seconds), "
            f"got {cutoff!r} and {horizon_seconds!r}"
        )
    if horizon_seconds <= 0:
        raise ValueError(f"horizon_seconds must be positive, got {horizon_seconds}")
    first, last = source.start_epoch, source.end_epoch
    if cutoff <= first:
        raise ValueError(
            f"cutoff {_iso(cutoff)} is not after the start of the simulated period "
            f"{_iso(first)}: no user has any history"
        )
    if cutoff + horizon_seconds > last:
        raise ValueError(
            f"the label window [{_iso(cutoff)}, {_iso(cutoff + horizon_seconds)}) ends after the "
            f"simulated period ({_iso(last)}): no sessions are generated there, so its labels "
            "would be truncated; use an earlier cutoff or a longer SyntheticEventSource.days"
        )
    return int(cutoff - first), int(cutoff + horizon_seconds - first)


def _check_oracle_options(knows: str, replicates: int, seed: int) -> None:
    if knows not in ORACLE_KNOWLEDGE:
        raise ValueError(f"knows must be one of {ORACLE_KNOWLEDGE}, got {knows!r}")
    if not _is_integer(replicates) or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _window_survival(
    rng: np.random.Generator,
    start: _BehaviourState,
    rates: _Rates,
    begin: int,
    end: int,
    cfg: SyntheticEventSource,
    clocks: _Clocks,
) -> np.ndarray:
    """P(no purchase in [begin, end)) along one simulated path per lane.

    Session arrivals per kind are an inhomogeneous Poisson process independent of the past
    (the generator's Poisson counts with i.i.d. seasonal times), so the window's sessions are a
    Poisson count with the window's share of the rate, at seasonal times inside the window.
    Paths are played on the condition "no purchase yet" (no buy closes a cart or spends
    intent) and multiply 1 - P(buy) over their browsing sessions.

    Due-date visits depend on the past only through the last purchase, which stays the one
    before the cutoff on that condition: in the window they are a Poisson process too, with the
    cycle's share of visits between the window's ends, at log-logistic times inside it.
    """
    weeks = cfg.days / 7.0
    organic_share = clocks.organic.fraction_between(begin, end)
    marketing_share = clocks.marketing.fraction_between(begin, end)
    email_visible = ~start.unsubscribed  # later e-mails of unsubscribed users change nothing
    expected = [
        rates.organic_rate * cfg.days * organic_share,
        email_visible * rates.email_open_p * cfg.emails_per_week * weeks * marketing_share,
        rates.push_open_p * cfg.pushes_per_week * weeks * marketing_share,
    ]
    due_share = None  # the share of the cycle's due visits before the window's start and end
    if rates.log_period is not None:
        since = start.last_buy_t
        due_share = tuple(
            _due_visits_before(clocks.cycle.log_elapsed(since, edge), rates.log_period)
            for edge in (begin, end)
        )
        expected.append(_DUE_VISITS_PER_CYCLE * (due_share[1] - due_share[0]))
    counts = [rng.poisson(mean) for mean in expected]
    per_lane = np.sum(counts, axis=0)

    # Renumber lanes busiest first: the lanes still active at rank k are then 0..n_k - 1, a
    # slice, so the loop in `_play_window` reads and writes state without gathers.
    busiest_first = np.argsort(-per_lane, kind="stable")
    position = np.empty_like(busiest_first)
    position[busiest_first] = np.arange(busiest_first.size)
    t, kind = _window_session_times(
        rng, counts, position, start, rates, due_share, begin, end, clocks
    )
    log_period = None if rates.log_period is None else rates.log_period[busiest_first]
    state = start.take(busiest_first)
    propensity = rates.propensity[busiest_first]
    survival = _play_window(
        rng, state, propensity, log_period, per_lane[busiest_first], t, kind, clocks
    )
    return survival[position]


def _window_session_times(
    rng: np.random.Generator,
    counts: list[np.ndarray],
    position: np.ndarray,
    start: _BehaviourState,
    rates: _Rates,
    due_share: tuple[np.ndarray, ...] | None,
    begin: int,
    end: int,
    clocks: _Clocks,
) -> tuple[np.ndarray, np.ndarray]:
    """Start times and kinds of the window's sessions, sorted by lane `position` then time."""
    lane = np.concatenate([np.repeat(position, c) for c in counts])
    kind = np.concatenate([np.full(c.sum(), k, np.int8) for k, c in enumerate(counts)])
    times = [
        clocks.organic.sample(rng, int(counts[0].sum()), begin, end),
        clocks.marketing.sample(rng, int(counts[1].sum() + counts[2].sum()), begin, end),
    ]
    if rates.log_period is not None and due_share is not None:
        due_from, due_to = due_share
        owner = np.repeat(np.arange(position.size), counts[3])
        log_elapsed = _due_visit_log_elapsed(
            rng, rates.log_period[owner], due_from[owner], due_to[owner]
        )
        due_t = clocks.cycle.after(start.last_buy_t[owner], np.exp(log_elapsed))
        times.append(np.clip(due_t, begin, end - 1))  # clip: float rounding at the ends only
    t = np.concatenate(times)
    order = np.argsort(lane * np.int64(end - begin) + (t - begin), kind="stable")
    return t[order], kind[order]


def _play_window(
    rng: np.random.Generator,
    state: _BehaviourState,
    propensity: np.ndarray,
    log_period: np.ndarray | None,
    sessions_of_lane: np.ndarray,
    t: np.ndarray,
    kind: np.ndarray,
    clocks: _Clocks,
) -> np.ndarray:
    """Survival of each lane (busiest first) over its sessions `t`, `kind` (sorted by lane then
    time), played session rank by session rank on the condition "no purchase yet"."""
    first = np.concatenate([[0], np.cumsum(sessions_of_lane)[:-1]])
    survival = np.ones(sessions_of_lane.size)
    for rank in range(int(sessions_of_lane.max(initial=0))):
        n_active = int(np.count_nonzero(sessions_of_lane > rank))
        lanes = slice(0, n_active)
        s = first[:n_active] + rank
        now = t[s]
        played = _play_session(rng, state, lanes, now, kind[s])
        logit = played.buy_logit(propensity[lanes])
        if log_period is not None:
            log_elapsed = clocks.cycle.log_elapsed(state.last_buy_t[lanes], now)
            logit = logit + _due_boost(log_elapsed, log_period[lanes])
        buy_p = _sigmoid(logit)
        survival[lanes] *= np.where(played.browsing, 1.0 - buy_p, 1.0)
        state.close_session(lanes, now, played.add, np.zeros(n_active, bool))
    return survival
