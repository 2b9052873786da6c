"""The SQL of every rule: in-scope records with a status, computed inside DuckDB.

Each rule is one SELECT yielding ``entity_id, institution_id, doctor_id, month, s, p`` where
``s`` is the scope test and ``p`` the pass test, both SQL booleans that may be NULL. The status
follows docs/rule-semantics.md ("How unknown values are judged"):

    s true,  p true  → passed          s NULL, p true        → passed
    s true,  p false → violated        s NULL, p false/NULL  → not_evidenced
    s true,  p NULL  → not_evidenced   s false               → not in scope

:func:`create_views` writes helper views (``_audit_s``, ``_audit_rx``, ``_audit_ec``) and one
view ``_audit_rule_checks`` — the UNION ALL of every evaluable rule — that the GX suites
validate. Views are plain SQL with the as-of date written in as a literal, so GX's own
connection sees exactly what the audit sees. Time-of-day is always read in Japan time with
``timezone('Asia/Tokyo', …)``, whatever the connection's TimeZone setting.
"""

from __future__ import annotations

import datetime as dt

import duckdb

IN_PERSON = "('switched_to_in_person', 'referred')"
PRIOR_SOURCES = "('chart', 'referral_letter', 'health_check', 'regional_network', 'medication_notebook', 'phr')"
OC = "'online_care'"
OC_OR = "('online_care', 'online_referral')"
MISUSE_CLASSES = "('hypnotic', 'diuretic', 'antidiabetic', 'pde5')"

#: Status expression shared by every rule.
STATUS_SQL = """CASE
    WHEN s IS TRUE AND p IS TRUE THEN 'passed'
    WHEN s IS TRUE AND p IS FALSE THEN 'violated'
    WHEN s IS TRUE THEN 'not_evidenced'
    WHEN p IS TRUE THEN 'passed'
    ELSE 'not_evidenced' END"""


def _and3(expr: str) -> str:
    """Three-valued AND over a group: false if any false, NULL if any NULL, else true."""
    return (f"CASE WHEN count(*) FILTER (WHERE ({expr}) IS FALSE) > 0 THEN FALSE "
            f"WHEN count(*) FILTER (WHERE ({expr}) IS NULL) > 0 THEN NULL ELSE TRUE END")


def _session_rule(scope: str, check: str, joins: str = "") -> str:
    return (f"SELECT s.session_id AS entity_id, s.institution_id, s.doctor_id, s.month,\n"
            f"  ({scope}) AS s, ({check}) AS p\nFROM _audit_s s {joins}")


def _rx_rule(scope: str, check: str) -> str:
    return (f"SELECT r.rx_id AS entity_id, r.institution_id, r.doctor_id, r.month,\n"
            f"  ({scope}) AS s, ({check}) AS p\nFROM _audit_rx r")


def _ec_rule(scope: str, check: str, joins: str = "") -> str:
    return (f"SELECT e.session_id AS entity_id, e.institution_id, e.doctor_id, e.month,\n"
            f"  ({scope}) AS s, ({check}) AS p\nFROM _audit_ec e {joins}")


_EC_LINES = f"""LEFT JOIN (
    SELECT r.session_id, count(*) AS n_lines,
      {_and3("r.quantity = 1 AND r.dispensing = 'outside'")} AS single_outside,
      {_and3("r.pharmacist_trained AND r.witnessed_intake")} AS witnessed
    FROM _audit_rx r WHERE r.emergency_contraceptive GROUP BY r.session_id) l
  ON l.session_id = e.session_id"""

_OVERLAP = """LEFT JOIN (
    SELECT session_id,
      coalesce(max(ended_at) OVER w_prev > started_at, FALSE)
        OR coalesce(min(started_at) OVER w_next < ended_at, FALSE) AS overlap
    FROM sessions
    WHERE started_at IS NOT NULL AND ended_at > started_at AND doctor_id IS NOT NULL
    WINDOW w_prev AS (PARTITION BY doctor_id ORDER BY started_at, session_id
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
           w_next AS (PARTITION BY doctor_id ORDER BY started_at, session_id
                      ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)) ov
  ON ov.session_id = s.session_id"""


