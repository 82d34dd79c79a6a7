"""From sessions to events: what the generator drew, expanded into the rows of the table.

A session emits its events in a fixed within-session order a few tens of seconds apart; the
oracle reads back which event came first (it tells a session's kind and channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from engage_seq.synthetic.behaviour import _EMAIL, _PUSH
from engage_seq.synthetic.population import _Population
from engage_seq.synthetic.sessions import _SessionLog


@dataclass(frozen=True)
class _Simulation:
    """Everything the generator drew: users, sessions, and the events they expand into."""

    population: _Population
    sessions: _SessionLog
    event_type: np.ndarray  # index into EVENT_TYPES
    event_channel: np.ndarray  # index into CHANNELS
    event_session: np.ndarray  # row in `sessions`
    event_seconds: np.ndarray  # seconds since the period start


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


def _user_ids(users: np.ndarray, n_users: int) -> pl.Series:
    """'u' + zero-padded index: the ids `generate_events` emits (sorting as the indices do)."""
    width = len(str(n_users - 1))
    padded = pl.Series("user_id", users).cast(pl.String).str.zfill(width)
    return ("u" + padded).alias("user_id")
