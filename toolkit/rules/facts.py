"""SQL facts shared by the rules and the survey: each fact of a rule's meaning written once.

The audit's check tables (:mod:`toolkit.rules.sql`) and the EC survey's counts
(:mod:`toolkit.survey.counts`) both build their queries from these fragments, so a window, a
scope or a drug class cannot drift apart between them:

* :data:`DRUG_FLAGS_SELECT`: drug classification per code (exact code wins, else the longest prefix);
* :func:`history_known`: the doctor knows the patient's history (regular doctor or recorded prior info);
* :func:`implies`: an "A ⇒ B" duty in Kleene logic (``NOT A OR B``);
* :func:`ec_lines_select`: an EC case's tablet lines (count, quantity, dispensing, pharmacist, intake)
  and its lines the drug master does not classify (:func:`ec_tablet_scope`, :func:`ec_tablet_unclassified`);
* :func:`ec_prescriber_class`, :func:`ec_follow_up_window`, :func:`ec_follow_up_status`,
  :func:`adult`: the categories the EC rules are judged on and the survey tables count;
* :data:`SESSION_FACTS_STEPS`: per-session facts from other tables (access log, plans, overlap).
"""

from __future__ import annotations

from toolkit.rules.parts import WHOLE, Part, parts

IN_PERSON = "('switched_to_in_person', 'referred')"
PRIOR_SOURCES = (
    "('chart', 'referral_letter', 'health_check', 'regional_network', 'medication_notebook', 'phr')"
)
OC = "'online_care'"
OC_OR = "('online_care', 'online_referral')"


def and3(expr: str, among: str = "TRUE") -> str:
    """Three-valued AND over the rows of a group that meet ``among``: false if any false, NULL if
    any NULL, NULL if there are no such rows (nothing to judge), else true."""
    return (
        f"CASE WHEN count(*) FILTER (WHERE ({among}) AND ({expr}) IS FALSE) > 0 THEN FALSE "
        f"WHEN count(*) FILTER (WHERE ({among}) AND ({expr}) IS NULL) > 0 THEN NULL "
        f"WHEN count(*) FILTER (WHERE {among}) = 0 THEN NULL ELSE TRUE END"
    )


def implies(trigger: str, duty: str) -> str:
    """SQL of the duty "``trigger`` ⇒ ``duty``" in Kleene (SQL three-valued) logic: ``NOT trigger OR duty``.

    No trigger → true; duty done → true, even when the trigger is unknown; trigger true (or
    unknown) and duty not done → false (or NULL); either unknown otherwise → NULL.
    """
    return f"(NOT ({trigger}) OR ({duty}))"


def japan_time(ts: str) -> str:
    """SQL of a TIMESTAMPTZ as Japan's wall-clock TIMESTAMP, equal to ``timezone('Asia/Tokyo', ts)``.

    Japan has kept UTC+9 without summer time since 1952, so from then on this is integer
    arithmetic instead of a time-zone lookup per row (0.35 s less per 10M sessions); earlier
    instants still go through ``timezone``.
    """
    return (
        f"CASE WHEN {ts} >= TIMESTAMPTZ '1952-01-01 00:00:00+00' "
        f"THEN make_timestamp(epoch_us({ts}) + 32400000000) ELSE timezone('Asia/Tokyo', {ts}) END"
    )


#: Drug classification per distinct prescribed code: exact match wins, else the longest prefix.
DRUG_FLAGS_SELECT = """WITH codes AS (SELECT DISTINCT drug_code FROM prescriptions WHERE drug_code IS NOT NULL),
m AS (
  SELECT c.drug_code, dm.narcotic, dm.psychotropic, dm.high_risk, dm.emergency_contraceptive,
         dm.misuse_class,
         row_number() OVER (PARTITION BY c.drug_code ORDER BY length(dm.drug_code) DESC) AS rn
  FROM codes c JOIN drug_master dm ON starts_with(c.drug_code, dm.drug_code))
SELECT drug_code, narcotic, psychotropic, high_risk, emergency_contraceptive, misuse_class
FROM m WHERE rn = 1"""


