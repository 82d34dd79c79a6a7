"""The built-in synthetic data: an event generator whose order and timing carry the signal, and
its oracle, the ground-truth purchase probabilities it implies (see `generator` and `oracle`).
Layers, bottom up: `settings`, `behaviour` (one session's dynamics), `clocks`, `population`,
`sessions`, `events`, `drift`, `generator` (`SyntheticEventSource`, `generate_events`), then the
oracle's `history`, `grids`, `posterior` and `oracle` (`purchase_probability`). It may import
numpy, polars and `engage_seq.common` only (no torch, Lightning or Hydra); the public names
below are re-exported here, so ``engage_seq.synthetic.SyntheticEventSource`` is the stable path.
The customer-base generator (`customer_base`: `CustomerBaseSource`; `customer_base_draw`,
`weekly_clock`) and its closed-form oracle (`customer_base_oracle`) stand beside it.
"""

from __future__ import annotations

from engage_seq.common.moved import package_getattr
from engage_seq.synthetic.behaviour import CHANNELS, EVENT_TYPES
from engage_seq.synthetic.customer_base import CustomerBaseSource, generate_customer_base
from engage_seq.synthetic.customer_base_oracle import customer_base_probability
from engage_seq.synthetic.generator import SyntheticEventSource, generate_events
from engage_seq.synthetic.oracle import ORACLE_KNOWLEDGE, purchase_probability
from engage_seq.synthetic.population import COUNTRIES
from engage_seq.synthetic.settings import SyntheticSettings

__all__ = [
    "CHANNELS",
    "COUNTRIES",
    "EVENT_TYPES",
    "ORACLE_KNOWLEDGE",
    "CustomerBaseSource",
    "SyntheticEventSource",
    "SyntheticSettings",
    "customer_base_probability",
    "generate_customer_base",
    "generate_events",
    "purchase_probability",
]

__getattr__ = package_getattr(__name__)  # 0.1 class paths: engage_seq.common.moved
