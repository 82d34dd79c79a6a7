"""The session log: every session's outcome, played session rank by session rank.

Generation is vectorised over users; the only Python loop runs over the *session rank* (1st
session of every user, then 2nd, ...), because a session's outcome depends on the state left
by the previous one (and with replenishment cycles, which sessions happen at all does too: a
purchase schedules the next cycle's due-date visits). `_replay_history` rebuilds the same state
from a log without random draws, for the drifted period and for the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage_seq.synthetic.behaviour import (
    _DUE,
    _DUE_VISITS_PER_CYCLE,
    _NEVER,
    _UNDRIFTED,
    _BehaviourState,
    _buy_logit,
    _Conversion,
    _due_boost,
    _due_visit_log_elapsed,
    _due_visits_before,
    _play_session,
    _SessionOutcome,
    _sigmoid,
)
from engage_seq.synthetic.clocks import _CycleClock
from engage_seq.synthetic.population import _Population

# The per-session event counts of a `_SessionLog` and their dtypes.
_COUNT_DTYPES = {
    "email_open": np.int8,
    "email_click": np.int8,
    "unsubscribe": np.int8,
    "push_open": np.int8,
    "page_view": np.int16,
    "product_view": np.int16,
    "add_to_cart": np.int8,
    "purchase": np.int8,
}


@dataclass(frozen=True)
class _SessionLog:
    """One row per session, sorted by (user, start); the event counts are what a session emits."""

    user: np.ndarray
    kind: np.ndarray
    t: np.ndarray  # start, seconds since the period start
    email_open: np.ndarray
    email_click: np.ndarray
    unsubscribe: np.ndarray
    push_open: np.ndarray
    page_view: np.ndarray
    product_view: np.ndarray
    add_to_cart: np.ndarray
    purchase: np.ndarray


class _DueVisits:
    """The generator's pending due-date visits: per user, the current cycle's visit times
    (ascending, `_NEVER`-padded) and how many of them have been played.

    A cycle's due-date visits are an inhomogeneous Poisson process with intensity
    `_DUE_VISITS_PER_CYCLE` × the log-logistic density of the elapsed cycle-clock time: drawn
    whole when the cycle starts (a Poisson number of i.i.d. log-logistic delays is exactly that
    process) and dropped when a purchase starts the next cycle, which makes the process
    state-dependent: its intensity at t depends on when the last purchase before t happened.
    """

    def __init__(self, n_users: int) -> None:
        self.times = np.full((n_users, 1), _NEVER, np.int64)  # last column stays _NEVER
        self.played = np.zeros(n_users, np.int64)

    def upcoming(self) -> np.ndarray:
        """Every user's next due visit (`_NEVER` if none)."""
        return self.times[np.arange(self.played.size), self.played]

    def restart(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        now: np.ndarray,
        log_period: np.ndarray,
        clock: _CycleClock,
    ) -> None:
        """New cycles for `users`, who purchased at `now`; `log_period` is per user."""
        count = rng.poisson(_DUE_VISITS_PER_CYCLE, users.size)
        owner = np.repeat(np.arange(users.size), count)
        zero, one = np.zeros(owner.size), np.ones(owner.size)
        log_elapsed = _due_visit_log_elapsed(rng, log_period[users[owner]], zero, one)
        self._replace(users, count, owner, clock.after(now[owner], np.exp(log_elapsed)))

    def resume(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        since: np.ndarray,
        begin: int,
        log_period: np.ndarray,
        clock: _CycleClock,
    ) -> None:
        """The rest of running cycles from `begin` on, for `users` whose cycle started at
        `since` (per user): the visits of a Poisson process after `begin` are again Poisson,
        with the cycle's share of visits still to come (what the oracle's window uses too)."""
        done = _due_visits_before(clock.log_elapsed(since, begin), log_period[users])
        count = rng.poisson(_DUE_VISITS_PER_CYCLE * (1.0 - done))
        owner = np.repeat(np.arange(users.size), count)
        log_elapsed = _due_visit_log_elapsed(
            rng, log_period[users[owner]], done[owner], np.ones(owner.size)
        )
        when = clock.after(since[owner], np.exp(log_elapsed))
        self._replace(users, count, owner, np.where(when < _NEVER, np.maximum(when, begin), when))

    def _replace(
        self, users: np.ndarray, count: np.ndarray, owner: np.ndarray, when: np.ndarray
    ) -> None:
        """Make `users`' pending visits `when` (per visit; `owner` indexes `users`)."""
        width = int(count.max(initial=0)) + 1
        if width > self.times.shape[1]:
            pad = width - self.times.shape[1]
            self.times = np.pad(self.times, ((0, 0), (0, pad)), constant_values=_NEVER)
        self.times[users] = _NEVER
        self.played[users] = 0
        order = np.lexsort((when, owner))
        owner, when = owner[order], when[order]
        column = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
        self.times[users[owner], column] = when


