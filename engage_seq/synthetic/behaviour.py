"""How one session plays out: the per-user state it reads and leaves, and the buy log-odds.

Written once and shared by the generator (`sessions`), the history replay and the oracle's
Monte Carlo (`oracle`), so the ground truth is the generator's own dynamics. `lanes` index the
state arrays: users in the generator, (user × replicate) lanes in the oracle, where they are a
slice because the oracle keeps the active lanes at the front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage_seq.synthetic.settings import _SECONDS_PER_DAY

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

# Session kinds. Due-date visits happen only with replenishment cycles switched on.
_ORGANIC, _EMAIL, _PUSH, _DUE = 0, 1, 2, 3
_NEVER = np.iinfo(np.int64).max  # a time that never comes

# Replenishment cycles (opt-in): a member's cycle restarts at each purchase; elapsed time is
# measured on the organic seasonal clock (`_CycleClock`), in days.
_DUE_VISITS_PER_CYCLE = 3.0  # expected due-date visits of a cycle that no purchase cuts short
_DUE_SHAPE = 12.0  # log(elapsed / period) of a due visit ~ Logistic(0, 1 / this): sd 0.15
_DUE_BUY_BOOST = 7.0  # extra buy log-odds exactly at the due date, fading as above
_STOCKED_BUY_PENALTY = 3.0  # ... and fewer buys away from it

# Drift (opt-in, from `drift_start`): each effect scales with `drift_strength` s in (0, 1].
_DRIFT_INTENT_WEIGHT_CHANGE = -0.5  # buy log-odds per unit of intent 0.5 -> 0.5 (1 - s) ...
_DRIFT_CART_WEIGHT_CHANGE = -6.0  # ... and per unit of open-cart boost 3 -> 3 - 6 s
# (the drift's other effects: see `drift`)

# Time constants of the per-user state (e-folding, seconds).
_INTENT_TAU = 4.0 * _SECONDS_PER_DAY
_CART_TAU = 2.0 * _SECONDS_PER_DAY


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) without overflow for large |x| (and 4x faster than -logaddexp(0, -x)),
    in the dtype of `x`."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


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


_UNDRIFTED = _Conversion()  # the conversion before any drift


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
