"""Built-in synthetic event generator: the default dataset, and the ground truth for tests.

The data is made so that *order and timing* matter, not just counts:

* every user carries a latent purchase intent that rises with product views and decays with a
  half-life of a few days, so the same views mean less the longer ago they happened;
* an abandoned cart (add_to_cart not yet followed by a purchase) raises the odds of buying in
  the next sessions, decaying over ~2 days, and a purchase closes it; a count of carts and
  purchases cannot tell an open cart from a closed one, a sequence can;
* users differ in activity (log-normal session rate), in how they open e-mail and push, and in
  their baseline propensity; e-mail unsubscribes stop further e-mail sessions;
* sessions follow weekly and daily seasonality (evening peak, busier weekends, e-mail sends on
  weekday mornings).

These signals are real but mostly visible to aggregates too: on the default data a logistic
regression on recency / count features nearly matches the oracle below. **Replenishment
cycles** (``replenishment_share > 0``; the package's default data, ``conf/data/source/
synthetic.yaml``, uses 0.6; the dataclass default stays 0 so earlier datasets reproduce
byte for byte) add a signal that lives in the *gaps between purchases*:

* a hidden share of users (members) consume something at a personal period P, log-uniform
  between ``replenishment_min_days`` and ``replenishment_max_days`` (default 7-56), and their
  cycle restarts at every purchase (the first one starts it);
* as the time since the last purchase approaches P they come back on their own: *due-date
  visits*, a Poisson process whose intensity follows a log-logistic bump around P (about 3
  visits per cycle unless a purchase ends it first; ±15% spread). Such a visit goes straight
  to the product, so its first event is a product_view (no page_view);
* every browsing session's buy log-odds gains +7 at the due date, fading with the same bump,
  and -3 away from it (a member with a full cupboard rarely buys).

So members rebuy in over 90% of cycles, mostly 0.8-1.1 × P after the last purchase, and
rarely in between. Whether the 7-day label window covers the next due date depends on P, which
only the member's own past inter-purchase gaps (and due-date visits) reveal: "hours since the
last purchase" is the same for a member who is due and one halfway through a long cycle, and
1/7/30-day counts hardly tell a 20-day from a 40-day period. A sequence model that reads the
purchase times can tell them apart; an aggregate model cannot. Measured on 25k users × 120
days, share 0.6, the last 7-day window: 7.2% positives, ROC-AUC of the history oracle 0.911
(latent 0.933), LightGBM on RFM aggregates 0.869, logistic regression on them 0.845; without
cycles 0.763 vs 0.756 / 0.760. Elapsed time is measured on the organic seasonal clock
(`_CycleClock`), so due-date visits keep the evening peak and busier weekends.

Generation is vectorised over users; the only Python loop runs over the *session rank*
(1st session of every user, then 2nd, ...), because a session's outcome depends on the
state left by the previous one (and with replenishment cycles, which sessions happen at all
does too: a purchase schedules the next cycle's due-date visits). The per-session dynamics
live in `_BehaviourState` and `_play_session`, written once and shared by the generator and
the oracle.

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
(`tests/test_backtest.py`).

Events before ``drift_start`` are exactly those of the undrifted data with the same seed (the
drifted period is re-played from the state the past left, with its own random streams; see
`_with_drift`), so a model trained before the date sees the same data either way.
``user_attributes`` adds per-user segment columns ``platform`` and ``country``.

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

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Protocol

import numpy as np
import polars as pl

from engage_seq.common.times import format_instant as _iso

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "purchase",
    "email_open",
    "email_click",
    "push_open",
    "unsubscribe",
)
CHANNELS: tuple[str, ...] = ("web", "app", "email", "push")
ORACLE_KNOWLEDGE: tuple[str, ...] = ("history", "latent")

_SECONDS_PER_DAY = 86_400
_SECONDS_PER_HOUR = 3600
# Relative session intensity per weekday (Monday first) and per hour of day (UTC).
_ORGANIC_WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.35, 1.25])
_ORGANIC_HOUR = np.array(
    [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 0.9, 1.0, 1.0, 1.1,
     1.2, 1.1, 1.0, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.7, 1.1, 0.5]
)  # fmt: skip
_EMAIL_WEEKDAY = np.array([0.8, 1.4, 1.0, 1.4, 0.9, 0.3, 0.2])
_EMAIL_HOUR = np.array(
    [0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.5, 1.5, 2.5, 2.5, 1.8, 1.2,
     1.0, 0.9, 0.8, 0.7, 0.7, 0.8, 0.9, 0.9, 0.7, 0.5, 0.2, 0.1]
)  # fmt: skip

# Session kinds. Due-date visits happen only with replenishment cycles switched on.
_ORGANIC, _EMAIL, _PUSH, _DUE = 0, 1, 2, 3
_NEVER = np.iinfo(np.int64).max  # a time that never comes

# Priors of the hidden per-user parameters: the generator draws from them, and the history
# oracle integrates over them.
_ORGANIC_LOG_SD = 1.0  # organic rate = organic_sessions_per_day * lognormal(0, this)
_EMAIL_OPEN_BETA = (1.5, 4.5)  # mean ~0.25
_APP_USER_P = 0.5
_PUSH_OPEN_BETA = (1.2, 6.0)  # app users only; others never open a push
_PREFERS_APP_P = 0.6  # app users only: organic sessions happen in the app, not on the web
_PROPENSITY_SD = 0.7

# Replenishment cycles (opt-in): a member's cycle restarts at each purchase; elapsed time is
# measured on the organic seasonal clock (`_CycleClock`), in days.
_DUE_VISITS_PER_CYCLE = 3.0  # expected due-date visits of a cycle that no purchase cuts short
_DUE_SHAPE = 12.0  # log(elapsed / period) of a due visit ~ Logistic(0, 1 / this): sd 0.15
_DUE_BUY_BOOST = 7.0  # extra buy log-odds exactly at the due date, fading as above
_STOCKED_BUY_PENALTY = 3.0  # ... and fewer buys away from it

# Drift (opt-in, from `drift_start`): each effect scales with `drift_strength` s in (0, 1].
_DRIFT_INTENT_WEIGHT_CHANGE = -0.5  # buy log-odds per unit of intent 0.5 -> 0.5 (1 - s) ...
_DRIFT_CART_WEIGHT_CHANGE = -6.0  # ... and per unit of open-cart boost 3 -> 3 - 6 s
# (and a share s of users get a fresh replenishment draw: see `_with_drift`)
_DRIFT_EMAIL_CUT = 0.5  # e-mail sends x (1 - 0.5 s) ...
_DRIFT_EXTRA_PUSH = 1.0  # ... push sends x (1 + s)
_DRIFT_TO_APP = 0.5  # share (x s) of web-browsing users whose organic sessions move to the app
# User attributes (opt-in): segment columns for reports; they change no behaviour.
_IOS_SHARE = 0.55  # of app users; the others are on android, non-app users on web
COUNTRIES: tuple[str, ...] = ("DE", "FR", "GB", "ES", "IT", "NL")
_COUNTRY_WEIGHTS = np.array([0.30, 0.20, 0.20, 0.12, 0.12, 0.06])

# Time constants of the per-user state (e-folding, seconds).
_INTENT_TAU = 4.0 * _SECONDS_PER_DAY
_CART_TAU = 2.0 * _SECONDS_PER_DAY

# Oracle numerics: coarse grids (in each parameter's unconstrained coordinate) only locate a
# user's posterior; the fine per-user grid then spans where it has mass.
_COARSE_LOG_ORGANIC = np.linspace(-7.0, 8.0, 121)  # log(rate / median rate), prior N(0, 1)
_COARSE_LOGIT_EMAIL = np.linspace(-10.0, 6.0, 97)
_COARSE_LOGIT_PUSH = np.linspace(-12.0, 6.0, 109)
_COARSE_PROPENSITY = np.linspace(-5.0, 5.0, 81)  # ±7 prior sd
_FINE_GRID_POINTS = 48
_NEGLIGIBLE_MASS = 1e-7  # posterior mass the fine grid may leave out on each side
_LANES_PER_CHUNK = 1 << 20  # (user × replicate) lanes simulated at once; bounds memory
_SESSIONS_PER_CHUNK = 1 << 15  # past browsing sessions per propensity likelihood block
# Joint (propensity, log period) grids of replenishment members: a coarse pass locates the mass
# (propensity on a fixed grid, log period on cell centres over its prior support), a fine one
# resolves it.
_COARSE_CYCLE_PROPENSITY = np.linspace(-4.0, 4.0, 33)  # ±5.7 prior sd
_COARSE_CYCLE_PERIOD_POINTS = 48
_FINE_CYCLE_PROPENSITY_POINTS = 24
_FINE_CYCLE_PERIOD_POINTS = 64
_CELLS_PER_CHUNK = 1 << 22  # (session × grid cell) log-likelihood terms per block
_CYCLE_ROWS_PER_CHUNK = 4096  # users per joint grid: ~50 MB per array


@dataclass(frozen=True)
class SyntheticEventSource:
    """Configuration of the built-in dataset; `scan()` returns the raw event table.

    Defaults give ~25k users and ~1M events over 120 days in a few seconds. Replenishment
    cycles are off unless ``replenishment_share > 0`` (0.6 recommended for benchmarks: see the
    module docstring); with share 0 the table is exactly what it was before they existed.
    Drift (``drift_start``) and the segment columns (``user_attributes``) are off by default
    and leave the table byte-identical when off.
    """

    n_users: int = 25_000
    days: int = 120
    start: str = "2026-01-05"  # a Monday, UTC
    seed: int = 0
    organic_sessions_per_day: float = 0.05  # median user; log-normal across users
    emails_per_week: float = 2.0
    pushes_per_week: float = 1.0
    # Replenishment cycles (off by default): this share of users rebuys on a personal period,
    # log-uniform between the two bounds (days); see the module docstring.
    replenishment_share: float = 0.0
    replenishment_min_days: float = 7.0
    replenishment_max_days: float = 56.0
    # Drift (off by default): from this ISO date/time (UTC) on, behaviour changes by
    # `drift_strength` (see the module docstring); events before it are unchanged.
    drift_start: str | None = None
    drift_strength: float = 1.0
    # Segment columns `platform` (ios/android/web) and `country` on every event (off: the
    # table keeps its four columns); drawn from their own stream, they change nothing else.
    user_attributes: bool = False

    def fingerprint(self) -> dict[str, object]:
        """Everything that determines the generated table (used as a cache key)."""
        return {"source": "synthetic", **asdict(self)}

    def scan(self) -> pl.LazyFrame:
        return generate_events(self).lazy()

    def describe(self) -> str:
        cycles = (
            f", replenishment share {self.replenishment_share}" if self.replenishment_share else ""
        )
        if self.drift_start is not None:
            cycles += f", drift from {self.drift_start} (strength {self.drift_strength})"
        return (
            f"synthetic events ({self.n_users} users, {self.days} days, seed {self.seed}{cycles})"
        )

    @property
    def start_epoch(self) -> int:
        """Start of the simulated period, epoch seconds UTC."""
        return int(_start_datetime(self).timestamp())

    @property
    def end_epoch(self) -> int:
        """End of the simulated period (no session starts at or after it), epoch seconds UTC."""
        return self.start_epoch + self.days * _SECONDS_PER_DAY

    @property
    def drift_epoch(self) -> int | None:
        """When drift starts, epoch seconds UTC (None: no drift)."""
        if self.drift_start is None:
            return None
        try:
            moment = datetime.fromisoformat(str(self.drift_start))
        except ValueError:
            raise ValueError(
                f"drift_start must be an ISO date or date-time, got {self.drift_start!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())


def _start_datetime(cfg: SyntheticEventSource) -> datetime:
    return datetime.fromisoformat(cfg.start).replace(tzinfo=timezone.utc)


def _sample_times(
    rng: np.random.Generator,
    n: int,
    days: int,
    weekday_weight: np.ndarray,
    hour_weight: np.ndarray,
    start_weekday: int,
) -> np.ndarray:
    """Seconds since the start for `n` sessions, drawn from weekday × hour seasonality."""
    day_weight = weekday_weight[(np.arange(days) + start_weekday) % 7]
    day = rng.choice(days, size=n, p=day_weight / day_weight.sum())
    hour = rng.choice(24, size=n, p=hour_weight / hour_weight.sum())
    return day * _SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=n)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) without overflow for large |x| (and 4x faster than -logaddexp(0, -x)),
    in the dtype of `x`."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


# ------------------------------------------------------------------------------------------
# Per-session dynamics, shared by the generator, the history replay and the oracle.
# `lanes` index the state arrays: users in the generator, (user × replicate) lanes in the
# oracle, where they are a slice because the oracle keeps the active lanes at the front.
# ------------------------------------------------------------------------------------------


@dataclass
class _BehaviourState:
    """What past sessions leave behind that the next session depends on, one entry per lane.

    Intent decays exponentially between sessions, so decaying in several steps equals decaying
    once: sessions that change nothing else (an e-mail after an unsubscribe) can be skipped.
    """

    intent: np.ndarray  # float64, as of last_t
    last_t: np.ndarray  # int64 seconds since the start: the last session's start
    cart_open: np.ndarray  # bool: an add_to_cart not yet followed by a purchase
    cart_t: np.ndarray  # int64: when the open cart was last added to
    unsubscribed: np.ndarray  # bool: e-mail sessions no longer happen visibly
    last_buy_t: np.ndarray  # int64: start of the last session with a purchase, -1 if none

    @classmethod
    def fresh(cls, n: int) -> _BehaviourState:
        return cls(
            intent=np.zeros(n),
            last_t=np.zeros(n, np.int64),
            cart_open=np.zeros(n, bool),
            cart_t=np.zeros(n, np.int64),
            unsubscribed=np.zeros(n, bool),
            last_buy_t=np.full(n, -1, np.int64),
        )

    def take(self, index: np.ndarray) -> _BehaviourState:
        """A new state with the rows `index` (e.g. each user repeated once per replicate)."""
        return _BehaviourState(
            intent=self.intent[index],
            last_t=self.last_t[index],
            cart_open=self.cart_open[index],
            cart_t=self.cart_t[index],
            unsubscribed=self.unsubscribed[index],
            last_buy_t=self.last_buy_t[index],
        )

    def decay_to(self, lanes: np.ndarray | slice, now: np.ndarray) -> None:
        self.intent[lanes] *= np.exp(-(now - self.last_t[lanes]) / _INTENT_TAU)
        self.last_t[lanes] = now

    def click_probability(self, lanes: np.ndarray | slice) -> np.ndarray:
        return _sigmoid(-0.8 + 0.6 * self.intent[lanes])

    def product_view_rate(self, lanes: np.ndarray | slice) -> np.ndarray:
        return 0.4 + 1.6 * _sigmoid(self.intent[lanes] - 1.0)

    def view_products(self, lanes: np.ndarray | slice, products: np.ndarray) -> None:
        self.intent[lanes] += 0.35 * products

    def add_probability(self, lanes: np.ndarray | slice, products: np.ndarray) -> np.ndarray:
        return _sigmoid(-2.6 + 0.9 * self.intent[lanes] + 0.25 * products)

    def cart_boost(self, lanes: np.ndarray | slice, now: np.ndarray) -> np.ndarray:
        return self.cart_open[lanes] * np.exp(-(now - self.cart_t[lanes]) / _CART_TAU)

    def unsubscribe(self, lanes: np.ndarray | slice, unsub: np.ndarray) -> None:
        self.unsubscribed[lanes] |= unsub

    def close_session(
        self, lanes: np.ndarray | slice, now: np.ndarray, add: np.ndarray, buy: np.ndarray
    ) -> None:
        """An add without a buy leaves the cart open from now; a buy closes it, spends
        2 units of intent and starts a new replenishment cycle."""
        abandoned = add & ~buy
        self.cart_open[lanes] = (self.cart_open[lanes] | abandoned) & ~buy
        self.cart_t[lanes] = np.where(abandoned, now, self.cart_t[lanes])
        intent = self.intent[lanes]
        self.intent[lanes] = np.where(buy, np.maximum(intent - 2.0, 0.0), intent)
        self.last_buy_t[lanes] = np.where(buy, now, self.last_buy_t[lanes])


@dataclass(frozen=True)
class _Conversion:
    """How research turns into a purchase: buy log-odds per unit of intent and of the open
    cart's boost (other values only after a drift)."""

    intent: float = 0.5
    cart: float = 3.0

    @classmethod
    def drifted(cls, strength: float) -> _Conversion:
        return cls(
            intent=cls.intent + _DRIFT_INTENT_WEIGHT_CHANGE * strength,
            cart=cls.cart + _DRIFT_CART_WEIGHT_CHANGE * strength,
        )


