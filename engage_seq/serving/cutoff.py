"""engage-score's far-future rule: rows too far ahead are dropped and named, never a cutoff.

The default scoring cutoff is one second after the latest event, so a single placeholder row
(``9999-12-31``) or a timestamp in the wrong epoch unit would move it there and every user
would be scored at an instant where nothing is known. Training refuses such tables
(`engage_seq.data.build.check_time_span`: latest event more than `FUTURE_TOLERANCE_SECONDS` after
the wall clock); scoring applies the same tolerance, measured from the scoring run's own
clock, but drops the rows instead of refusing the table: they are counted as
``out_of_date_range`` (the reason training uses for ``data.ingest.end``), so the drop limit
(``--max-drop-fraction``) still refuses a table where many rows are like that.

The artifact's recorded ``data.ingest.start``/``end`` are not used: they bound the training
export, and the tables scored later are newer by design. An explicit ``--cutoff`` raises the
limit to itself, so every row before it counts, as documented for ``--cutoff``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from engage_seq.common.times import FIRST_INSTANT, LAST_INSTANT, instant_text
from engage_seq.data.build import FUTURE_TOLERANCE_SECONDS
from engage_seq.data.schema import ROW_INDEX, ColumnMapping, to_canonical

log = logging.getLogger(__name__)


def check_cutoff_range(at: int, error: type[Exception]) -> None:
    """Refuse an explicit cutoff that no date can show (epoch milliseconds given as
    seconds): it could not be reported, and no event could be after it."""
    if not FIRST_INSTANT <= at <= LAST_INSTANT:
        raise error(
            f"--cutoff epoch second {at} is outside the years 1-9999: give epoch seconds "
            "(not milliseconds) or an ISO date"
        )


def far_future_limit(cutoff: int | None, now: float | None = None) -> int:
    """The first epoch second that is too far ahead: rows at or after it are dropped.

    ``now + FUTURE_TOLERANCE_SECONDS`` (the training build's tolerance; ``now`` defaults to
    the wall clock) is still allowed; an explicit ``cutoff`` raises the limit to itself.
    """
    clock = time.time() if now is None else now
    limit = int(clock) + FUTURE_TOLERANCE_SECONDS + 1
    return max(limit, cutoff) if cutoff is not None else limit


@dataclass(frozen=True)
class FarFutureRows:
    """Where the first row at or after the limit is (never whose it is)."""

    limit: int
    first_row: int  # 1-based data row in file order (header excluded)
    first_ts: int  # epoch seconds

    def describe(self, n_rows: int) -> str:
        return (
            f"{n_rows:,} row(s) at or after {instant_text(self.limit)} (the far-future limit: "
            f"one year after now, or the --cutoff if later), the first at data row "
            f"{self.first_row:,} with timestamp {instant_text(self.first_ts)}; a placeholder "
            "date or a wrong epoch unit?"
        )


def find_far_future_rows(
    raw: pl.LazyFrame, mapping: ColumnMapping, limit: int, where: str
) -> FarFutureRows | None:
    """The first row at or after ``limit`` in ``raw`` (the table as read), or None.

    A second read of the timestamp column only (Parquet reads just that column), done only
    when validation has already counted such rows, so ordinary tables never pay for it.
    """
    found = (
        to_canonical(raw, mapping, where)
        .filter(pl.col("ts") >= limit)
        .select(ROW_INDEX, "ts")
        .head(1)
        .collect()
    )
    if found.height == 0:
        return None
    return FarFutureRows(limit, int(found[ROW_INDEX].item()) + 1, int(found["ts"].item()))


def warn_far_future(
    raw: pl.LazyFrame, mapping: ColumnMapping, limit: int, where: str, n_rows: int
) -> dict[str, object]:
    """Log the dropped far-future rows (count, first row and its timestamp: no user id) and
    return the report's ``far_future`` entry."""
    entry: dict[str, object] = {"limit": instant_text(limit), "rows_dropped": n_rows}
    if n_rows == 0:
        return entry
    first = find_far_future_rows(raw, mapping, limit, where)
    if first is not None:
        entry.update(first_row=first.first_row, first_timestamp=instant_text(first.first_ts))
        log.warning("%s: dropped %s; the default cutoff is set from the rows kept", where,
                    first.describe(n_rows))  # fmt: skip
    return entry


def explain_drop_error(
    message: str, scan: Callable[[], pl.LazyFrame], mapping: ColumnMapping, limit: int, where: str
) -> str:
    """A drop-limit error with the far-future rows among the dropped named (the limit, the
    first row and its timestamp), so the one line says which rule dropped them. ``scan``
    reads the table again; if that fails too, the original message stands."""
    if "out_of_date_range" not in message:
        return message
    try:
        first = find_far_future_rows(scan(), mapping, limit, where)
    except Exception:  # the original error is the one to show
        return message
    if first is None:
        return message
    return (
        f"{message.rstrip('.')}. out_of_date_range here means rows at or after "
        f"{instant_text(limit)}, the far-future limit (one year after now, or the --cutoff if "
        f"later): the first at data row {first.first_row:,} with timestamp "
        f"{instant_text(first.first_ts)} (a placeholder date or a wrong epoch unit?)"
    )
