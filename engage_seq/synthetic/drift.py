"""Drift: behaviour that changes from ``drift_start`` on, re-played from the state the past left.

**Drift** (``drift_start``, off by default) changes behaviour from that date on, so a model
trained before it decays and a drift monitor has something to find. With strength s
(``drift_strength``, default 1):

* a competitor matches prices, so research stops converting here: the buy log-odds per unit
  of intent (recent product views) go from 0.5 to 0.5 (1 - s), and per unit of open-cart
  boost from +3 to 3 - 6s (an abandoned cart now means the user bought elsewhere), so the
  short-term signals a model learnt mislead it;
* the replenished product line changes: a share s of users get a fresh replenishment draw
  (member with the same ``replenishment_share``, a new period), so yesterday's regular
  rebuyers mostly stop and others start, their first cycle at their next purchase: the gaps
  a model reads in a user's past no longer tell the next purchase;
* e-mail sends drop by 0.5s and push sends grow by s, and a share 0.5s of the users who browse
  on the web move their organic sessions to the app: the channel and event-type mix shifts.

Measured on 4000 users × 98 days (share 0.6, drift from day 63, s = 1): a GRU trained before
the drift (test ROC-AUC 0.80) scores 0.77-0.81 at the three weekly cutoffs before it and
0.62-0.72 at the four after it, and the 7-day purchase rate falls from ~6% to 2-3%
(`tests/unit/monitoring/test_backtest.py`).

Events before ``drift_start`` are exactly those of the undrifted data with the same seed (the
drifted period is re-played from the state the past left, with its own random streams; see
`_with_drift`), so a model trained before the date sees the same data either way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engage_seq.synthetic.behaviour import _EMAIL, _PUSH, _Conversion
from engage_seq.synthetic.clocks import _EMAIL_HOUR, _EMAIL_WEEKDAY, _CycleClock, _SeasonalClock
from engage_seq.synthetic.events import _expand_events, _Simulation
from engage_seq.synthetic.population import _Population
from engage_seq.synthetic.sessions import _DueVisits, _play_sessions, _replay_history, _SessionLog
from engage_seq.synthetic.settings import _SECONDS_PER_DAY, SyntheticSettings, _log_period_bounds

# Drift (opt-in, from `drift_start`): each effect scales with `drift_strength` s in (0, 1]; the
# buy log-odds change is `_Conversion.drifted`.
_DRIFT_EMAIL_CUT = 0.5  # e-mail sends x (1 - 0.5 s) ...
_DRIFT_EXTRA_PUSH = 1.0  # ... push sends x (1 + s)
_DRIFT_TO_APP = 0.5  # share (x s) of web-browsing users whose organic sessions move to the app


def _with_drift(
    sim: _Simulation,
    cfg: SyntheticSettings,
    planned: tuple[np.ndarray, np.ndarray, np.ndarray],
    clock: _CycleClock,
) -> _Simulation:
    """The undrifted simulation up to `drift_start`, then the rest re-played under the drifted
    behaviour from the state the past left, with draws from their own streams.

    Re-playing (rather than switching behaviour inside the one generator loop) is what keeps
    every session that starts before the drift, and so every event before it, identical to the
    undrifted data: the generator's draws are shared across users session rank by session
    rank, so any changed outcome after the drift would shift the draws of other users' earlier
    sessions. The kept sessions rebuild each user's state (`_replay_history`); a running
    replenishment cycle continues with its remaining due-date visits (`_DueVisits.resume`).
    """
    n, s = cfg.n_users, cfg.drift_strength
    begin = int(cfg.drift_epoch or 0) - cfg.start_epoch
    rng = np.random.default_rng([cfg.seed, 2])
    cycle_rng = np.random.default_rng([cfg.seed, 3])
    kept = sim.sessions.t < begin
    state, _, _ = _replay_history(sim.sessions, kept, n)
    # The replenished line changes: redrawn users' old cycles end, new members' cycles start
    # at their next purchase (so their last purchase no longer counts for the due date).
    redrawn = rng.random(n) < s
    state.last_buy_t[redrawn] = -1
    after = _drifted_population(rng, cfg, sim.population, redrawn)
    user, kind, t = _drifted_plan(rng, cfg, sim.population, planned, begin)

    due = _DueVisits(n)
    cycling = np.flatnonzero(np.isfinite(after.log_period) & (state.last_buy_t >= 0))
    due.resume(cycle_rng, cycling, state.last_buy_t[cycling], begin, after.log_period, clock)
    conversion = _Conversion.drifted(s)
    late = _play_sessions(rng, cycle_rng, after, user, kind, t, clock, state, due, conversion)
    late_events = _expand_events(rng, late, after.prefers_app)
    return _merge_simulations(sim, kept, late, late_events)


def _drifted_population(
    rng: np.random.Generator, cfg: SyntheticSettings, people: _Population, redrawn: np.ndarray
) -> _Population:
    """The users after the drift: the `redrawn` ones get a fresh replenishment draw, and a
    share of the rest of the web browsers moves to the app."""
    n, s = cfg.n_users, cfg.drift_strength
    member = rng.random(n) < cfg.replenishment_share
    lo, hi = _log_period_bounds(cfg)
    new_period = np.where(member, rng.uniform(lo, hi, n), np.inf)
    return replace(
        people,
        log_period=np.where(redrawn, new_period, people.log_period),
        prefers_app=people.prefers_app | (rng.random(n) < _DRIFT_TO_APP * s),
    )


def _drifted_plan(
    rng: np.random.Generator,
    cfg: SyntheticSettings,
    people: _Population,
    planned: tuple[np.ndarray, np.ndarray, np.ndarray],
    begin: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planned sessions (user, kind, start) from the drift on, sorted by user then start: the
    same organic ones, fewer e-mails, more pushes."""
    n, s = cfg.n_users, cfg.drift_strength
    user, kind, t = (a[planned[2] >= begin] for a in planned)
    keep = (kind != _EMAIL) | (rng.random(kind.size) < 1.0 - _DRIFT_EMAIL_CUT * s)
    marketing = _SeasonalClock.of(cfg, _EMAIL_WEEKDAY, _EMAIL_HOUR)
    extra_mean = (
        people.push_open_p * cfg.pushes_per_week * cfg.days / 7.0 * _DRIFT_EXTRA_PUSH * s
    ) * marketing.fraction_between(begin, cfg.days * _SECONDS_PER_DAY)
    extra = rng.poisson(extra_mean)
    extra_t = marketing.sample(rng, int(extra.sum()), begin, cfg.days * _SECONDS_PER_DAY)
    user = np.concatenate([user[keep], np.repeat(np.arange(n), extra)])
    kind = np.concatenate([kind[keep], np.full(extra.sum(), _PUSH, np.int8)])
    t = np.concatenate([t[keep], extra_t.astype(np.int64)])
    order = np.lexsort((t, user))
    return user[order], kind[order], t[order]


