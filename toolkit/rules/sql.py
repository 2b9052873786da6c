"""The SQL of every rule, computed inside DuckDB as one wide check table per entity.

Each rule is a pair of SQL booleans over its entity's row — ``scope`` (S) and ``check`` (P),
either of which may be NULL — plus the named joins it needs. The status follows
docs/rule-semantics.md ("How unknown values are judged"):

    S true,  P true  → passed          S NULL, P true        → passed
    S true,  P false → violated        S NULL, P false/NULL  → not_evidenced
    S true,  P NULL  → not_evidenced   S false               → NULL (not in scope)

:func:`toolkit.rules.build.create_check_tables` builds, for each entity, ONE table ``_audit_<entity>_checks``
with one row per record and one status column per evaluable rule (:func:`column_name`). A
record is named by two integers: ``rid``, the ``rowid`` of its row in the base table, and
``sk``, the key of its stratum (institution × doctor × month, :func:`stratum_key`), whose
values :data:`STRATA_TABLE` holds. Every base table is scanned once with the joins its rules
need, which is what keeps the audit close to a hand-written single pass. The GX suites
validate the status columns of these tables; :data:`CHECKS_VIEW` is the long form (rule,
entity, entity id, stratum, status) used for violations and drill-down, which puts the ids
and strata back by joining on ``rid`` and ``sk``. (Carrying the id and stratum strings in the
check tables instead cost about 10 s at 10M sessions, most of it spent compressing and
writing those strings.) Like every ``_audit_*`` table they describe the data as it was at
the last audit.

Times are read in Japan time (``timezone('Asia/Tokyo', …)``, or :func:`japan_time`) whatever the
connection's TimeZone, and the as-of date is written into the SQL as a literal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from toolkit.rules.facts import (
    DRUG_FLAGS_SELECT,
    IN_PERSON,
    OC,
    OC_OR,
    adult,
    ec_follow_up_check,
    ec_follow_up_status,
    ec_follow_up_window,
    ec_lines_select,
    ec_prescriber_check,
    ec_prescriber_class,
    ec_tablet_scope,
    history_known,
    implies,
    japan_time,
)
from toolkit.rules.parts import WHOLE, Part

CHECKS_VIEW = "_audit_rule_checks"


@dataclass(frozen=True)
class RuleSQL:
    """Scope and check expressions of one rule, over its entity's base row and joins."""

    entity: str
    scope: str
    check: str
    joins: tuple[str, ...] = ()


STRATA_TABLE = "_audit_strata"


def stratum_key(institution_id: str, doctor_id: str, month: str) -> str:
    """SQL of a record's stratum key: a 64-bit hash of its institution, doctor and month.

    Computed where the three values are at hand, so no join is needed to number the strata;
    :func:`toolkit.rules.build.create_check_tables` refuses to go on if two strata ever share a key.
    """
    return f"hash(CAST({institution_id} AS VARCHAR), CAST({doctor_id} AS VARCHAR), CAST({month} AS VARCHAR))"


#: The key of the all-NULL stratum (a prescription or EC case whose session is unknown).
NULL_STRATUM = stratum_key("NULL", "NULL", "NULL")


@dataclass(frozen=True)
class EntityBase:
    """Where an entity's records come from: the FROM clause of its check table, the base table and
    id column that name a record, the expression of its ``rowid``, and its stratum.

    ``strata`` holds the (institution, doctor, month) expressions of an entity that has strata of
    its own (their key is :func:`stratum_key` of them, or ``stratum_key_sql`` when the FROM already
    computes it); ``None`` for prescriptions and EC cases, which take their session's stratum.
    :data:`STRATA_SQL` collects every stratum from these same expressions.
    """

    from_sql: str
    table: str
    id_column: str
    row_key: str
    strata: tuple[str, str, str] | None = None
    stratum_key_sql: str = ""
    by_session: bool = False  # its records are split into parts by session id (toolkit.rules.parts)

    @property
    def stratum_key(self) -> str:
        """SQL of the record's stratum key."""
        if self.stratum_key_sql or self.strata is None:
            return self.stratum_key_sql
        return stratum_key(*self.strata)


