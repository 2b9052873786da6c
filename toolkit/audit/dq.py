"""Data-quality findings: how far the audit can be trusted (shown first in every report).

Each check is one row of :data:`DQ_CHECKS` (id, table, titles, and the condition a record of that
table meets when the check finds it); a check whose table is missing is skipped. The checks of
one table that compare only its own columns are counted in one scan of it (a ``count(*) FILTER`` per
check); a check that looks into another table (``EXISTS``, ``IN (SELECT …)``) is counted in a
statement of its own with its condition in ``WHERE`` (:func:`dq_count_statements`). Quarantined
rows are summarised per table, and ids that look alike (:func:`lookalike_ids`) per kind of id.
"""

from __future__ import annotations

import unicodedata

import duckdb

from toolkit.contract import ID_WHITESPACE, TABLES
from toolkit.municipality import valid_sql
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
    # contract v1.1: in-person visits and municipality codes (the annual report's inputs)
    (
        "dq.in_person_unknown_patient",
        "in_person_visits",
        "In-person visits naming an unknown patient",
        "未登録の患者IDを持つ対面診療",
        "v.patient_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM patients p WHERE p.patient_id = v.patient_id)",
    ),
    (
        "dq.in_person_unknown_institution",
        "in_person_visits",
        "In-person visits naming an unknown institution",
        "未登録の医療機関IDを持つ対面診療",
        "v.institution_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM institutions i WHERE i.institution_id = v.institution_id)",
    ),
    (
        "dq.first_visit_after_earlier_visit",
        "sessions",
        "Online first visits whose patient had an earlier in-person visit at the same institution "
        "(the first-visit flag may be wrong)",
        "同じ医療機関で以前に対面診療のある患者のオンライン初診（初診の記録が誤りの可能性）",
        "s.kind = 'online_care' AND s.is_first_visit AND EXISTS (SELECT 1 FROM in_person_visits v "
        "WHERE v.patient_id = s.patient_id AND v.institution_id = s.institution_id AND v.visited_at < s.started_at)",
    ),
    (
        "dq.institution_bad_municipality",
        "institutions",
        "Institutions with a malformed municipality code or wrong check digit (JIS X 0402)",
        "市町村コード（JIS X 0402）の形式・検査数字が誤っている医療機関",
        f"i.municipality_code IS NOT NULL AND NOT {valid_sql('i.municipality_code')}",
    ),
    (
        "dq.patient_bad_municipality",
        "patients",
        "Patients with a malformed municipality code or wrong check digit (JIS X 0402)",
        "市町村コード（JIS X 0402）の形式・検査数字が誤っている患者",
        f"p.municipality_code IS NOT NULL AND NOT {valid_sql('p.municipality_code')}",
    ),
    (
        "dq.session_bad_municipality",
        "sessions",
        "Sessions with a malformed patient municipality code or wrong check digit (JIS X 0402)",
        "患者所在の市町村コード（JIS X 0402）の形式・検査数字が誤っている診療",
        f"s.patient_municipality_code IS NOT NULL AND NOT {valid_sql('s.patient_municipality_code')}",
    ),
)


_EXTRA_ID_COLUMNS = {"in_person_backup_id": "institution_id"}
#: Kinds of id compared by ``dq.lookalike_ids``: id → (table holding it as key, columns holding it).
ID_KINDS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    kind: (
        home,
        tuple(
            (t.name, c.name)
            for t in TABLES.values()
            for c in t.columns
            if c.type == "str"
            and (c.name == kind or c.name.endswith("_" + kind) or _EXTRA_ID_COLUMNS.get(c.name) == kind)
        ),
    )
    for kind, home in (
        ("patient_id", "patients"),
        ("doctor_id", "doctors"),
        ("institution_id", "institutions"),
        ("session_id", "sessions"),
        ("care_plan_id", "care_plans"),
        ("rx_id", "prescriptions"),
    )
}
LOOKALIKE_TITLE_EN = "Ids that differ only by width or invisible characters (kept apart, not merged)"
LOOKALIKE_TITLE_JA = "全角・半角や不可視文字だけが異なるID（別のIDのまま、統合していません）"
#: characters that do not show: zero-width space/joiners, direction marks and embeddings, BOM, soft hyphen
INVISIBLE_RE = (
    "[\\x{00AD}\\x{180E}\\x{200B}-\\x{200F}\\x{202A}-\\x{202E}\\x{2060}-\\x{2064}"
    "\\x{2066}-\\x{2069}\\x{FEFF}]"
)
#: full-width ASCII (U+FF01–U+FF5E) and the ideographic space, and their ASCII counterparts
_WIDE = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000"
_NARROW = "".join(chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)) + " "


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _lookalike_key(v: str) -> str:
    """SQL: id ``v`` with full-width ASCII made ASCII, invisible characters and edge spaces removed."""
    return (
        f"trim(regexp_replace(translate({v}, {_lit(_WIDE)}, {_lit(_NARROW)}), {_lit(INVISIBLE_RE)}, '', 'g'), "
        f"{_lit(ID_WHITESPACE)})"
    )