def _play_sessions(
    rng: np.random.Generator,
    cycle_rng: np.random.Generator,
    people: _Population,
    user: np.ndarray,
    kind: np.ndarray,
    t: np.ndarray,
    clock: _CycleClock,
    state: _BehaviourState | None = None,
    due: _DueVisits | None = None,
    conversion: _Conversion = _UNDRIFTED,
) -> _SessionLog:
    """Outcomes session rank by session rank (all users' 1st session, then 2nd, ...).

    The planned sessions (`user`, `kind`, `t`: organic, e-mail and push) are merged with the
    due-date visits that replenishment members' purchases trigger along the way; at each rank
    every user plays whichever comes first. Without members this is the planned sessions in
    order, with the random draws of the original generator. `state` and `due` (default: fresh,
    none pending) let the drifted period continue from where the past left off.
    """
    n_users = people.propensity.size
    per_user = np.bincount(user, minlength=n_users)
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    member = np.isfinite(people.log_period)
    cycles = bool(member.any())
    due = due if due is not None else _DueVisits(n_users)
    planned_played = np.zeros(n_users, np.int64)
    ranks: list[dict[str, np.ndarray]] = []  # per rank, the played sessions' log columns
    state = state if state is not None else _BehaviourState.fresh(n_users)
    while True:
        has_planned = planned_played < per_user
        next_due = due.upcoming()
        users = np.flatnonzero(has_planned | (next_due < _NEVER))
        if users.size == 0:
            break
        s = first[users] + np.minimum(planned_played[users], per_user[users] - 1)
        planned_t = np.where(has_planned[users], t[s], _NEVER)
        take_due = next_due[users] < planned_t  # a tie goes to the planned session
        now = np.where(take_due, next_due[users], planned_t)
        now_kind = np.where(take_due, _DUE, kind[s]).astype(np.int8)
        due.played[users[take_due]] += 1
        planned_played[users[~take_due]] += 1
        played = _play_session(rng, state, users, now, now_kind)
        logit = played.buy_logit(people.propensity[users], conversion)
        if cycles:
            log_elapsed = clock.log_elapsed(state.last_buy_t[users], now)
            logit = logit + _due_boost(log_elapsed, people.log_period[users])
        buy = played.browsing & (rng.random(users.size) < _sigmoid(logit))
        state.close_session(users, now, played.add, buy)
        if cycles:
            restart = buy & member[users]
            due.restart(cycle_rng, users[restart], now[restart], people.log_period, clock)
        ranks.append(_log_columns(users, now_kind, now, played, buy))
    return _session_log(ranks, user, kind, t)


