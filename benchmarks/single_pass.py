"""The "limit" of the audit: every rule's counts from a hand-written single-pass DuckDB SQL.

The audit (``toolkit/audit.py``) evaluates each rule as its own SELECT (``toolkit/rule_sql.py``)
and lets Great Expectations count the records of the union view. This module computes the same
numbers — denominator (records in scope), violated and not evidenced, per rule — the way a
hand-tuned query would: ONE aggregate query per base table, each rule's scope ``s`` and pass
test ``p`` being two boolean columns of one projection and its three counts ``FILTER`` clauses
of one aggregate. Side facts a rule needs from another table (a session's care plan, its
pre-consultation, its access-log events, the EC lines of a case, …) are joined in once, as
aggregates keyed by the base table's key.

The expressions are written here by hand from docs/rule-semantics.md, independently of
``toolkit/rule_sql.py``; :func:`compare` asserts that they give exactly the counts the audit
stored in ``rule_results``, so a benchmark run also cross-checks the audit.

Status of a record, as in the audit (``s`` scope, ``p`` pass, SQL three-valued booleans)::

    in scope       s IS NOT FALSE
    violated       s IS TRUE AND p IS FALSE
    not evidenced  (s IS TRUE AND p IS NULL) OR (s IS NULL AND p IS NOT TRUE)

The **export limit** (``--violations OUT``, issue 17) also writes every violation id, as
``ocaudit audit --violations`` does: per base table the entity id and status codes are stored once
in an in-memory temporary table (the counts are then counted from it), then one SELECT per rule
(its violated and not-evidenced records), all joined by UNION ALL, and one COPY to CSV in the
toolkit's export format (run id, rule, section, level, entity, entity id, status; sorted by rule
and entity id; formula-safe; ``\r\n``). Run id, section and level are those of the audit run of
``--check-run``, so the file is byte-identical to that run's export when both are right
(``benchmarks/run.py`` compares the SHA-256 of the two files).

Usage: ``python benchmarks/single_pass.py --db F --as-of YYYY-MM-DD [--check-run RUN|latest]
[--violations OUT.csv] [--json OUT]`` (exit 1 when the counts differ from the audit run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import duckdb

OC = "'online_care'"
OC_OR = "('online_care', 'online_referral')"
IN_PERSON = "('switched_to_in_person', 'referred')"
PRIOR = "('chart', 'referral_letter', 'health_check', 'regional_network', 'medication_notebook', 'phr')"
MISUSE = "('hypnotic', 'diuretic', 'antidiabetic', 'pde5')"

Counts = dict[str, tuple[int, int, int]]


def _gate(exists: str, scope: str) -> str:
    """Scope of a rule whose SELECT inner-joins another relation: out of scope when the join finds nothing."""
    return f"CASE WHEN {exists} THEN ({scope}) ELSE FALSE END"


# ---------------------------------------------------------------- sessions (one row per session)
SESSION_BASE = """
WITH ec AS (SELECT DISTINCT session_id FROM ec_cases),
rxs AS (SELECT DISTINCT session_id FROM prescriptions),
acc AS (
  SELECT a.session_id,
    count(*) FILTER (WHERE a.actor = 'doctor' AND a.event = 'join') AS mf_n,
    count(*) FILTER (WHERE a.actor = 'doctor' AND a.event = 'join' AND a.mfa IS FALSE) AS mf_false,
    count(*) FILTER (WHERE a.actor = 'doctor' AND a.event = 'join' AND a.mfa IS NULL) AS mf_null,
    bool_or(a.event = 'join') FILTER (WHERE a.actor = 'doctor' AND a."at" BETWEEN s0.started_at AND s0.ended_at)
      AS al_join,
    bool_or(a.event = 'leave') FILTER (WHERE a.actor = 'doctor' AND a."at" BETWEEN s0.started_at AND s0.ended_at)
      AS al_leave
  FROM access_log a JOIN sessions s0 ON s0.session_id = a.session_id
  GROUP BY a.session_id),
pl AS (
  SELECT s2.session_id,
    bool_or(cp.created_at <= s2.started_at AND (cp.deleted_at IS NULL OR cp.deleted_at > s2.started_at)) AS has_plan
  FROM sessions s2 JOIN care_plans cp ON cp.patient_id = s2.patient_id
  GROUP BY s2.session_id),
