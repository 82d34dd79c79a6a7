"""What an error message may show of the user's data: names, counts, and a few safe values.

Error messages end up in terminals, CI logs and tickets, so they must never carry a user id.
Three things leak ids if nobody watches them, and each has one helper here:

* an *example value* of an offending row (`example_value`): refused for the mapped user-id
  column, for columns whose name says identifier, and for columns that hold about one value
  per user (an e-mail or customer number mapped to another role by mistake);
* a list of *column names* (`describe_columns`): for a CSV without a header row the "names"
  are the first row's values, id included, so a header that looks like data is described,
  never listed;
* *library messages* (`redact_library_message`): Polars quotes the value it could not parse
  or cast ("could not parse `c-1001` as dtype i64"), which may be an id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

HIDDEN_USER_ID = "<hidden: user id column>"
HIDDEN_IDENTIFIER = "<hidden: identifier-like column>"
MAX_EXAMPLE_CHARS = 40  # a longer value is cut: an example shows a shape, not a record

# More distinct values than this, and than half the users: identifier-like (see below).
IDENTIFIER_MIN_VALUES = 50

# Name tokens that say "this identifies a person or a device" whatever the values look like.
_IDENTIFIER_NAME = re.compile(
    r"(^|[^a-z])(id|ids|uid|uuid|guid|user|userid|customer|client|account|member|email|"
    r"e_?mail|mail|phone|msisdn|login|username|cookie|device_?id|session)([^a-z]|$)"
)
# Cells that are data, not a column name: numbers, dates/times, e-mails, UUIDs.
_DATA_CELL = re.compile(
    r"^\s*("
    r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"  # 42, -3.5, 1e9, 1767225600
    r"|\d{4}-\d{1,2}-\d{1,2}([T ].*)?"  # 2026-03-02, 2026-03-02T10:00:00Z
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}.*"  # 03/02/2026, 2.3.2026 10:00
    r"|[^@\s]+@[^@\s]+\.[^@\s]+"  # someone@example.com
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r")\s*$"
)
_DTYPE = re.compile(
    r"^(i|u)(8|16|32|64|128)$|^f(16|32|64)$|^(str|string|bool|boolean|null|binary|date|time|"
    r"categorical|enum|object)$|^(datetime|duration|decimal|list|array|struct)\b.*$",
    re.IGNORECASE,
)


def looks_like_identifier(n_distinct: int, n_users: int) -> bool:
    """About one value per user (an e-mail, a device id): such a column's values must never be
    listed in a report or a drift table, whatever role the user gave the column."""
    return n_distinct > max(IDENTIFIER_MIN_VALUES, n_users // 2)


def identifier_name(column: str) -> bool:
    """The column's name says it identifies someone (``customer_id``, ``email``, ``uid``)."""
    return bool(_IDENTIFIER_NAME.search(column.lower()))


def identifier_like_column(frame: pl.LazyFrame, column: str, user_column: str) -> bool:
    """True when ``column`` holds about one value per user of ``user_column``: each user has
    at most two values on average and the values are not shared by many users (an e-mail,
    a customer number, a device id). A timestamp has many values per user and a country is
    shared by many users, so neither is caught; a tiny table may be (hiding is the safe side).
    One extra pass over two columns, only ever run to build an error message."""
    if column == user_column:
        return True
    stats = (
        frame.select(
            pl.col(column).n_unique().alias("values"),
            pl.col(user_column).n_unique().alias("users"),
            pl.struct(column, user_column).n_unique().alias("pairs"),
        )
        .collect()
        .row(0, named=True)
    )
    values, users, pairs = stats["values"], stats["users"], stats["pairs"]
    return pairs <= 2 * users and values >= max(1, users / 2)


def example_value(
    frame: pl.LazyFrame, column: str, row: int, user_column: str, n_rows: int | None = None
) -> str:
    """The value of ``column`` at input row ``row``, as an error message may show it: its
    ``repr`` (cut to `MAX_EXAMPLE_CHARS`), a missing value as ``None``, or a ``<hidden: …>``
    marker when the column is the user-id column ``user_column``, is named like an
    identifier, or holds about one value per user (`identifier_like_column`). Every error
    that shows a value of the user's table goes through here."""
    if column == user_column:
        return HIDDEN_USER_ID
    value: Any = frame.select(column).slice(row, 1).collect().item()
    if value is None:
        return "None"
    if identifier_name(column) or identifier_like_column(frame, column, user_column):
        return HIDDEN_IDENTIFIER
    text = repr(value)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…'"


def _shape(text: str) -> str:
    """Letters -> a, digit runs -> 9, other characters kept: 'SECRET42' and 'u7' -> 'a9'."""
    return re.sub(r"[^\W\d_]+", "a", re.sub(r"\d+", "9", text.strip().lower()))


def header_looks_like_data(names: Sequence[str], first_row: Sequence[Any] | None = None) -> bool:
    """Whether a CSV's header row is really its first record: some "name" is a number, a
    date/time, an e-mail or a UUID, or has digits and the same shape as the value under it
    (``SECRET42`` above ``u7``). Column names a person chose rarely look like either."""
    if any(_DATA_CELL.match(str(name)) for name in names):
        return True
    if first_row is None:
        return False
    return any(
        value is not None and re.search(r"\d", name) and _shape(name) == _shape(str(value))
        for name, value in zip(names, first_row, strict=False)
    )


def first_row(frame: pl.LazyFrame | None) -> list[Any] | None:
    """The table's first record (to compare with its header), or None when unreadable."""
    if frame is None:
        return None
    try:
        head = frame.head(1).collect()
    except (pl.exceptions.PolarsError, OSError):
        return None
    return list(head.row(0)) if head.height else None


def describe_columns(
    names: Sequence[str], where: str, frame: pl.LazyFrame | None = None, label: str = "Available"
) -> str:
    """ "Available: [names]" for a message, or, when the header row looks like data (a CSV
    without one: its "names" are the first record, user id included), a sentence saying so
    without repeating any of it."""
    if header_looks_like_data(names, first_row(frame)):
        return (
            f"The first row of {where} looks like data, not a header (values not shown): add "
            "a header row naming the columns, or export the file with one."
        )
    return f"{label}: {list(names)}."


def redact_library_message(text: str) -> str:
    """A Polars/Arrow message without the data values it quotes: the value it could not parse
    and the list of values a cast failed on (either may be a user id). Data types stay."""
    text = re.sub(r"(values?):? \[[^\]]*\]", r"\1", text)

    def keep_dtype(match: re.Match[str]) -> str:
        inner = match.group(1)
        return match.group(0) if _DTYPE.match(inner.strip()) else "a value (not shown)"

    return re.sub(r"`([^`]*)`", keep_dtype, text)
