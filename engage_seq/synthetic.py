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

Generation is vectorised over users; the only Python loop runs over the *session rank*
(1st session of every user, then 2nd, ...), because a session's outcome depends on the
state left by the previous one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import polars as pl

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

_SECONDS_PER_DAY = 86_400
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

# Session kinds.
_ORGANIC, _EMAIL, _PUSH = 0, 1, 2


@dataclass(frozen=True)
class SyntheticEventSource:
    """Configuration of the built-in dataset; `scan()` returns the raw event table.

    Defaults give ~25k users and ~1M events over 120 days in a few seconds.
    """

    n_users: int = 25_000
    days: int = 120
    start: str = "2026-01-05"  # a Monday, UTC
    seed: int = 0
    organic_sessions_per_day: float = 0.05  # median user; log-normal across users
    emails_per_week: float = 2.0
    pushes_per_week: float = 1.0

    def fingerprint(self) -> dict[str, object]:
        """Everything that determines the generated table (used as a cache key)."""
        return {"source": "synthetic", **asdict(self)}

    def scan(self) -> pl.LazyFrame:
        return generate_events(self).lazy()

    def describe(self) -> str:
        return f"synthetic events ({self.n_users} users, {self.days} days, seed {self.seed})"


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


def generate_events(cfg: SyntheticEventSource) -> pl.DataFrame:
    """Generate the event table: user_id (str), timestamp (UTC datetime), event_type, channel."""
    if cfg.n_users <= 0 or cfg.days <= 0:
        raise ValueError(
            f"SyntheticEventSource needs n_users > 0 and days > 0, got {cfg.n_users}, {cfg.days}"
        )
    rng = np.random.default_rng(cfg.seed)
    n_users = cfg.n_users
    start = datetime.fromisoformat(cfg.start).replace(tzinfo=timezone.utc)
    start_weekday = start.weekday()

    # --- users: heterogeneous activity, responsiveness and propensity --------------------
    organic_rate = cfg.organic_sessions_per_day * rng.lognormal(0.0, 1.0, n_users)
    email_open_p = rng.beta(1.5, 4.5, n_users)  # mean ~0.25
    app_user = rng.random(n_users) < 0.5
    push_open_p = np.where(app_user, rng.beta(1.2, 6.0, n_users), 0.0)
    prefers_app = np.where(app_user, rng.random(n_users) < 0.6, False)
    propensity = rng.normal(0.0, 0.7, n_users)

    # --- sessions: Poisson counts per kind, seasonal times --------------------------------
    weeks = cfg.days / 7.0
    counts = [
        rng.poisson(organic_rate * cfg.days),
        rng.poisson(email_open_p * cfg.emails_per_week * weeks),
        rng.poisson(push_open_p * cfg.pushes_per_week * weeks),
    ]
    kind = np.concatenate([np.full(c.sum(), k, dtype=np.int8) for k, c in enumerate(counts)])
    user = np.concatenate([np.repeat(np.arange(n_users), c) for c in counts])
    n_org = counts[0].sum()
    t = np.empty(kind.size, dtype=np.int64)
    t[:n_org] = _sample_times(rng, n_org, cfg.days, _ORGANIC_WEEKDAY, _ORGANIC_HOUR, start_weekday)
    n_mkt = kind.size - n_org
    t[n_org:] = _sample_times(rng, n_mkt, cfg.days, _EMAIL_WEEKDAY, _EMAIL_HOUR, start_weekday)

    order = np.lexsort((t, user))
    user, kind, t = user[order], kind[order], t[order]
    n_sessions = kind.size
    per_user = np.bincount(user, minlength=n_users)
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]])

    # --- outcomes, session rank by session rank -------------------------------------------
    n_email_open = np.zeros(n_sessions, np.int8)
    n_email_click = np.zeros(n_sessions, np.int8)
    n_push_open = np.zeros(n_sessions, np.int8)
    n_unsub = np.zeros(n_sessions, np.int8)
    n_page = np.zeros(n_sessions, np.int16)
    n_product = np.zeros(n_sessions, np.int16)
    n_cart = np.zeros(n_sessions, np.int8)
    n_purchase = np.zeros(n_sessions, np.int8)

    intent = np.zeros(n_users)
    last_t = np.zeros(n_users, np.int64)
    cart_open = np.zeros(n_users, bool)
    cart_t = np.zeros(n_users, np.int64)
    unsubscribed = np.zeros(n_users, bool)
    intent_tau = 4.0 * _SECONDS_PER_DAY
    cart_tau = 2.0 * _SECONDS_PER_DAY

    for rank in range(int(per_user.max(initial=0))):
        users = np.flatnonzero(per_user > rank)
        s = first[users] + rank
        now = t[s]
        intent[users] *= np.exp(-(now - last_t[users]) / intent_tau)
        last_t[users] = now
        k = kind[s]
        m = users.size

        # Marketing sessions open with the message; only some continue into browsing.
        is_email = (k == _EMAIL) & ~unsubscribed[users]
        is_push = k == _PUSH
        clicked = is_email & (rng.random(m) < _sigmoid(-0.8 + 0.6 * intent[users]))
        unsub = is_email & ~clicked & (rng.random(m) < 0.025)
        unsubscribed[users[unsub]] = True
        push_continues = is_push & (rng.random(m) < 0.5)
        browsing = (k == _ORGANIC) | clicked | push_continues

        n_email_open[s] = is_email
        n_email_click[s] = clicked
        n_unsub[s] = unsub
        n_push_open[s] = is_push

        products = np.where(browsing, rng.poisson(0.4 + 1.6 * _sigmoid(intent[users] - 1.0)), 0)
        n_page[s] = np.where(browsing, 1 + rng.poisson(0.6, m), 0)
        n_product[s] = products
        intent[users] += 0.35 * products

        cart_boost = cart_open[users] * np.exp(-(now - cart_t[users]) / cart_tau)
        add = (products > 0) & (
            rng.random(m) < _sigmoid(-2.6 + 0.9 * intent[users] + 0.25 * products)
        )
        buy_logit = -4.0 + propensity[users] + 0.5 * intent[users] + 3.0 * cart_boost + 1.2 * add
        buy = browsing & (rng.random(m) < _sigmoid(buy_logit))
        n_cart[s] = add
        n_purchase[s] = buy

        abandoned = add & ~buy
        cart_open[users[abandoned]] = True
        cart_t[users[abandoned]] = now[abandoned]
        cart_open[users[buy]] = False
        intent[users[buy]] = np.maximum(intent[users[buy]] - 2.0, 0.0)

    # --- expand sessions into events, in within-session order -----------------------------
    browse_channel = np.where(
        kind == _EMAIL, 0, np.where(kind == _PUSH, 1, prefers_app[user].astype(np.int64))
    )  # 0 = web, 1 = app
    slot_counts = np.stack(
        [n_email_open, n_email_click, n_unsub, n_push_open, n_page, n_product, n_cart, n_purchase],
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

    epoch = int(start.timestamp())
    width = len(str(n_users - 1))
    user_id = pl.Series("user_id", user[session_of_event]).cast(pl.String).str.zfill(width)
    return pl.DataFrame(
        {
            "user_id": "u" + user_id,
            "timestamp": pl.from_epoch(
                pl.Series(epoch + seconds), time_unit="s"
            ).dt.replace_time_zone("UTC"),
            "event_type": np.asarray(EVENT_TYPES)[event_type],
            "channel": np.asarray(CHANNELS)[channel],
        }
    )