def _merge_simulations(
    sim: _Simulation,
    kept: np.ndarray,
    late: _SessionLog,
    late_events: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> _Simulation:
    """`sim`'s `kept` sessions and their events, then `late`'s (all later for each user), in
    the generator's order: sessions by (user, start), events by session then emission."""
    log = sim.sessions
    fields = [f for f in _SessionLog.__dataclass_fields__]
    merged = {f: np.concatenate([getattr(log, f)[kept], getattr(late, f)]) for f in fields}
    order = np.lexsort((np.arange(merged["user"].size), merged["user"]))  # kept ones first
    sessions = _SessionLog(**{f: values[order] for f, values in merged.items()})
    position = np.empty_like(order)
    position[order] = np.arange(order.size)

    new_row = np.cumsum(kept) - 1  # row of a kept session among the kept ones
    early = kept[sim.event_session]
    late_type, late_channel, late_session, late_seconds = late_events
    session = position[
        np.concatenate([new_row[sim.event_session[early]], kept.sum() + late_session])
    ]
    by_session = np.argsort(session, kind="stable")
    return _Simulation(
        population=sim.population,  # the truth before the drift
        sessions=sessions,
        event_type=np.concatenate([sim.event_type[early], late_type])[by_session],
        event_channel=np.concatenate([sim.event_channel[early], late_channel])[by_session],
        event_session=session[by_session],
        event_seconds=np.concatenate([sim.event_seconds[early], late_seconds])[by_session],
    )
