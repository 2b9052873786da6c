"""Data-quality findings: how far the audit can be trusted (shown first in every report).

Each check is one row of :data:`DQ_CHECKS` (id, table, titles, SQL counting the records); a
check whose tables are missing is skipped. Quarantined rows are summarised per table.
"""

from __future__ import annotations

import duckdb

#: (check id, table, title_en, title_ja, SQL returning one count)
DQ_CHECKS: tuple[tuple[str, str, str, str, str], ...] = (
    ("dq.unknown_patient", "sessions", "Sessions naming an unknown patient", "未登録の患者IDを持つ診療",
     "SELECT count(*) FROM sessions s WHERE s.patient_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM patients p WHERE p.patient_id = s.patient_id)"),
    ("dq.unknown_doctor", "sessions", "Sessions naming an unknown doctor", "未登録の医師IDを持つ診療",
     "SELECT count(*) FROM sessions s WHERE s.doctor_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM doctors d WHERE d.doctor_id = s.doctor_id)"),
    ("dq.unknown_institution", "sessions", "Sessions naming an unknown institution", "未登録の医療機関IDを持つ診療",
     "SELECT count(*) FROM sessions s WHERE s.institution_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM institutions i WHERE i.institution_id = s.institution_id)"),
    ("dq.doctor_unknown_institution", "doctors", "Doctors naming an unknown institution",
     "未登録の医療機関に所属する医師",
     "SELECT count(*) FROM doctors d WHERE d.institution_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM institutions i WHERE i.institution_id = d.institution_id)"),
    ("dq.rx_unknown_session", "prescriptions", "Prescription lines naming an unknown session",
     "未登録の診療IDを持つ処方",
     "SELECT count(*) FROM prescriptions r WHERE NOT EXISTS "
     "(SELECT 1 FROM sessions s WHERE s.session_id = r.session_id)"),
    ("dq.ec_unknown_session", "ec_cases", "EC cases naming an unknown session", "未登録の診療IDを持つ緊急避妊事例",
     "SELECT count(*) FROM ec_cases e WHERE NOT EXISTS "
     "(SELECT 1 FROM sessions s WHERE s.session_id = e.session_id)"),
    ("dq.access_unknown_session", "access_log", "Access-log events naming an unknown session",
     "未登録の診療IDを持つアクセスログ",
     "SELECT count(*) FROM access_log a WHERE NOT EXISTS "
     "(SELECT 1 FROM sessions s WHERE s.session_id = a.session_id)"),
    ("dq.unknown_care_plan", "sessions", "Sessions naming an unknown care plan", "未登録の診療計画IDを持つ診療",
     "SELECT count(*) FROM sessions s WHERE s.care_plan_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM care_plans c WHERE c.care_plan_id = s.care_plan_id)"),
    ("dq.end_before_start", "sessions", "Sessions ending before they start", "終了時刻が開始時刻より前の診療",
     "SELECT count(*) FROM sessions WHERE ended_at < started_at"),
    ("dq.longer_than_a_day", "sessions", "Sessions longer than a day", "24時間を超える診療",
     "SELECT count(*) FROM sessions WHERE ended_at - started_at > INTERVAL 1 DAY"),
    ("dq.missing_times", "sessions", "Sessions without start or end time", "開始・終了時刻のない診療",
     "SELECT count(*) FROM sessions WHERE started_at IS NULL OR ended_at IS NULL"),
    ("dq.unclassified_drug", "prescriptions", "Prescription lines whose drug the master does not match",
     "医薬品マスタに該当のない処方", "SELECT count(*) FROM prescriptions r WHERE r.drug_code IS NOT NULL "
     "AND NOT EXISTS (SELECT 1 FROM drug_master m WHERE starts_with(r.drug_code, m.drug_code))"),
)


def run_dq_checks(con: duckdb.DuckDBPyConnection,
                  available_tables: set[str]) -> list[tuple[str, str, str, str, int, str]]:
    """Every data-quality finding as (check_id, table, title_en, title_ja, n, detail)."""
    out = []
    for check_id, table, en, ja, sql in DQ_CHECKS:
        if table not in available_tables:
            continue
        n = con.execute(sql).fetchone()[0]
        out.append((check_id, table, en, ja, int(n), ""))
    for table, reason_kind, n in con.execute(
            "SELECT table_name, CASE WHEN reason ILIKE 'duplicate%' THEN 'duplicate key' ELSE 'contract' END, "
            "count(*) FROM quarantine GROUP BY ALL ORDER BY ALL").fetchall():
        check_id = "dq.duplicate_key" if reason_kind == "duplicate key" else "dq.quarantined"
        en = ("Rows with a duplicate key and different content (quarantined)" if reason_kind == "duplicate key"
              else "Rows quarantined for breaking the data contract")
        ja = "内容の異なる重複キー（隔離）" if reason_kind == "duplicate key" else "データ契約違反で隔離された行"
        out.append((check_id, table, en, ja, int(n), ""))
    return out