def rule_selects(as_of: dt.date, network_threshold: int = 3) -> dict[str, str]:
    """One SELECT per rule id (see module docstring for the columns)."""
    as_of_sql = f"DATE '{as_of.isoformat()}'"
    return {
        "consent.recorded": _session_rule(f"s.kind IN {OC_OR}", "s.consent_at <= s.started_at"),
        "consent.explicit_wish": _session_rule(
            f"s.kind = {OC} OR (s.kind = 'online_referral' AND NOT (s.initiated_by = 'patient'))",
            "s.wish_confirmed"),
        "consent.explained_first": _session_rule(
            f"s.kind = {OC}",
            """CASE WHEN s.explained_at IS NULL THEN NULL
                    WHEN s.explained_at <= s.consent_at THEN TRUE
                    WHEN s.is_emergency THEN TRUE
                    WHEN s.is_emergency IS NULL OR s.consent_at IS NULL THEN NULL
                    ELSE FALSE END"""),
        "judgement.each_session": _session_rule(
            f"s.kind IN {OC_OR}",
            """CASE WHEN s.feasibility IS NULL THEN NULL
                    WHEN s.feasibility = 'appropriate' THEN TRUE
                    WHEN s.outcome IS NULL THEN NULL
                    WHEN NOT s.in_person THEN FALSE
                    WHEN s.referred_at IS NULL THEN NULL
                    ELSE TRUE END"""),
        "judgement.stop_when_insufficient": _session_rule(
            f"s.kind IN {OC_OR}",
            "CASE WHEN s.info_sufficient IS NULL THEN NULL WHEN s.info_sufficient THEN TRUE ELSE s.in_person END"),
        "first_visit.unsuitable_symptom": _session_rule(
            f"s.kind = {OC} AND s.is_first_visit",
            "CASE WHEN s.unsuitable_symptom IS NULL THEN NULL WHEN NOT s.unsuitable_symptom THEN TRUE "
            "ELSE s.in_person END"),
        "first_visit.basis": _session_rule(
            f"s.kind = {OC} AND s.is_first_visit AND s.care_form <> 'd_to_p_with_d' AND ec.session_id IS NULL",
            f"""s.is_regular_doctor
                OR (s.prior_info_source IN {PRIOR_SOURCES} AND s.prior_info_recorded)
                OR coalesce(pc.kind = 'pre_consultation' AND pc.patient_id = s.patient_id
                            AND pc.ended_at <= s.started_at, FALSE)""",
            "LEFT JOIN sessions pc ON pc.session_id = s.preceded_by_session_id "
            "LEFT JOIN (SELECT DISTINCT session_id FROM ec_cases) ec ON ec.session_id = s.session_id"),
        "first_visit.emergency_in_person": _session_rule(
            f"s.kind = {OC}",
            "CASE WHEN s.is_emergency IS NULL THEN NULL WHEN NOT s.is_emergency THEN TRUE ELSE s.in_person END"),
        "care_plan.exists": _session_rule(
            f"s.kind = {OC} AND NOT s.is_first_visit",
            """CASE WHEN s.care_plan_id IS NULL THEN NULL
                    WHEN cp.care_plan_id IS NULL THEN FALSE
                    WHEN cp.patient_id IS NULL OR s.patient_id IS NULL THEN NULL
                    WHEN cp.patient_id <> s.patient_id THEN FALSE
                    WHEN cp.created_at IS NULL OR s.started_at IS NULL THEN NULL
                    WHEN cp.created_at > s.started_at THEN FALSE
                    WHEN s.care_form = 'd_to_p_with_d' THEN TRUE
                    WHEN cp.in_person_assessed_at IS NULL THEN NULL
                    ELSE cp.in_person_assessed_at <= cp.created_at END""",
            "LEFT JOIN care_plans cp ON cp.care_plan_id = s.care_plan_id"),
        "care_plan.after_first_visit": _session_rule(
            f"s.kind = {OC} AND s.is_first_visit IS DISTINCT FROM TRUE AND s.started_at > fv.first_at",
            "coalesce(pl.has_plan, FALSE)",
            f"""JOIN (SELECT patient_id, min(started_at) AS first_at FROM sessions
                      WHERE kind = {OC} AND is_first_visit GROUP BY patient_id) fv
                  ON fv.patient_id = s.patient_id
                LEFT JOIN (SELECT s2.session_id,
                             bool_or(cp.created_at <= s2.started_at
                                     AND (cp.deleted_at IS NULL OR cp.deleted_at > s2.started_at)) AS has_plan
                           FROM sessions s2 JOIN care_plans cp ON cp.patient_id = s2.patient_id
                           GROUP BY s2.session_id) pl
                  ON pl.session_id = s.session_id"""),
        "care_plan.rotation_named": _session_rule(
            f"s.kind = {OC}",
            """CASE WHEN cp.doctors IS NULL THEN NULL
                    WHEN list_contains(list_transform(string_split(cp.doctors, ';'), lambda x: trim(x)),
                                       s.doctor_id) THEN TRUE
                    ELSE s.substitute_doctor AND s.substitute_consent END""",
            "JOIN care_plans cp ON cp.care_plan_id = s.care_plan_id"),
        "recording.agreed": _session_rule(
            "TRUE",
            "CASE WHEN s.recording_saved IS NULL THEN NULL WHEN NOT s.recording_saved THEN TRUE "
            "ELSE s.recording_agreed END"),
        "identity.patient": _session_rule(
            f"s.kind IN {OC_OR} AND ((s.kind = {OC} AND s.is_first_visit) "
            "OR s.patient_id_method IS DISTINCT FROM 'known_in_person')",
            """CASE WHEN s.patient_id_method IS NULL THEN NULL
                    WHEN s.patient_id_method IN ('photo_id', 'two_ids', 'one_id_plus_questions') THEN TRUE
                    WHEN s.patient_id_method = 'none' THEN s.is_emergency
                    ELSE FALSE END"""),
        "identity.doctor": _session_rule(f"s.kind IN {OC_OR} AND s.is_first_visit", "s.doctor_id_shown"),
        "identity.qualification": _session_rule(
            f"s.kind IN {OC_OR} AND s.is_first_visit", "s.doctor_qualification_shown"),
        "rx.first_visit_narcotic_psychotropic": _rx_rule(
            f"r.kind = {OC} AND r.is_first_visit", "NOT (r.narcotic OR r.psychotropic)"),
        "rx.first_visit_high_risk": _rx_rule(
            f"r.kind = {OC} AND r.is_first_visit AND NOT r.history_known", "NOT r.high_risk"),
        "rx.first_visit_max_7_days": _rx_rule(
            f"r.kind = {OC} AND r.is_first_visit AND NOT r.history_known", "r.days_supply <= 7"),
        "rx.meds_confirmed": _session_rule(
            f"s.kind = {OC}", "s.meds_confirmed",
            "JOIN (SELECT DISTINCT session_id FROM prescriptions) rxs ON rxs.session_id = s.session_id"),
        "exam.realtime_video": _session_rule(
            "s.kind IN ('online_care', 'online_referral', 'pre_consultation')", "s.modality = 'video'"),
        "exam.one_patient_at_a_time": _session_rule(
            f"s.kind IN {OC_OR}",
            "CASE WHEN ov.session_id IS NULL THEN NULL ELSE NOT ov.overlap END", _OVERLAP),
        "exam.staff_consent": _session_rule(
            f"s.kind IN {OC_OR}",
            "CASE WHEN s.staff_present IS NULL THEN NULL WHEN NOT s.staff_present THEN TRUE "
            "ELSE s.staff_consent END"),
        "place.doctor_private": _session_rule(
            "TRUE", "s.doctor_location <> 'public' AND s.doctor_location_private"),
        "place.doctor_affiliated": """SELECT d.doctor_id AS entity_id, d.institution_id, d.doctor_id,
  NULL::VARCHAR AS month, TRUE AS s,
  CASE WHEN d.institution_id IS NULL THEN NULL WHEN i.institution_id IS NULL THEN FALSE
       ELSE i.contact_published END AS p
FROM doctors d LEFT JOIN institutions i ON i.institution_id = d.institution_id""",
        "place.compliance_published": """SELECT i.institution_id AS entity_id, i.institution_id,
  NULL::VARCHAR AS doctor_id, NULL::VARCHAR AS month, TRUE AS s, i.compliance_published AS p
FROM institutions i""",
        "place.patient_private": _session_rule(
            "TRUE", "s.patient_location <> 'other' AND s.patient_location_private"),
        "security.third_party": _session_rule(
            "TRUE",
            "CASE WHEN s.third_party_present IS NULL THEN NULL WHEN NOT s.third_party_present THEN TRUE "
            "ELSE s.third_party_consent END"),
        "security.institution_initiates": _session_rule(
            "s.platform = 'general_purpose'", "s.initiated_by = 'institution'"),
        "security.tls": _session_rule("s.tls_version IS NOT NULL", "s.tls_ok"),
        "training.doctor_online": _session_rule(
            f"s.kind IN {OC_OR}",
            "CASE WHEN d.doctor_id IS NULL THEN NULL ELSE d.online_training_on <= s.sdate END",
            "LEFT JOIN doctors d ON d.doctor_id = s.doctor_id"),
        "ec.prescriber_qualified": _ec_rule(
            "TRUE", "e.specialty = 'obgyn' OR e.ec_training_on <= e.sdate"),
        "ec.reason_allowed": _ec_rule("TRUE", "e.reason IN ('geographic', 'psychological')"),
        "ec.single_tablet_outside": _ec_rule(
            "coalesce(l.n_lines, 0) >= 1", "CASE WHEN l.n_lines > 1 THEN FALSE ELSE l.single_outside END", _EC_LINES),
        "ec.witnessed_intake": _ec_rule("coalesce(l.n_lines, 0) >= 1", "l.witnessed", _EC_LINES),
        "ec.follow_up": _ec_rule(
            "TRUE",
            f"""CASE WHEN e.follow_up_due_on IS NULL OR e.sdate IS NULL THEN NULL
                     WHEN e.follow_up_due_on < e.sdate + 14 OR e.follow_up_due_on > e.sdate + 28 THEN FALSE
                     WHEN {as_of_sql} > e.follow_up_due_on + 14 AND e.follow_up_visited_on IS NULL THEN FALSE
                     ELSE TRUE END"""),
        "ec.assault_support": _ec_rule(
            "e.assault_suspected", "e.police_or_onestop_referred AND (e.adult OR e.child_guidance_notified)"),
        "ec.contraception_counselled": _ec_rule("TRUE", "e.contraception_counselled"),
        "care_plan.complete": """SELECT cp.care_plan_id AS entity_id, NULL::VARCHAR AS institution_id,
  NULL::VARCHAR AS doctor_id, strftime(timezone('Asia/Tokyo', cp.created_at), '%Y-%m') AS month, TRUE AS s,
  (cp.has_content AND cp.has_schedule AND cp.has_hours AND cp.has_method AND cp.has_stop_conditions
   AND cp.has_cooperation AND cp.has_emergency_plan AND cp.has_doctor_names AND cp.has_security_scope) AS p
FROM care_plans cp
JOIN (SELECT DISTINCT care_plan_id FROM sessions WHERE care_plan_id IS NOT NULL) u
  ON u.care_plan_id = cp.care_plan_id""",
        "care_plan.retained": f"""SELECT cp.care_plan_id AS entity_id, NULL::VARCHAR AS institution_id,
  NULL::VARCHAR AS doctor_id, strftime(timezone('Asia/Tokyo', cp.created_at), '%Y-%m') AS month,
  CAST(timezone('Asia/Tokyo', cp.created_at) AS DATE) <= {as_of_sql} AS s,
  (cp.deleted_at IS NULL
   OR CAST(timezone('Asia/Tokyo', cp.deleted_at) AS DATE) > {as_of_sql}
   OR cp.deleted_at >= cp.created_at + INTERVAL 2 YEAR) AS p
FROM care_plans cp""",
        "evidence.chart_marked_online": _session_rule(f"s.kind IN {OC_OR}", "s.chart_marked_online"),
        "security.mfa": _session_rule(
            "TRUE", "mf.all_mfa",
            f"""JOIN (SELECT session_id, {_and3("mfa")} AS all_mfa FROM access_log
                      WHERE actor = 'doctor' AND event = 'join' GROUP BY session_id) mf
                  ON mf.session_id = s.session_id"""),
        "exam.access_log": _session_rule(
            f"s.kind IN {OC_OR}",
            "CASE WHEN s.started_at IS NULL OR s.ended_at IS NULL THEN NULL "
            "ELSE coalesce(al.has_join AND al.has_leave, FALSE) END",
            """LEFT JOIN (SELECT a.session_id, bool_or(a.event = 'join') AS has_join,
                                 bool_or(a.event = 'leave') AS has_leave
                          FROM access_log a JOIN sessions s0 ON s0.session_id = a.session_id
                          WHERE a.actor = 'doctor' AND a."at" BETWEEN s0.started_at AND s0.ended_at
                          GROUP BY a.session_id) al
                  ON al.session_id = s.session_id"""),
        "rx.misuse_signal": _rx_rule(
            f"r.kind = {OC} AND r.is_first_visit", "NOT (r.psychotropic OR r.misuse)"),
        "network.stable": _session_rule(
            "s.network_interruptions IS NOT NULL", f"s.network_interruptions <= {int(network_threshold)}"),
    }


