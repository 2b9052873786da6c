"""Splitting the audit's session work into parts that fit the memory cap.

The heaviest statements of an audit join every session to its access-log events, its
prescriptions, its EC case and its patient's plans, and group the result per session. Under
DuckDB's memory cap (:data:`toolkit.store.DEFAULT_MEMORY_LIMIT`) those joins fit about 10M
sessions at once (:func:`part_count`); past that they spill to disk and slow down much faster
than the data grows (30M sessions under 1400 MB: 6.8× the 10M audit's time
for 3× the data, benchmarks/RESULTS.md). So the session-keyed records — sessions, prescriptions,
EC cases and access-log events — are split into :class:`Part` s by a hash of their session id:
every record of one session lands in the same part, whatever table it is in, and a record whose
session is unknown still lands in exactly one part. Each part is checked on its own and appended
to the same check tables, so the result does not depend on the number of parts (a test runs the
generator's data in one part and in three and compares every stored row).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

#: Sessions one part may hold per megabyte of DuckDB's memory cap above :data:`FIXED_MB`:
#: 1400 MB → 10.0M sessions, so the 10M data is one part under the default cap (measured: it
#: fits) and the 30M data three. Calibrated on the generator's data, whose sessions carry ≈ 4
#: access-log events and 1.4 prescription lines each: at 10M sessions under 467 MB, three parts
#: ran out of memory in the access-log join and eight fitted.
SESSIONS_PER_MB = 8_700
#: What the joins of one part take whatever its size (hash tables, buffers of two threads).
FIXED_MB = 250
#: The smallest part worth its extra scans.
MIN_PART_SESSIONS = 250_000


@dataclass(frozen=True)
class Part:
    """Part ``index`` of ``count``: the records whose session id hashes to ``index`` modulo ``count``."""

    index: int = 0
    count: int = 1

    def of(self, key: str) -> str:
        """SQL true for a record of this part, given the SQL of the key it is split on (a session id,
        or a doctor id for the overlap facts); ``TRUE`` when whole."""
        if self.count == 1:
            return "TRUE"
        return f"(hash({key}) % {self.count} = {self.index})"

    @property
    def first(self) -> bool:
        """The first part creates the check tables; the others append to them."""
        return self.index == 0


#: The whole data as one part (no filter at all).
WHOLE = Part()


def parts(count: int) -> Iterator[Part]:
    """The ``count`` parts, first to last."""
    for index in range(count):
        yield Part(index, count)


def part_count(n_sessions: int, memory_limit_mb: float) -> int:
    """How many parts ``n_sessions`` need under a memory cap of ``memory_limit_mb`` (at least 1)."""
    per_part = max(MIN_PART_SESSIONS, (memory_limit_mb - FIXED_MB) * SESSIONS_PER_MB)
    return max(1, math.ceil(n_sessions / per_part))