def history_known(s: str) -> str:
    """SQL: the session ``s`` is with the regular doctor, or prior information was recorded."""
    return (
        f"({s}.is_regular_doctor OR ({s}.prior_info_source IN {PRIOR_SOURCES} AND {s}.prior_info_recorded))"
    )


def ec_lines_select(drug_flags: str) -> str:
    """SELECT of one row per session with EC tablet lines (drug flagged EC in ``drug_flags``) or
    with lines whose drug the master does not classify.

    ``n_lines`` (EC lines), ``n_unclassified`` (lines with a ``drug_code`` that no drug-master code
    is a prefix of, so it is absent from ``drug_flags``: it may be an EC tablet), ``min_q``
    (smallest quantity of the EC lines), and three-valued ANDs over the EC lines (NULL when there
    are none): ``single_outside`` (quantity 1 and outside pharmacy), ``witnessed`` (trained
    pharmacist and witnessed intake), and the parts ``outside``, ``pharmacist_trained``,
    ``witnessed_intake``.
    """
    ec = "df.emergency_contraceptive IS TRUE"
    return f"""SELECT r.session_id, count(*) FILTER (WHERE {ec}) AS n_lines,
                count(*) FILTER (WHERE df.drug_code IS NULL) AS n_unclassified,
                min(r.quantity) FILTER (WHERE {ec}) AS min_q,
                {and3("r.quantity = 1 AND r.dispensing = 'outside'", ec)} AS single_outside,
                {and3("r.pharmacist_trained AND r.witnessed_intake", ec)} AS witnessed,
                {and3("r.dispensing = 'outside'", ec)} AS outside,
                {and3("r.pharmacist_trained", ec)} AS pharmacist_trained,
                {and3("r.witnessed_intake", ec)} AS witnessed_intake
              FROM prescriptions r LEFT JOIN {drug_flags} df ON df.drug_code = r.drug_code
              WHERE r.drug_code IS NOT NULL AND ({ec} OR df.drug_code IS NULL)
              GROUP BY r.session_id"""


def ec_tablet_scope(lines: str) -> str:
    """SQL: the EC case (joined to its :func:`ec_lines_select` row ``lines``) is in scope of the
    tablet rules: it has an EC line, or a line the drug master does not classify."""
    return f"(coalesce({lines}.n_lines, 0) >= 1 OR coalesce({lines}.n_unclassified, 0) >= 1)"


def ec_tablet_unclassified(lines: str) -> str:
    """SQL: the EC case has no EC line, only lines the drug master does not classify (its tablet
    cannot be told: the tablet rules are not evidenced, and ``dq.ec_unclassified_drug`` counts it).
    A case with an EC line is judged on its EC lines, whatever else it has."""
    return f"(coalesce({lines}.n_lines, 0) = 0 AND coalesce({lines}.n_unclassified, 0) >= 1)"


def adult(birth_date: str, birth_year: str, on: str) -> str:
    """SQL three-valued: the patient is 18 or over on ``on`` (NULL when it cannot be told).

    From the birth date exactly; from the birth year alone, TRUE from 19 years' difference,
    FALSE up to 17, NULL at 18 (either side of the birthday).
    """
    return f"""CASE WHEN {birth_date} IS NOT NULL AND {on} IS NOT NULL THEN date_sub('year', {birth_date}, {on}) >= 18
       WHEN {birth_year} IS NOT NULL AND {on} IS NOT NULL THEN
         CASE WHEN year({on}) - {birth_year} >= 19 THEN TRUE
              WHEN year({on}) - {birth_year} <= 17 THEN FALSE END
  END"""


#: Prescriber classes of an EC case, and the rule's reading of them (ec.prescriber_qualified):
#: ``unknown`` is the only class that is neither (not evidenced).
EC_PRESCRIBER_QUALIFIED = ("obgyn", "trained")
EC_PRESCRIBER_UNQUALIFIED = ("untrained", "not_recorded")