ENTITY_BASES: dict[str, EntityBase] = {
    "session": EntityBase(
        "_audit_s s",
        "sessions",
        "session_id",
        "s._rid",
        ("s.institution_id", "s.doctor_id", "s.month"),
        "s._sk",
        by_session=True,
    ),
    "prescription": EntityBase(
        "_audit_rx r", "prescriptions", "rx_id", "r._rid", None, "r._sk", by_session=True
    ),
    "ec_case": EntityBase("_audit_ec e", "ec_cases", "session_id", "e._rid", None, "e._sk", by_session=True),
    "care_plan": EntityBase(
        "_audit_cp cp",
        "care_plans",
        "care_plan_id",
        "cp._rid",
        ("cp.plan_institution_id", "NULL", "strftime(timezone('Asia/Tokyo', cp.created_at), '%Y-%m')"),
    ),
    "doctor": EntityBase(
        "doctors d", "doctors", "doctor_id", "d.rowid", ("d.institution_id", "d.doctor_id", "NULL")
    ),
    "institution": EntityBase(
        "institutions i", "institutions", "institution_id", "i.rowid", ("i.institution_id", "NULL", "NULL")
    ),
}

#: Named joins a rule may ask for (each yields at most one row per base row).
JOINS: dict[str, str] = {
    "f": "LEFT JOIN _audit_session_facts f ON f.rid = s._rid",
    "d": "LEFT JOIN doctors d ON d.doctor_id = s.doctor_id",
    "l": f"""LEFT JOIN ({ec_lines_select("_audit_drug_flags")}) l
              ON l.session_id = e.session_id""",
    "u": """LEFT JOIN (SELECT DISTINCT care_plan_id FROM sessions WHERE care_plan_id IS NOT NULL) u
              ON u.care_plan_id = cp.care_plan_id""",
    "i": "LEFT JOIN institutions i ON i.institution_id = d.institution_id",
}