fv AS (
  SELECT patient_id, min(started_at) AS fv_first_at FROM sessions
  WHERE kind = 'online_care' AND is_first_visit AND patient_id IS NOT NULL GROUP BY patient_id),
ov AS (
  SELECT session_id,
    coalesce(max(ended_at) OVER (PARTITION BY doctor_id ORDER BY started_at, session_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > started_at, FALSE)
    OR coalesce(lead(started_at) OVER (PARTITION BY doctor_id ORDER BY started_at, session_id) < ended_at, FALSE)
      AS overlap
  FROM sessions WHERE started_at IS NOT NULL AND ended_at > started_at AND doctor_id IS NOT NULL),
w AS (
  SELECT s.*,
    CAST(timezone('Asia/Tokyo', s.started_at) AS DATE) AS sdate,
    s.outcome IN ('switched_to_in_person', 'referred') AS in_person
  FROM sessions s),
x AS (
  SELECT w.*,
    cp.care_plan_id IS NOT NULL AS cp_exists, cp.patient_id AS cp_patient_id, cp.created_at AS cp_created_at,
    cp.in_person_assessed_at AS cp_assessed_at, cp.doctors AS cp_doctors,
    pc.kind AS pc_kind, pc.patient_id AS pc_patient_id, pc.ended_at AS pc_ended_at,
    ec.session_id IS NOT NULL AS is_ec, rxs.session_id IS NOT NULL AS has_rx,
    d.doctor_id IS NOT NULL AS d_exists, d.online_training_on,
    coalesce(acc.mf_n, 0) > 0 AS mf_exists,
    CASE WHEN acc.mf_false > 0 THEN FALSE WHEN acc.mf_null > 0 THEN NULL ELSE TRUE END AS mf_all,
    coalesce(acc.al_join AND acc.al_leave, FALSE) AS al_ok,
    pl.has_plan, fv.patient_id IS NOT NULL AS fv_exists, fv.fv_first_at,
    ov.session_id IS NOT NULL AS ov_in, ov.overlap,
    CASE WHEN w.tls_version IS NULL THEN NULL
         WHEN lower(w.tls_version) LIKE '%ssl%' THEN FALSE
         ELSE TRY_CAST(regexp_extract(w.tls_version, '([0-9]+(\\.[0-9]+)?)', 1) AS DECIMAL(6,2)) >= 1.2
    END AS tls_ok
  FROM w
  LEFT JOIN care_plans cp ON cp.care_plan_id = w.care_plan_id
  LEFT JOIN sessions pc ON pc.session_id = w.preceded_by_session_id
  LEFT JOIN ec ON ec.session_id = w.session_id
  LEFT JOIN rxs ON rxs.session_id = w.session_id
  LEFT JOIN doctors d ON d.doctor_id = w.doctor_id
  LEFT JOIN acc ON acc.session_id = w.session_id
  LEFT JOIN pl ON pl.session_id = w.session_id
  LEFT JOIN fv ON fv.patient_id = w.patient_id
  LEFT JOIN ov ON ov.session_id = w.session_id)"""

SESSION_RULES: list[tuple[str, str, str]] = [
    ("consent.recorded", f"kind IN {OC_OR}", "consent_at <= started_at"),
    (
        "consent.explicit_wish",
        f"kind = {OC} OR (kind = 'online_referral' AND NOT (initiated_by = 'patient'))",
        "wish_confirmed",
    ),
    (
        "consent.explained_first",
        f"kind = {OC}",
        """CASE WHEN explained_at IS NULL THEN NULL WHEN explained_at <= consent_at THEN TRUE
             WHEN is_emergency THEN TRUE WHEN is_emergency IS NULL OR consent_at IS NULL THEN NULL
             ELSE FALSE END""",
    ),
    (
        "judgement.each_session",
        f"kind IN {OC_OR}",
        """CASE WHEN feasibility IS NULL THEN NULL WHEN feasibility = 'appropriate' THEN TRUE
             WHEN outcome IS NULL THEN NULL WHEN NOT in_person THEN FALSE
             WHEN referred_at IS NULL THEN NULL ELSE TRUE END""",
    ),
    (
        "judgement.stop_when_insufficient",
        f"kind IN {OC_OR}",
        "info_sufficient OR in_person",  # Kleene: NOT info_sufficient ⇒ in person
    ),
    (
        "first_visit.unsuitable_symptom",
        f"kind = {OC} AND is_first_visit",
        "NOT unsuitable_symptom OR in_person",
    ),
    (
        "first_visit.basis",
        f"kind = {OC} AND is_first_visit AND care_form <> 'd_to_p_with_d' AND NOT is_ec",
        f"""is_regular_doctor OR (prior_info_source IN {PRIOR} AND prior_info_recorded)
         OR coalesce(pc_kind = 'pre_consultation' AND pc_patient_id = patient_id AND pc_ended_at <= started_at,
                     FALSE)""",
    ),
    (
        "first_visit.emergency_in_person",
        f"kind = {OC}",
        "NOT is_emergency OR in_person",
    ),
    (
        "care_plan.exists",
        f"kind = {OC} AND NOT is_first_visit",
        """CASE WHEN care_plan_id IS NULL THEN NULL WHEN NOT cp_exists THEN FALSE
             WHEN cp_patient_id IS NULL OR patient_id IS NULL THEN NULL WHEN cp_patient_id <> patient_id THEN FALSE
             WHEN cp_created_at IS NULL OR started_at IS NULL THEN NULL WHEN cp_created_at > started_at THEN FALSE
             ELSE care_form = 'd_to_p_with_d' OR cp_assessed_at <= cp_created_at END""",
    ),
    (
        "care_plan.after_first_visit",
        _gate(
            "fv_exists", f"kind = {OC} AND is_first_visit IS DISTINCT FROM TRUE AND started_at > fv_first_at"
        ),
        "coalesce(has_plan, FALSE)",
    ),
    (
        "care_plan.rotation_named",
        _gate("cp_exists", f"kind = {OC}"),
        """list_contains(list_transform(string_split(cp_doctors, ';'), lambda v: trim(v)), doctor_id)
             OR (substitute_doctor AND substitute_consent)""",
    ),
    (
        "recording.agreed",
        "TRUE",
        "NOT recording_saved OR recording_agreed",
    ),
    (
        "identity.patient",
        f"kind IN {OC_OR} AND ((kind = {OC} AND is_first_visit) OR patient_id_method IS DISTINCT FROM 'known_in_person')",
        """CASE WHEN patient_id_method IS NULL THEN NULL
             WHEN patient_id_method IN ('photo_id', 'two_ids', 'one_id_plus_questions') THEN TRUE
             WHEN patient_id_method = 'none' THEN is_emergency ELSE FALSE END""",
    ),
    ("identity.doctor", f"kind IN {OC_OR} AND is_first_visit", "doctor_id_shown"),
    ("identity.qualification", f"kind IN {OC_OR} AND is_first_visit", "doctor_qualification_shown"),
    ("rx.meds_confirmed", _gate("has_rx", f"kind = {OC}"), "meds_confirmed"),
    (
        "exam.realtime_video",
        "kind IN ('online_care', 'online_referral', 'pre_consultation')",
        "modality = 'video'",
    ),
    ("exam.one_patient_at_a_time", f"kind IN {OC_OR}", "CASE WHEN NOT ov_in THEN NULL ELSE NOT overlap END"),
    (
        "exam.staff_consent",
        f"kind IN {OC_OR}",
        "NOT staff_present OR staff_consent",
    ),
    ("place.doctor_private", "TRUE", "doctor_location <> 'public' AND doctor_location_private"),
    ("place.patient_private", "TRUE", "patient_location <> 'other' AND patient_location_private"),
    (
        "security.third_party",
        "TRUE",
        "NOT third_party_present OR third_party_consent",
    ),
    ("security.institution_initiates", "platform = 'general_purpose'", "initiated_by = 'institution'"),
    ("security.tls", "tls_version IS NOT NULL", "tls_ok"),
    (
        "training.doctor_online",
        f"kind IN {OC_OR}",
        "CASE WHEN NOT d_exists THEN NULL ELSE online_training_on <= sdate END",
    ),
    ("evidence.chart_marked_online", f"kind IN {OC_OR}", "chart_marked_online"),
    ("security.mfa", _gate("mf_exists", "TRUE"), "mf_all"),
    (
        "exam.access_log",
        f"kind IN {OC_OR}",
        "CASE WHEN started_at IS NULL OR ended_at IS NULL THEN NULL ELSE al_ok END",
    ),
    ("network.stable", "network_interruptions IS NOT NULL", "network_interruptions <= {network_threshold}"),
]

# ---------------------------------------------------------------- prescriptions (one row per line)
DRUG_FLAGS = """
codes AS (SELECT DISTINCT drug_code FROM prescriptions WHERE drug_code IS NOT NULL),
flags AS (
  SELECT drug_code, narcotic, psychotropic, high_risk, emergency_contraceptive, misuse_class FROM (
    SELECT c.drug_code, dm.narcotic, dm.psychotropic, dm.high_risk, dm.emergency_contraceptive, dm.misuse_class,
           row_number() OVER (PARTITION BY c.drug_code ORDER BY length(dm.drug_code) DESC) AS rn
    FROM codes c JOIN drug_master dm ON starts_with(c.drug_code, dm.drug_code)) WHERE rn = 1)"""

RX_BASE = f"""
WITH {DRUG_FLAGS.strip()},
x AS (
  SELECT r.rx_id, r.drug_code, r.days_supply, s.kind, s.is_first_visit,
    (s.is_regular_doctor OR (s.prior_info_source IN {PRIOR} AND s.prior_info_recorded)) AS history_known,
    CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.narcotic, FALSE) END AS narcotic,
    CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.psychotropic, FALSE) END AS psychotropic,
    CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.high_risk, FALSE) END AS high_risk,
    CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.misuse_class IN {MISUSE}, FALSE) END AS misuse
  FROM prescriptions r
  LEFT JOIN sessions s ON s.session_id = r.session_id
  LEFT JOIN flags f ON f.drug_code = r.drug_code)"""

RX_RULES: list[tuple[str, str, str]] = [
    (
        "rx.first_visit_narcotic_psychotropic",
        f"kind = {OC} AND is_first_visit",
        "NOT (narcotic OR psychotropic)",
    ),
    ("rx.first_visit_high_risk", f"kind = {OC} AND is_first_visit AND NOT history_known", "NOT high_risk"),
    (
        "rx.first_visit_max_7_days",
        f"kind = {OC} AND is_first_visit AND NOT history_known",
        "days_supply <= 7",
    ),
    ("rx.misuse_signal", f"kind = {OC} AND is_first_visit", "NOT (psychotropic OR misuse)"),
]

# ---------------------------------------------------------------- EC cases (one row per case)
EC_BASE = f"""
WITH {DRUG_FLAGS.strip()},
lines AS (
  SELECT r.session_id, count(*) FILTER (WHERE f.emergency_contraceptive) AS n_lines,
    count(*) FILTER (WHERE f.drug_code IS NULL) AS n_unclassified,
    count(*) FILTER (WHERE f.emergency_contraceptive AND (r.quantity = 1 AND r.dispensing = 'outside') IS FALSE)
      AS so_false,
    count(*) FILTER (WHERE f.emergency_contraceptive AND (r.quantity = 1 AND r.dispensing = 'outside') IS NULL)
      AS so_null,
    count(*) FILTER (WHERE f.emergency_contraceptive AND (r.pharmacist_trained AND r.witnessed_intake) IS FALSE)
      AS wi_false,
    count(*) FILTER (WHERE f.emergency_contraceptive AND (r.pharmacist_trained AND r.witnessed_intake) IS NULL)
      AS wi_null
  FROM prescriptions r LEFT JOIN flags f ON f.drug_code = r.drug_code
  WHERE r.drug_code IS NOT NULL AND (f.emergency_contraceptive OR f.drug_code IS NULL)
  GROUP BY r.session_id),