def ec_prescriber_class(doctor_found: str, specialty: str, ec_training_on: str, sdate: str) -> str:
    """SQL: ``obgyn``, ``trained`` (EC training on or before the session day), ``unknown`` (doctor,
    specialty or session day unknown), ``not_recorded`` (not OB/GYN and no EC training date: the
    date is the only record of the training, so no EC training on record — data contract v1.1) or
    ``untrained`` (trained only after the session). ``not_recorded`` and ``untrained`` violate
    ec.prescriber_qualified."""
    return f"""CASE WHEN {specialty} = 'obgyn' THEN 'obgyn'
     WHEN {ec_training_on} <= {sdate} THEN 'trained'
     WHEN {doctor_found} IS NULL OR {specialty} IS NULL OR {sdate} IS NULL THEN 'unknown'
     WHEN {ec_training_on} IS NULL THEN 'not_recorded'
     ELSE 'untrained' END"""


def ec_prescriber_check(prescriber_class: str) -> str:
    """SQL three-valued check of ec.prescriber_qualified from the prescriber class."""
    ok = ", ".join(f"'{c}'" for c in EC_PRESCRIBER_QUALIFIED)
    bad = ", ".join(f"'{c}'" for c in EC_PRESCRIBER_UNQUALIFIED)
    return (
        f"CASE WHEN {prescriber_class} IN ({ok}) THEN TRUE WHEN {prescriber_class} IN ({bad}) THEN FALSE END"
    )


#: The follow-up visit must be booked this many days after the EC session (about three weeks).
EC_FOLLOW_UP_DAYS = (14, 28)
#: A booked follow-up counts as overdue this many days after its due date with no visit recorded.
EC_FOLLOW_UP_GRACE_DAYS = 14


def ec_follow_up_window(due: str, sdate: str) -> str:
    """SQL: ``window_in`` / ``window_out`` (due date 14–28 days after the session) / ``window_unknown``."""
    lo, hi = EC_FOLLOW_UP_DAYS
    return f"""CASE WHEN {due} IS NULL OR {sdate} IS NULL THEN 'window_unknown'
     WHEN {due} < {sdate} + {lo} OR {due} > {sdate} + {hi} THEN 'window_out' ELSE 'window_in' END"""


def ec_follow_up_status(due: str, visited: str, as_of: str) -> str:
    """SQL: ``completed`` (visit recorded) / ``status_unknown`` (no due date) / ``overdue`` (grace
    period past ``as_of`` with no visit) / ``pending``."""
    return f"""CASE WHEN {visited} IS NOT NULL THEN 'completed'
     WHEN {due} IS NULL THEN 'status_unknown'
     WHEN {as_of} > {due} + {EC_FOLLOW_UP_GRACE_DAYS} THEN 'overdue' ELSE 'pending' END"""


def ec_follow_up_check(window: str, status: str) -> str:
    """SQL three-valued check of ec.follow_up from its window and status."""
    return f"""CASE WHEN {window} = 'window_unknown' THEN NULL WHEN {window} = 'window_out' THEN FALSE
     ELSE {status} <> 'overdue' END"""


#: Facts about each session drawn from other tables, as booleans keyed by the session's
#: ``rowid`` (``rid``), built in two narrow TEMP tables that each scan ``sessions`` once with
#: the joins they need, and read through the view ``_audit_session_facts`` (one row per
#: session). Every comparison with the session's own columns is made here, so the facts hold
#: no strings or times: the session check table then needs one integer-keyed join with a small
#: build side. Per-session aggregates are grouped and joined by ``rowid`` rather than the
#: string ``session_id``. (Carrying every session column through seven string-keyed hash joins
#: spilled under the memory cap: 112 s at 10M sessions; carrying the ids and times through
#: three materialised steps took 21.5 s, and these two take 16.5 s in the same conditions.)
#: They are built for one :class:`~toolkit.rules.parts.Part` of the sessions at a time
#: (:func:`session_facts_steps`); what crosses parts — a patient's first online visit, a
#: doctor's overlapping sessions — is built once before (:func:`session_facts_shared`). Columns:
#:
#: * ``is_ec`` / ``has_rx``: the session has an EC case / a prescription line;
#: * ``mf_in``, ``all_mfa``: the doctor's join events exist / all used MFA (three-valued; TRUE
#:   when there are none);
#: * ``al_ok``: a doctor join AND a doctor leave event lie within [started_at, ended_at];
#: * ``pc_ok``: the preceding session is the same patient's pre-consultation, ended before;
#: * ``cp_in``: the named care plan exists; ``cp_same_patient``: it is the session's patient's;
#:   ``cp_late``: it was created after the session started; ``cp_assessed_ok``: the in-person
#:   assessment came no later than its creation; ``cp_named``: it names the session's doctor
#:   (each NULL where a value it compares is unknown: no doctor list, or no session doctor);
#: * ``has_plan``: a care plan of the patient existed (created, not deleted) at the start;
#: * ``after_first_visit``: the patient has an online first visit that started before this session;
#: * ``ov_in``, ``overlap``: timed session with a doctor / it overlaps another of theirs.
SESSION_FACTS_VIEW = (
    "CREATE OR REPLACE TEMP VIEW _audit_session_facts AS SELECT * FROM _audit_sf1 JOIN _audit_sf2 USING (rid)"
)