BASE_VIEWS = {
    # Drug classification per distinct code: exact match wins, else the longest prefix.
    "_audit_drug_flags": """
CREATE OR REPLACE TABLE _audit_drug_flags AS
WITH codes AS (SELECT DISTINCT drug_code FROM prescriptions WHERE drug_code IS NOT NULL),
m AS (
  SELECT c.drug_code, dm.narcotic, dm.psychotropic, dm.high_risk, dm.emergency_contraceptive,
         dm.misuse_class,
         row_number() OVER (PARTITION BY c.drug_code ORDER BY length(dm.drug_code) DESC) AS rn
  FROM codes c JOIN drug_master dm ON starts_with(c.drug_code, dm.drug_code))
SELECT drug_code, narcotic, psychotropic, high_risk, emergency_contraceptive, misuse_class
FROM m WHERE rn = 1""",
    "_audit_s": f"""
CREATE OR REPLACE VIEW _audit_s AS
SELECT s.*,
  CAST(timezone('Asia/Tokyo', s.started_at) AS DATE) AS sdate,
  strftime(timezone('Asia/Tokyo', s.started_at), '%Y-%m') AS month,
  s.outcome IN {IN_PERSON} AS in_person,
  (s.is_regular_doctor OR (s.prior_info_source IN {PRIOR_SOURCES} AND s.prior_info_recorded)) AS history_known,
  CASE WHEN s.tls_version IS NULL THEN NULL
       WHEN lower(s.tls_version) LIKE '%ssl%' THEN FALSE
       ELSE TRY_CAST(regexp_extract(s.tls_version, '([0-9]+(\\.[0-9]+)?)', 1) AS DECIMAL(6,2)) >= 1.2
  END AS tls_ok,
  TRY_CAST(regexp_extract(s.tls_version, '([0-9]+(\\.[0-9]+)?)', 1) AS DECIMAL(6,2)) AS tls_number
FROM sessions s""",
    "_audit_rx": """
CREATE OR REPLACE VIEW _audit_rx AS
SELECT r.rx_id, r.session_id, r.drug_code, r.quantity, r.days_supply, r.dispensing,
  r.pharmacist_trained, r.witnessed_intake,
  s.kind, s.is_first_visit, s.history_known, s.institution_id, s.doctor_id, s.month,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.narcotic, FALSE) END AS narcotic,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.psychotropic, FALSE) END AS psychotropic,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.high_risk, FALSE) END AS high_risk,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.emergency_contraceptive, FALSE) END
    AS emergency_contraceptive,
  CASE WHEN r.drug_code IS NULL THEN NULL
       ELSE coalesce(f.misuse_class IN ('hypnotic', 'diuretic', 'antidiabetic', 'pde5'), FALSE) END AS misuse
FROM prescriptions r
LEFT JOIN _audit_s s ON s.session_id = r.session_id
LEFT JOIN _audit_drug_flags f ON f.drug_code = r.drug_code""",
    "_audit_ec": """
CREATE OR REPLACE VIEW _audit_ec AS
SELECT e.*, s.institution_id, s.doctor_id, s.month, s.sdate, d.specialty, d.ec_training_on,
  CASE WHEN pt.birth_date IS NOT NULL AND s.sdate IS NOT NULL THEN date_sub('year', pt.birth_date, s.sdate) >= 18
       WHEN pt.birth_year IS NOT NULL AND s.sdate IS NOT NULL THEN
         CASE WHEN year(s.sdate) - pt.birth_year >= 19 THEN TRUE
              WHEN year(s.sdate) - pt.birth_year <= 17 THEN FALSE END
  END AS adult
FROM ec_cases e
LEFT JOIN _audit_s s ON s.session_id = e.session_id
LEFT JOIN doctors d ON d.doctor_id = s.doctor_id
LEFT JOIN patients pt ON pt.patient_id = s.patient_id""",
}