def rules_sql(as_of: dt.date, network_threshold: int = 3) -> dict[str, RuleSQL]:
    """Scope/check SQL of every rule id (see docs/rule-semantics.md)."""
    as_of_sql = f"DATE '{as_of.isoformat()}'"
    S = "session"  # noqa: N806
    return {
        "consent.recorded": RuleSQL(S, f"s.kind IN {OC_OR}", "s.consent_at <= s.started_at"),
        "consent.explicit_wish": RuleSQL(
            S,
            f"s.kind = {OC} OR (s.kind = 'online_referral' AND NOT (s.initiated_by = 'patient'))",
            "s.wish_confirmed",
        ),
        "consent.explained_first": RuleSQL(
            S,
            f"s.kind = {OC}",
            """CASE WHEN s.explained_at IS NULL THEN NULL
                    WHEN s.explained_at <= s.consent_at THEN TRUE
                    WHEN s.is_emergency THEN TRUE
                    WHEN s.is_emergency IS NULL OR s.consent_at IS NULL THEN NULL
                    ELSE FALSE END""",
        ),
        "judgement.each_session": RuleSQL(
            S,
            f"s.kind IN {OC_OR}",
            """CASE WHEN s.feasibility IS NULL THEN NULL
                    WHEN s.feasibility = 'appropriate' THEN TRUE
                    WHEN s.outcome IS NULL THEN NULL
                    WHEN NOT s.in_person THEN FALSE
                    WHEN s.referred_at IS NULL THEN NULL
                    ELSE TRUE END""",
        ),
        "judgement.stop_when_insufficient": RuleSQL(
            S,
            f"s.kind IN {OC_OR}",
            implies("NOT s.info_sufficient", "s.in_person"),
        ),
        "first_visit.unsuitable_symptom": RuleSQL(
            S,
            f"s.kind = {OC} AND s.is_first_visit",
            implies("s.unsuitable_symptom", "s.in_person"),
        ),
        "first_visit.basis": RuleSQL(
            S,
            f"s.kind = {OC} AND s.is_first_visit AND s.care_form <> 'd_to_p_with_d' AND NOT f.is_ec",
            f"{history_known('s')} OR f.pc_ok",
            ("f",),
        ),
        "first_visit.emergency_in_person": RuleSQL(
            S,
            f"s.kind = {OC}",
            implies("s.is_emergency", "s.in_person"),
        ),
        "care_plan.exists": RuleSQL(
            S,
            f"s.kind = {OC} AND NOT s.is_first_visit",
            """CASE WHEN s.care_plan_id IS NULL THEN NULL
                    WHEN NOT f.cp_in THEN FALSE
                    WHEN f.cp_same_patient IS NULL THEN NULL
                    WHEN NOT f.cp_same_patient THEN FALSE
                    WHEN f.cp_late IS NULL THEN NULL
                    WHEN f.cp_late THEN FALSE
                    ELSE s.care_form = 'd_to_p_with_d' OR f.cp_assessed_ok END""",
            ("f",),
        ),
        "care_plan.after_first_visit": RuleSQL(
            S,
            f"s.kind = {OC} AND s.is_first_visit IS DISTINCT FROM TRUE AND f.after_first_visit",
            "coalesce(f.has_plan, FALSE)",
            ("f",),
        ),
        "care_plan.rotation_named": RuleSQL(
            S,
            f"s.kind = {OC} AND f.cp_in",
            implies("NOT f.cp_named", "s.substitute_doctor AND s.substitute_consent"),
            ("f",),
        ),
        "recording.agreed": RuleSQL(
            S,
            "TRUE",
            implies("s.recording_saved", "s.recording_agreed"),
        ),
        "identity.patient": RuleSQL(
            S,
            f"s.kind IN {OC_OR} AND ((s.kind = {OC} AND s.is_first_visit) "
            "OR s.patient_id_method IS DISTINCT FROM 'known_in_person')",
            """CASE WHEN s.patient_id_method IS NULL THEN NULL
                    WHEN s.patient_id_method IN ('photo_id', 'two_ids', 'one_id_plus_questions') THEN TRUE
                    WHEN s.patient_id_method = 'none' THEN s.is_emergency
                    ELSE FALSE END""",
        ),
        "identity.doctor": RuleSQL(S, f"s.kind IN {OC_OR} AND s.is_first_visit", "s.doctor_id_shown"),
        "identity.qualification": RuleSQL(
            S, f"s.kind IN {OC_OR} AND s.is_first_visit", "s.doctor_qualification_shown"
        ),
        "rx.first_visit_narcotic_psychotropic": RuleSQL(
            "prescription", f"r.kind = {OC} AND r.is_first_visit", "NOT (r.narcotic OR r.psychotropic)"
        ),
        "rx.first_visit_high_risk": RuleSQL(
            "prescription", f"r.kind = {OC} AND r.is_first_visit AND NOT r.history_known", "NOT r.high_risk"
        ),
        "rx.first_visit_max_7_days": RuleSQL(
            "prescription",
            f"r.kind = {OC} AND r.is_first_visit AND NOT r.history_known",
            "r.days_supply <= 7",
        ),
        "rx.meds_confirmed": RuleSQL(S, f"s.kind = {OC} AND f.has_rx", "s.meds_confirmed", ("f",)),
        "exam.realtime_video": RuleSQL(
            S, "s.kind IN ('online_care', 'online_referral', 'pre_consultation')", "s.modality = 'video'"
        ),
        "exam.one_patient_at_a_time": RuleSQL(
            S, f"s.kind IN {OC_OR}", "CASE WHEN NOT f.ov_in THEN NULL ELSE NOT f.overlap END", ("f",)
        ),
        "exam.staff_consent": RuleSQL(
            S,
            f"s.kind IN {OC_OR}",
            implies("s.staff_present", "s.staff_consent"),
        ),
        "place.doctor_private": RuleSQL(
            S, "TRUE", "s.doctor_location <> 'public' AND s.doctor_location_private"
        ),
        "place.doctor_affiliated": RuleSQL(
            "doctor",
            "TRUE",
            "CASE WHEN d.institution_id IS NULL THEN NULL WHEN i.institution_id IS NULL THEN FALSE "
            "ELSE i.contact_published END",
            ("i",),
        ),
        "place.compliance_published": RuleSQL("institution", "TRUE", "i.compliance_published"),
        "place.patient_private": RuleSQL(
            S, "TRUE", "s.patient_location <> 'other' AND s.patient_location_private"
        ),
        "security.third_party": RuleSQL(
            S,
            "TRUE",
            implies("s.third_party_present", "s.third_party_consent"),
        ),
        "security.institution_initiates": RuleSQL(
            S, "s.platform = 'general_purpose'", "s.initiated_by = 'institution'"
        ),
        "security.tls": RuleSQL(S, "s.tls_version IS NOT NULL", "s.tls_ok"),
        "training.doctor_online": RuleSQL(
            S,
            f"s.kind IN {OC_OR}",
            "CASE WHEN d.doctor_id IS NULL THEN NULL ELSE d.online_training_on <= s.sdate END",
            ("d",),
        ),
        "ec.prescriber_qualified": RuleSQL("ec_case", "TRUE", ec_prescriber_check("e.prescriber_class")),
        "ec.reason_allowed": RuleSQL("ec_case", "TRUE", "e.reason IN ('geographic', 'psychological')"),
        "ec.single_tablet_outside": RuleSQL(
            "ec_case",
            ec_tablet_scope("l"),
            "CASE WHEN l.n_lines > 1 THEN FALSE ELSE l.single_outside END",
            ("l",),
        ),
        "ec.witnessed_intake": RuleSQL("ec_case", ec_tablet_scope("l"), "l.witnessed", ("l",)),
        "ec.follow_up": RuleSQL(
            "ec_case",
            "TRUE",
            ec_follow_up_check(
                "e.follow_up_window",
                ec_follow_up_status("e.follow_up_due_on", "e.follow_up_visited_on", as_of_sql),
            ),
        ),
        "ec.assault_support": RuleSQL(
            "ec_case",
            "e.assault_suspected",
            "e.police_or_onestop_referred AND (e.adult OR e.child_guidance_notified)",
        ),
        "ec.contraception_counselled": RuleSQL("ec_case", "TRUE", "e.contraception_counselled"),
        "care_plan.complete": RuleSQL(
            "care_plan",
            "u.care_plan_id IS NOT NULL",
            """cp.has_content AND cp.has_schedule AND cp.has_hours AND cp.has_method AND cp.has_stop_conditions
               AND cp.has_cooperation AND cp.has_emergency_plan AND cp.has_doctor_names
               AND cp.has_security_scope""",
            ("u",),
        ),
        "care_plan.retained": RuleSQL(
            "care_plan",
            f"CAST(timezone('Asia/Tokyo', cp.created_at) AS DATE) <= {as_of_sql}",
            f"""cp.deleted_at IS NULL
                OR CAST(timezone('Asia/Tokyo', cp.deleted_at) AS DATE) > {as_of_sql}
                OR cp.deleted_at >= cp.created_at + INTERVAL 2 YEAR""",
        ),
        "evidence.chart_marked_online": RuleSQL(S, f"s.kind IN {OC_OR}", "s.chart_marked_online"),
        "security.mfa": RuleSQL(S, "f.mf_in", "f.all_mfa", ("f",)),
        "exam.access_log": RuleSQL(
            S,
            f"s.kind IN {OC_OR}",
            "CASE WHEN s.started_at IS NULL OR s.ended_at IS NULL THEN NULL ELSE f.al_ok END",
            ("f",),
        ),
        "rx.misuse_signal": RuleSQL(
            "prescription", f"r.kind = {OC} AND r.is_first_visit", "NOT (r.psychotropic OR r.misuse)"
        ),
        "network.stable": RuleSQL(
            S, "s.network_interruptions IS NOT NULL", f"s.network_interruptions <= {int(network_threshold)}"
        ),
    }


