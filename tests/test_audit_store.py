"""The run store: append-only runs, strata that add up, the violations export, not-evaluable
rules, rule selection and attestations — on the hand-built case database."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from tests.rule_cases import build_db
from tests.test_rules import EXPANDED
from tests.test_violations_export import old_export_violations
from toolkit import store
from toolkit.audit.export import VIOLATION_CSV_COLUMNS
from toolkit.audit.run import cli_audit, run_audit
from toolkit.cli import _parser
from toolkit.errors import UserError
from toolkit.rules import attestation
from toolkit.rules.catalogue import load

AS_OF = dt.date(2026, 10, 15)


@pytest.fixture()
def db(tmp_path):
    path = tmp_path / "store.duckdb"
    build_db(path, EXPANDED)
    return path


def _q(db, sql, params=()):
    con = store.connect(db, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_runs_append_and_strata_add_up(db):
    r1 = run_audit(db, as_of=AS_OF, progress=False)
    r2 = run_audit(db, as_of=AS_OF, progress=False)
    assert r1.run_id != r2.run_id
    assert _q(db, "SELECT count(*) FROM audit_runs")[0][0] == 2
    assert _q(db, "SELECT count(*) FROM rule_results WHERE run_id = ?", [r2.run_id])[0][0] == len(
        load().rules
    )
    # both runs see the same data: identical results and violations
    a = _q(
        db,
        "SELECT rule_id, status, denominator, violated, not_evidenced FROM rule_results "
        "WHERE run_id = ? ORDER BY rule_id",
        [r1.run_id],
    )
    b = _q(
        db,
        "SELECT rule_id, status, denominator, violated, not_evidenced FROM rule_results "
        "WHERE run_id = ? ORDER BY rule_id",
        [r2.run_id],
    )
    assert a == b
    mismatches = _q(
        db,
        """SELECT r.rule_id FROM rule_results r LEFT JOIN (
            SELECT rule_id, sum(denominator) d, sum(violated) v, sum(not_evidenced) n
            FROM rule_results_strata WHERE run_id = ? GROUP BY rule_id) s USING (rule_id)
        WHERE r.run_id = ? AND r.status IN ('passed', 'failed')
          AND (r.denominator, r.violated, r.not_evidenced) IS DISTINCT FROM (s.d, s.v, s.n)""",
        [r2.run_id, r2.run_id],
    )
    assert mismatches == []
    per_rule = dict(
        _q(db, "SELECT rule_id, count(*) FROM violations WHERE run_id = ? GROUP BY 1", [r2.run_id])
    )
    for res in r2.results:
        assert per_rule.get(res.rule_id, 0) == (res.violated or 0) + (res.not_evidenced or 0)
    assert r1.n_violations == r2.n_violations == sum(per_rule.values()) > 0


def test_violations_hold_ids_only(db):
    run_audit(db, as_of=AS_OF, progress=False)
    cols = [
        r[0]
        for r in _q(
            db,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'violations' ORDER BY ordinal_position",
        )
    ]
    assert cols == [
        "run_id",
        "rule_id",
        "entity",
        "entity_id",
        "status",
        "institution_id",
        "doctor_id",
        "month",
    ]


def test_strata_and_ids_come_back_from_the_integer_keys(tmp_path):
    """The check tables name records by rowid and stratum key only; the run store must still carry
    each record's own id and stratum, with one row per stratum. Covers the all-NULL stratum, which a
    session without doctor, institution and start shares with a prescription of an unknown session."""
    from tests.rule_cases import Case, build_db
    from toolkit.rules.sql import ENTITY_BASES, check_table

    path = tmp_path / "strata.duckdb"
    narcotic = {"drug_code": "8119001X1000"}  # the case master's "811" prefix: a narcotic
    first = {"consent_at": None, "is_first_visit": True}
    build_db(
        path,
        [
            Case("consent.recorded", "violated", "consent missing", s=first, rx=[narcotic]),
            Case(
                "consent.recorded",
                "violated",
                "no stratum",
                rx=[narcotic],
                s={**first, "doctor_id": None, "institution_id": None, "started_at": None},
            ),
        ],
    )
    con = store.connect(path)
    con.execute(
        "INSERT INTO prescriptions (rx_id, session_id, drug_code, quantity, days_supply, dispensing) "
        "VALUES ('R_orphan', 'S_unknown', ?, 14, 7, 'outside')",
        [narcotic["drug_code"]],
    )
    con.close()
    run = run_audit(path, as_of=AS_OF, progress=False)
    assert (
        _q(
            path,
            """SELECT rule_id, institution_id, doctor_id, month, count(*) FROM rule_results_strata
                       WHERE run_id = ? GROUP BY ALL HAVING count(*) > 1""",
            [run.run_id],
        )
        == []
    )
    # each violation carries its record's own id and stratum (prescriptions: their session's)
    stored = set(
        _q(
            path,
            "SELECT entity, entity_id, institution_id, doctor_id, month FROM violations "
            "WHERE run_id = ? AND entity IN ('session', 'prescription')",
            [run.run_id],
        )
    )
    month = "strftime(timezone('Asia/Tokyo', s.started_at), '%Y-%m')"
    expected = set(
        _q(
            path,
            f"""SELECT 'session', s.session_id, s.institution_id, s.doctor_id, {month} FROM sessions s
        UNION ALL SELECT 'prescription', r.rx_id, s.institution_id, s.doctor_id, {month}
        FROM prescriptions r LEFT JOIN sessions s ON s.session_id = r.session_id""",
        )
    )
    assert stored and stored <= expected
    assert {e for _, e, *_ in stored} >= {"S0", "S1", "R0_0", "R1_0", "R_orphan"}
    # the orphan line and the line of the stratum-less session share ONE all-NULL stratum
    # (the orphan's scope is unknown, so it is not evidenced; the other line is violated)
    assert _q(
        path,
        """SELECT doctor_id, denominator, violated, not_evidenced FROM rule_results_strata
                       WHERE run_id = ? AND rule_id = 'rx.first_visit_narcotic_psychotropic'
                       ORDER BY doctor_id NULLS FIRST""",
        [run.run_id],
    ) == [(None, 2, 1, 1), ("D0", 1, 1, 0)]
    # and the check tables hold no strings: ids and strata are joined back on demand
    types = _q(
        path,
        "SELECT table_name, data_type FROM information_schema.columns WHERE table_name IN "
        f"({', '.join(repr(check_table(e)) for e in ENTITY_BASES)})",
    )
    assert {t for t, _ in types} >= {check_table("session"), check_table("prescription")}
    assert {d for _, d in types if d != "ENUM('passed', 'violated', 'not_evidenced')"} == {
        "BIGINT",
        "UBIGINT",
    }


def test_cli_writes_exact_csv_and_json(db, tmp_path, capsys):
    out_csv, out_json = tmp_path / "v.csv", tmp_path / "s.json"
    args = _parser().parse_args(
        [
            "audit",
            "--db",
            str(db),
            "--as-of",
            "2026-10-15",
            "--quiet",
            "--violations",
            str(out_csv),
            "--json",
            str(out_json),
        ]
    )
    assert cli_audit(args) == 0
    run_id = _q(db, "SELECT run_id FROM audit_runs")[0][0]
    assert old_export_violations(db, run_id, tmp_path / "old.csv") > 0  # the writer before COPY
    assert out_csv.read_bytes() == (tmp_path / "old.csv").read_bytes()
    with open(out_csv, encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == VIOLATION_CSV_COLUMNS
    assert {r[6] for r in rows[1:]} == {"violated", "not_evidenced"}
    assert {r[4] for r in rows[1:]} <= {
        "session",
        "prescription",
        "care_plan",
        "doctor",
        "institution",
        "ec_case",
    }
    summary = json.loads(out_json.read_text(encoding="utf-8"))
    assert len(summary["rules"]) == len(load().rules)
    assert (
        sum(r["violated"] + r["not_evidenced"] for r in summary["rules"] if r["violated"] is not None)
        == len(rows) - 1
    )
    assert (out_csv.stat().st_mode & 0o077) == 0


def test_absent_column_makes_rules_not_evaluable(db):
    con = store.connect(db)
    cols = [c for c in load().rule("network.stable").requires]
    con.execute(
        "INSERT INTO ingest_files (ingest_id, table_name, path, columns_present) VALUES "
        "('x', 'sessions', 'sessions.csv', ['session_id', 'kind'])"
    )
    con.close()
    run = run_audit(db, as_of=AS_OF, progress=False)
    res = {r.rule_id: r for r in run.results}
    assert res["network.stable"].status == "not_evaluable"
    assert res["network.stable"].missing_columns == cols
    assert res["consent.recorded"].status == "not_evaluable"
    assert "sessions.consent_at" in res["consent.recorded"].message
    assert res["place.compliance_published"].status in ("passed", "failed")  # institutions untouched


def test_rule_pattern_and_attestation(db, tmp_path):
    att = tmp_path / "att.yaml"
    att.write_text(
        "institution_id: I0\nattested_on: 2026-10-01\nitems:\n  attest.in_person_backup: true\n"
        "  attest.vendor_security: false\n",
        encoding="utf-8",
    )
    run = run_audit(db, rules="ec.*,consent.recorded", as_of=AS_OF, progress=False, attestation_path=str(att))
    assert {r.rule_id for r in run.results} == {r.id for r in load().rules if r.id.startswith("ec.")} | {
        "consent.recorded"
    }
    rows = dict(_q(db, "SELECT item_id, attested FROM attestations WHERE run_id = ?", [run.run_id]))
    assert rows["attest.in_person_backup"] is True and rows["attest.vendor_security"] is False
    assert rows["attest.chart_access"] is None
    assert len(rows) == len(load().attestation_items)


def test_attestation_rejects_unknown_items(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("items:\n  attest.no_such_item: true\n", encoding="utf-8")
    with pytest.raises(UserError, match="unknown item.*valid items"):
        attestation.load(bad, load())


def test_missing_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such database"):
        run_audit(tmp_path / "nope.duckdb", progress=False)


def test_connections_cap_memory_and_keep_as_many_blocks_mapped(tmp_path, monkeypatch):
    """OCAUDIT_MEMORY_LIMIT caps DuckDB; a writer's block allocator keeps at most that much mapped."""
    monkeypatch.setenv(store.MEMORY_LIMIT_ENV, "900MB")
    con = store.connect(tmp_path / "x.duckdb")
    try:
        limit, blocks = con.execute(
            "SELECT current_setting('memory_limit'), current_setting('block_allocator_memory')"
        ).fetchone()
    finally:
        con.close()
    assert limit == blocks
    assert limit.startswith("858") and "MiB" in limit  # 900 MB
    reader = store.connect(tmp_path / "x.duckdb", read_only=True)  # readers keep nothing mapped
    try:
        assert reader.execute("SELECT current_setting('block_allocator_memory')").fetchone()[0] == "0 bytes"
    finally:
        reader.close()
    monkeypatch.setenv(store.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(UserError, match="OCAUDIT_MEMORY_LIMIT='lots'"):
        store.connect(tmp_path / "y.duckdb")