CHECKS_VIEW = "_audit_rule_checks"


def checks_union_sql(selects: dict[str, str], entities: dict[str, str]) -> str:
    """``CREATE VIEW _audit_rule_checks`` over the given rules (rule id → SELECT)."""
    parts = []
    for rule_id, sel in selects.items():
        parts.append(
            f"SELECT '{rule_id}' AS rule_id, '{entities[rule_id]}' AS entity, CAST(entity_id AS VARCHAR) "
            f"AS entity_id, institution_id, doctor_id, month, {STATUS_SQL} AS status\n"
            f"FROM (\n{sel}\n) q WHERE s IS NOT FALSE")
    if not parts:
        parts.append("SELECT NULL::VARCHAR AS rule_id, NULL::VARCHAR AS entity, NULL::VARCHAR AS entity_id, "
                     "NULL::VARCHAR AS institution_id, NULL::VARCHAR AS doctor_id, NULL::VARCHAR AS month, "
                     "NULL::VARCHAR AS status WHERE FALSE")
    return f"CREATE OR REPLACE VIEW {CHECKS_VIEW} AS\n" + "\nUNION ALL\n".join(parts)


def create_views(con: duckdb.DuckDBPyConnection, selects: dict[str, str], entities: dict[str, str]) -> None:
    """Create the helper views/tables and the union view of all given rules."""
    for sql in BASE_VIEWS.values():
        con.execute(sql)
    con.execute(checks_union_sql(selects, entities))


def tls_advisory_count(con: duckdb.DuckDBPyConnection) -> int:
    """Sessions on TLS 1.2 (allowed, but 1.3 is expected): the should-level advisory of security.tls."""
    return con.execute("SELECT count(*) FROM _audit_s WHERE tls_number >= 1.2 AND tls_number < 1.3 "
                       "AND tls_ok").fetchone()[0]
