"""Who the users are: the hidden per-user parameters, their priors, the planned sessions, and
the optional segment columns.

The priors are shared: the generator draws from them, and the history oracle integrates over
them (`posterior`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engage_seq.synthetic.clocks import (
    _EMAIL_HOUR,
    _EMAIL_WEEKDAY,
    _ORGANIC_HOUR,
    _ORGANIC_WEEKDAY,
    _sample_times,
)
from engage_seq.synthetic.settings import SyntheticSettings, _log_period_bounds, _start_datetime

# Priors of the hidden per-user parameters: the generator draws from them, and the history
# oracle integrates over them.
_ORGANIC_LOG_SD = 1.0  # organic rate = organic_sessions_per_day * lognormal(0, this)
_EMAIL_OPEN_BETA = (1.5, 4.5)  # mean ~0.25
_APP_USER_P = 0.5
_PUSH_OPEN_BETA = (1.2, 6.0)  # app users only; others never open a push
_PREFERS_APP_P = 0.6  # app users only: organic sessions happen in the app, not on the web
_PROPENSITY_SD = 0.7

# User attributes (opt-in): segment columns for reports; they change no behaviour.
_IOS_SHARE = 0.55  # of app users; the others are on android, non-app users on web
COUNTRIES: tuple[str, ...] = ("DE", "FR", "GB", "ES", "IT", "NL")
_COUNTRY_WEIGHTS = np.array([0.30, 0.20, 0.20, 0.12, 0.12, 0.06])


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


def _draw_population(
    rng: np.random.Generator, cycle_rng: np.random.Generator, cfg: SyntheticSettings
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


def _draw_session_starts(
    rng: np.random.Generator, cfg: SyntheticSettings, people: _Population
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


def _user_attributes(cfg: SyntheticSettings, app_user: np.ndarray) -> tuple[np.ndarray, ...]:
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
