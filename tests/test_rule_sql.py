"""Building blocks of the rule SQL that the hand-built rule cases do not reach directly."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from tests.rule_cases import Case, build_db
from toolkit.audit.run import run_audit
from toolkit.rules import build, facts
from toolkit.rules import sql as rule_sql


def test_japan_time_equals_the_time_zone_lookup() -> None:
    """Arithmetic from 1952 on, timezone() before: equal over Japan's summer-time years and today."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # the session's zone must not matter
    jst = facts.japan_time("ts")
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
    assert con.execute("SELECT timezone('Asia/Tokyo', TIMESTAMPTZ '1949-07-01 00:00:00+00')").fetchone()[
        0
    ] == dt.datetime(1949, 7, 1, 10, 0)


def test_a_shared_stratum_key_stops_the_audit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two strata under one key would merge their counts: the audit refuses instead of storing that."""
    path = tmp_path / "cases.duckdb"
    build_db(path, [Case("consent.recorded", "passed", "a"), Case("consent.recorded", "passed", "b")])
    clash = (
        f"CREATE OR REPLACE TABLE {rule_sql.STRATA_TABLE} AS SELECT 1::UBIGINT AS sk, institution_id, "
        "doctor_id, NULL::VARCHAR AS month FROM doctors"
    )
    monkeypatch.setattr(rule_sql, "STRATA_SQL", clash)
    with pytest.raises(RuntimeError, match="share a stratum key"):
        run_audit(path, as_of=dt.date(2026, 10, 15), progress=False)


def _cases_db(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "cases.duckdb"
    build_db(
        path,
        [
            Case("consent.recorded", "passed", "a"),
            Case("care_plan.exists", "violated", "b", plan={"patient_id": "SOMEONE_ELSE"}),
            Case("security.mfa", "out", "c", access=[]),
        ],
    )
    return path


def test_session_facts_are_one_row_of_booleans_per_session(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The facts compare with the session's own columns where they are built: no ids or times
    travel into the session check table's join (that is what keeps it small at 10M sessions)."""
    con = duckdb.connect(str(_cases_db(tmp_path)))
    for sql in rule_sql.BASE_VIEWS.values():
        con.execute(sql)
    for sql in facts.SESSION_FACTS_STEPS:
        con.execute(sql)
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = '_audit_session_facts'"
        ).fetchall()
    )
    assert types.pop("rid") == "BIGINT"
    assert len(types) >= 15 and set(types.values()) == {"BOOLEAN"}, types
    n_sessions = con.execute("SELECT count(*) FROM sessions").fetchone()[0]
    assert con.execute("SELECT count(*), count(DISTINCT rid) FROM _audit_session_facts").fetchone() == (
        n_sessions,
        n_sessions,
    )
    # the plan of another patient: exists, but not the session's patient's
    assert con.execute(
        "SELECT cp_in, cp_same_patient FROM _audit_session_facts f JOIN sessions s ON s.rowid = f.rid "
        "WHERE s.session_id = 'S1'"
    ).fetchone() == (True, False)
    for sql in facts.SESSION_FACTS_CLEANUP:
        con.execute(sql)
    assert (
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN "
            "('_audit_sf1', '_audit_sf2', '_audit_session_facts')"
        ).fetchone()[0]
        == 0
    )


def test_check_tables_restore_the_compression_setting(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Bitpacking is left out only while the check tables are written, also when writing fails."""
    con = duckdb.connect(str(_cases_db(tmp_path)))
    con.execute("SET disabled_compression_methods = 'roaring'")

    def setting() -> str:
        return con.execute("SELECT lower(current_setting('disabled_compression_methods'))").fetchone()[0]

    rules = {k: v for k, v in rule_sql.rules_sql(dt.date(2026, 10, 15)).items() if k.startswith("consent.")}
    assert build.create_check_tables(con, rules) == {"session": rule_sql.check_table("session")}
    assert setting() == "roaring"

    seen = []

    def failing(entity, rules, append=False):  # type: ignore[no-untyped-def]
        seen.append(setting())
        raise duckdb.IOException("disk full")

    monkeypatch.setattr(rule_sql, "check_table_sql", failing)
    with pytest.raises(duckdb.IOException):
        build.create_check_tables(con, rules)
    assert [set(s.split(",")) for s in seen] == [{"roaring", "bitpacking"}]
    assert setting() == "roaring"
