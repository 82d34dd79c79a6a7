"""The customer-base simulation: who is acquired when, their orders' times, then order lines.

The specification (fixed before any model was measured on it) is in
`engage_seq.synthetic.customer_base`; the constants below are it, deliberately not config
fields, so that no run can tune them. Timing and marks use separate random streams
(``[seed, 0]`` and ``[seed, 1]``), so the lines, channels and amounts never move a purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage_seq.synthetic.weekly_clock import SECONDS_PER_DAY, WeeklyClock

RATE_SHAPE = 0.75  # r: λ_i ~ Gamma(r, rate α_i) per day
ALPHA0_DAYS = 30.0  # α0
COHORT_DECLINE = 1.0  # α_i = α0 · (1 + COHORT_DECLINE · u_i)
DROPOUT_A = 0.8  # p_i ~ Beta(a, b): P(inactive for good) after each repeat purchase
DROPOUT_B = 4.0
EXTRA_LINES_MEAN = 0.8  # lines per order: 1 + Poisson
EXTRA_QUANTITY_MEAN = 0.4  # quantity per line: 1 + Poisson
SPEND_SHAPE = 2.0  # spend level ~ Gamma(shape, scale): mean unit price of the customer
SPEND_SCALE = 15.0
PRICE_SIGMA = 0.5  # unit price log-normal around the spend level (mean preserved)
CHANNELS = ("web", "store", "app")
CHANNEL_SHARES = (0.5, 0.3, 0.2)


@dataclass(frozen=True)
class CustomerDraw:
    """The hidden and observed per-customer quantities and every order, in time order per
    customer (orders sorted by customer, then time; order 0 of a customer is acquisition)."""

    first_seconds: np.ndarray  # (C,) float, acquisition time, seconds since start
    alpha: np.ndarray  # (C,) α_i in days (observable: follows from first_seconds)
    rate: np.ndarray  # (C,) λ_i per day (hidden)
    dropout: np.ndarray  # (C,) p_i (hidden)
    order_customer: np.ndarray  # (O,) int64 customer index
    order_operational: np.ndarray  # (O,) float, Λ at the order, days
    order_seconds: np.ndarray  # (O,) int64, seconds since start (floored)


def cohort_alpha(first_seconds: np.ndarray, acquisition_days: int) -> np.ndarray:
    """α_i from the acquisition time: later cohorts (u_i -> 1) buy less often."""
    position = np.asarray(first_seconds) / (acquisition_days * SECONDS_PER_DAY)  # u_i in [0,1)
    return ALPHA0_DAYS * (1.0 + COHORT_DECLINE * position)


def _repeat_orders(
    rng: np.random.Generator,
    start: np.ndarray,
    rate: np.ndarray,
    dropout: np.ndarray,
    horizon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Repeat orders of every customer until dropout or ``horizon`` (operational days).

    Loops over the purchase rank, each step vectorised over the customers still active: an
    exponential gap of rate λ_i in operational time, then dropout with probability p_i.
    """
    customers, times = [], []
    active = np.arange(rate.size)
    current = start.copy()
    with np.errstate(divide="ignore"):
        while active.size:
            following = current[active] + rng.exponential(1.0, active.size) / rate[active]
            inside = following < horizon
            active, following = active[inside], following[inside]
            customers.append(active)
            times.append(following)
            current[active] = following
            active = active[rng.random(active.size) >= dropout[active]]
    return np.concatenate(customers), np.concatenate(times)


def draw_customers(
    n_customers: int, days: int, acquisition_days: int, seed: int, clock: WeeklyClock
) -> CustomerDraw:
    """Simulate acquisition and order times (the timing stream ``[seed, 0]``)."""
    rng = np.random.default_rng([seed, 0])
    first = rng.uniform(0.0, acquisition_days * SECONDS_PER_DAY, n_customers)
    alpha = cohort_alpha(first, acquisition_days)
    rate = rng.gamma(RATE_SHAPE, 1.0 / alpha)
    dropout = rng.beta(DROPOUT_A, DROPOUT_B, n_customers)
    first_operational = clock.operational(first)
    repeat_customer, repeat_operational = _repeat_orders(
        rng, first_operational, rate, dropout, float(clock.operational(days * SECONDS_PER_DAY))
    )
    repeat_seconds = np.minimum(clock.seconds(repeat_operational), days * SECONDS_PER_DAY - 1)
    customer = np.concatenate([np.arange(n_customers), repeat_customer])
    operational = np.concatenate([first_operational, repeat_operational])
    seconds = np.floor(np.concatenate([first, repeat_seconds])).astype(np.int64)
    order = np.lexsort((operational, customer))
    return CustomerDraw(
        first_seconds=first,
        alpha=alpha,
        rate=rate,
        dropout=dropout,
        order_customer=customer[order],
        order_operational=operational[order],
        order_seconds=seconds[order],
    )


@dataclass(frozen=True)
class OrderLines:
    """One entry per order line (lines of an order are adjacent, in order sequence)."""

    order: np.ndarray  # (L,) int64 index into the draw's orders
    channel: np.ndarray  # (L,) str, the order's channel
    quantity: np.ndarray  # (L,) int64 >= 1
    amount: np.ndarray  # (L,) float64, quantity · unit price, cents


def draw_lines(draw: CustomerDraw, seed: int) -> OrderLines:
    """Order lines, channels and amounts (the marks stream ``[seed, 1]``): independent of
    the timing, and the spend level independent of λ and p (the gamma-gamma assumption)."""
    rng = np.random.default_rng([seed, 1])
    spend = rng.gamma(SPEND_SHAPE, SPEND_SCALE, draw.first_seconds.size)
    n_orders = draw.order_customer.size
    lines_per_order = 1 + rng.poisson(EXTRA_LINES_MEAN, n_orders)
    channel = rng.choice(len(CHANNELS), size=n_orders, p=CHANNEL_SHARES)
    order = np.repeat(np.arange(n_orders), lines_per_order)
    quantity = 1 + rng.poisson(EXTRA_QUANTITY_MEAN, order.size)
    noise = rng.normal(0.0, PRICE_SIGMA, order.size) - PRICE_SIGMA**2 / 2  # mean exp() = 1
    unit_price = np.maximum(np.round(spend[draw.order_customer[order]] * np.exp(noise), 2), 0.01)
    return OrderLines(
        order=order,
        channel=np.asarray(CHANNELS)[channel[order]],
        quantity=quantity.astype(np.int64),
        amount=np.round(quantity * unit_price, 2),
    )