def timed_with_doctor(s: str = "") -> str:
    """SQL: the session (alias ``s``, or none) can be judged for overlap: it has a doctor, a start,
    and an end after the start."""
    p = f"{s}." if s else ""
    return f"{p}started_at IS NOT NULL AND {p}ended_at > {p}started_at AND {p}doctor_id IS NOT NULL"


def session_facts_shared(n_parts: int) -> tuple[str, ...]:
    """The facts that cross parts, built once: ``_audit_fv`` (each patient's first online first
    visit) and ``_audit_ov`` (the rowids of the timed sessions that overlap another session of
    the same doctor), the latter doctor by doctor in ``n_parts`` slices."""
    # sorted by (doctor, start): a session overlaps a later one iff the NEXT session starts before
    # it ends, and an earlier one iff the latest end among the earlier ones passes its start
    # (rowid only breaks ties; their order does not change the result)
    overlap = """INSERT INTO _audit_ov (rid)
SELECT rid FROM (
  SELECT rowid AS rid,
    coalesce(max(ended_at) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) > started_at, FALSE)
      OR coalesce(lead(started_at) OVER w < ended_at, FALSE) AS overlap
  FROM sessions
  WHERE {timed} AND {part}
  WINDOW w AS (PARTITION BY doctor_id ORDER BY started_at, rowid))
WHERE overlap"""
    return (
        f"""CREATE OR REPLACE TEMP TABLE _audit_fv AS
SELECT patient_id, min(started_at) AS first_at FROM sessions
WHERE kind = {OC} AND is_first_visit GROUP BY patient_id""",
        "CREATE OR REPLACE TEMP TABLE _audit_ov (rid BIGINT)",
        *(overlap.format(timed=timed_with_doctor(), part=p.of("doctor_id")) for p in parts(n_parts)),
    )