def _log_columns(
    users: np.ndarray, kind: np.ndarray, now: np.ndarray, played: _SessionOutcome, buy: np.ndarray
) -> dict[str, np.ndarray]:
    """One rank's sessions as `_SessionLog` columns (dtypes are set when the log is built)."""
    return {
        "user": users,
        "kind": kind,
        "t": now,
        "email_open": played.is_email,
        "email_click": played.clicked,
        "unsubscribe": played.unsubscribed,
        "push_open": played.is_push,
        "page_view": played.pages,
        "product_view": played.products,
        "add_to_cart": played.add,
        "purchase": buy,
    }


def _session_log(
    ranks: list[dict[str, np.ndarray]], user: np.ndarray, kind: np.ndarray, t: np.ndarray
) -> _SessionLog:
    """The ranks' sessions sorted by (user, start); with none played, the (empty) plan."""
    if not ranks:
        empty = {name: np.zeros(0, dtype) for name, dtype in _COUNT_DTYPES.items()}
        return _SessionLog(user=user, kind=kind, t=t, **empty)
    rank_of = [np.full(columns["user"].size, rank, np.int64) for rank, columns in enumerate(ranks)]
    # each user's sessions were played in time order, so (user, rank) sorts them by start
    order = np.lexsort((np.concatenate(rank_of), np.concatenate([c["user"] for c in ranks])))
    merged = {name: np.concatenate([c[name] for c in ranks])[order] for name in ranks[0]}
    return _SessionLog(
        user=merged["user"],
        kind=merged["kind"].astype(np.int8),
        t=merged["t"].astype(np.int64),
        **{name: merged[name].astype(dtype) for name, dtype in _COUNT_DTYPES.items()},
    )


def _replay_history(
    log: _SessionLog, seen: np.ndarray, n_users: int
) -> tuple[_BehaviourState, np.ndarray, np.ndarray]:
    """Each user's state at the cutoff, and per seen session its purchase log-odds without the
    propensity and replenishment terms and the start of the user's last purchase session before
    it (-1 if none), rebuilt without random draws from what the events show.

    Why the state is a function of the observed events (so both oracles may condition on it):

    * a session's kind is its first event (email_open, push_open, page_view, or product_view
      for a due-date visit), and its product views, add_to_cart and purchase are counted in
      its events;
    * intent and the cart evolve only through product views, adds and purchases, at session
      starts; the unsubscribed flag is the unsubscribe event;
    * invisible sessions (e-mail after an unsubscribe) only advance the decay clock, and
      exponential decay composes, so skipping them changes nothing (up to float rounding);
    * the one hidden bit is the start itself: the first event comes 1 s + Exp(45 s) later.
      The true start is used; against 4-day and 2-day time constants the first-event time
      would differ by ~1e-4 relative.

    Session boundaries are taken from the generator; in an event table they are the runs of a
    user's events, which only blur when two of the user's sessions overlap (0.035% of sessions
    on the default data). Hidden and relevant beyond this state are the per-user parameters,
    app use included: push opens and the channel of organic sessions reveal it (app users
    browse organically in the app with probability 0.6); `_HistoryEvidence` collects that.
    """
    idx = np.flatnonzero(seen)  # sorted by (user, start), like the log
    per_user = np.bincount(log.user[idx], minlength=n_users)
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    offsets = np.zeros(idx.size)
    last_buy = np.full(idx.size, -1, np.int64)
    state = _BehaviourState.fresh(n_users)
    for rank in range(int(per_user.max(initial=0))):
        users = np.flatnonzero(per_user > rank)
        position = first[users] + rank
        s = idx[position]
        now = log.t[s]
        add = log.add_to_cart[s] > 0
        state.decay_to(users, now)
        state.unsubscribe(users, log.unsubscribe[s] > 0)
        state.view_products(users, log.product_view[s])
        cart_boost = state.cart_boost(users, now)
        offsets[position] = _buy_logit(0.0, state.intent[users], cart_boost, add)
        last_buy[position] = state.last_buy_t[users]
        state.close_session(users, now, add, log.purchase[s] > 0)
    return state, offsets, last_buy