def base_views(part: Part = WHOLE) -> dict[str, str]:
    """The helper views (and the drug-flag table) the check tables read; the session-keyed ones
    (:data:`PART_VIEWS`) hold the records of ``part`` only."""
    return {
        # Drug classification per distinct code: exact match wins, else the longest prefix.
        "_audit_drug_flags": "CREATE OR REPLACE TABLE _audit_drug_flags AS\n" + DRUG_FLAGS_SELECT,
        "_audit_s": f"""
CREATE OR REPLACE VIEW _audit_s AS
SELECT t.*,
  CASE WHEN t.tls_version IS NULL THEN NULL
       WHEN lower(t.tls_version) LIKE '%ssl%' THEN FALSE
       ELSE t.tls_number >= 1.2 END AS tls_ok,
  {stratum_key("t.institution_id", "t.doctor_id", "t.month")} AS _sk
FROM (
  SELECT s.*, s.rowid AS _rid,
    CAST({japan_time("s.started_at")} AS DATE) AS sdate,
    strftime({japan_time("s.started_at")}, '%Y-%m') AS month,
    s.outcome IN {IN_PERSON} AS in_person,
    {history_known("s")} AS history_known,
    TRY_CAST(regexp_extract(s.tls_version, '([0-9]+(\\.[0-9]+)?)', 1) AS DECIMAL(6,2)) AS tls_number
  FROM sessions s WHERE {part.of("s.session_id")}) t""",
        "_audit_rx": f"""
CREATE OR REPLACE VIEW _audit_rx AS
SELECT r.rowid AS _rid, coalesce(s._sk, {NULL_STRATUM}) AS _sk, r.rx_id, r.session_id, r.drug_code,
  r.quantity, r.days_supply, r.dispensing, r.pharmacist_trained, r.witnessed_intake,
  s.kind, s.is_first_visit, s.history_known,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.narcotic, FALSE) END AS narcotic,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.psychotropic, FALSE) END AS psychotropic,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.high_risk, FALSE) END AS high_risk,
  CASE WHEN r.drug_code IS NULL THEN NULL ELSE coalesce(f.emergency_contraceptive, FALSE) END
    AS emergency_contraceptive,
  CASE WHEN r.drug_code IS NULL THEN NULL
       ELSE coalesce(f.misuse_class IN ('hypnotic', 'diuretic', 'antidiabetic', 'pde5'), FALSE) END AS misuse
FROM prescriptions r
LEFT JOIN _audit_s s ON s.session_id = r.session_id
LEFT JOIN _audit_drug_flags f ON f.drug_code = r.drug_code
WHERE {part.of("r.session_id")}""",
        # A care plan's institution is that of the sessions following it (the one with most of them,
        # ties by id): plans have no institution column, and a plan no session uses stays unknown.
        "_audit_cp": """
CREATE OR REPLACE VIEW _audit_cp AS
SELECT cp.*, cp.rowid AS _rid, pi.institution_id AS plan_institution_id
FROM care_plans cp
LEFT JOIN (
  SELECT care_plan_id, institution_id FROM (
    SELECT care_plan_id, institution_id, count(*) AS n FROM sessions
    WHERE care_plan_id IS NOT NULL AND institution_id IS NOT NULL GROUP BY ALL)
  QUALIFY row_number() OVER (PARTITION BY care_plan_id ORDER BY n DESC, institution_id) = 1
) pi ON pi.care_plan_id = cp.care_plan_id""",
        "_audit_ec": f"""
CREATE OR REPLACE VIEW _audit_ec AS
SELECT e.*, e.rowid AS _rid, coalesce(s._sk, {NULL_STRATUM}) AS _sk, s.sdate, d.specialty, d.ec_training_on,
  {ec_prescriber_class("d.doctor_id", "d.specialty", "d.ec_training_on", "s.sdate")} AS prescriber_class,
  {ec_follow_up_window("e.follow_up_due_on", "s.sdate")} AS follow_up_window,
  {adult("pt.birth_date", "pt.birth_year", "s.sdate")} AS adult
FROM ec_cases e
LEFT JOIN _audit_s s ON s.session_id = e.session_id
LEFT JOIN doctors d ON d.doctor_id = s.doctor_id
LEFT JOIN patients pt ON pt.patient_id = s.patient_id
WHERE {part.of("e.session_id")}""",
    }


