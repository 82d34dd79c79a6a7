"""The hidden per-user parameters for the oracle's Monte Carlo: the truth (``knows="latent"``)
or their posterior given the history (``knows="history"``).

Parameters are a-priori independent and the likelihood factorises over them, so the posterior
is a product of 1-D grids, except for replenishment membership, period and propensity, which
share the buy log-odds and get a joint 2-D grid (`_CyclePosterior`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engage_seq.synthetic.behaviour import _log_sigmoid, _sigmoid
from engage_seq.synthetic.grids import (
    _grid_posterior,
    _GridPosterior,
    _JointGridPosterior,
    _mass_range,
    _stratified_uniforms,
)
from engage_seq.synthetic.history import (
    _add_buy_log_likelihood,
    _CycleEvidence,
    _HistoryEvidence,
)
from engage_seq.synthetic.population import (
    _APP_USER_P,
    _EMAIL_OPEN_BETA,
    _ORGANIC_LOG_SD,
    _PREFERS_APP_P,
    _PROPENSITY_SD,
    _PUSH_OPEN_BETA,
    _Population,
)
from engage_seq.synthetic.settings import SyntheticSettings

# Coarse grids (in each parameter's unconstrained coordinate) only locate a user's posterior;
# the fine per-user grid then spans where it has mass.
_COARSE_LOG_ORGANIC = np.linspace(-7.0, 8.0, 121)  # log(rate / median rate), prior N(0, 1)
_COARSE_LOGIT_EMAIL = np.linspace(-10.0, 6.0, 97)
_COARSE_LOGIT_PUSH = np.linspace(-12.0, 6.0, 109)
_COARSE_PROPENSITY = np.linspace(-5.0, 5.0, 81)  # ±7 prior sd
# Joint (propensity, log period) grids of replenishment members: a coarse pass locates the mass
# (propensity on a fixed grid, log period on cell centres over its prior support), a fine one
# resolves it.
_COARSE_CYCLE_PROPENSITY = np.linspace(-4.0, 4.0, 33)  # ±5.7 prior sd
_COARSE_CYCLE_PERIOD_POINTS = 48
_FINE_CYCLE_PROPENSITY_POINTS = 24
_FINE_CYCLE_PERIOD_POINTS = 64
_CYCLE_ROWS_PER_CHUNK = 4096  # users per joint grid: ~50 MB per array


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
    def of(cls, evidence: _HistoryEvidence, cfg: SyntheticSettings) -> _Posterior:
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
