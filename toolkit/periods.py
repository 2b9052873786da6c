"""The ``--period`` argument, parsed once for every command (report, feedback, survey).

``YYYY-MM..YYYY-MM`` (or one month ``YYYY-MM``), months in Japan time, both ends included.
"""

from __future__ import annotations

import re

from toolkit.errors import UserError

MAX_MONTHS = 120
_PERIOD_RE = re.compile(r"\s*(\d{4})-(\d{2})\s*(?:\.\.\s*(\d{4})-(\d{2})\s*)?")


def months_of(period: str) -> list[str]:
    """``'2026-04..2026-06'`` → ``['2026-04', '2026-05', '2026-06']``; UserError (exit 2) when malformed."""
    m = _PERIOD_RE.fullmatch(period or "")
    if not m:
        raise UserError(f"--period {period!r}: expected YYYY-MM..YYYY-MM, e.g. 2026-04..2026-06")
    y1, m1 = int(m.group(1)), int(m.group(2))
    y2, m2 = (int(m.group(3)), int(m.group(4))) if m.group(3) else (y1, m1)
    if not (1 <= m1 <= 12 and 1 <= m2 <= 12):
        raise UserError(f"--period {period!r}: months must be 01–12")
    if (y2, m2) < (y1, m1):
        raise UserError(f"--period {period!r}: the first month is after the last month")
    months = []
    y, mo = y1, m1
    while (y, mo) <= (y2, m2):
        months.append(f"{y:04d}-{mo:02d}")
        if len(months) > MAX_MONTHS:
            raise UserError(f"--period {period!r}: at most {MAX_MONTHS} months")
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return months


def period_bounds(period: str | None) -> tuple[str, str] | None:
    """``'2026-04..2026-06'`` → ``('2026-04', '2026-06')``; None for no period; UserError when malformed."""
    if period is None or period.strip() == "":
        return None
    months = months_of(period)
    return months[0], months[-1]
