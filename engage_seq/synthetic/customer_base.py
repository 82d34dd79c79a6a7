"""The customer-base generator: a buy-till-you-die transaction export (issue 21, item 6).

Specified before any model was measured on it, and not tuned afterwards to favour a model
(docs/data.md, "Customer-base data"). A retailer's customer base, not a clickstream:

* **acquisition**: customer i's first purchase is uniform over ``[start, start +
  acquisition_days)``; their history starts there. u_i in [0, 1) is its position in that
  window;
* **purchase rate**: λ_i ~ Gamma(shape r = 0.75, rate α_i) per day, α_i = α0 · (1 +
  cohort_decline · u_i), α0 = 30 days, cohort_decline = 1: later cohorts buy less often, so the
  base changes under the models' feet as in a real log. u_i is observable (the first purchase
  time), so the oracle stays exact;
* **silent dropout** (BG/NBD): after every repeat purchase the customer becomes inactive for
  good with probability p_i ~ Beta(a = 0.8, b = 4); nobody drops out at the first purchase;
* **weekly seasonality**: while active, purchases follow a Poisson process of intensity
  λ_i · s(t) · g(t), s the day-of-week multipliers (Mon..Sun 0.85, 0.85, 0.9, 0.95, 1.1, 1.3,
  1.05, normalised to mean 1), g a time-of-day profile (mean 1 over each day: it places
  purchases within a day and leaves daily counts alone). It is simulated in operational time
  Λ(t) = ∫ s·g (`weekly_clock`), where it is a Poisson process of rate λ_i;
* **order lines**: each order has 1 + Poisson(0.8) lines sharing its timestamp, each with
  ``quantity`` = 1 + Poisson(0.4) and ``amount`` = quantity · unit price, the unit price
  log-normal (σ = 0.5) around a per-customer spend level ~ Gamma(2, scale 15) independent of
  λ and p (gamma-gamma): the monetary columns carry no information about purchase timing.
  ``channel`` (web / store / app, 0.5 / 0.3 / 0.2) is per order, independent noise. No returns.

The table has one row per order line: ``user_id``, ``timestamp`` (UTC, seconds), ``channel``,
``quantity``, ``amount``, and ``event_type`` (all ``purchase``) only with ``with_event_type``.
``day_resolution`` floors timestamps to midnight UTC: orders of one day then look like one
event, and the oracle, which reads exact times and order counts, becomes an upper bound. The
oracle is `engage_seq.synthetic.customer_base_oracle.customer_base_probability`; the
simulation's constants and draws live in `customer_base_draw`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import polars as pl

from engage_seq.common.errors import EngageSeqError
from engage_seq.synthetic.customer_base_draw import (
    CustomerDraw,
    OrderLines,
    draw_customers,
    draw_lines,
)
from engage_seq.synthetic.events import _user_ids
from engage_seq.synthetic.weekly_clock import SECONDS_PER_DAY, WeeklyClock


class CustomerBaseSettingsError(EngageSeqError, ValueError):
    """A `CustomerBaseSource` field out of range (the message names it)."""


@dataclass(frozen=True)
class CustomerBaseSource:
    """Configuration of the customer-base table; `scan()` returns it (one row per line).

    Defaults: 30,000 customers acquired over 600 of 730 days from 2024-01-01 (about 150k
    orders, 270k lines, in 0.3 s). ``start`` must be a date (the simulation starts at its
    midnight UTC).
    """

    n_customers: int = 30_000
    start: str = "2024-01-01"
    days: int = 730
    acquisition_days: int = 600
    seed: int = 0
    with_event_type: bool = False
    day_resolution: bool = False

    def __post_init__(self) -> None:
        if self.n_customers <= 0 or self.days <= 0:
            raise CustomerBaseSettingsError(
                "data.source.n_customers and data.source.days must be > 0, got "
                f"{self.n_customers} and {self.days}"
            )
        if not 0 < self.acquisition_days <= self.days:
            raise CustomerBaseSettingsError(
                f"data.source.acquisition_days must be in (0, days={self.days}], got "
                f"{self.acquisition_days}"
            )
        try:
            datetime.strptime(str(self.start), "%Y-%m-%d")
        except ValueError:
            raise CustomerBaseSettingsError(
                f"data.source.start must be a date YYYY-MM-DD, got {self.start!r}"
            ) from None

    @property
    def start_epoch(self) -> int:
        """Midnight UTC of ``start``, epoch seconds: the simulation's time origin."""
        day = datetime.strptime(str(self.start), "%Y-%m-%d").replace(tzinfo=timezone.utc)
        return int(day.timestamp())

    @property
    def clock(self) -> WeeklyClock:
        """Operational time of this simulation (its weekday pattern starts at ``start``)."""
        day = datetime.strptime(str(self.start), "%Y-%m-%d")
        return WeeklyClock(first_weekday=day.weekday())

    def fingerprint(self) -> dict[str, object]:
        """Everything that determines the generated table (used as a cache key)."""
        return {"source": "synthetic_customer_base", **asdict(self)}

    def scan(self) -> pl.LazyFrame:
        return generate_customer_base(self).lazy()

    def describe(self) -> str:
        return (
            f"synthetic customer base ({self.n_customers} customers, {self.days} days, "
            f"seed {self.seed})"
        )


@lru_cache(maxsize=2)
def simulate_customer_base(source: CustomerBaseSource) -> tuple[CustomerDraw, OrderLines]:
    """The draws behind the table (cached: the oracle replays them per cutoff)."""
    draw = draw_customers(
        source.n_customers, source.days, source.acquisition_days, source.seed, source.clock
    )
    return draw, draw_lines(draw, source.seed)


def generate_customer_base(source: CustomerBaseSource) -> pl.DataFrame:
    """The table: one row per order line, sorted by customer and time (see the module doc)."""
    draw, lines = simulate_customer_base(source)
    seconds = draw.order_seconds[lines.order]
    if source.day_resolution:
        seconds = seconds // SECONDS_PER_DAY * SECONDS_PER_DAY
    columns: dict[str, object] = {
        "user_id": _user_ids(draw.order_customer[lines.order], source.n_customers),
        "timestamp": pl.from_epoch(
            pl.Series(source.start_epoch + seconds), time_unit="s"
        ).dt.replace_time_zone("UTC"),
    }
    if source.with_event_type:
        columns["event_type"] = np.full(lines.order.size, "purchase")
    columns["channel"] = lines.channel
    columns["quantity"] = lines.quantity
    columns["amount"] = lines.amount
    return pl.DataFrame(columns)
