"""The customer base's oracle: P(at least one purchase in [c, c + H) | history before c), exact.

The generator (`customer_base`) is a BG/NBD process in operational time Λ (`weekly_clock`)
with a per-customer α_i that follows from the observed acquisition time. So, for a customer
with x repeat purchases, t_x = Λ(last purchase) − Λ(first) and T = Λ(c) − Λ(first), the
standard BG/NBD posterior holds with those operational lengths:

    P(alive) = 1 / (1 + [x > 0] · a / (b + x − 1) · ((α_i + T) / (α_i + t_x))^(r + x))
    P(≥ 1 in horizon) = P(alive) · (1 − ((α_i + T) / (α_i + T + ΔΛ))^(r + x))

with ΔΛ = Λ(c + H) − Λ(c) (given alive, λ_i | history ~ Gamma(r + x, α_i + T)). Nothing is
estimated: r, a, b and α_i are the generator's own. With ``day_resolution`` the table shows
less than the oracle reads (floored times, merged same-day orders), so it is an upper bound.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from engage_seq.synthetic.customer_base import CustomerBaseSource, simulate_customer_base
from engage_seq.synthetic.customer_base_draw import DROPOUT_A, DROPOUT_B, RATE_SHAPE
from engage_seq.synthetic.events import _user_ids


def bgnbd_purchase_probability(
    repeats: np.ndarray,
    last_age: np.ndarray,
    age: np.ndarray,
    alpha: np.ndarray,
    horizon: np.ndarray | float,
) -> np.ndarray:
    """P(≥ 1 purchase in the next ``horizon``) for BG/NBD customers with the generator's r, a, b.

    ``repeats`` = x, ``last_age`` = t_x, ``age`` = T, ``horizon`` = ΔΛ (all operational days,
    any broadcastable float arrays). Written with logs so long histories do not overflow.
    """
    x = np.asarray(repeats, dtype=np.float64)
    shape = RATE_SHAPE + x
    log_ratio = shape * (np.log(alpha + age) - np.log(alpha + last_age))
    log_odds_dead = np.log(DROPOUT_A / (DROPOUT_B + np.maximum(x, 1.0) - 1.0)) + log_ratio
    alive = np.where(x > 0, np.exp(-np.logaddexp(0.0, log_odds_dead)), 1.0)
    none_in_horizon = np.exp(shape * (np.log(alpha + age) - np.log(alpha + age + horizon)))
    return alive * (1.0 - none_in_horizon)


def customer_base_probability(
    source: CustomerBaseSource, cutoff: int, horizon_seconds: int
) -> pl.DataFrame:
    """Exact P(any purchase in ``[cutoff, cutoff + horizon)``) per customer acquired before
    ``cutoff`` (epoch seconds UTC): ``user_id`` as the table emits it and ``probability``.

    Same columns as `engage_seq.synthetic.purchase_probability`, so the run report and the
    quality benchmark join it to the samples the same way. "Before the cutoff" is decided on
    the table's whole-second timestamps, as the samples decide it.
    """
    draw, _ = simulate_customer_base(source)
    clock = source.clock
    since_start = int(cutoff) - source.start_epoch
    before = draw.order_seconds < since_start  # (O,)
    customer = draw.order_customer[before]
    orders = np.bincount(customer, minlength=draw.alpha.size)  # (C,)
    last = np.full(draw.alpha.size, -np.inf)
    np.maximum.at(last, customer, draw.order_operational[before])
    acquired = np.flatnonzero(orders > 0)
    first = clock.operational(draw.first_seconds[acquired])
    at_cutoff = float(clock.operational(since_start))
    window = float(clock.operational(since_start + int(horizon_seconds))) - at_cutoff
    probability = bgnbd_purchase_probability(
        orders[acquired] - 1,
        last[acquired] - first,
        at_cutoff - first,
        draw.alpha[acquired],
        window,
    )
    return pl.DataFrame(
        {
            "user_id": _user_ids(acquired, source.n_customers),
            "probability": probability,
        }
    )
