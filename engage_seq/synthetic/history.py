"""The oracle's past: each user's state at the cutoff and what their history says about the
hidden parameters (the likelihood terms the posterior needs).

The state is a function of the observed events (see `_replay_history`), so both oracles may
condition on it; the hidden per-user parameters are what `_HistoryEvidence` (and, with
replenishment cycles, `_CycleEvidence`) collect evidence about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engage_seq.synthetic.behaviour import (
    _DUE_SHAPE,
    _DUE_VISITS_PER_CYCLE,
    CHANNELS,
    _BehaviourState,
    _due_boost,
    _due_visits_before,
    _log_sigmoid,
)
from engage_seq.synthetic.clocks import _Clocks, _CycleClock
from engage_seq.synthetic.events import _first_events, _Simulation
from engage_seq.synthetic.generator import _simulate
from engage_seq.synthetic.population import _PROPENSITY_SD, _Population
from engage_seq.synthetic.sessions import _replay_history, _SessionLog
from engage_seq.synthetic.settings import SyntheticSettings, _log_period_bounds

_SESSIONS_PER_CHUNK = 1 << 15  # past browsing sessions per propensity likelihood block
_CELLS_PER_CHUNK = 1 << 22  # (session × grid cell) log-likelihood terms per block


@dataclass(frozen=True)
class _Past:
    """What the oracle conditions on: the users with history, their state at the cutoff, and
    the evidence about their hidden parameters (the population is the truth, for `latent`)."""

    population: _Population
    members: np.ndarray  # users with an event before the cutoff, ascending
    state: _BehaviourState  # per user (all users; non-members stay fresh)
    evidence: _HistoryEvidence  # per member

    @classmethod
    def at(cls, source: SyntheticSettings, begin: int) -> _Past:
        """The past before `begin` (seconds since the period start) of `source`'s data."""
        sim = _simulate(source)
        first_seconds, first_channel = _first_events(sim)
        seen = first_seconds < begin  # sessions the history shows (at least their first event)
        members = np.unique(sim.sessions.user[seen])
        state, buy_offsets, last_buy = _replay_history(sim.sessions, seen, source.n_users)
        clocks = _Clocks.of(source)
        evidence = _HistoryEvidence.of(
            sim, seen, first_channel, members, buy_offsets, begin, source, clocks
        )
        if source.replenishment_share > 0:
            bounds = _log_period_bounds(source)
            # the replenishment part (`last_buy` per seen session, from `_replay_history`)
            cycles = _CycleEvidence.of(
                evidence, sim.sessions, seen, last_buy, begin, clocks.cycle, bounds
            )
            evidence = replace(evidence, cycles=cycles)
        return cls(sim.population, members, state, evidence)


@dataclass(frozen=True)
class _HistoryEvidence:
    """What the events before the cutoff say about each member's hidden parameters.

    Session counts are Poisson with mean rate × exposure, where the exposure is the expected
    count per unit rate up to the cutoff under the seasonal schedule. E-mail opens stop being
    visible at an unsubscribe, so their exposure ends there (the unsubscribe itself does not
    depend on the open rate). App use shows in push opens and in the channel of organic
    sessions. The buy outcome of every past browsing session is Bernoulli with log-odds =
    propensity + an offset rebuilt from the events (`_replay_history`). Clicks, unsubscribes,
    page and product counts and adds depend on no hidden parameter, so they carry no evidence.
    With replenishment cycles, due-date visits are browsing sessions too (and show the channel
    of organic ones); `cycles` holds what they and the purchase times say about the cycles.
    """

    n_organic: np.ndarray
    organic_exposure: float  # days-equivalent: organic rate (per day) × this = expected count
    n_email: np.ndarray
    email_exposure: np.ndarray  # per member: email_open_p × this = expected visible opens
    n_push: np.ndarray
    push_exposure: float
    organic_channel: np.ndarray  # 1: organic sessions in the app, 0: on the web, -1: none seen
    browse_row: np.ndarray  # member row of each past browsing session (ascending)
    browse_offset: np.ndarray
    browse_bought: np.ndarray
    browse_index: np.ndarray  # each browsing session's index among the seen sessions
    cycles: _CycleEvidence | None = None  # with replenishment cycles only

    @classmethod
    def of(
        cls,
        sim: _Simulation,
        seen: np.ndarray,
        first_channel: np.ndarray,
        members: np.ndarray,
        buy_offsets: np.ndarray,
        begin: int,
        cfg: SyntheticSettings,
        clocks: _Clocks,
    ) -> _HistoryEvidence:
        log = sim.sessions
        idx = np.flatnonzero(seen)
        row_of_user = np.full(cfg.n_users, -1)
        row_of_user[members] = np.arange(members.size)
        row = row_of_user[log.user[idx]]
        n = members.size
        email = log.email_open[idx] > 0
        push = log.push_open[idx] > 0
        due = (log.page_view[idx] == 0) & (log.product_view[idx] > 0)  # first event a product
        browsing = (log.page_view[idx] > 0) | due
        organic = browsing & ~email & ~push & ~due  # browsing with no message first
        own_channel = organic | due  # sessions on the user's preferred channel
        on_app = own_channel & (first_channel[idx] == CHANNELS.index("app"))
        n_organic = np.bincount(row[organic], minlength=n)
        organic_channel = np.where(
            np.bincount(row[own_channel], minlength=n) > 0,
            (np.bincount(row[on_app], minlength=n) > 0).astype(np.int8),
            -1,
        )
        unsub = log.unsubscribe[idx] > 0
        visible_until = np.full(n, begin, np.int64)
        visible_until[row[unsub]] = log.t[idx][unsub]
        weeks = cfg.days / 7.0
        weeks_seen = weeks * clocks.marketing.fraction_before(visible_until)  # send-weighted
        weeks_so_far = weeks * float(clocks.marketing.fraction_before(begin))
        return cls(
            n_organic=n_organic,
            organic_exposure=cfg.days * float(clocks.organic.fraction_before(begin)),
            n_email=np.bincount(row[email], minlength=n),
            email_exposure=cfg.emails_per_week * weeks_seen,
            n_push=np.bincount(row[push], minlength=n),
            push_exposure=cfg.pushes_per_week * weeks_so_far,
            organic_channel=organic_channel,
            browse_row=row[browsing],
            browse_offset=buy_offsets[browsing],
            browse_bought=log.purchase[idx][browsing] > 0,
            browse_index=np.flatnonzero(browsing),
        )


