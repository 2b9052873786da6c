"""Building blocks of the rule SQL that the hand-built rule cases do not reach directly."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from tests.rule_cases import Case, build_db
from toolkit import rule_sql
from toolkit.audit import run_audit


def test_japan_time_equals_the_time_zone_lookup() -> None:
    """Arithmetic from 1952 on, timezone() before: equal over Japan's summer-time years and today."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # the session's zone must not matter
    jst = rule_sql.japan_time("ts")
    differ, n = con.execute(f"""
        WITH t AS (
          SELECT ts FROM generate_series(TIMESTAMPTZ '1946-01-01 00:00:00+00', TIMESTAMPTZ '1954-01-01 00:00:00+00',
                                         INTERVAL 7 HOUR + INTERVAL 13 MINUTE) g(ts)
          UNION ALL SELECT ts FROM generate_series(TIMESTAMPTZ '2025-12-31 14:00:00+00',
                                                   TIMESTAMPTZ '2026-01-01 16:00:00+00', INTERVAL 17 MINUTE) g(ts)
          UNION ALL SELECT NULL::TIMESTAMPTZ)
        SELECT count(*) FILTER (WHERE ({jst}) IS DISTINCT FROM timezone('Asia/Tokyo', ts)), count(*) FROM t""").fetchone()
    assert n > 9000
    assert differ == 0
    # and the summer-time years really are different from a fixed +9 h (so the fallback is exercised)
    assert con.execute("SELECT timezone('Asia/Tokyo', TIMESTAMPTZ '1949-07-01 00:00:00+00')").fetchone()[0] \
        == dt.datetime(1949, 7, 1, 10, 0)


def test_a_shared_stratum_key_stops_the_audit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two strata under one key would merge their counts: the audit refuses instead of storing that."""
    path = tmp_path / "cases.duckdb"
    build_db(path, [Case("consent.recorded", "passed", "a"), Case("consent.recorded", "passed", "b")])
    clash = (f"CREATE OR REPLACE TABLE {rule_sql.STRATA_TABLE} AS SELECT 1::UBIGINT AS sk, institution_id, "
             "doctor_id, NULL::VARCHAR AS month FROM doctors")
    monkeypatch.setattr(rule_sql, "STRATA_SQL", clash)
    with pytest.raises(RuntimeError, match="share a stratum key"):
        run_audit(path, as_of=dt.date(2026, 10, 15), progress=False)
