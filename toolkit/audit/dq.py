"""Data-quality findings: how far the audit can be trusted (shown first in every report).

Each check is one row of :data:`DQ_CHECKS` (id, table, titles, and the condition a record of that
table meets when the check finds it); a check whose table is missing is skipped. The checks of
one table are counted in ONE scan of it (a ``count(*) FILTER`` per check). Quarantined rows are
summarised per table.
"""

from __future__ import annotations

import duckdb

from toolkit.rules.facts import DRUG_FLAGS_SELECT, ec_lines_select, ec_tablet_unclassified

#: (check id, table, title_en, title_ja, condition on a record of the table, aliased as in :data:`ALIASES`)
DQ_CHECKS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "dq.unknown_patient",
        "sessions",
        "Sessions naming an unknown patient",
        "未登録の患者IDを持つ診療",
        "s.patient_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM patients p WHERE p.patient_id = s.patient_id)",
    ),
    (
        "dq.unknown_doctor",
        "sessions",
        "Sessions naming an unknown doctor",
        "未登録の医師IDを持つ診療",
        "s.doctor_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM doctors d WHERE d.doctor_id = s.doctor_id)",
    ),
    (
        "dq.unknown_institution",
        "sessions",
        "Sessions naming an unknown institution",
        "未登録の医療機関IDを持つ診療",
        "s.institution_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM institutions i WHERE i.institution_id = s.institution_id)",
    ),
    (
        "dq.doctor_unknown_institution",
        "doctors",
        "Doctors naming an unknown institution",
        "未登録の医療機関に所属する医師",
        "d.institution_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM institutions i WHERE i.institution_id = d.institution_id)",
    ),
    (
        "dq.rx_unknown_session",
        "prescriptions",
        "Prescription lines naming an unknown session",
        "未登録の診療IDを持つ処方",
        "NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = r.session_id)",
    ),
    (
        "dq.ec_unknown_session",
        "ec_cases",
        "EC cases naming an unknown session",
        "未登録の診療IDを持つ緊急避妊事例",
        "NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = e.session_id)",
    ),
    (
        "dq.access_unknown_session",
        "access_log",
        "Access-log events naming an unknown session",
        "未登録の診療IDを持つアクセスログ",
        "NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = a.session_id)",
    ),
    (
        "dq.unknown_care_plan",
        "sessions",
        "Sessions naming an unknown care plan",
        "未登録の診療計画IDを持つ診療",
        "s.care_plan_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM care_plans c WHERE c.care_plan_id = s.care_plan_id)",
    ),
    (
        "dq.end_before_start",
        "sessions",
        "Sessions ending before they start",
        "終了時刻が開始時刻より前の診療",
        "s.ended_at < s.started_at",
    ),
    (
        "dq.longer_than_a_day",
        "sessions",
        "Sessions longer than a day",
        "24時間を超える診療",
        "s.ended_at > s.started_at + INTERVAL 24 HOUR",
    ),
    (
        "dq.missing_times",
        "sessions",
        "Sessions without start or end time",
        "開始・終了時刻のない診療",
        "s.started_at IS NULL OR s.ended_at IS NULL",
    ),
    (
        "dq.unclassified_drug",
        "prescriptions",
        "Prescription lines whose drug the master does not match",
        "医薬品マスタに該当のない処方",
        "r.drug_code IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM drug_master m WHERE starts_with(r.drug_code, m.drug_code))",
    ),
    (
        "dq.ec_unclassified_drug",
        "ec_cases",
        "EC cases whose only tablet lines have a drug the master does not classify (tablet rules not evidenced)",
        "処方薬が医薬品マスタで分類できない緊急避妊事例（錠剤の判定不能）",
        f"e.session_id IN (SELECT l.session_id FROM ({ec_lines_select(f'({DRUG_FLAGS_SELECT})')}) l "
        f"WHERE {ec_tablet_unclassified('l')})",
    ),
)


#: The alias of each checked table in the conditions.
ALIASES = {"sessions": "s", "doctors": "d", "prescriptions": "r", "ec_cases": "e", "access_log": "a"}


def run_dq_checks(
    con: duckdb.DuckDBPyConnection, available_tables: set[str]
) -> list[tuple[str, str, str, str, int, str]]:
    """Every data-quality finding as (check_id, table, title_en, title_ja, n, detail)."""
    out = []
    for table, alias in ALIASES.items():
        checks = [c for c in DQ_CHECKS if c[1] == table]
        if table not in available_tables or not checks:
            continue
        counts = con.execute(
            "SELECT "
            + ", ".join(f"count(*) FILTER (WHERE {cond})" for *_, cond in checks)
            + f" FROM {table} {alias}"
        ).fetchone()
        out.extend(
            (check_id, table, en, ja, int(n), "")
            for (check_id, _t, en, ja, _c), n in zip(checks, counts, strict=True)
        )
    order = {c[0]: k for k, c in enumerate(DQ_CHECKS)}
    out.sort(key=lambda row: order[row[0]])
    for table, reason_kind, n in con.execute(
        "SELECT table_name, CASE WHEN reason ILIKE 'duplicate%' THEN 'duplicate key' ELSE 'contract' END, "
        "count(*) FROM quarantine GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        check_id = "dq.duplicate_key" if reason_kind == "duplicate key" else "dq.quarantined"
        en = (
            "Rows with a duplicate key and different content (quarantined)"
            if reason_kind == "duplicate key"
            else "Rows quarantined for breaking the data contract"
        )
        ja = (
            "内容の異なる重複キー（隔離）"
            if reason_kind == "duplicate key"
            else "データ契約違反で隔離された行"
        )
        out.append((check_id, table, en, ja, int(n), ""))
    return out