x0 AS (
  SELECT e.*, CAST(timezone('Asia/Tokyo', s.started_at) AS DATE) AS sdate, d.specialty, d.ec_training_on,
    coalesce(l.n_lines, 0) AS n_lines, coalesce(l.n_unclassified, 0) AS n_unclassified, d.doctor_id AS d_id,
    CASE WHEN l.so_false > 0 THEN FALSE WHEN l.so_null > 0 THEN NULL WHEN l.n_lines > 0 THEN TRUE END
      AS single_outside,
    CASE WHEN l.wi_false > 0 THEN FALSE WHEN l.wi_null > 0 THEN NULL WHEN l.n_lines > 0 THEN TRUE END AS witnessed,
    pt.birth_date, pt.birth_year
  FROM ec_cases e
  LEFT JOIN sessions s ON s.session_id = e.session_id
  LEFT JOIN doctors d ON d.doctor_id = s.doctor_id
  LEFT JOIN patients pt ON pt.patient_id = s.patient_id
  LEFT JOIN lines l ON l.session_id = e.session_id),
x AS (
  SELECT x0.*,
    CASE WHEN birth_date IS NOT NULL AND sdate IS NOT NULL THEN date_sub('year', birth_date, sdate) >= 18
         WHEN birth_year IS NOT NULL AND sdate IS NOT NULL THEN
           CASE WHEN year(sdate) - birth_year >= 19 THEN TRUE WHEN year(sdate) - birth_year <= 17 THEN FALSE END
    END AS adult
  FROM x0)"""

EC_RULES: list[tuple[str, str, str]] = [
    (
        "ec.prescriber_qualified",
        "TRUE",
        """specialty = 'obgyn' OR CASE WHEN ec_training_on <= sdate THEN TRUE
             WHEN d_id IS NULL OR specialty IS NULL OR sdate IS NULL THEN NULL ELSE FALSE END""",
    ),
    ("ec.reason_allowed", "TRUE", "reason IN ('geographic', 'psychological')"),
    (
        "ec.single_tablet_outside",
        "n_lines >= 1 OR n_unclassified >= 1",
        "CASE WHEN n_lines > 1 THEN FALSE ELSE single_outside END",
    ),
    ("ec.witnessed_intake", "n_lines >= 1 OR n_unclassified >= 1", "witnessed"),
    (
        "ec.follow_up",
        "TRUE",
        """CASE WHEN follow_up_due_on IS NULL OR sdate IS NULL THEN NULL
             WHEN follow_up_due_on < sdate + 14 OR follow_up_due_on > sdate + 28 THEN FALSE
             WHEN {as_of} > follow_up_due_on + 14 AND follow_up_visited_on IS NULL THEN FALSE
             ELSE TRUE END""",
    ),
    (
        "ec.assault_support",
        "assault_suspected",
        "police_or_onestop_referred AND (adult OR child_guidance_notified)",
    ),
    ("ec.contraception_counselled", "TRUE", "contraception_counselled"),
]

# ---------------------------------------------------------------- care plans (one row per plan)
CP_BASE = """
WITH used AS (SELECT DISTINCT care_plan_id FROM sessions WHERE care_plan_id IS NOT NULL),
x AS (SELECT cp.*, u.care_plan_id IS NOT NULL AS used FROM care_plans cp LEFT JOIN used u USING (care_plan_id))"""

CP_RULES: list[tuple[str, str, str]] = [
    (
        "care_plan.complete",
        _gate("used", "TRUE"),
        "has_content AND has_schedule AND has_hours AND has_method AND has_stop_conditions AND has_cooperation "
        "AND has_emergency_plan AND has_doctor_names AND has_security_scope",
    ),
    (
        "care_plan.retained",
        "CAST(timezone('Asia/Tokyo', created_at) AS DATE) <= {as_of}",
        "deleted_at IS NULL OR CAST(timezone('Asia/Tokyo', deleted_at) AS DATE) > {as_of} "
        "OR deleted_at >= created_at + INTERVAL 2 YEAR",
    ),
]

# ---------------------------------------------------------------- doctors, institutions
DOCTOR_BASE = """
WITH x AS (SELECT d.doctor_id, d.institution_id AS d_inst, i.institution_id AS i_inst, i.contact_published
           FROM doctors d LEFT JOIN institutions i ON i.institution_id = d.institution_id)"""
DOCTOR_RULES: list[tuple[str, str, str]] = [
    (
        "place.doctor_affiliated",
        "TRUE",
        "CASE WHEN d_inst IS NULL THEN NULL WHEN i_inst IS NULL THEN FALSE ELSE contact_published END",
    ),
]
INSTITUTION_BASE = "WITH x AS (SELECT * FROM institutions)"
INSTITUTION_RULES: list[tuple[str, str, str]] = [
    ("place.compliance_published", "TRUE", "compliance_published")
]

#: base table → (CTE text ending in a relation ``x``, rules over ``x``)
QUERIES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "sessions": (SESSION_BASE, SESSION_RULES),
    "prescriptions": (RX_BASE, RX_RULES),
    "ec_cases": (EC_BASE, EC_RULES),
    "care_plans": (CP_BASE, CP_RULES),
    "doctors": (DOCTOR_BASE, DOCTOR_RULES),
    "institutions": (INSTITUTION_BASE, INSTITUTION_RULES),
}


#: base table → (entity name in the audit's violations, its id column in ``x``)
ENTITIES: dict[str, tuple[str, str]] = {
    "sessions": ("session", "session_id"),
    "prescriptions": ("prescription", "rx_id"),
    "ec_cases": ("ec_case", "session_id"),
    "care_plans": ("care_plan", "care_plan_id"),
    "doctors": ("doctor", "doctor_id"),
    "institutions": ("institution", "institution_id"),
}


def status_columns(
    rules: list[tuple[str, str, str]], as_of: dt.date, network_threshold: int = 3
) -> list[str]:
    """Per rule the status code ``st_i`` of a record of ``x``: NULL out of scope, 0 passed,
    1 violated, 2 not evidenced (see the module docstring)."""
    subst = {"as_of": f"DATE '{as_of.isoformat()}'", "network_threshold": str(int(network_threshold))}
    proj = []
    for i, (_rid, scope, check) in enumerate(rules):
        s, p = f"({scope.format(**subst)})", f"({check.format(**subst)})"
        proj.append(
            f"CASE WHEN {s} IS TRUE THEN (CASE WHEN {p} IS TRUE THEN 0 WHEN {p} IS FALSE THEN 1 ELSE 2 END)\n"
            f"    WHEN {s} IS NULL THEN (CASE WHEN {p} IS TRUE THEN 0 ELSE 2 END) END AS st_{i}"
        )
    return proj


def query_sql(
    base: str, rules: list[tuple[str, str, str]], as_of: dt.date, network_threshold: int = 3
) -> str:
    """One aggregate over ``x``: per rule ``den_i, vio_i, ne_i`` from its status code ``st_i``."""
    proj = status_columns(rules, as_of, network_threshold)
    aggs = []
    for i in range(len(rules)):
        aggs.append(
            f"count(st_{i}) AS den_{i}, count_if(st_{i} = 1) AS vio_{i}, count_if(st_{i} = 2) AS ne_{i}"
        )
    return (
        f"{base},\nsp AS (SELECT\n  "
        + ",\n  ".join(proj)
        + "\nFROM x)\nSELECT\n  "
        + ",\n  ".join(aggs)
        + "\nFROM sp"
    )


def _text(value: str | None) -> str:
    """A SQL literal of a constant, formula-neutralised as the export's cells are (NULL, '' → empty)."""
    if not value:
        return "NULL"
    if value.startswith(("=", "+", "-", "@", "\t", "\r")):
        value = "'" + value
    return "'" + value.replace("'", "''") + "'"


