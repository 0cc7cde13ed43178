"""Simulated time in whole seconds, on the package's own day and timestamps.

The simulator counts integer epoch seconds (a customer's day is ``day * DAY``
plus a second of the day), so its event times never carry a fraction; the day
length and the RFC 3339 reading and writing are the monitor's own
(`stream_app.config.DAY`, `stream_app.ingest.contract`), so what the simulator
writes is exactly what the monitor reads.
"""

from __future__ import annotations

from typing import Callable

from ...config import DAY as _DAY
from ...ingest.contract import format_ts, parse_ts

__all__ = ["DAY", "WORK_LO", "WORK_HI", "epoch", "format_ts", "day_stamps"]

DAY = int(_DAY)  # the package's day, as the integer the simulator's clock counts in

#: Working hours: customers use the product, buy and write tickets between these
#: seconds of the day (6:00 to 23:00 UTC).
WORK_LO, WORK_HI = 6 * 3600, 23 * 3600


def epoch(ts: str) -> int:
    """Whole epoch seconds of an RFC 3339 timestamp (fractions cut off, as the
    simulator never writes any).

    >>> epoch("1970-01-02T00:00:01Z"), format_ts(epoch("1970-01-02T00:00:01Z"))
    (86401, '1970-01-02T00:00:01Z')
    """
    return int(parse_ts(ts))


def day_stamps(day_start: int) -> Callable[[int], str]:
    """`format_ts` of ``day_start + sec``, for the seconds of one simulated day.

    Why: every event gets a timestamp, a million of them for the default
    population, and `format_ts` builds a datetime for each; taking the date
    from it once per calendar day and writing only the time of day made
    generating the events about a fifth faster. A simulated day starts at the
    configured start's time of day, so it spans two calendar dates unless that
    is midnight; the seconds on the second date go to `format_ts` itself.

    >>> stamp = day_stamps(epoch("2024-02-29T00:00:00Z"))
    >>> stamp(3723), stamp(86400)
    ('2024-02-29T01:02:03Z', '2024-03-01T00:00:00Z')
    >>> start = epoch("2024-02-28T13:17:05+02:00")
    >>> all(day_stamps(start)(s) == format_ts(start + s) for s in range(-5, DAY + 5))
    True
    """
    into_date = day_start % DAY  # seconds of its calendar date already gone
    date = format_ts(day_start)[:11]  # YYYY-MM-DDT

    def stamp(sec: int) -> str:
        s = into_date + sec
        if 0 <= s < DAY:
            return f"{date}{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}Z"
        return format_ts(day_start + sec)

    return stamp