#: The base views of the whole data.
BASE_VIEWS = base_views(WHOLE)
#: The base views that hold one part's records (the others do not depend on the part).
PART_VIEWS = ("_audit_s", "_audit_rx", "_audit_ec")


#: Every stratum (institution × doctor × month) any entity can have, with its key, from the
#: same expressions the check tables use (:data:`ENTITY_BASES`). Prescriptions and EC cases take
#: their session's stratum, or the all-NULL one.
STRATA_SQL = (
    f"CREATE OR REPLACE TABLE {STRATA_TABLE} AS\n"
    f"SELECT {NULL_STRATUM} AS sk, NULL::VARCHAR AS institution_id, NULL::VARCHAR AS doctor_id, "
    "NULL::VARCHAR AS month\n"
    + "\n".join(
        f"UNION SELECT {b.stratum_key}, {', '.join(b.strata)} FROM {b.from_sql}"
        for b in ENTITY_BASES.values()
        if b.strata is not None
    )
)


def column_name(rule_id: str) -> str:
    """The status column of a rule in its entity's check table (``consent.recorded`` → ``consent__recorded``)."""
    return rule_id.replace(".", "__")


def check_table(entity: str) -> str:
    """Name of an entity's check table."""
    return f"_audit_{entity}_checks"


#: Type of the status columns: a one-byte ENUM, so a 10M-row check table stays small in memory.
STATUS_TYPE = "ENUM('passed', 'violated', 'not_evidenced')"