#: The entity id as the export writes it: a leading apostrophe before a formula-like first character.
NEUTRAL_ID = """CASE WHEN u.entity_id = '' THEN NULL
    WHEN starts_with(u.entity_id, '=') OR starts_with(u.entity_id, '+') OR starts_with(u.entity_id, '-')
      OR starts_with(u.entity_id, '@') OR starts_with(u.entity_id, chr(9)) OR starts_with(u.entity_id, chr(13))
    THEN chr(39) || u.entity_id ELSE u.entity_id END"""


def status_table_sql(table: str, as_of: dt.date, network_threshold: int = 3) -> str:
    """``CREATE TEMP TABLE sp_<table>``: the entity id and every rule's status code (UTINYINT)."""
    base, rules = QUERIES[table]
    _entity, id_col = ENTITIES[table]
    cols = [
        c.replace(f" END AS st_{i}", f" END::UTINYINT AS st_{i}")
        for i, c in enumerate(status_columns(rules, as_of, network_threshold))
    ]
    proj = [f"CAST({id_col} AS VARCHAR) AS entity_id", *cols]
    return f"CREATE TEMP TABLE sp_{table} AS {base}\nSELECT\n  " + ",\n  ".join(proj) + "\nFROM x"


def violations_sql(run_id: str | None, rule_meta: dict[str, tuple[str | None, str | None]]) -> str:
    """Every violated and not-evidenced record of every rule, from the ``sp_<table>`` status tables:
    one SELECT per rule, all joined by UNION ALL, sorted by rule, entity id and status: the rows of
    the audit's violations export. ``rule_meta``: rule id → (section, level) of the audit run."""
    per_rule = [
        f"SELECT '{rid}' AS rule_id, '{ENTITIES[table][0]}' AS entity, entity_id, "
        f"CASE WHEN st_{i} = 1 THEN 'violated' ELSE 'not_evidenced' END AS status FROM sp_{table} WHERE st_{i} >= 1"
        for table, (_base, rules) in QUERIES.items()
        for i, (rid, _s, _p) in enumerate(rules)
    ]
    meta = ", ".join(
        f"('{rid}', {_text(sec)}, {_text(lvl)})" for rid, (sec, lvl) in sorted(rule_meta.items())
    )
    return (
        f"SELECT {_text(run_id)} AS run_id, u.rule_id, m.section, m.level, u.entity, {NEUTRAL_ID} AS entity_id, "
        "u.status\nFROM (\n" + "\nUNION ALL\n".join(per_rule) + "\n) u\n"
        f"JOIN (VALUES {meta}) m(rule_id, section, level) ON m.rule_id = u.rule_id\n"
        "ORDER BY u.rule_id, u.entity_id, u.status"
    )