def _add_by_row(total: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """total[r] += the sum of `values` over the entries with rows == r (`rows` ascending)."""
    if rows.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    total[rows[starts]] += np.add.reduceat(values, starts, axis=0)


def _add_buy_log_likelihood(
    total: np.ndarray, rows: np.ndarray, offset: np.ndarray, sign: np.ndarray, points: np.ndarray
) -> None:
    """total (rows, G) += log P(buy outcome) of each session at propensity grid `points`:
    Bernoulli with log-odds offset + propensity; `sign` is +1 for a buy, -1 for none."""
    for lo in range(0, sign.size, _SESSIONS_PER_CHUNK):
        block = slice(lo, lo + _SESSIONS_PER_CHUNK)
        logit = offset[block, None] + points[rows[block]]
        _add_by_row(total, rows[block], _log_sigmoid(sign[block, None] * logit))


@dataclass(frozen=True)
class _CycleEvidence:
    """What the history says about replenishment, for the oracle rows with a purchase.

    Only they need it: a cycle starts at the first purchase, so before it a member's history
    has the same likelihood as a non-member's, and so does the future until the next purchase
    (all the Monte Carlo needs). For a member with propensity b and period P (x = log P, in
    cycle-clock days):

    * every browsing session after the first purchase has buy log-odds offset + b +
      `_due_boost(log elapsed since the last purchase, x)`; earlier ones offset + b;
    * due-date visits are a Poisson process with intensity `_DUE_VISITS_PER_CYCLE` × the
      log-logistic density of the elapsed cycle-clock time × the clock's rate: each seen visit
      adds the log intensity, whose x-dependent part is log σ(z) + log σ(-z) with z = shape ×
      (log elapsed - x); each cycle (a purchase up to the next one or to the cutoff) subtracts
      its expected visits, `_DUE_VISITS_PER_CYCLE` × `_due_visits_before(log length, x)`.

    A non-member has no due-date visits. Arrays per session are in history order, so their row
    indices (into `rows`) ascend.
    """

    rows: np.ndarray  # oracle rows (history members) with a purchase before the cutoff
    has_due_visit: np.ndarray  # per row of `rows`: a member for sure
    plain_row: np.ndarray  # browsing sessions up to the first purchase: no boost possible
    plain_offset: np.ndarray
    plain_sign: np.ndarray
    boost_row: np.ndarray  # browsing sessions after it
    boost_offset: np.ndarray
    boost_sign: np.ndarray
    boost_log_elapsed: np.ndarray
    due_row: np.ndarray
    due_log_elapsed: np.ndarray
    cycle_row: np.ndarray
    cycle_log_length: np.ndarray
    log_period_bounds: tuple[float, float]

    @classmethod
    def of(
        cls,
        evidence: _HistoryEvidence,
        log: _SessionLog,
        seen: np.ndarray,
        last_buy: np.ndarray,
        begin: int,
        clock: _CycleClock,
        bounds: tuple[float, float],
    ) -> _CycleEvidence:
        session = np.flatnonzero(seen)[evidence.browse_index]  # browsing sessions in the log
        row, bought = evidence.browse_row, evidence.browse_bought
        since = last_buy[evidence.browse_index]
        rows = np.unique(row[bought])
        index_of_row = np.full(evidence.n_organic.size, -1)
        index_of_row[rows] = np.arange(rows.size)
        index = index_of_row[row]
        sign = np.where(bought, 1.0, -1.0)
        plain = (index >= 0) & (since < 0)
        boost = (index >= 0) & (since >= 0)
        log_elapsed = clock.log_elapsed(since[boost], log.t[session[boost]])
        due = log.page_view[session[boost]] == 0  # a browsing session without a page view

        buy_row, buy_t = index[bought], log.t[session[bought]]
        same_next = np.r_[buy_row[1:] == buy_row[:-1], False]
        cycle_end = np.where(same_next, np.r_[buy_t[1:], 0], begin)
        return cls(
            rows=rows,
            has_due_visit=np.bincount(index[boost][due], minlength=rows.size) > 0,
            plain_row=index[plain],
            plain_offset=evidence.browse_offset[plain],
            plain_sign=sign[plain],
            boost_row=index[boost],
            boost_offset=evidence.browse_offset[boost],
            boost_sign=sign[boost],
            boost_log_elapsed=log_elapsed,
            due_row=index[boost][due],
            due_log_elapsed=log_elapsed[due],
            cycle_row=buy_row,
            cycle_log_length=clock.log_elapsed(buy_t, cycle_end),
            log_period_bounds=bounds,
        )

    def rows_between(self, lo: int, hi: int) -> _CycleEvidence:
        """The evidence of rows lo..hi - 1 alone (renumbered from 0), to bound memory."""

        def part(row: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
            start, stop = np.searchsorted(row, [lo, hi])
            return [row[start:stop] - lo, *(v[start:stop] for v in values)]

        plain_row, plain_offset, plain_sign = part(
            self.plain_row, self.plain_offset, self.plain_sign
        )
        boost_row, boost_offset, boost_sign, boost_log_elapsed = part(
            self.boost_row, self.boost_offset, self.boost_sign, self.boost_log_elapsed
        )
        due_row, due_log_elapsed = part(self.due_row, self.due_log_elapsed)
        cycle_row, cycle_log_length = part(self.cycle_row, self.cycle_log_length)
        return _CycleEvidence(
            rows=self.rows[lo:hi],
            has_due_visit=self.has_due_visit[lo:hi],
            plain_row=plain_row,
            plain_offset=plain_offset,
            plain_sign=plain_sign,
            boost_row=boost_row,
            boost_offset=boost_offset,
            boost_sign=boost_sign,
            boost_log_elapsed=boost_log_elapsed,
            due_row=due_row,
            due_log_elapsed=due_log_elapsed,
            cycle_row=cycle_row,
            cycle_log_length=cycle_log_length,
            log_period_bounds=self.log_period_bounds,
        )

    def log_density(self, b: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior of a member's (b, x) on the product of per-row grids b
        (rows, Gb) and x (rows, Gx), as (rows, Gb, Gx). The propensity prior is unnormalised as
        in `_propensity_posterior`, the log-uniform period prior normalised, so the integral
        compares with that posterior's `log_evidence` (the membership odds)."""
        lo, hi = self.log_period_bounds
        by_b = -0.5 * (b / _PROPENSITY_SD) ** 2
        _add_buy_log_likelihood(by_b, self.plain_row, self.plain_offset, self.plain_sign, b)
        by_x = np.full(x.shape, -math.log(hi - lo))
        z = _DUE_SHAPE * (self.due_log_elapsed[:, None] - x[self.due_row])
        _add_by_row(by_x, self.due_row, _log_sigmoid(z) + _log_sigmoid(-z))
        expected = _DUE_VISITS_PER_CYCLE * _due_visits_before(
            self.cycle_log_length[:, None], x[self.cycle_row]
        )
        _add_by_row(by_x, self.cycle_row, -expected)
        total = by_b[:, :, None] + by_x[:, None, :]

        # The coupled terms, (session, b, x) each, are most of the oracle's work: float32
        # halves it, and its rounding (1e-7 relative) is far below the grids' own error.
        cells = b.shape[1] * x.shape[1]
        block_size = max(1, _CELLS_PER_CHUNK // cells)
        b32 = b.astype(np.float32)
        for start in range(0, self.boost_row.size, block_size):
            block = slice(start, start + block_size)
            rows = self.boost_row[block]
            boost = _due_boost(self.boost_log_elapsed[block, None], x[rows]).astype(np.float32)
            offset = self.boost_offset[block].astype(np.float32)
            logit = offset[:, None, None] + b32[rows][:, :, None] + boost[:, None, :]
            sign = self.boost_sign[block].astype(np.float32)
            _add_by_row(total, rows, _log_sigmoid(sign[:, None, None] * logit))
        return total
