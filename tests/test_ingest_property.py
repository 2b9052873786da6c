"""Property: any sessions-shaped CSV ingests without an unhandled error and read = loaded + quarantined."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ingest_helpers import rows, run
from toolkit.contract import TABLES

COLUMNS = TABLES["sessions"].column_names[:12]
VALUES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "",
            "true",
            "はい",
            "online_care",
            "2026-04-01T09:00:00",
            "2026-02-30",
            "1",
            "S1",
            " ",
            "１２",
            "\ufeff",
            '"',
            ",",
            "\n",
            "\r\n",
        ]
    ),
    st.text(max_size=12),
)
ROW = st.fixed_dictionaries({c: VALUES for c in COLUMNS})
COUNTER = {"n": 0}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prop")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(ROW, min_size=0, max_size=8))
def test_random_sessions_rows_never_crash(work: Path, data: list[dict]) -> None:
    COUNTER["n"] += 1
    src = work / f"src{COUNTER['n']}"
    src.mkdir()
    with open(src / "sessions.csv", "w", encoding="utf-8", newline="", errors="surrogatepass") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in data:
            w.writerow(["" if r[c] is None else r[c] for c in COLUMNS])
    db = work / "prop.duckdb"
    summary, printed = run(db, src)
    mine = f"starts_with(source_file, '{src}')"
    if summary.errors:  # e.g. a NUL byte or an invalid code point: the whole file is refused
        assert rows(db, f"SELECT count(*) FROM quarantine WHERE {mine}")[0][0] == 0
        return
    c = summary.tables["sessions"]
    assert c.read == c.loaded + c.quarantined
    assert c.read == len(data)
    assert rows(db, f"SELECT count(*) FROM quarantine WHERE {mine}")[0][0] == c.quarantined
    assert (
        rows(db, f"SELECT count(*) FROM sessions WHERE starts_with(_source_file, '{src}')")[0][0] <= c.loaded
    )
