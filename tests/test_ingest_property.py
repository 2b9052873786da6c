"""Property: any sessions-shaped CSV ingests without an unhandled error and read = loaded + quarantined."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest_helpers import rows, run
from toolkit.contract import TABLES

COLUMNS = TABLES["sessions"].column_names
VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", "true", "はい", "online_care", "2026-04-01T09:00:00", "2026-02-30", "1", "S1", " ",
                     "１２", "\ufeff", '"', ",", "\n"]),
    st.text(max_size=12),
)
ROW = st.fixed_dictionaries({c: VALUES for c in COLUMNS[:12]})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=0, max_size=8))
def test_random_sessions_rows_never_crash(data: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        src.mkdir()
        with open(src / "sessions.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS[:12])
            for r in data:
                w.writerow(["" if r[c] is None else r[c].replace("\x00", "") for c in COLUMNS[:12]])
        db = Path(d) / "x.duckdb"
        summary, _ = run(db, src)
        if summary.errors:  # e.g. a value with a lone surrogate cannot be written; nothing loaded then
            assert rows(db, "SELECT count(*) FROM sessions")[0][0] == 0
            return
        c = summary.tables["sessions"]
        assert c.read == c.loaded + c.quarantined
        assert c.read == len(data)
        assert rows(db, "SELECT count(*) FROM sessions")[0][0] <= c.loaded
        assert rows(db, "SELECT count(*) FROM quarantine")[0][0] == c.quarantined
