"""A tiny run store for the review-mark tests (real DuckDB, hand-built so every count is known).

Two complete runs: R1 audited ingest ING1 (loaded 2026-08-31), R2 audited ING1 and ING2 (loaded
2026-09-30). Findings (rule: records):

* consent.recorded (must, session) — R1: S1, S2, S3; R2: S1, S3, S4 (S2 resolved, S4 new)
* ec.follow_up (must, ec_case) — R1 and R2: E1
* network.stable (should, session) — R1 and R2: S9

Doctor D1 has S1, S2 and E1; doctor D2 has S3, S4 and S9. A mark made on 2026-09-15 falls after
R1's data and before R2's: "corrected" then is pending in R1 and still present in R2 if R2 flags it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from toolkit import store

R1, R2 = "run-20260901-rv01", "run-20261001-rv02"
BETWEEN = datetime(2026, 9, 15, 3, 0, tzinfo=UTC)
RULES = [
    ("consent.recorded", "V-1-(1)-②-i", "must", "session", "Consent recorded", "同意の記録"),
    ("ec.follow_up", "V-1-(2)-②-ix", "must", "ec_case", "Follow-up visit", "約3週間後の受診"),
    ("network.stable", "V-2-(1)-②-iii", "should", "session", "Stable connection", "通信の安定"),
]
WHO = {"S1": "D1", "S2": "D1", "E1": "D1", "S3": "D2", "S4": "D2", "S9": "D2"}
FINDINGS = {
    R1: [
        ("consent.recorded", "S1"),
        ("consent.recorded", "S2"),
        ("consent.recorded", "S3"),
        ("ec.follow_up", "E1"),
        ("network.stable", "S9"),
    ],
    R2: [
        ("consent.recorded", "S1"),
        ("consent.recorded", "S3"),
        ("consent.recorded", "S4"),
        ("ec.follow_up", "E1"),
        ("network.stable", "S9"),
    ],
}
DENOMINATOR = 20


def _insert(con, table: str, row: dict) -> None:  # type: ignore[no-untyped-def]
    con.execute(store.insert_sql(table, list(row)), list(row.values()))


def build(path: str | Path) -> Path:
    """Write the tiny run store at ``path``; returns the path."""
    path = Path(path)
    con = store.connect(path)
    try:
        store.ensure_schema(con)
        for ing, done in (("ING1", "2026-08-31 03:00:00+00"), ("ING2", "2026-09-30 03:00:00+00")):
            _insert(con, "ingest_runs", {"ingest_id": ing, "started_at": done, "finished_at": done})
        for run, started, ings in (
            (R1, "2026-09-01 03:00:00+00", ["ING1"]),
            (R2, "2026-10-01 03:00:00+00", ["ING1", "ING2"]),
        ):
            _insert(
                con,
                "audit_runs",
                {
                    "run_id": run,
                    "started_at": started,
                    "finished_at": started,
                    "as_of": started[:10],
                    "toolkit_version": "0.1.0",
                    "ingest_ids": ings,
                    "parameters": '{"partial": false}',
                },
            )
            for rule_id, section, level, entity, t_en, t_ja in RULES:
                mine = [eid for r, eid in FINDINGS[run] if r == rule_id]
                _insert(
                    con,
                    "rule_results",
                    {
                        "run_id": run,
                        "rule_id": rule_id,
                        "section": section,
                        "level": level,
                        "entity": entity,
                        "title_en": t_en,
                        "title_ja": t_ja,
                        "status": "failed" if mine else "passed",
                        "denominator": DENOMINATOR,
                        "violated": len(mine),
                        "not_evidenced": 0,
                        "missing_columns": [],
                        "message": "",
                    },
                )
                for doc in ("D1", "D2"):
                    n_doc = sum(WHO[e] == doc for e in mine)
                    _insert(
                        con,
                        "rule_results_strata",
                        {
                            "run_id": run,
                            "rule_id": rule_id,
                            "institution_id": "I1",
                            "doctor_id": doc,
                            "month": "2026-08",
                            "denominator": DENOMINATOR // 2,
                            "violated": n_doc,
                            "not_evidenced": 0,
                        },
                    )
                for eid in mine:
                    _insert(
                        con,
                        "violations",
                        {
                            "run_id": run,
                            "rule_id": rule_id,
                            "entity": entity,
                            "entity_id": eid,
                            "status": "violated",
                            "institution_id": "I1",
                            "doctor_id": WHO[eid],
                            "month": "2026-08",
                        },
                    )
    finally:
        con.close()
    return path
