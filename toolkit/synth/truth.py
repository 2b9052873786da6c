"""Ground truth of a generated data set: the rule predicates of docs/rule-semantics.md.

This is an implementation *independent* of ``toolkit/rule_sql.py``, written from
``docs/rule-semantics.md`` only. The generator evaluates it on each chunk it writes
(chunks are self-contained: a patient, its plans, prescriptions, EC cases, access log and
every session a doctor could overlap with stay in one chunk), so the ground truth lists
exactly the (rule, entity) pairs an audit implementing the semantics must report.

Input relations (DuckDB views/Arrow tables; timestamps are naive Japan wall time):
``s`` sessions, ``p`` patients, ``d`` doctors, ``i`` institutions, ``cp`` care_plans,
``rx`` prescriptions plus flag columns ``f_narcotic, f_psychotropic, f_high_risk, f_ec,
f_misuse, f_classified`` (from the generator's own Python reading of the drug master; NULL when
drug_code is NULL), ``ec`` ec_cases, ``al`` access_log.

Duties of the form "if A then B" are Kleene implications (:func:`if_then`): B recorded as done
passes even when A is unknown.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

OC, OR_, PC = "'online_care'", "'online_referral'", "'pre_consultation'"
IN_PERSON = "('switched_to_in_person', 'referred')"
SOURCES = "('chart', 'referral_letter', 'health_check', 'regional_network', 'medication_notebook', 'phr')"
OCOR = f"s.kind IN ({OC}, {OR_})"
FIRST_OC = f"(s.kind = {OC} AND s.is_first_visit)"
HIST_UNKNOWN = f"NOT (s.is_regular_doctor OR (s.prior_info_source IN {SOURCES} AND s.prior_info_recorded))"
NETWORK_MAX = 3


def if_then(a: str, b: str) -> str:
    """ "A ⇒ B" in three-valued logic: true when A is false or B is true, false when A is true and
    B false, unknown otherwise."""
    return f"CASE WHEN ({a}) IS FALSE OR ({b}) IS TRUE THEN TRUE WHEN ({a}) IS TRUE AND ({b}) IS FALSE THEN FALSE END"


OUT_TO_IN_PERSON = f"s.outcome IN {IN_PERSON}"

#: rule id → (entity, SELECT producing columns id, S, P)
SESSION_RULES: dict[str, tuple[str, str]] = {
    "consent.recorded": (OCOR, "s.consent_at <= s.started_at"),
    "consent.explicit_wish": (
        f"s.kind = {OC} OR (s.kind = {OR_} AND s.initiated_by <> 'patient')",
        "s.wish_confirmed",
    ),
    "consent.explained_first": (
        f"s.kind = {OC}",
        """CASE WHEN s.explained_at IS NULL THEN NULL
        WHEN s.explained_at <= s.consent_at THEN TRUE WHEN s.is_emergency THEN TRUE
        WHEN s.is_emergency IS NULL OR s.consent_at IS NULL THEN NULL ELSE FALSE END""",
    ),
    "judgement.each_session": (
        OCOR,
        f"""CASE WHEN s.feasibility IS NULL THEN NULL
        WHEN s.feasibility = 'appropriate' THEN TRUE WHEN s.outcome IS NULL THEN NULL
        WHEN s.outcome NOT IN {IN_PERSON} THEN FALSE WHEN s.referred_at IS NULL THEN NULL ELSE TRUE END""",
    ),
    "judgement.stop_when_insufficient": (
        OCOR,
        if_then("s.info_sufficient = FALSE", OUT_TO_IN_PERSON),
    ),
    "first_visit.unsuitable_symptom": (
        FIRST_OC,
        if_then("s.unsuitable_symptom = TRUE", OUT_TO_IN_PERSON),
    ),
    "first_visit.basis": (
        f"{FIRST_OC} AND s.care_form <> 'd_to_p_with_d' AND s.session_id NOT IN (SELECT session_id FROM ec)",
        f"""s.is_regular_doctor OR (s.prior_info_source IN {SOURCES} AND s.prior_info_recorded)
        OR (CASE WHEN pre.session_id IS NULL THEN FALSE ELSE (pre.kind = {PC}
            AND pre.patient_id = s.patient_id AND pre.ended_at <= s.started_at) END)""",
    ),
    "first_visit.emergency_in_person": (
        f"s.kind = {OC}",
        if_then("s.is_emergency = TRUE", OUT_TO_IN_PERSON),
    ),
    "care_plan.exists": (
        f"s.kind = {OC} AND NOT s.is_first_visit",
        f"""CASE
        WHEN s.care_plan_id IS NULL THEN NULL WHEN cp.care_plan_id IS NULL THEN FALSE
        WHEN cp.patient_id <> s.patient_id THEN FALSE WHEN cp.created_at > s.started_at THEN FALSE
        ELSE {if_then("s.care_form <> 'd_to_p_with_d'", "cp.in_person_assessed_at <= cp.created_at")} END""",
    ),
    "care_plan.after_first_visit": (
        f"""s.kind = {OC} AND s.is_first_visit IS NOT TRUE AND coalesce(fv.first_oc_at < s.started_at, FALSE)""",
        """EXISTS (SELECT 1 FROM cp AS c2 WHERE c2.patient_id = s.patient_id AND c2.created_at <= s.started_at
            AND (c2.deleted_at IS NULL OR c2.deleted_at > s.started_at))""",
    ),
    "care_plan.rotation_named": (
        f"s.kind = {OC} AND cp.care_plan_id IS NOT NULL",
        if_then(
            "NOT list_contains(list_transform(string_split(cp.doctors, ';'), lambda x: trim(x)), s.doctor_id)",
            "s.substitute_doctor AND s.substitute_consent",
        ),
    ),
    "recording.agreed": (
        "TRUE",
        if_then("s.recording_saved = TRUE", "s.recording_agreed = TRUE"),
    ),
    "identity.patient": (
        f"{OCOR} AND ({FIRST_OC} OR s.patient_id_method IS DISTINCT FROM 'known_in_person')",
        """CASE WHEN s.patient_id_method IS NULL THEN NULL
        WHEN s.patient_id_method IN ('photo_id', 'two_ids', 'one_id_plus_questions') THEN TRUE
        WHEN s.patient_id_method = 'none' THEN s.is_emergency ELSE FALSE END""",
    ),
    "identity.doctor": (f"{OCOR} AND s.is_first_visit", "s.doctor_id_shown"),
    "identity.qualification": (f"{OCOR} AND s.is_first_visit", "s.doctor_qualification_shown"),
    "rx.meds_confirmed": (
        f"s.kind = {OC} AND s.session_id IN (SELECT session_id FROM rx)",
        "s.meds_confirmed",
    ),
    "exam.realtime_video": (f"s.kind IN ({OC}, {OR_}, {PC})", "s.modality = 'video'"),
    "exam.one_patient_at_a_time": (
        OCOR,
        """CASE WHEN s.started_at IS NULL OR s.ended_at IS NULL THEN NULL
        ELSE NOT coalesce(ov.overlap, FALSE) END""",
    ),
    "exam.staff_consent": (
        OCOR,
        if_then("s.staff_present = TRUE", "s.staff_consent = TRUE"),
    ),
    "place.doctor_private": ("TRUE", "s.doctor_location <> 'public' AND s.doctor_location_private"),
    "place.patient_private": ("TRUE", "s.patient_location <> 'other' AND s.patient_location_private"),
    "security.third_party": (
        "TRUE",
        if_then("s.third_party_present = TRUE", "s.third_party_consent = TRUE"),
    ),
    "security.institution_initiates": ("s.platform = 'general_purpose'", "s.initiated_by = 'institution'"),
    "security.tls": ("s.tls_version IS NOT NULL", "TRY_CAST(s.tls_version AS DOUBLE) >= 1.2"),
    "training.doctor_online": (
        OCOR,
        """CASE WHEN d.doctor_id IS NULL THEN NULL
        ELSE d.online_training_on <= CAST(s.started_at AS DATE) END""",
    ),
    "evidence.chart_marked_online": (OCOR, "s.chart_marked_online"),
    "exam.access_log": (OCOR, "coalesce(alw.j_in AND alw.l_in, FALSE)"),
    "security.mfa": ("mfa_agg.session_id IS NOT NULL", "mfa_agg.all_mfa"),
    "network.stable": ("s.network_interruptions IS NOT NULL", f"s.network_interruptions <= {NETWORK_MAX}"),
}

RX_RULES: dict[str, tuple[str, str]] = {
    "rx.first_visit_narcotic_psychotropic": (
        FIRST_OC,
        "CASE WHEN rx.drug_code IS NULL THEN NULL ELSE NOT (rx.f_narcotic OR rx.f_psychotropic) END",
    ),
    "rx.first_visit_high_risk": (f"{FIRST_OC} AND {HIST_UNKNOWN}", "NOT rx.f_high_risk"),
    "rx.first_visit_max_7_days": (f"{FIRST_OC} AND {HIST_UNKNOWN}", "rx.days_supply <= 7"),
    "rx.misuse_signal": (FIRST_OC, "NOT (rx.f_psychotropic OR rx.f_misuse)"),
}

AGE = """CASE WHEN p.birth_date IS NOT NULL THEN
        CASE WHEN date_diff('year', p.birth_date, CAST(s.started_at AS DATE))
                  - CASE WHEN strftime(CAST(s.started_at AS DATE), '%m%d') < strftime(p.birth_date, '%m%d')
                         THEN 1 ELSE 0 END >= 18 THEN 'adult' ELSE 'minor' END
     WHEN p.birth_year IS NOT NULL THEN
        CASE WHEN year(s.started_at) - p.birth_year - 1 >= 18 THEN 'adult'
             WHEN year(s.started_at) - p.birth_year < 18 THEN 'minor' END
     END"""

EC_RULES: dict[str, tuple[str, str]] = {
    # OB/GYN, or EC-trained on or before the session day; no training date = no EC training on
    # record (contract v1.1). Unknown doctor or session day: the training part cannot be told.
    "ec.prescriber_qualified": (
        "TRUE",
        """d.specialty = 'obgyn' OR (CASE WHEN d.doctor_id IS NULL OR s.started_at IS NULL THEN NULL
        WHEN d.ec_training_on IS NULL THEN FALSE ELSE d.ec_training_on <= CAST(s.started_at AS DATE) END)""",
    ),
    "ec.reason_allowed": ("TRUE", "ec.reason IN ('geographic', 'psychological')"),
    # in scope: an EC line, or a line the master cannot classify (may be the tablet); the EC lines
    # decide, and with none the tablet cannot be judged
    "ec.single_tablet_outside": (
        "ecl.session_id IS NOT NULL",
        "CASE WHEN ecl.n = 0 THEN NULL WHEN ecl.n > 1 THEN FALSE ELSE ecl.one_ok END",
    ),
    "ec.witnessed_intake": (
        "ecl.session_id IS NOT NULL",
        "CASE WHEN ecl.n = 0 THEN NULL ELSE ecl.witnessed END",
    ),
    "ec.follow_up": (
        "TRUE",
        """CASE WHEN ec.follow_up_due_on IS NULL THEN NULL
        WHEN ec.follow_up_due_on < CAST(s.started_at AS DATE) + 14
          OR ec.follow_up_due_on > CAST(s.started_at AS DATE) + 28 THEN FALSE
        WHEN $as_of > ec.follow_up_due_on + 14 AND ec.follow_up_visited_on IS NULL THEN FALSE
        ELSE TRUE END""",
    ),
    "ec.assault_support": (
        "ec.assault_suspected",
        f"""ec.police_or_onestop_referred AND
        (CASE ({AGE}) WHEN 'adult' THEN TRUE WHEN 'minor' THEN ec.child_guidance_notified END)""",
    ),
    "ec.contraception_counselled": ("TRUE", "ec.contraception_counselled"),
}

PLAN_RULES: dict[str, tuple[str, str]] = {
    "care_plan.complete": (
        "cp.care_plan_id IN (SELECT care_plan_id FROM s WHERE care_plan_id IS NOT NULL)",
        """cp.has_content AND cp.has_schedule AND cp.has_hours AND cp.has_method AND cp.has_stop_conditions
        AND cp.has_cooperation AND cp.has_emergency_plan AND cp.has_doctor_names AND cp.has_security_scope""",
    ),
    "care_plan.retained": (
        "CAST(cp.created_at AS DATE) <= $as_of",
        """cp.deleted_at IS NULL
        OR CAST(cp.deleted_at AS DATE) > $as_of OR cp.deleted_at >= cp.created_at + INTERVAL 2 YEAR""",
    ),
}

DOCTOR_RULES = {
    "place.doctor_affiliated": (
        "TRUE",
        """CASE WHEN d.institution_id IS NULL THEN NULL
        WHEN i.institution_id IS NULL THEN FALSE ELSE i.contact_published END""",
    ),
}
INSTITUTION_RULES = {"place.compliance_published": ("TRUE", "i.compliance_published")}

#: derived relations, materialised once per chunk (each is used by several rules)
PREPARE = (
    """CREATE OR REPLACE TEMP TABLE mfa_agg AS SELECT session_id, bool_and(mfa) AS all_mfa
       FROM al WHERE actor = 'doctor' AND event = 'join' GROUP BY session_id""",
    """CREATE OR REPLACE TEMP TABLE alw AS
       SELECT al.session_id, bool_or(al.actor = 'doctor' AND al.event = 'join') AS j_in,
              bool_or(al.actor = 'doctor' AND al.event = 'leave') AS l_in
       FROM al JOIN s AS s3 ON s3.session_id = al.session_id
       WHERE al.at BETWEEN s3.started_at AND s3.ended_at GROUP BY al.session_id""",
    # sessions are under a day long in generated data; the two-day band keeps the join small
    """CREATE OR REPLACE TEMP TABLE ov AS
       SELECT a.session_id, TRUE AS overlap FROM s AS a JOIN s AS o ON a.doctor_id = o.doctor_id
         AND a.session_id <> o.session_id AND o.started_at < a.ended_at AND a.started_at < o.ended_at
         AND o.started_at >= a.started_at - INTERVAL 2 DAY
       GROUP BY a.session_id""",
    f"""CREATE OR REPLACE TEMP TABLE fv AS
       SELECT patient_id, min(started_at) AS first_oc_at FROM s
       WHERE kind = {OC} AND is_first_visit = TRUE GROUP BY patient_id""",
)

SESSION_FROM = """s
    LEFT JOIN s AS pre ON pre.session_id = s.preceded_by_session_id
    LEFT JOIN cp ON cp.care_plan_id = s.care_plan_id
    LEFT JOIN d ON d.doctor_id = s.doctor_id
    LEFT JOIN mfa_agg ON mfa_agg.session_id = s.session_id
    LEFT JOIN alw ON alw.session_id = s.session_id
    LEFT JOIN ov ON ov.session_id = s.session_id
    LEFT JOIN fv ON fv.patient_id = s.patient_id"""
EC_FROM = """ec
    LEFT JOIN s ON s.session_id = ec.session_id
    LEFT JOIN p ON p.patient_id = s.patient_id
    LEFT JOIN d ON d.doctor_id = s.doctor_id
    LEFT JOIN (SELECT rx.session_id, count(*) FILTER (WHERE rx.f_ec) AS n,
                      bool_and(rx.quantity = 1 AND rx.dispensing = 'outside') FILTER (WHERE rx.f_ec) AS one_ok,
                      bool_and(rx.pharmacist_trained AND rx.witnessed_intake) FILTER (WHERE rx.f_ec) AS witnessed
               FROM rx WHERE rx.f_ec OR NOT rx.f_classified GROUP BY rx.session_id) AS ecl
      ON ecl.session_id = ec.session_id
    """


def _status_sql(rule: str, entity: str, id_expr: str, scope: str, passed: str, frm: str) -> str:
    return f"""SELECT '{rule}' AS rule_id, '{entity}' AS entity, eid AS entity_id,
        CASE WHEN sc IS TRUE AND ok IS FALSE THEN 'violated' ELSE 'not_evidenced' END AS status
    FROM (SELECT {id_expr} AS eid, ({scope}) AS sc, ({passed}) AS ok FROM {frm})
    WHERE sc IS NOT FALSE AND ok IS NOT TRUE"""


def _rule_sqls(part: str) -> list[str]:
    out: list[str] = []
    if part in ("chunk", "all"):
        for rule, (scope, ok) in SESSION_RULES.items():
            out.append(_status_sql(rule, "session", "s.session_id", scope, ok, SESSION_FROM))
        for rule, (scope, ok) in RX_RULES.items():
            out.append(
                _status_sql(
                    rule,
                    "prescription",
                    "rx.rx_id",
                    scope,
                    ok,
                    "rx LEFT JOIN s ON s.session_id = rx.session_id",
                )
            )
        for rule, (scope, ok) in EC_RULES.items():
            out.append(_status_sql(rule, "ec_case", "ec.session_id", scope, ok, EC_FROM))
        for rule, (scope, ok) in PLAN_RULES.items():
            out.append(_status_sql(rule, "care_plan", "cp.care_plan_id", scope, ok, "cp"))
    if part in ("global", "all"):
        for rule, (scope, ok) in DOCTOR_RULES.items():
            out.append(
                _status_sql(
                    rule,
                    "doctor",
                    "d.doctor_id",
                    scope,
                    ok,
                    "d LEFT JOIN i ON i.institution_id = d.institution_id",
                )
            )
        for rule, (scope, ok) in INSTITUTION_RULES.items():
            out.append(_status_sql(rule, "institution", "i.institution_id", scope, ok, "i"))
    return out


ALL_RULES: tuple[str, ...] = (
    tuple(SESSION_RULES)
    + tuple(RX_RULES)
    + tuple(EC_RULES)
    + tuple(PLAN_RULES)
    + tuple(DOCTOR_RULES)
    + tuple(INSTITUTION_RULES)
)


def evaluate(con: duckdb.DuckDBPyConnection, as_of: str, part: str = "chunk") -> pa.Table:
    """Every (rule, entity) that is violated or not evidenced in the registered relations.

    ``part``: ``chunk`` (session, prescription, EC and care-plan rules over one chunk),
    ``global`` (doctor and institution rules) or ``all``. Rows are sorted.
    """
    if part in ("chunk", "all"):
        for stmt in PREPARE:
            con.execute(stmt)
    parts = [
        con.sql(
            f"SELECT * FROM ({sql}) ORDER BY entity_id".replace("$as_of", f"DATE '{as_of}'")
        ).to_arrow_table()
        for sql in _rule_sqls(part)
    ]  # one rule at a time: bounded memory
    return pa.concat_tables(parts).sort_by([("rule_id", "ascending"), ("entity_id", "ascending")])