def lookalike_ids(
    con: duckdb.DuckDBPyConnection, available_tables: set[str]
) -> list[tuple[str, str, str, str, int, str]]:
    """``dq.lookalike_ids`` per kind of id: distinct ids that equal another once normalised.

    ``P1``, ``Ｐ１`` and ``P1`` + zero-width space are three patients in the data; the audit keeps them
    apart (merging could join two real people) and reports how many ids are in such groups, with up
    to three examples (invisible characters shown as ``\\u200b``). Only ids with a non-ASCII character
    are normalised (found by byte length ≠ character length), so the check is one cheap scan per id
    column (surrounding ASCII whitespace is already stripped at ingest).
    """
    out = []
    for kind, (home, cols) in ID_KINDS.items():
        present = [(t, c) for t, c in cols if t in available_tables]
        if not present:
            continue
        union = " UNION ALL ".join(f"SELECT {c} AS v FROM {t}" for t, c in present)
        odd = f"SELECT count(*) FROM ({union}) WHERE strlen(v) <> length(v)"
        if not con.execute(odd).fetchall()[0][0]:  # only ASCII ids: nothing can look alike
            out.append(("dq.lookalike_ids", home, LOOKALIKE_TITLE_EN, LOOKALIKE_TITLE_JA, 0, ""))
            continue
        rows = con.execute(f"""
WITH ids AS ({union}),
odd AS (SELECT DISTINCT v FROM ids WHERE strlen(v) <> length(v)),
n AS (SELECT v, {_lookalike_key("v")} AS k FROM odd),
plain AS (SELECT DISTINCT v FROM ids WHERE v IN (SELECT k FROM n)),
allv AS (SELECT v, k FROM n UNION SELECT v, v FROM plain),
grp AS (SELECT k, list(v ORDER BY v) AS vs FROM allv GROUP BY k HAVING count(*) > 1)
SELECT k, vs FROM grp ORDER BY k LIMIT 1000""").fetchall()
        n = sum(len(vs) for _k, vs in rows)
        detail = ""
        if rows:
            examples = "; ".join(" ~ ".join(_shown(v) for v in vs[:4]) for _k, vs in rows[:3])
            detail = f"{kind}: {len(rows)} group(s) of look-alike ids, e.g. {examples}"
            if len(rows) == 1000:
                detail += " (first 1000 groups counted)"
        out.append(("dq.lookalike_ids", home, LOOKALIKE_TITLE_EN, LOOKALIKE_TITLE_JA, n, detail))
    return out


def _shown(v: str) -> str:
    """An id quoted, with invisible and space characters written as ``\\uXXXX``."""
    return (
        "'"
        + "".join(
            f"\\u{ord(ch):04x}"
            if unicodedata.category(ch) in ("Cf", "Cc", "Zs", "Zl", "Zp") and ch != " "
            else ch
            for ch in v
        )
        + "'"
    )


#: The alias of each checked table in the conditions.
ALIASES = {
    "sessions": "s",
    "doctors": "d",
    "prescriptions": "r",
    "ec_cases": "e",
    "access_log": "a",
    "in_person_visits": "v",
    "institutions": "i",
    "patients": "p",
}


def _looks_elsewhere(condition: str) -> bool:
    """The condition has a subquery (it looks into another table)."""
    return "(SELECT " in condition


def dq_count_statements(table: str) -> list[tuple[list[tuple[str, str, str, str, str]], str]]:
    """The statements that count the :data:`DQ_CHECKS` of ``table``: (its checks, its SQL), each
    SQL returning one row with a count per check, in that order.

    The checks on the table's own columns share one scan. Each check with a subquery gets a
    statement of its own with the condition in ``WHERE``: DuckDB then builds one hash table at a
    time, and only the rows that pass the cheap part of the condition probe it (the
    earlier-in-person-visit check is probed by the first visits only instead of every session; 10M
    sessions' checks: 18.6 s in one scan, 10.1 s so).
    """
    alias = ALIASES[table]
    checks = [c for c in DQ_CHECKS if c[1] == table]
    elsewhere = [c for c in checks if _looks_elsewhere(c[4])]
    own = [c for c in checks if c not in elsewhere]
    statements = []
    if own:
        filters = ", ".join(f"count(*) FILTER (WHERE {c[4]})" for c in own)
        statements.append((own, f"SELECT {filters} FROM {table} {alias}"))
    statements.extend(([c], f"SELECT count(*) FROM {table} {alias} WHERE {c[4]}") for c in elsewhere)
    return statements


def run_dq_checks(
    con: duckdb.DuckDBPyConnection, available_tables: set[str]
) -> list[tuple[str, str, str, str, int, str]]:
    """Every data-quality finding as (check_id, table, title_en, title_ja, n, detail)."""
    out = []
    for table in ALIASES:
        if table not in available_tables:
            continue
        for checks, sql in dq_count_statements(table):
            counts = con.execute(sql).fetchone()
            out.extend(
                (check_id, table, en, ja, int(n), "")
                for (check_id, _t, en, ja, _c), n in zip(checks, counts, strict=True)
            )
    order = {c[0]: k for k, c in enumerate(DQ_CHECKS)}
    out.sort(key=lambda row: order[row[0]])
    out.extend(lookalike_ids(con, available_tables))
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
