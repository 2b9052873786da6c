"""The data-quality counts (toolkit.audit.dq): every check counted once, subquery checks apart.

Real generator data with one record injected for every check, so that every count is above zero;
the counts of :func:`run_dq_checks` (a shared scan for the checks on a table's own columns, one
statement per check that looks into another table) must equal a reference that counts every check
of a table in a single ``count(*) FILTER`` scan, as the audit did before.
"""

from __future__ import annotations

import duckdb
import pytest

from tests.reporting_fixtures import generated_db
from toolkit.audit.dq import ALIASES, DQ_CHECKS, dq_count_statements, run_dq_checks

#: one injected record per check: (table, the copied row's changes, which row to copy)
INJECTED = (
    ("sessions", "'S-dq-1' AS session_id, 'P-unknown' AS patient_id", "TRUE"),
    ("sessions", "'S-dq-2' AS session_id, 'D-unknown' AS doctor_id", "TRUE"),
    ("sessions", "'S-dq-3' AS session_id, 'I-unknown' AS institution_id", "TRUE"),
    ("sessions", "'S-dq-4' AS session_id, 'CP-unknown' AS care_plan_id", "TRUE"),
    (
        "sessions",
        "'S-dq-5' AS session_id, started_at - INTERVAL 1 HOUR AS ended_at",
        "started_at IS NOT NULL",
    ),
    (
        "sessions",
        "'S-dq-6' AS session_id, started_at + INTERVAL 25 HOUR AS ended_at",
        "started_at IS NOT NULL",
    ),
    ("sessions", "'S-dq-7' AS session_id, NULL AS ended_at", "TRUE"),
    ("sessions", "'S-dq-8' AS session_id, 'ABCDEF' AS patient_municipality_code", "TRUE"),
    ("doctors", "'D-dq-1' AS doctor_id, 'I-unknown' AS institution_id", "TRUE"),
    ("prescriptions", "'RX-dq-1' AS rx_id, 'S-unknown' AS session_id", "TRUE"),
    ("prescriptions", "'RX-dq-2' AS rx_id, 'ZZZ-unknown' AS drug_code", "TRUE"),
    ("ec_cases", "'S-unknown-ec' AS session_id", "TRUE"),
    ("access_log", "'S-unknown' AS session_id", "TRUE"),
    ("in_person_visits", "'V-dq-1' AS visit_id, 'P-unknown' AS patient_id", "TRUE"),
    ("in_person_visits", "'V-dq-2' AS visit_id, 'I-unknown' AS institution_id", "TRUE"),
    ("institutions", "'I-dq-1' AS institution_id, 'ABCDEF' AS municipality_code", "TRUE"),
    ("patients", "'P-dq-1' AS patient_id, 'ABCDEF' AS municipality_code", "TRUE"),
)


def _reference_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every check of a table in one scan of it (the earlier implementation)."""
    out = {}
    for table, alias in ALIASES.items():
        checks = [c for c in DQ_CHECKS if c[1] == table]
        if checks:
            filters = ", ".join(f"count(*) FILTER (WHERE {c[4]})" for c in checks)
            counts = con.execute(f"SELECT {filters} FROM {table} {alias}").fetchone()
            out.update({c[0]: int(n) for c, n in zip(checks, counts, strict=True)})
    return out


@pytest.fixture(scope="module")
def dq_db(tmp_path_factory):  # type: ignore[no-untyped-def]
    _data, db = generated_db(tmp_path_factory.mktemp("dq"), name="dq")
    con = duckdb.connect(str(db))
    for table, changes, which in INJECTED:
        con.execute(f"INSERT INTO {table} SELECT * REPLACE ({changes}) FROM {table} WHERE {which} LIMIT 1")
    # a first online visit after an earlier in-person visit at the same institution
    con.execute(
        "INSERT INTO in_person_visits SELECT v.* REPLACE ('V-dq-3' AS visit_id, s.patient_id AS patient_id, "
        "s.institution_id AS institution_id, s.started_at - INTERVAL 30 DAY AS visited_at) "
        "FROM in_person_visits v, (SELECT patient_id, institution_id, started_at FROM sessions "
        "WHERE kind = 'online_care' AND is_first_visit AND started_at IS NOT NULL LIMIT 1) s LIMIT 1"
    )
    yield con
    con.close()


def test_every_check_is_counted_once_and_as_one_scan_counts_it(dq_db) -> None:  # type: ignore[no-untyped-def]
    reference = _reference_counts(dq_db)
    assert set(reference) == {c[0] for c in DQ_CHECKS}
    assert all(n > 0 for n in reference.values()), {k: n for k, n in reference.items() if n == 0}
    found = [r for r in run_dq_checks(dq_db, set(ALIASES)) if r[0] in reference]
    assert len(found) == len(reference)  # each check once
    assert {r[0]: r[4] for r in found} == reference


def test_checks_looking_into_another_table_get_a_statement_each() -> None:
    for table in ALIASES:
        statements = dq_count_statements(table)
        ids = [c[0] for checks, _sql in statements for c in checks]
        assert sorted(ids) == sorted(c[0] for c in DQ_CHECKS if c[1] == table)
        for checks, sql in statements:
            with_subquery = [c for c in checks if "(SELECT " in c[4]]
            # a subquery check is alone, with its condition in WHERE; the shared scan has none
            alone = f"SELECT count(*) FROM {table} {ALIASES[table]} WHERE {checks[0][4]}"
            assert not with_subquery or (len(checks) == 1 and sql == alone)
