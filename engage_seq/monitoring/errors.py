"""The monitors' error classes: bad input whose message says what to change (exit status 2)."""

from __future__ import annotations

from engage_seq.common.errors import EngageSeqError


class DriftError(EngageSeqError, ValueError):
    """Bad input for engage-drift; the message says what to change. Nothing was written."""


class BacktestError(EngageSeqError, ValueError):
    """Bad input for engage-backtest; the message says what to change. Nothing was written."""