#: The toolkit's export CSV: Python csv.writer's default dialect (CRLF, minimal quoting, no BOM).
CSV_OPTIONS = "FORMAT csv, HEADER true, NEW_LINE '\\r\\n', COMMENT '', NULLSTR '', COMPRESSION 'none', USE_TMP_FILE false"


def write_violations(con: duckdb.DuckDBPyConnection, out: str, run_id: str | None) -> int:
    """COPY every violation id from the status tables (see :func:`run`) to ``out`` (CSV); rows written."""
    rule_meta: dict[str, tuple[str | None, str | None]] = {
        rid: (None, None) for _b, rules in QUERIES.values() for rid, _s, _p in rules
    }
    if run_id:
        for rid, sec, lvl in con.execute(
            "SELECT rule_id, section, level FROM rule_results WHERE run_id = ?", [run_id]
        ).fetchall():
            if rid in rule_meta:
                rule_meta[rid] = (sec, lvl)
    row = con.execute(f"COPY ({violations_sql(run_id, rule_meta)}) TO ? ({CSV_OPTIONS})", [out]).fetchone()
    return int(row[0]) if row else 0


def run(
    con: duckdb.DuckDBPyConnection, as_of: dt.date, network_threshold: int = 3, *, keep_status: bool = False
) -> tuple[Counts, dict[str, float]]:
    """Execute the per-table queries; rule id → (denominator, violated, not evidenced), and seconds per query.

    ``keep_status`` (the export limit): each table's status codes are first stored in a temporary
    table ``sp_<table>`` (in memory), counted from there and kept for :func:`write_violations`.
    """
    counts: Counts = {}
    seconds: dict[str, float] = {}
    for table, (base, rules) in QUERIES.items():
        t0 = time.perf_counter()
        if keep_status:
            con.execute(status_table_sql(table, as_of, network_threshold))
            aggs = ", ".join(
                f"count(st_{i}), count_if(st_{i} = 1), count_if(st_{i} = 2)" for i in range(len(rules))
            )
            row = con.execute(f"SELECT {aggs} FROM sp_{table}").fetchone()
        else:
            row = con.execute(query_sql(base, rules, as_of, network_threshold)).fetchone()
        seconds[table] = time.perf_counter() - t0
        assert row is not None
        for i, (rid, _s, _p) in enumerate(rules):
            counts[rid] = (int(row[3 * i]), int(row[3 * i + 1]), int(row[3 * i + 2]))
    return counts, seconds