def status_sql(s: str, p: str) -> str:
    """The status of one record from its scope and check columns (NULL when out of scope).

    Equivalent to the table in the module docstring; the branches are typed ENUM constants, so
    nothing is cast per row."""
    passed, violated, not_evidenced = (
        f"'{v}'::{STATUS_TYPE}" for v in ("passed", "violated", "not_evidenced")
    )
    return (
        f"CASE WHEN {s} IS FALSE THEN NULL WHEN {p} THEN {passed} "
        f"WHEN {s} AND {p} IS FALSE THEN {violated} ELSE {not_evidenced} END"
    )


def check_table_sql(entity: str, rules: dict[str, RuleSQL], append: bool = False) -> str:
    """``CREATE TABLE`` of one entity's wide check table over the given rules of that entity, or
    with ``append`` the ``INSERT`` of more records into it (the next part's).

    The inner SELECT evaluates each rule's scope and check once (``s_k``, ``p_k``); the outer
    one turns them into status columns. The record is named by ``rid`` and ``sk`` only.
    """
    base = ENTITY_BASES[entity]
    joins: list[str] = []
    for r in rules.values():
        for j in r.joins:
            if j not in joins:
                joins.append(j)
    inner = ",\n    ".join(
        f"({r.scope}) AS s_{k}, ({r.check}) AS p_{k}" for k, r in enumerate(rules.values())
    )
    outer = ",\n  ".join(
        f'{status_sql(f"s_{k}", f"p_{k}")} AS "{column_name(rid)}"' for k, rid in enumerate(rules)
    )
    join_sql = "\n".join(JOINS[j] for j in joins)
    names = ", ".join(f'"{column_name(rid)}"' for rid in rules)
    head = (
        f"INSERT INTO {check_table(entity)} (rid, sk, {names})"
        if append
        else f"CREATE OR REPLACE TABLE {check_table(entity)} AS"
    )
    return (
        f"{head}\n"
        f"SELECT rid, sk,\n  {outer}\n"
        f"FROM (SELECT CAST({base.row_key} AS BIGINT) AS rid, {base.stratum_key} AS sk,\n"
        f"    {inner}\n"
        f"  FROM {base.from_sql}\n{join_sql}) q"
    )


def _unpivot_sql(entity: str, rule_ids: list[str], findings_only: bool, in_range: str) -> str:
    """One row per rule × in-scope record of an entity: (rule_id, rid, sk, status); only records
    not passed with ``findings_only``, only records meeting ``in_range`` (SQL over ``rid``)."""
    selects = []
    for rule_id in rule_ids:
        col = f'"{column_name(rule_id)}"'
        keep = f"{col} <> 'passed'" if findings_only else f"{col} IS NOT NULL"
        selects.append(
            f"SELECT '{rule_id}' AS rule_id, rid, sk, {col} AS status "
            f"FROM {check_table(entity)} WHERE {keep} AND {in_range}"
        )
    return "\n  UNION ALL ".join(selects)