def _buy_logit(
    propensity: np.ndarray | float,
    intent: np.ndarray,
    cart_boost: np.ndarray,
    add: np.ndarray,
    conversion: _Conversion = _Conversion(),
) -> np.ndarray:
    """Log-odds that a browsing session ends in a purchase (intent after this session's views)."""
    return -4.0 + propensity + conversion.intent * intent + conversion.cart * cart_boost + 1.2 * add


def _due_boost(log_elapsed: np.ndarray, log_period: np.ndarray) -> np.ndarray:
    """A replenishment member's extra buy log-odds: `_DUE_BUY_BOOST` at the due date and
    -`_STOCKED_BUY_PENALTY` far from it, shaped like the due visits' log-logistic density in log
    time (4 σ(z) σ(-z), z = shape × log(elapsed / period)), which halves about 15% before and
    after the due date. `log_elapsed` is -inf before the first purchase and `log_period` +inf
    for non-members: no term either way."""
    tail = np.exp(-np.abs(_DUE_SHAPE * (log_elapsed - log_period)))
    cycling = np.isfinite(log_elapsed) & np.isfinite(log_period)
    due = 4.0 * tail / (1.0 + tail) ** 2
    return np.where(
        cycling, (_DUE_BUY_BOOST + _STOCKED_BUY_PENALTY) * due - _STOCKED_BUY_PENALTY, 0.0
    )