def audit_counts(con: duckdb.DuckDBPyConnection, run_id: str | None) -> tuple[str, dict[str, tuple]]:
    """rule id → (status, denominator, violated, not evidenced) of an audit run (default: the latest)."""
    if run_id in (None, "latest"):
        row = con.execute("SELECT run_id FROM audit_runs ORDER BY started_at DESC LIMIT 1").fetchone()
        if row is None:
            raise SystemExit("single_pass: the database holds no audit run to compare with")
        run_id = row[0]
    rows = con.execute(
        "SELECT rule_id, status, denominator, violated, not_evidenced FROM rule_results WHERE run_id = ?",
        [run_id],
    ).fetchall()
    return str(run_id), {r[0]: tuple(r[1:]) for r in rows}


def compare(ours: Counts, audit: dict[str, tuple]) -> list[str]:
    """Differences between the single-pass counts and an audit run (empty list: identical)."""
    problems = []
    for rid, (status, den, vio, ne) in sorted(audit.items()):
        if status in ("not_evaluable",):
            continue
        if status == "error":
            problems.append(f"{rid}: the audit stored status 'error'")
        elif rid not in ours:
            problems.append(f"{rid}: no single-pass SQL")
        elif ours[rid] != (den, vio, ne):
            problems.append(
                f"{rid}: single pass {ours[rid]} != audit {(den, vio, ne)} (denominator, violated, "
                "not evidenced)"
            )
    for rid in sorted(set(ours) - set(audit)):
        problems.append(f"{rid}: not in the audit run")
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI: run the single-pass queries, print the timing, optionally compare with an audit run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--as-of", required=True, help="the as-of date the audit ran with (YYYY-MM-DD)")
    ap.add_argument("--check-run", help="audit run id to compare with ('latest' for the newest run)")
    ap.add_argument("--json", help="write counts and timings here")
    ap.add_argument(
        "--violations", help="the export limit: also write every violation id to this CSV (see the docstring)"
    )
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each query instead")
    args = ap.parse_args(argv)
    as_of = dt.date.fromisoformat(args.as_of)
    t0 = time.perf_counter()
    con = duckdb.connect(args.db, read_only=True)
    try:
        if args.explain:
            for table, (base, rules) in QUERIES.items():
                plan = con.execute("EXPLAIN ANALYZE " + query_sql(base, rules, as_of)).fetchall()
                print(f"== {table}\n{plan[0][1]}")
            return 0
        counts, seconds = run(con, as_of, keep_status=bool(args.violations))
        query_seconds = time.perf_counter() - t0
        problems: list[str] = []
        run_id = None
        if args.check_run:
            run_id, audit = audit_counts(con, args.check_run)
            problems = compare(counts, audit)
        violation_rows, violations_seconds = None, None
        if args.violations:
            t1 = time.perf_counter()
            violation_rows = write_violations(con, args.violations, run_id)
            violations_seconds = time.perf_counter() - t1
    finally:
        con.close()
    print(
        f"single pass: {len(counts)} rules in {query_seconds:.2f} s "
        + "("
        + ", ".join(f"{t} {s:.2f}" for t, s in seconds.items())
        + ")"
    )
    if args.violations:
        print(f"violations: {violation_rows} rows to {args.violations} in {violations_seconds:.2f} s")
    if run_id:
        print(
            f"compared with audit run {run_id}: "
            + ("identical counts for every rule" if not problems else f"{len(problems)} difference(s)")
        )
        for p in problems:
            print("  " + p)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seconds": query_seconds,
                    "seconds_by_table": seconds,
                    "violations_seconds": violations_seconds,
                    "violation_rows": violation_rows,
                    "run_id": run_id,
                    "problems": problems,
                    "counts": {k: list(v) for k, v in counts.items()},
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