def entity_checks_sql(
    entity: str, rule_ids: list[str], findings_only: bool = False, rids: tuple[int, int] | None = None
) -> str:
    """The long form of one entity's check table: (rule_id, entity, entity_id, institution_id,
    doctor_id, month, status) of its in-scope records — only those not passed with
    ``findings_only``, and with ``rids = (lo, hi)`` only those whose ``rowid`` lies in [lo, hi).

    The status columns are unpivoted first and then joined ONCE to the base table (on ``rowid``,
    for the id) and to :data:`STRATA_TABLE` (on ``sk``); both filters are applied in the unpivot,
    so only the records kept are joined, and a rowid range bounds the join's memory.
    """
    base = ENTITY_BASES[entity]
    in_range, rows = "TRUE", ""
    if rids is not None:
        in_range = f"rid >= {int(rids[0])} AND rid < {int(rids[1])}"
        rows = f" WHERE rowid >= {int(rids[0])} AND rowid < {int(rids[1])}"
    return f"""SELECT u.rule_id, '{entity}' AS entity, CAST(b.{base.id_column} AS VARCHAR) AS entity_id,
  k.institution_id, k.doctor_id, k.month, u.status
FROM ({_unpivot_sql(entity, rule_ids, findings_only, in_range)}) u
JOIN (SELECT rowid AS rid, {base.id_column} FROM {base.table}{rows}) b ON b.rid = u.rid
JOIN {STRATA_TABLE} k ON k.sk = u.sk"""


def checks_view_sql(rule_entities: dict[str, str]) -> str:
    """``CREATE VIEW _audit_rule_checks``: the long form (rule_id, entity, entity_id, strata,
    status) of every check table (:func:`entity_checks_sql`), for drill-down."""
    parts = []
    for entity in ENTITY_BASES:
        mine = [rid for rid, ent in rule_entities.items() if ent == entity]
        if mine:
            parts.append(entity_checks_sql(entity, mine))
    if not parts:
        parts = [
            "SELECT NULL::VARCHAR AS rule_id, NULL::VARCHAR AS entity, NULL::VARCHAR AS entity_id, "
            "NULL::VARCHAR AS institution_id, NULL::VARCHAR AS doctor_id, NULL::VARCHAR AS month, "
            "NULL::VARCHAR AS status WHERE FALSE"
        ]
    return f"CREATE OR REPLACE VIEW {CHECKS_VIEW} AS\n" + "\nUNION ALL\n".join(parts)


#: Rules aggregated by one strata INSERT (:func:`strata_insert_sql`). All 29 session rules in one
#: GROUP BY hold 87 sums per stratum in one hash table: under a third of the memory cap (10M
#: sessions under 467 MB, as 30M sessions are under 1400 MB) it spilled and took 28.4 s; in chunks
#: of 10 rules, 8.5 s; with the whole cap, 6.7 s either way (5 rules: 8.3 s, a scan too many).
STRATA_RULES_PER_STATEMENT = 10


def strata_rule_chunks(rule_ids: list[str]) -> list[list[str]]:
    """``rule_ids`` in chunks of :data:`STRATA_RULES_PER_STATEMENT`, one strata INSERT each."""
    k = STRATA_RULES_PER_STATEMENT
    return [rule_ids[i : i + k] for i in range(0, len(rule_ids), k)]


def strata_insert_sql(entity: str, rule_ids: list[str]) -> str:
    """``INSERT INTO rule_results_strata`` for one entity: one GROUP BY ``sk`` over its check table
    (an aggregate column per rule; ``count_if`` is cheaper than ``count(*) FILTER`` here), unpivoted
    into one row per rule and stratum and named by :data:`STRATA_TABLE`. The run id is the single
    parameter."""
    aggs = ",\n    ".join(
        f'count("{column_name(r)}") AS d{k}, count_if("{column_name(r)}" = \'violated\') AS v{k}, '
        f"count_if(\"{column_name(r)}\" = 'not_evidenced') AS n{k}"
        for k, r in enumerate(rule_ids)
    )
    rows = "\n  UNION ALL ".join(
        f"SELECT '{r}' AS rule_id, sk, d{k} AS d, v{k} AS v, n{k} AS n FROM g WHERE d{k} > 0"
        for k, r in enumerate(rule_ids)
    )
    return (
        f"INSERT INTO rule_results_strata\nWITH g AS (\n  SELECT sk,\n    {aggs}\n"
        f"  FROM {check_table(entity)} GROUP BY sk)\n"
        f"SELECT ?, u.rule_id, k.institution_id, k.doctor_id, k.month, u.d, u.v, u.n FROM (\n  {rows}) u\n"
        f"JOIN {STRATA_TABLE} k ON k.sk = u.sk"
    )