def session_facts_steps(part: Part) -> tuple[str, ...]:
    """``_audit_sf1``, ``_audit_sf2`` and the view ``_audit_session_facts`` for the sessions of
    ``part`` (the shared facts of :func:`session_facts_shared` must exist).

    Tables keyed by session id (access log, prescriptions, EC cases) are filtered to the part on
    both sides of their join; a preceding session or a named care plan is looked up among all of
    them (filtering those to the ones the part names cost two more hash tables of the part's size
    and ran out of memory at 30M sessions)."""
    mine = part.of("session_id")
    return (
        # 1. the access log (the doctor's events), prescriptions, EC cases, the preceding session
        #    and the named care plan
        f"""
CREATE OR REPLACE TEMP TABLE _audit_sf1 AS
WITH acc AS (
  SELECT s0.rowid AS rid,
    count(*) FILTER (WHERE a.event = 'join') > 0 AS mf_in,
    CASE WHEN count(*) FILTER (WHERE a.event = 'join' AND a.mfa IS FALSE) > 0 THEN FALSE
         WHEN count(*) FILTER (WHERE a.event = 'join' AND a.mfa IS NULL) > 0 THEN NULL ELSE TRUE END AS all_mfa,
    coalesce(bool_or(a.event = 'join' AND a."at" BETWEEN s0.started_at AND s0.ended_at)
             AND bool_or(a.event = 'leave' AND a."at" BETWEEN s0.started_at AND s0.ended_at), FALSE) AS al_ok
  FROM access_log a JOIN sessions s0 ON s0.session_id = a.session_id
  WHERE a.actor = 'doctor' AND {part.of("a.session_id")} AND {part.of("s0.session_id")} GROUP BY s0.rowid)
SELECT s.rowid AS rid,
  ec.session_id IS NOT NULL AS is_ec, rxs.session_id IS NOT NULL AS has_rx,
  coalesce(acc.mf_in, FALSE) AS mf_in,
  CASE WHEN acc.rid IS NULL THEN TRUE ELSE acc.all_mfa END AS all_mfa,
  coalesce(acc.al_ok, FALSE) AS al_ok,
  coalesce(pc.patient_id = s.patient_id AND pc.ended_at <= s.started_at, FALSE) AS pc_ok,
  cp.care_plan_id IS NOT NULL AS cp_in, cp.patient_id = s.patient_id AS cp_same_patient,
  cp.created_at > s.started_at AS cp_late, cp.in_person_assessed_at <= cp.created_at AS cp_assessed_ok,
  list_contains(list_transform(string_split(cp.doctors, ';'), lambda x: trim(x)), s.doctor_id) AS cp_named
FROM sessions s
LEFT JOIN acc ON acc.rid = s.rowid
LEFT JOIN (SELECT DISTINCT session_id FROM prescriptions WHERE {mine}) rxs ON rxs.session_id = s.session_id
LEFT JOIN (SELECT DISTINCT session_id FROM ec_cases WHERE {mine}) ec ON ec.session_id = s.session_id
LEFT JOIN (SELECT session_id, patient_id, ended_at FROM sessions WHERE kind = 'pre_consultation') pc
  ON pc.session_id = s.preceded_by_session_id
LEFT JOIN (SELECT care_plan_id, patient_id, created_at, in_person_assessed_at, doctors FROM care_plans) cp
  ON cp.care_plan_id = s.care_plan_id
WHERE {part.of("s.session_id")}""",
        # 2. the patient's care plans and first visit; whether the session overlaps another
        f"""
CREATE OR REPLACE TEMP TABLE _audit_sf2 AS
WITH pl AS (
  SELECT s2.rowid AS rid,
    bool_or(p2.created_at <= s2.started_at AND (p2.deleted_at IS NULL OR p2.deleted_at > s2.started_at)) AS has_plan
  FROM sessions s2 JOIN care_plans p2 ON p2.patient_id = s2.patient_id
  WHERE s2.kind = 'online_care' AND {part.of("s2.session_id")} GROUP BY s2.rowid)
SELECT s.rowid AS rid, pl.has_plan,
  CASE WHEN fv.patient_id IS NULL THEN FALSE ELSE s.started_at > fv.first_at END AS after_first_visit,
  coalesce({timed_with_doctor("s")}, FALSE) AS ov_in,
  CASE WHEN {timed_with_doctor("s")} THEN ov.rid IS NOT NULL END AS overlap
FROM sessions s
LEFT JOIN pl ON pl.rid = s.rowid
LEFT JOIN _audit_fv fv ON fv.patient_id = s.patient_id
LEFT JOIN _audit_ov ov ON ov.rid = s.rowid
WHERE {part.of("s.session_id")}""",
        SESSION_FACTS_VIEW,
    )


#: The facts of the whole data in one part (shared steps first).
SESSION_FACTS_STEPS: tuple[str, ...] = session_facts_shared(1) + session_facts_steps(WHOLE)

#: Dropped when the check tables are built (TEMP objects: frees their memory at once).
SESSION_FACTS_CLEANUP: tuple[str, ...] = (
    "DROP VIEW IF EXISTS _audit_session_facts",
    "DROP TABLE IF EXISTS _audit_sf1",
    "DROP TABLE IF EXISTS _audit_sf2",
    "DROP TABLE IF EXISTS _audit_fv",
    "DROP TABLE IF EXISTS _audit_ov",
)
