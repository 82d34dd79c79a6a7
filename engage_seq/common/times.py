"""Time as the package reads and writes it: durations, instants, and how both are shown.

Timestamps are whole epoch seconds in UTC everywhere inside engage_seq; config and command
lines give durations as ``7d`` / ``12h`` and instants as ISO text. Parsing and formatting
used to be written out in eight modules; one home keeps "7d" and "2026-04-27" meaning the
same thing in a config, a report and an error message. Standard library only.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

# what datetime can print: outside it an instant cannot be an ISO date (or a report field)
FIRST_INSTANT = int(datetime(1, 1, 2, tzinfo=timezone.utc).timestamp())
LAST_INSTANT = int(datetime(9999, 12, 31, tzinfo=timezone.utc).timestamp())


def parse_duration(value: str | int) -> int:
    """'7d', '12h', '13w', '30m', '45s' (or plain seconds) -> whole seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(
                f"cannot parse duration {value!r}: use a number and a unit, e.g. '7d', '12h', "
                "'13w', '30m' or '45s'"
            )
        seconds = round(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


def parse_instant(value: str) -> int:
    """ISO date/datetime (naive = UTC) -> epoch seconds."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def parse_instant_arg(
    value: str | None, what: str, error: type[Exception] = ValueError
) -> int | None:
    """An option's instant as epoch seconds: digits (optionally negative) are epoch seconds,
    anything else ISO text (naive = UTC). None stays None; unreadable text raises ``error``
    with a one-line message naming the option ``what``."""
    if value is None:
        return None
    text = value.strip()
    try:
        return int(text) if text.lstrip("-").isdigit() else parse_instant(text)
    except ValueError:
        raise error(
            f"cannot read {what} {value!r}: give an ISO date/time (2026-03-09, "
            "2026-03-09T12:00:00+00:00) or epoch seconds"
        ) from None


def format_instant(epoch_seconds: int) -> str:
    """Epoch seconds -> ISO text in UTC ('2026-04-27T00:00:00+00:00')."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).isoformat()


def instant_text(epoch_seconds: int) -> str:
    """ISO text, or ``epoch second N`` when the value is beyond what a date can show (a
    timestamp in milliseconds read as seconds is in the year ~55,000)."""
    if FIRST_INSTANT <= epoch_seconds <= LAST_INSTANT:
        return format_instant(epoch_seconds)
    return f"epoch second {epoch_seconds}"


def date_text(epoch_seconds: int) -> str:
    """'2026-04-27' at midnight UTC, '2026-04-27 13:05 UTC' otherwise (for reports)."""
    moment = datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc)
    if moment.hour == moment.minute == moment.second == 0:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def window_text(seconds: int) -> str:
    """A horizon or window for reports: '7 days', '1 day', or '36 hours'."""
    days, rest = divmod(int(seconds), 86_400)
    if rest == 0:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{seconds / 3600:.0f} hours"


def gap_text(hours: float) -> str:
    """A gap in the unit that reads best: 8 s, 12 min, 5.5 h, 3.2 d."""
    seconds = hours * 3600.0
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.2g} {unit}"
    return f"{seconds:.2g} s"


def now_text() -> str:
    """The current instant as ISO text in UTC, to the second (for 'created_at' stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