def _due_visits_before(log_elapsed: np.ndarray, log_period: np.ndarray) -> np.ndarray:
    """Share of a cycle's due visits that come before `log_elapsed` (the log-logistic CDF)."""
    return _sigmoid(_DUE_SHAPE * (log_elapsed - log_period))


def _due_visit_log_elapsed(
    rng: np.random.Generator, log_period: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """log(elapsed days) of due visits, by inverse CDF from the share range [lo, hi) of the
    cycle's visits (0 and 1: a whole cycle; else a conditional draw inside a window)."""
    u = lo + rng.random(log_period.size) * (hi - lo)
    with np.errstate(divide="ignore"):
        return log_period + (np.log(u) - np.log1p(-u)) / _DUE_SHAPE


@dataclass(frozen=True)
class _SessionOutcome:
    """One session per lane, up to (not including) the purchase decision."""

    is_email: np.ndarray  # an e-mail open that is seen (the user has not unsubscribed)
    clicked: np.ndarray
    unsubscribed: np.ndarray
    is_push: np.ndarray
    browsing: np.ndarray  # the session reaches the shop and may buy
    products: np.ndarray
    pages: np.ndarray
    add: np.ndarray
    intent: np.ndarray  # after this session's product views
    cart_boost: np.ndarray

    def buy_logit(
        self, propensity: np.ndarray, conversion: _Conversion = _Conversion()
    ) -> np.ndarray:
        return _buy_logit(propensity, self.intent, self.cart_boost, self.add, conversion)


def _play_session(
    rng: np.random.Generator,
    state: _BehaviourState,
    lanes: np.ndarray | slice,
    now: np.ndarray,
    kind: np.ndarray,
) -> _SessionOutcome:
    """Draw one session per lane and update `state`, except for the purchase.

    The caller decides the purchase (the generator samples it, the oracle conditions on "no
    purchase yet"; both add `_due_boost` to the log-odds with replenishment cycles) and then
    calls `state.close_session`. The random draws keep the generator's original order, so its
    output stays byte-identical; a due-date visit (`_DUE`) uses the same draws as an organic
    session.
    """
    state.decay_to(lanes, now)
    m = now.size
    # Marketing sessions open with the message; only some continue into browsing.
    is_email = (kind == _EMAIL) & ~state.unsubscribed[lanes]
    is_push = kind == _PUSH
    is_due = kind == _DUE
    clicked = is_email & (rng.random(m) < state.click_probability(lanes))
    unsub = is_email & ~clicked & (rng.random(m) < 0.025)
    state.unsubscribe(lanes, unsub)
    push_continues = is_push & (rng.random(m) < 0.5)
    browsing = (kind == _ORGANIC) | clicked | push_continues | is_due

    # A due-date visit goes straight to the product it replenishes: >= 1 product view and no
    # page view, so its first event is a product_view (the same draws either way).
    products = np.where(browsing, rng.poisson(state.product_view_rate(lanes)), 0) + is_due
    pages = np.where(browsing & ~is_due, 1 + rng.poisson(0.6, m), 0)
    state.view_products(lanes, products)
    cart_boost = state.cart_boost(lanes, now)
    add = (products > 0) & (rng.random(m) < state.add_probability(lanes, products))
    return _SessionOutcome(
        is_email=is_email,
        clicked=clicked,
        unsubscribed=unsub,
        is_push=is_push,
        browsing=browsing,
        products=products,
        pages=pages,
        add=add,
        intent=np.array(state.intent[lanes]),  # a copy: a slice would see later updates
        cart_boost=cart_boost,
    )


# ------------------------------------------------------------------------------------------
# Generator
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Population:
    """The hidden per-user parameters."""

    organic_rate: np.ndarray  # organic sessions per day
    email_open_p: np.ndarray  # e-mail sessions = opens: emails_per_week * this
    app_user: np.ndarray
    push_open_p: np.ndarray  # 0 for users without the app
    prefers_app: np.ndarray  # organic sessions in the app rather than on the web
    propensity: np.ndarray  # baseline purchase log-odds offset
    log_period: np.ndarray  # log(days) of a replenishment member's period, +inf for others


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


@dataclass(frozen=True)
class _Simulation:
    """Everything the generator drew: users, sessions, and the events they expand into."""

    population: _Population
    sessions: _SessionLog
    event_type: np.ndarray  # index into EVENT_TYPES
    event_channel: np.ndarray  # index into CHANNELS
    event_session: np.ndarray  # row in `sessions`
    event_seconds: np.ndarray  # seconds since the period start


def _draw_population(
    rng: np.random.Generator, cycle_rng: np.random.Generator, cfg: SyntheticEventSource
) -> _Population:
    """The hidden parameters. Replenishment draws come from their own stream, so switching
    the mechanism on leaves everything else about the users as it was."""
    n = cfg.n_users
    organic_rate = cfg.organic_sessions_per_day * rng.lognormal(0.0, _ORGANIC_LOG_SD, n)
    email_open_p = rng.beta(*_EMAIL_OPEN_BETA, n)
    app_user = rng.random(n) < _APP_USER_P
    push_open_p = np.where(app_user, rng.beta(*_PUSH_OPEN_BETA, n), 0.0)
    prefers_app = np.where(app_user, rng.random(n) < _PREFERS_APP_P, False)
    propensity = rng.normal(0.0, _PROPENSITY_SD, n)
    log_period = np.full(n, np.inf)
    if cfg.replenishment_share > 0:
        member = cycle_rng.random(n) < cfg.replenishment_share
        lo, hi = _log_period_bounds(cfg)
        log_period = np.where(member, cycle_rng.uniform(lo, hi, n), np.inf)
    return _Population(
        organic_rate, email_open_p, app_user, push_open_p, prefers_app, propensity, log_period
    )


def _log_period_bounds(cfg: SyntheticEventSource) -> tuple[float, float]:
    """Support of the log-uniform period prior, log(days)."""
    return math.log(cfg.replenishment_min_days), math.log(cfg.replenishment_max_days)


def _draw_session_starts(
    rng: np.random.Generator, cfg: SyntheticEventSource, people: _Population
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, kind, start) of every session, sorted by user then start.

    Poisson counts over the whole period with i.i.d. seasonal times: per user and kind, an
    inhomogeneous Poisson process, which is what the oracle relies on.
    """
    weeks = cfg.days / 7.0
    counts = [
        rng.poisson(people.organic_rate * cfg.days),
        rng.poisson(people.email_open_p * cfg.emails_per_week * weeks),
        rng.poisson(people.push_open_p * cfg.pushes_per_week * weeks),
    ]
    kind = np.concatenate([np.full(c.sum(), k, dtype=np.int8) for k, c in enumerate(counts)])
    user = np.concatenate([np.repeat(np.arange(cfg.n_users), c) for c in counts])
    start_weekday = _start_datetime(cfg).weekday()
    n_org = counts[0].sum()
    t = np.empty(kind.size, dtype=np.int64)
    t[:n_org] = _sample_times(rng, n_org, cfg.days, _ORGANIC_WEEKDAY, _ORGANIC_HOUR, start_weekday)
    n_mkt = kind.size - n_org
    t[n_org:] = _sample_times(rng, n_mkt, cfg.days, _EMAIL_WEEKDAY, _EMAIL_HOUR, start_weekday)
    order = np.lexsort((t, user))
    return user[order], kind[order], t[order]


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
    conversion: _Conversion = _Conversion(),
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
    columns = {
        "email_open": np.int8,
        "email_click": np.int8,
        "unsubscribe": np.int8,
        "push_open": np.int8,
        "page_view": np.int16,
        "product_view": np.int16,
        "add_to_cart": np.int8,
        "purchase": np.int8,
    }
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in [*columns, "user", "kind", "t"]}
    rank_of: list[np.ndarray] = []
    state = state if state is not None else _BehaviourState.fresh(n_users)
    rank = 0
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
        for name, values in [
            ("user", users),
            ("kind", now_kind),
            ("t", now),
            ("email_open", played.is_email),
            ("email_click", played.clicked),
            ("unsubscribe", played.unsubscribed),
            ("push_open", played.is_push),
            ("page_view", played.pages),
            ("product_view", played.products),
            ("add_to_cart", played.add),
            ("purchase", buy),
        ]:
            chunks[name].append(values)
        rank_of.append(np.full(users.size, rank, np.int64))
        rank += 1
    if not rank_of:
        empty = {name: np.zeros(0, dtype) for name, dtype in columns.items()}
        return _SessionLog(user=user, kind=kind, t=t, **empty)
    # each user's sessions were played in time order, so (user, rank) sorts them by start
    order = np.lexsort((np.concatenate(rank_of), np.concatenate(chunks["user"])))
    merged = {name: np.concatenate(parts)[order] for name, parts in chunks.items()}
    return _SessionLog(
        user=merged["user"],
        kind=merged["kind"].astype(np.int8),
        t=merged["t"].astype(np.int64),
        **{name: merged[name].astype(dtype) for name, dtype in columns.items()},
    )


def _check_settings(cfg: SyntheticEventSource) -> None:
    if cfg.n_users <= 0 or cfg.days <= 0:
        raise ValueError(
            f"SyntheticEventSource needs n_users > 0 and days > 0, got {cfg.n_users}, {cfg.days}"
        )
    if not 0.0 <= cfg.replenishment_share <= 1.0:
        raise ValueError(f"replenishment_share must be in [0, 1], got {cfg.replenishment_share}")
    if not 0.0 < cfg.replenishment_min_days < cfg.replenishment_max_days:
        raise ValueError(
            "replenishment periods need 0 < replenishment_min_days < replenishment_max_days, "
            f"got {cfg.replenishment_min_days} and {cfg.replenishment_max_days}"
        )
    drift = cfg.drift_epoch
    if drift is not None and not cfg.start_epoch <= drift < cfg.end_epoch:
        raise ValueError(
            f"drift_start {cfg.drift_start!r} lies outside the simulated period "
            f"[{_iso(cfg.start_epoch)}, {_iso(cfg.end_epoch)}); move it inside, or set it to "
            "None for no drift"
        )
    if not 0.0 < cfg.drift_strength <= 1.0:
        raise ValueError(f"drift_strength must be in (0, 1], got {cfg.drift_strength}")


def _simulate(cfg: SyntheticEventSource) -> _Simulation:
    """Run the generator; `generate_events` formats the result, the oracle replays it."""
    _check_settings(cfg)
    rng = np.random.default_rng(cfg.seed)
    cycle_rng = np.random.default_rng([cfg.seed, 1])  # replenishment draws only
    people = _draw_population(rng, cycle_rng, cfg)
    user, kind, t = _draw_session_starts(rng, cfg, people)
    clock = _CycleClock.of(cfg)
    log = _play_sessions(rng, cycle_rng, people, user, kind, t, clock)
    sim = _Simulation(people, log, *_expand_events(rng, log, people.prefers_app))
    if cfg.drift_start is None:
        return sim
    return _with_drift(sim, cfg, (user, kind, t), clock)


def _expand_events(
    rng: np.random.Generator, log: _SessionLog, prefers_app: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sessions -> events in within-session order: (event type, channel, session row, seconds
    since the period start)."""
    user, kind, t = log.user, log.kind, log.t
    n_sessions = kind.size
    browse_channel = np.where(
        kind == _EMAIL, 0, np.where(kind == _PUSH, 1, prefers_app[user].astype(np.int64))
    )  # 0 = web, 1 = app
    slot_counts = np.stack(
        [
            log.email_open,
            log.email_click,
            log.unsubscribe,
            log.push_open,
            log.page_view,
            log.product_view,
            log.add_to_cart,
            log.purchase,
        ],
        axis=1,
    ).astype(np.int64)
    slot_event = np.array([4, 5, 7, 6, 0, 1, 2, 3])  # index into EVENT_TYPES
    slot_channel = np.array([2, 2, 2, 3, -1, -1, -1, -1])  # -1: the session's browse channel
    per_session = slot_counts.sum(axis=1)
    flat_counts = slot_counts.ravel()
    event_type = np.repeat(np.tile(slot_event, n_sessions), flat_counts)
    channel = np.repeat(np.tile(slot_channel, n_sessions), flat_counts)
    session_of_event = np.repeat(np.arange(n_sessions), per_session)
    channel = np.where(channel < 0, browse_channel[session_of_event], channel)

    # Events inside a session are 1 s + ~45 s apart; cumulative offsets restart per session.
    step = 1 + rng.exponential(45.0, event_type.size).astype(np.int64)
    cum = np.cumsum(step)
    # Empty sessions (e-mail after an unsubscribe) repeat 0 times; clip so indexing stays valid.
    session_start_idx = np.minimum(
        np.concatenate([[0], np.cumsum(per_session)[:-1]]), max(event_type.size - 1, 0)
    )
    base = np.repeat(cum[session_start_idx] - step[session_start_idx], per_session)
    seconds = t[session_of_event] + (cum - base)
    return event_type, channel, session_of_event, seconds


def _with_drift(
    sim: _Simulation,
    cfg: SyntheticEventSource,
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
    people = sim.population
    log = sim.sessions
    kept = log.t < begin
    state, _, _ = _replay_history(log, kept, n)
    # The replenished line changes: redrawn users' old cycles end, new members' cycles start
    # at their next purchase (so their last purchase no longer counts for the due date).
    redrawn = rng.random(n) < s
    member = rng.random(n) < cfg.replenishment_share
    lo, hi = _log_period_bounds(cfg)
    new_period = np.where(member, rng.uniform(lo, hi, n), np.inf)
    state.last_buy_t[redrawn] = -1
    after = replace(
        people,
        log_period=np.where(redrawn, new_period, people.log_period),
        prefers_app=people.prefers_app | (rng.random(n) < _DRIFT_TO_APP * s),
    )

    # Planned sessions from the drift on: the same organic ones, fewer e-mails, more pushes.
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

    due = _DueVisits(n)
    cycling = np.flatnonzero(np.isfinite(after.log_period) & (state.last_buy_t >= 0))
    due.resume(cycle_rng, cycling, state.last_buy_t[cycling], begin, after.log_period, clock)
    conversion = _Conversion.drifted(s)
    late = _play_sessions(
        rng, cycle_rng, after, user[order], kind[order], t[order], clock, state, due, conversion
    )
    late_events = _expand_events(rng, late, after.prefers_app)
    return _merge_simulations(sim, kept, late, late_events)


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


def _user_ids(users: np.ndarray, n_users: int) -> pl.Series:
    """'u' + zero-padded index: the ids `generate_events` emits (sorting as the indices do)."""
    width = len(str(n_users - 1))
    padded = pl.Series("user_id", users).cast(pl.String).str.zfill(width)
    return ("u" + padded).alias("user_id")


def generate_events(cfg: SyntheticEventSource) -> pl.DataFrame:
    """Generate the event table: user_id (str), timestamp (UTC datetime), event_type, channel;
    with ``user_attributes`` also platform and country (per user, repeated on each event)."""
    sim = _simulate(cfg)
    epoch = cfg.start_epoch
    user = sim.sessions.user[sim.event_session]
    columns = {
        "user_id": _user_ids(user, cfg.n_users),
        "timestamp": pl.from_epoch(
            pl.Series(epoch + sim.event_seconds), time_unit="s"
        ).dt.replace_time_zone("UTC"),
        "event_type": np.asarray(EVENT_TYPES)[sim.event_type],
        "channel": np.asarray(CHANNELS)[sim.event_channel],
    }
    if cfg.user_attributes:
        platform, country = _user_attributes(cfg, sim.population.app_user)
        columns["platform"] = platform[user]
        columns["country"] = country[user]
    return pl.DataFrame(columns)


def _user_attributes(cfg: SyntheticEventSource, app_user: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per user: platform (app users on ios or android, the others on web, so it tracks the
    hidden app use that push opens reveal) and country (independent of behaviour, so segment
    reports should find no gap there). Their own stream: switching them on changes nothing
    else."""
    rng = np.random.default_rng([cfg.seed, 4])
    ios = rng.random(cfg.n_users) < _IOS_SHARE
    platform = np.where(app_user, np.where(ios, "ios", "android"), "web")
    country = np.asarray(COUNTRIES)[
        rng.choice(len(COUNTRIES), cfg.n_users, p=_COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum())
    ]
    return platform, country


# ------------------------------------------------------------------------------------------
# Oracle: P(purchase in [cutoff, cutoff + horizon)) given the generator's state at the cutoff
# ------------------------------------------------------------------------------------------


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
    drift = source.drift_epoch
    if drift is not None:
        if cutoff + horizon_seconds > drift:
            raise ValueError(
                f"the label window [{_iso(cutoff)}, {_iso(cutoff + horizon_seconds)}) ends after "
                f"drift_start ({_iso(drift)}): the oracle knows the undrifted behaviour only, so "
                "its probabilities would be wrong there; use a window that ends by drift_start"
            )
        source = replace(source, drift_start=None)  # identical data before the drift
    _check_oracle_options(knows, replicates, seed)
    past = _Past.at(source, begin)
    members = past.members
    if members.size == 0:
        return pl.DataFrame(schema={"user_id": pl.String, "probability": pl.Float64})
    parameters: _ParameterSource
    if knows == "latent":
        parameters = _TrueParameters(past.population, members, source.replenishment_share > 0)
    else:
        parameters = _Posterior.of(past.evidence, source)
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
    return pl.DataFrame({"user_id": _user_ids(members, source.n_users), "probability": probability})


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


def _first_events(sim: _Simulation) -> tuple[np.ndarray, np.ndarray]:
    """Per session: when its first event happens and on which channel (sessions without any
    event, e-mails after an unsubscribe, get int64 max and -1)."""
    n_sessions = sim.sessions.t.size
    seconds = np.full(n_sessions, np.iinfo(np.int64).max)
    channel = np.full(n_sessions, -1, np.int64)
    if sim.event_session.size:
        # events are grouped by session in emission order, so a group's first is the earliest
        is_first = np.r_[True, sim.event_session[1:] != sim.event_session[:-1]]
        seconds[sim.event_session[is_first]] = sim.event_seconds[is_first]
        channel[sim.event_session[is_first]] = sim.event_channel[is_first]
    return seconds, channel


# --- the past: state at the cutoff -----------------------------------------------------------


@dataclass(frozen=True)
class _Past:
    """What the oracle conditions on: the users with history, their state at the cutoff, and
    the evidence about their hidden parameters (the population is the truth, for `latent`)."""

    population: _Population
    members: np.ndarray  # users with an event before the cutoff, ascending
    state: _BehaviourState  # per user (all users; non-members stay fresh)
    evidence: _HistoryEvidence  # per member

    @classmethod
    def at(cls, source: SyntheticEventSource, begin: int) -> _Past:
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
            evidence = evidence.with_cycles(
                sim.sessions, seen, last_buy, begin, clocks.cycle, _log_period_bounds(source)
            )
        return cls(sim.population, members, state, evidence)


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


# --- when sessions happen --------------------------------------------------------------------


@dataclass(frozen=True)
class _SeasonalClock:
    """A session kind's start-time distribution over the period: the generator picks a day and
    an hour by weight, then a second uniformly inside the hour; this holds that probability per
    hour cell."""

    cell_mass: np.ndarray  # (days * 24,), sums to 1

    @classmethod
    def of(
        cls, cfg: SyntheticEventSource, weekday_weight: np.ndarray, hour_weight: np.ndarray
    ) -> _SeasonalClock:
        start_weekday = _start_datetime(cfg).weekday()
        day_weight = weekday_weight[(np.arange(cfg.days) + start_weekday) % 7]
        mass = np.outer(day_weight / day_weight.sum(), hour_weight / hour_weight.sum())
        return cls(mass.ravel())

    def fraction_before(self, seconds: np.ndarray | int) -> np.ndarray:
        """Share of the period's sessions of this kind expected to start before `seconds`."""
        cells = self.cell_mass.size
        seconds = np.clip(seconds, 0, cells * _SECONDS_PER_HOUR)
        cell, into = np.divmod(seconds, _SECONDS_PER_HOUR)
        before = np.concatenate([[0.0], np.cumsum(self.cell_mass)])
        partial = self.cell_mass[np.minimum(cell, cells - 1)] * (into / _SECONDS_PER_HOUR)
        return before[cell] + partial

    def fraction_between(self, begin: int, end: int) -> float:
        return float(self.fraction_before(end) - self.fraction_before(begin))

    def sample(self, rng: np.random.Generator, n: int, begin: int, end: int) -> np.ndarray:
        """`n` start times (whole seconds) from this distribution restricted to [begin, end)."""
        cells = np.arange(begin // _SECONDS_PER_HOUR, (end - 1) // _SECONDS_PER_HOUR + 1)
        lo = np.maximum(cells * _SECONDS_PER_HOUR, begin)
        hi = np.minimum((cells + 1) * _SECONDS_PER_HOUR, end)
        cumulative = np.cumsum(self.cell_mass[cells] * (hi - lo))
        pick = np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right")
        pick = np.minimum(pick, cells.size - 1)
        return lo[pick] + rng.integers(0, hi[pick] - lo[pick])


@dataclass(frozen=True)
class _CycleClock:
    """The clock replenishment cycles run on: the organic seasonal clock scaled to days, i.e.
    the expected organic sessions so far of a user with one per day, in days.

    A cycle's due-date visits have intensity (visits per cycle-clock day) × (cycle-clock days
    per second), so in real time they keep the evening peak and the busier weekends of organic
    visits, while the number of visits a cycle gets, and every probability the oracle needs, is
    a closed form in cycle-clock time. On average the clock runs at one day per day."""

    organic: _SeasonalClock
    days: int
    before: np.ndarray  # organic share before each hour boundary, (days * 24 + 1,)

    @classmethod
    def of(cls, cfg: SyntheticEventSource) -> _CycleClock:
        organic = _SeasonalClock.of(cfg, _ORGANIC_WEEKDAY, _ORGANIC_HOUR)
        return cls(organic, cfg.days, np.concatenate([[0.0], np.cumsum(organic.cell_mass)]))

    def days_at(self, seconds: np.ndarray | int) -> np.ndarray:
        """Cycle-clock days at `seconds` since the period start."""
        return self.days * self.organic.fraction_before(seconds)

    def log_elapsed(self, since: np.ndarray, now: np.ndarray | int) -> np.ndarray:
        """log(cycle-clock days from `since` to `now`); -inf where `since` is -1 (no purchase)."""
        elapsed = self.days_at(now) - self.days_at(np.maximum(since, 0))
        valid = (since >= 0) & (elapsed > 0)
        return np.log(elapsed, out=np.full(np.shape(elapsed), -np.inf), where=valid)

    def after(self, since: np.ndarray, elapsed_days: np.ndarray) -> np.ndarray:
        """The whole second at which `elapsed_days` of cycle-clock time have passed since
        `since` (at least one second later; `_NEVER` past the period's end)."""
        fraction = (self.days_at(since) + elapsed_days) / self.days
        inside = fraction < 1.0
        f = np.where(inside, fraction, 0.0)
        cell = np.clip(np.searchsorted(self.before, f, side="right") - 1, 0, self.before.size - 2)
        into = (f - self.before[cell]) / self.organic.cell_mass[cell]
        seconds = np.floor((cell + np.clip(into, 0.0, 1.0)) * _SECONDS_PER_HOUR).astype(np.int64)
        return np.where(inside, np.maximum(seconds, since + 1), _NEVER)


@dataclass(frozen=True)
class _Clocks:
    organic: _SeasonalClock
    marketing: _SeasonalClock  # e-mail and push sends share one schedule
    cycle: _CycleClock

    @classmethod
    def of(cls, cfg: SyntheticEventSource) -> _Clocks:
        return cls(
            organic=_SeasonalClock.of(cfg, _ORGANIC_WEEKDAY, _ORGANIC_HOUR),
            marketing=_SeasonalClock.of(cfg, _EMAIL_WEEKDAY, _EMAIL_HOUR),
            cycle=_CycleClock.of(cfg),
        )


# --- the hidden parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class _Rates:
    """Hidden parameters per (user × replicate) lane, user-major."""

    organic_rate: np.ndarray
    email_open_p: np.ndarray
    push_open_p: np.ndarray
    propensity: np.ndarray
    log_period: np.ndarray | None = None  # replenishment (+inf: not a member); None: off


class _ParameterSource(Protocol):
    """Where a lane's hidden parameters come from: the truth or the posterior."""

    def draw(self, rng: np.random.Generator, rows: np.ndarray, replicates: int) -> _Rates:
        """`replicates` draws for each oracle row in `rows`, as lanes (user-major)."""
        ...


@dataclass(frozen=True)
class _TrueParameters:
    population: _Population
    members: np.ndarray  # user index of each oracle row
    cycles: bool  # replenishment cycles are on

    def draw(self, rng: np.random.Generator, rows: np.ndarray, replicates: int) -> _Rates:
        users = np.repeat(self.members[rows], replicates)
        people = self.population
        return _Rates(
            organic_rate=people.organic_rate[users],
            email_open_p=people.email_open_p[users],
            push_open_p=people.push_open_p[users],
            propensity=people.propensity[users],
            log_period=people.log_period[users] if self.cycles else None,
        )


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
        cfg: SyntheticEventSource,
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

    def with_cycles(
        self,
        log: _SessionLog,
        seen: np.ndarray,
        last_buy: np.ndarray,
        begin: int,
        clock: _CycleClock,
        bounds: tuple[float, float],
    ) -> _HistoryEvidence:
        """This evidence plus the replenishment part (`last_buy` per seen session, from
        `_replay_history`)."""
        cycles = _CycleEvidence.of(self, log, seen, last_buy, begin, clock, bounds)
        return replace(self, cycles=cycles)


@dataclass(frozen=True)
class _GridPosterior:
    """A 1-D posterior per row as a piecewise-constant density on a uniform per-row grid."""

    points: np.ndarray  # (rows, G) cell centres
    weights: np.ndarray  # (rows, G) cell probabilities, summing to 1 per row
    step: np.ndarray  # (rows,) cell width
    log_evidence: np.ndarray  # (rows,) log of the integral of the unnormalised density

    def cdf(self, values: np.ndarray) -> np.ndarray:
        """P(parameter <= values[i]) under row i's posterior."""
        left_edge = self.points - self.step[:, None] / 2
        covered = np.clip((values[:, None] - left_edge) / self.step[:, None], 0.0, 1.0)
        return (self.weights * covered).sum(axis=1)

    def sample(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF draws for `rows`, one per uniform in `u` (rows.size, R)."""
        cell, inside = _sample_cells(self.weights[rows], u)
        centre = np.take_along_axis(self.points[rows], cell, axis=1)
        return centre + (inside - 0.5) * self.step[rows, None]


def _sample_cells(weights: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse CDF over the cells of each row of `weights` (n, G) for the uniforms `u` (n, R):
    the cell of each draw, and where in the cell's probability its uniform fell (uniform in
    [0, 1) given the cell, so it can place the draw inside the cell)."""
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    n, g = cdf.shape
    shift = np.arange(n)[:, None]  # rows side by side on one axis, for one searchsorted
    cell = np.searchsorted((cdf + shift).ravel(), (u + shift).ravel(), side="right")
    cell = np.minimum(cell.reshape(u.shape) - shift * g, g - 1)
    upper = np.take_along_axis(cdf, cell, axis=1)
    lower = np.where(cell > 0, np.take_along_axis(cdf, np.maximum(cell - 1, 0), axis=1), 0.0)
    inside = np.clip((u - lower) / np.maximum(upper - lower, 1e-300), 0.0, 1.0)
    return cell, inside


def _grid_posterior(
    log_density: Callable[[np.ndarray], np.ndarray], coarse: np.ndarray, n_rows: int
) -> _GridPosterior:
    """Per-row posterior on a fine grid placed where a shared coarse grid finds the mass.

    `log_density` maps points (n_rows, G) to the unnormalised log posterior density. Two passes
    let a fixed number of points follow both vague posteriors (light users, near the prior) and
    sharp ones (heavy users) without knowing the shape in advance.
    """
    coarse_lp = log_density(np.broadcast_to(coarse, (n_rows, coarse.size)))
    mass = np.exp(coarse_lp - coarse_lp.max(axis=1, keepdims=True))
    cdf = np.cumsum(mass, axis=1) / mass.sum(axis=1, keepdims=True)
    lo = coarse[np.maximum((cdf < _NEGLIGIBLE_MASS).sum(axis=1) - 1, 0)]
    hi = coarse[np.minimum((cdf < 1.0 - _NEGLIGIBLE_MASS).sum(axis=1) + 1, coarse.size - 1)]
    step = (hi - lo) / _FINE_GRID_POINTS
    points = lo[:, None] + step[:, None] * (np.arange(_FINE_GRID_POINTS) + 0.5)
    lp = log_density(points)
    top = lp.max(axis=1, keepdims=True)
    density = np.exp(lp - top)
    total = density.sum(axis=1, keepdims=True)
    return _GridPosterior(
        points=points,
        weights=density / total,
        step=step,
        log_evidence=top[:, 0] + np.log(total[:, 0] * step),
    )


def _log_beta_function(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _poisson_rate_posterior(
    n: np.ndarray, exposure: np.ndarray | float, prior: tuple[float, float], coarse: np.ndarray
) -> _GridPosterior:
    """Posterior of a probability p with a Beta prior given a Poisson(p × exposure) count,
    on the logit scale (where a Beta(a, b) density is sigmoid(x)^a sigmoid(-x)^b / B(a, b)).

    The prior is normalised so `log_evidence` is the marginal likelihood (up to the count's
    p-free factors), which the push posterior weighs against "not an app user"."""
    a, b = prior
    log_b = _log_beta_function(a, b)
    n = n[:, None]
    exposure = np.reshape(exposure, (-1, 1))

    def log_density(x: np.ndarray) -> np.ndarray:
        return (a + n) * _log_sigmoid(x) + b * _log_sigmoid(-x) - log_b - exposure * _sigmoid(x)

    return _grid_posterior(log_density, coarse, n.shape[0])


def _organic_posterior(evidence: _HistoryEvidence, median_rate: float) -> _GridPosterior:
    """Posterior of z = log(organic rate / median rate), prior N(0, 1), Poisson count."""
    n = evidence.n_organic[:, None]
    expected_at_median = median_rate * evidence.organic_exposure

    def log_density(z: np.ndarray) -> np.ndarray:
        return -0.5 * (z / _ORGANIC_LOG_SD) ** 2 + n * z - expected_at_median * np.exp(z)

    return _grid_posterior(log_density, _COARSE_LOG_ORGANIC, n.shape[0])


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


def _propensity_posterior(evidence: _HistoryEvidence) -> _GridPosterior:
    """Posterior of the propensity, prior N(0, 0.7²), from past browsing sessions' buys (of a
    replenishment non-member: `_CyclePosterior` weighs it against the member one)."""
    n_rows = evidence.n_organic.size
    sign = np.where(evidence.browse_bought, 1.0, -1.0)

    def log_density(points: np.ndarray) -> np.ndarray:
        total = -0.5 * (points / _PROPENSITY_SD) ** 2
        _add_buy_log_likelihood(total, evidence.browse_row, evidence.browse_offset, sign, points)
        return total

    return _grid_posterior(log_density, _COARSE_PROPENSITY, n_rows)


# --- replenishment cycles: a joint posterior where the parameters share the buy log-odds ----


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


@dataclass(frozen=True)
class _JointGridPosterior:
    """A 2-D posterior per row, piecewise constant on a per-row product grid of cells."""

    b: np.ndarray  # (rows, Gb) cell centres of the first parameter
    x: np.ndarray  # (rows, Gx) ... and of the second
    b_step: np.ndarray  # (rows,)
    x_step: np.ndarray  # (rows,)
    weights: np.ndarray  # (rows, Gb, Gx), summing to 1 per row
    log_evidence: np.ndarray  # (rows,)

    def sample(
        self, rows: np.ndarray, u: np.ndarray, jitter: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Joint draws for `rows`: a cell by inverse CDF of `u` (rows.size, R), uniform inside
        it (the CDF position for b, `jitter` for x)."""
        gb, gx = self.b.shape[1], self.x.shape[1]
        cell, inside = _sample_cells(self.weights[rows].reshape(rows.size, gb * gx), u)
        at_b, at_x = np.divmod(cell, gx)
        b = (
            np.take_along_axis(self.b[rows], at_b, axis=1)
            + (inside - 0.5) * self.b_step[rows, None]
        )
        x = (
            np.take_along_axis(self.x[rows], at_x, axis=1)
            + (jitter - 0.5) * self.x_step[rows, None]
        )
        return b, x


def _mass_range(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 1-D mass (rows, G): the first and last cell to keep so that at most
    `_NEGLIGIBLE_MASS` is left out on each side, widened by one cell."""
    cdf = np.cumsum(mass, axis=1) / mass.sum(axis=1, keepdims=True)
    first = np.maximum((cdf < _NEGLIGIBLE_MASS).sum(axis=1) - 1, 0)
    last = np.minimum((cdf < 1.0 - _NEGLIGIBLE_MASS).sum(axis=1) + 1, mass.shape[1] - 1)
    return first, last


def _cycle_grid_posterior(evidence: _CycleEvidence) -> _JointGridPosterior:
    """The members' joint posterior of (propensity, log period), `_CYCLE_ROWS_PER_CHUNK` rows
    at a time (each row's grids hold ~1500 cells)."""
    n = evidence.rows.size
    if n <= _CYCLE_ROWS_PER_CHUNK:
        return _cycle_grid_posterior_rows(evidence)
    parts = [
        _cycle_grid_posterior_rows(evidence.rows_between(lo, min(lo + _CYCLE_ROWS_PER_CHUNK, n)))
        for lo in range(0, n, _CYCLE_ROWS_PER_CHUNK)
    ]
    return _JointGridPosterior(
        **{
            field: np.concatenate([getattr(part, field) for part in parts])
            for field in ("b", "x", "b_step", "x_step", "weights", "log_evidence")
        }
    )


def _cycle_grid_posterior_rows(evidence: _CycleEvidence) -> _JointGridPosterior:
    """The joint posterior on a per-row fine grid placed where a coarse grid finds the mass, as
    `_grid_posterior` does in 1-D. Propensity cells are centred on the grid points like there;
    log-period cells tile the prior's support, so the fine box never leaves it."""
    n = evidence.rows.size
    lo, hi = evidence.log_period_bounds
    coarse_b = _COARSE_CYCLE_PROPENSITY
    coarse_step = (hi - lo) / _COARSE_CYCLE_PERIOD_POINTS
    coarse_x = lo + coarse_step * (np.arange(_COARSE_CYCLE_PERIOD_POINTS) + 0.5)
    coarse_lp = evidence.log_density(
        np.broadcast_to(coarse_b, (n, coarse_b.size)), np.broadcast_to(coarse_x, (n, coarse_x.size))
    )
    mass = np.exp(coarse_lp - coarse_lp.max(axis=(1, 2), keepdims=True))
    b_first, b_last = _mass_range(mass.sum(axis=2))
    x_first, x_last = _mass_range(mass.sum(axis=1))
    b_lo, b_hi = coarse_b[b_first], coarse_b[b_last]
    x_lo, x_hi = lo + coarse_step * x_first, lo + coarse_step * (x_last + 1)

    b_step = (b_hi - b_lo) / _FINE_CYCLE_PROPENSITY_POINTS
    x_step = (x_hi - x_lo) / _FINE_CYCLE_PERIOD_POINTS
    b = b_lo[:, None] + b_step[:, None] * (np.arange(_FINE_CYCLE_PROPENSITY_POINTS) + 0.5)
    x = x_lo[:, None] + x_step[:, None] * (np.arange(_FINE_CYCLE_PERIOD_POINTS) + 0.5)
    lp = evidence.log_density(b, x)
    top = lp.max(axis=(1, 2))
    density = np.exp(lp - top[:, None, None])
    total = density.sum(axis=(1, 2))
    return _JointGridPosterior(
        b=b,
        x=x,
        b_step=b_step,
        x_step=x_step,
        weights=density / total[:, None, None],
        log_evidence=top + np.log(total * b_step * x_step),
    )


@dataclass(frozen=True)
class _CyclePosterior:
    """Replenishment given the history, for the rows with a purchase (`rows`): P(member), and
    a member's joint posterior of (propensity, log period). Membership, propensity and period
    all act on the same buy log-odds, so here the posterior does not factorise; a non-member's
    propensity is `_Posterior.propensity`. Rows without a purchase need none of it (see
    `_CycleEvidence`): their lanes are drawn as non-members."""

    index_of_row: np.ndarray  # oracle row -> row of `member` / `joint`, -1 without a purchase
    member: np.ndarray  # P(member | history)
    joint: _JointGridPosterior

    @classmethod
    def of(
        cls, evidence: _CycleEvidence, non_member: _GridPosterior, share: float, n_rows: int
    ) -> _CyclePosterior:
        joint = _cycle_grid_posterior(evidence)
        if share >= 1.0:
            member = np.ones(evidence.rows.size)
        else:
            log_prior_odds = math.log(share) - math.log1p(-share)
            member = _sigmoid(
                log_prior_odds + joint.log_evidence - non_member.log_evidence[evidence.rows]
            )
            member[evidence.has_due_visit] = 1.0  # only members have due-date visits
        index_of_row = np.full(n_rows, -1)
        index_of_row[evidence.rows] = np.arange(evidence.rows.size)
        return cls(index_of_row, member, joint)


def _app_user_probability(evidence: _HistoryEvidence, push: _GridPosterior) -> np.ndarray:
    """P(app user | history). Non-app users never open a push and browse organically on the
    web; app users do so with P(prefers web) = 0.4. `push.log_evidence` is the app users'
    marginal likelihood of the push count."""
    channel = evidence.organic_channel
    log_channel_if_app = np.select(
        [channel == 1, channel == 0], [np.log(_PREFERS_APP_P), np.log(1 - _PREFERS_APP_P)], 0.0
    )
    log_app = np.log(_APP_USER_P) + push.log_evidence + log_channel_if_app
    may_lack_app = (evidence.n_push == 0) & (channel != 1)
    log_no_app = np.where(may_lack_app, np.log(1 - _APP_USER_P), -np.inf)
    return _sigmoid(log_app - log_no_app)


def _stratified_uniforms(rng: np.random.Generator, rows: int, replicates: int) -> np.ndarray:
    """(rows, replicates) uniforms, the r-th in [r, r + 1) / replicates: the replicates cover
    each posterior evenly (less Monte Carlo noise for free). Sorted along each row, which keeps
    the inverse-CDF lookup fast; `_Posterior.draw` shuffles each row afterwards."""
    return (np.arange(replicates) + rng.random((rows, replicates))) / replicates


@dataclass(frozen=True)
class _Posterior:
    """The hidden parameters given the history. Parameters are a-priori independent and the
    likelihood factorises over them, so the joint posterior is a product of 1-D ones, except
    for replenishment membership, period and propensity (`_CyclePosterior`)."""

    median_organic_rate: float
    log_organic: _GridPosterior
    logit_email: _GridPosterior
    logit_push: _GridPosterior  # given an app user
    app_user: np.ndarray
    propensity: _GridPosterior  # of a replenishment non-member
    cycles: _CyclePosterior | None = None  # with replenishment cycles only

    @classmethod
    def of(cls, evidence: _HistoryEvidence, cfg: SyntheticEventSource) -> _Posterior:
        push = _poisson_rate_posterior(
            evidence.n_push, evidence.push_exposure, _PUSH_OPEN_BETA, _COARSE_LOGIT_PUSH
        )
        propensity = _propensity_posterior(evidence)
        cycles = None
        if evidence.cycles is not None:
            cycles = _CyclePosterior.of(
                evidence.cycles, propensity, cfg.replenishment_share, evidence.n_organic.size
            )
        return cls(
            median_organic_rate=cfg.organic_sessions_per_day,
            log_organic=_organic_posterior(evidence, cfg.organic_sessions_per_day),
            logit_email=_poisson_rate_posterior(
                evidence.n_email, evidence.email_exposure, _EMAIL_OPEN_BETA, _COARSE_LOGIT_EMAIL
            ),
            logit_push=push,
            app_user=_app_user_probability(evidence, push),
            propensity=propensity,
            cycles=cycles,
        )

    def draw(self, rng: np.random.Generator, rows: np.ndarray, replicates: int) -> _Rates:
        def stratified(posterior: _GridPosterior) -> np.ndarray:
            """Latin hypercube: stratified per parameter, shuffled independently per row so
            that one lane's parameters are independent draws."""
            draws = posterior.sample(rows, _stratified_uniforms(rng, rows.size, replicates))
            return rng.permuted(draws, axis=1)

        organic = self.median_organic_rate * np.exp(stratified(self.log_organic))
        email = _sigmoid(stratified(self.logit_email))
        app_user = rng.random((rows.size, replicates)) < self.app_user[rows, None]
        push = np.where(app_user, _sigmoid(stratified(self.logit_push)), 0.0)
        propensity = stratified(self.propensity)
        if self.cycles is None:
            return _Rates(organic.ravel(), email.ravel(), push.ravel(), propensity.ravel())

        # Rows with a purchase: a member's (propensity, log period) jointly, stratified over
        # the joint grid and shuffled as pairs; a non-member keeps the propensity above.
        # Membership is stratified too: the share of member lanes is P(member) up to 1 / R,
        # which matters as it is the largest source of Monte Carlo noise for these users.
        log_period = np.full((rows.size, replicates), np.inf)
        at = self.cycles.index_of_row[rows]
        buyers = at >= 0
        k = at[buyers]
        u = _stratified_uniforms(rng, k.size, replicates)
        b, x = self.cycles.joint.sample(k, u, rng.random(u.shape))
        shuffle = rng.permuted(np.tile(np.arange(replicates), (k.size, 1)), axis=1)
        b, x = np.take_along_axis(b, shuffle, axis=1), np.take_along_axis(x, shuffle, axis=1)
        membership_u = rng.permuted(_stratified_uniforms(rng, k.size, replicates), axis=1)
        member = membership_u < self.cycles.member[k, None]
        propensity[buyers] = np.where(member, b, propensity[buyers])
        log_period[buyers] = np.where(member, x, np.inf)
        return _Rates(
            organic.ravel(), email.ravel(), push.ravel(), propensity.ravel(), log_period.ravel()
        )


# --- the future: Monte Carlo over the window -------------------------------------------------


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
    log_period = rates.log_period
    if log_period is not None:
        since = start.last_buy_t
        due_from = _due_visits_before(clocks.cycle.log_elapsed(since, begin), log_period)
        due_to = _due_visits_before(clocks.cycle.log_elapsed(since, end), log_period)
        expected.append(_DUE_VISITS_PER_CYCLE * (due_to - due_from))
    counts = [rng.poisson(mean) for mean in expected]
    per_lane = np.sum(counts, axis=0)

    # Renumber lanes busiest first: the lanes still active at rank k are then 0..n_k - 1, a
    # slice, so the loop below reads and writes state without gathers.
    busiest_first = np.argsort(-per_lane, kind="stable")
    position = np.empty_like(busiest_first)
    position[busiest_first] = np.arange(busiest_first.size)
    state = start.take(busiest_first)
    propensity = rates.propensity[busiest_first]
    sessions_of_lane = per_lane[busiest_first]

    lane = np.concatenate([np.repeat(position, c) for c in counts])
    kind = np.concatenate([np.full(c.sum(), k, np.int8) for k, c in enumerate(counts)])
    times = [
        clocks.organic.sample(rng, int(counts[0].sum()), begin, end),
        clocks.marketing.sample(rng, int(counts[1].sum() + counts[2].sum()), begin, end),
    ]
    if log_period is not None:
        owner = np.repeat(np.arange(per_lane.size), counts[3])
        log_elapsed = _due_visit_log_elapsed(rng, log_period[owner], due_from[owner], due_to[owner])
        due_t = clocks.cycle.after(start.last_buy_t[owner], np.exp(log_elapsed))
        times.append(np.clip(due_t, begin, end - 1))  # clip: float rounding at the ends only
        log_period = log_period[busiest_first]
    t = np.concatenate(times)
    order = np.argsort(lane * np.int64(end - begin) + (t - begin), kind="stable")
    t, kind = t[order], kind[order]
    first = np.concatenate([[0], np.cumsum(sessions_of_lane)[:-1]])

    survival = np.ones(busiest_first.size)
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
    return survival[position]
