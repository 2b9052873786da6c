"""A small hand-built DuckDB for the EC survey tests (real DuckDB, no mocks).

Institution I1, period 2026-04..2026-06, as-of 2026-07-20. Seven EC cases of I1 fall in the
period (E1–E7), one falls just before it (E0: 23:00 JST on 31 March) and one belongs to another
institution (E8, I2). E7 starts at 00:30 JST on 1 April (still 31 March in UTC) and E4 at
00:30 JST on 1 June, so month boundaries are read in Japan time. The expected tables in
``EXPECTED`` were computed by hand from the rows below (see the comments on each case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit import store

PERIOD = "2026-04..2026-06"
MONTHS = ["2026-04", "2026-05", "2026-06"]
AS_OF = "2026-07-20"
RUN_ID = "run-survey-0001"

EC_CODE = "2549008F1020"  # levonorgestrel: matches prefix 2549008 (emergency_contraceptive)
NOT_EC_CODE = "2549008F9999"  # exact master row (not EC) beats the 2549008 prefix

DOCTORS = [
    {"doctor_id": "D1", "institution_id": "I1", "specialty": "obgyn", "online_training_on": "2025-01-01"},
    {
        "doctor_id": "D2",
        "institution_id": "I1",
        "specialty": "internal",
        "online_training_on": "2025-01-01",
        "ec_training_on": "2026-01-01",
    },
    {
        "doctor_id": "D3",
        "institution_id": "I1",
        "specialty": "internal",
        "online_training_on": "2025-01-01",
        "ec_training_on": "2026-05-15",
    },
    {"doctor_id": "D4", "institution_id": "I1", "specialty": "general", "online_training_on": "2025-01-01"},
    {"doctor_id": "D9", "institution_id": "I2", "specialty": "obgyn", "online_training_on": "2025-01-01"},
]
PATIENTS = [
    {"patient_id": "PAT-001", "birth_date": "2010-04-06", "sex": "female"},  # 15 on 2026-04-05
    {"patient_id": "PAT-002", "birth_year": 2008, "sex": "female"},  # 17 or 18: boundary
    {"patient_id": "PAT-003", "birth_date": "1990-01-01", "sex": "female"},  # 36
    {"patient_id": "PAT-004", "birth_year": 2000, "sex": "female"},  # 25 or 26: 20s
    {"patient_id": "PAT-005", "sex": "female"},  # unknown
    {"patient_id": "PAT-006", "birth_date": "1975-06-15", "sex": "female"},  # 51 on 2026-06-15
    {"patient_id": "PAT-007", "birth_date": "2007-04-01", "sex": "female"},  # 19 on 2026-04-01
    {"patient_id": "PAT-008", "birth_date": "1980-01-01", "sex": "male"},
]
DRUGS = [
    {"drug_code": "2549008", "drug_name": "levonorgestrel", "emergency_contraceptive": True},
    {"drug_code": NOT_EC_CODE, "drug_name": "other 2549", "emergency_contraceptive": False},
    {"drug_code": "1124", "drug_name": "benzodiazepines", "psychotropic": True},
    {"drug_code": "8114", "drug_name": "opioid", "narcotic": True},
    {"drug_code": "3332", "drug_name": "warfarin", "high_risk": True},
]


def _s(
    sid: str,
    started: str,
    doctor: str,
    patient: str,
    inst: str = "I1",
    kind: str = "online_care",
    first: bool | None = True,
    regular: bool | None = False,
    source: str | None = "none",
    recorded: bool | None = None,
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "patient_id": patient,
        "doctor_id": doctor,
        "institution_id": inst,
        "kind": kind,
        "care_form": "d_to_p",
        "started_at": started,
        "is_first_visit": first,
        "is_regular_doctor": regular,
        "prior_info_source": source,
        "prior_info_recorded": recorded,
        "modality": "video",
        "outcome": "completed",
    }


SESSIONS = [
    _s("SES-E0", "2026-03-31 23:00:00+09:00", "D1", "PAT-001"),  # March JST: out of period
    _s("SES-E1", "2026-04-05 10:00:00+09:00", "D1", "PAT-001"),
    _s("SES-E2", "2026-04-20 10:00:00+09:00", "D2", "PAT-002"),
    _s("SES-E7", "2026-03-31 15:30:00+00:00", "D2", "PAT-007"),  # 2026-04-01 00:30 JST
    _s("SES-E3", "2026-05-10 10:00:00+09:00", "D3", "PAT-003"),
    _s("SES-E4", "2026-05-31 15:30:00+00:00", "D4", "PAT-004"),  # 2026-06-01 00:30 JST
    _s("SES-E5", "2026-06-10 10:00:00+09:00", "D1", "PAT-005"),
    _s("SES-E6", "2026-06-15 10:00:00+09:00", "D1", "PAT-006"),
    _s("SES-E8", "2026-05-12 10:00:00+09:00", "D9", "PAT-003", inst="I2"),
    # non-EC first visits (T6)
    _s("SES-N1", "2026-04-08 10:00:00+09:00", "D4", "PAT-008"),  # history unknown
    _s("SES-N8", "2026-04-09 10:00:00+09:00", "D4", "PAT-008", regular=None, source=None),  # unknown
    _s("SES-N2", "2026-05-02 10:00:00+09:00", "D4", "PAT-008", regular=True),  # known
    _s("SES-N3", "2026-05-03 10:00:00+09:00", "D4", "PAT-008", source="chart", recorded=False),  # unknown
    _s("SES-N7", "2026-05-04 10:00:00+09:00", "D4", "PAT-008"),  # no prescription
    _s("SES-N4", "2026-06-02 10:00:00+09:00", "D4", "PAT-008", source="referral_letter", recorded=True),
    _s("SES-N5", "2026-06-03 10:00:00+09:00", "D4", "PAT-008", first=False),  # not first visit
    _s("SES-N6", "2026-06-04 10:00:00+09:00", "D4", "PAT-008", kind="online_referral"),  # not online_care
]


def _rx(
    rid: str,
    sid: str,
    code: str,
    qty: float = 1,
    days: int | None = 1,
    disp: str = "outside",
    trained: bool | None = True,
    witnessed: bool | None = True,
) -> dict[str, Any]:
    return {
        "rx_id": rid,
        "session_id": sid,
        "drug_code": code,
        "drug_name": code,
        "quantity": qty,
        "days_supply": days,
        "dispensing": disp,
        "pharmacist_trained": trained,
        "witnessed_intake": witnessed,
    }


PRESCRIPTIONS = [
    _rx("RX-E0", "SES-E0", EC_CODE),
    _rx("RX-E1", "SES-E1", EC_CODE),
    _rx("RX-E2", "SES-E2", EC_CODE, qty=2, trained=None),  # two tablets; pharmacist unknown
    _rx("RX-E7", "SES-E7", EC_CODE, witnessed=None),  # witnessed unknown
    _rx("RX-E3a", "SES-E3", EC_CODE),
    _rx("RX-E3b", "SES-E3", EC_CODE),  # two EC lines
    _rx("RX-E4", "SES-E4", NOT_EC_CODE),  # no EC line (exact match wins)
    _rx("RX-E5", "SES-E5", EC_CODE, disp="inside", trained=False, witnessed=False),
    _rx("RX-E6", "SES-E6", EC_CODE),
    _rx("RX-E8", "SES-E8", EC_CODE),
    _rx("RX-N1", "SES-N1", "1124017F1", days=5),
    _rx("RX-N8", "SES-N8", "2149999", days=8),
    _rx("RX-N2", "SES-N2", "3332001F1", days=14),
    _rx("RX-N3a", "SES-N3", "3332001F1", days=10),
    _rx("RX-N3b", "SES-N3", "2149999", days=30),
    _rx("RX-N4", "SES-N4", "8114001", days=3),
    _rx("RX-N5", "SES-N5", "1124017F1", days=5),
    _rx("RX-N6", "SES-N6", "1124017F1", days=5),
]


def _ec(
    sid: str,
    reason: str | None,
    route: bool | None,
    suspected: bool | None,
    police: bool | None,
    cg: bool | None,
    counselled: bool | None,
    due: str | None,
    visited: str | None,
) -> dict[str, Any]:
    return {
        "session_id": sid,
        "reason": reason,
        "referred_by_support_center": route,
        "assault_suspected": suspected,
        "police_or_onestop_referred": police,
        "child_guidance_notified": cg,
        "contraception_counselled": counselled,
        "follow_up_due_on": due,
        "follow_up_visited_on": visited,
    }


EC_CASES = [
    _ec("SES-E0", "geographic", True, False, False, None, True, "2026-04-21", None),
    _ec("SES-E1", "geographic", True, True, True, True, True, "2026-04-26", "2026-04-27"),  # completed
    _ec("SES-E2", "psychological", False, True, False, None, False, "2026-05-05", None),  # overdue
    _ec("SES-E7", "geographic", True, True, True, None, True, "2026-04-22", "2026-04-25"),  # completed
    _ec("SES-E3", "geographic", None, False, False, None, True, "2026-06-30", None),  # out of window, overdue
    _ec("SES-E4", None, True, None, None, None, None, None, None),  # all unknown
    _ec("SES-E5", "psychological", True, True, True, None, True, "2026-07-08", None),  # pending
    _ec("SES-E6", "geographic", False, False, False, None, True, "2026-07-06", "2026-07-06"),  # completed
    _ec("SES-E8", "geographic", True, False, False, None, True, "2026-06-02", None),
]

ALL_IDS = (
    [r["session_id"] for r in SESSIONS]
    + [r["patient_id"] for r in PATIENTS]
    + [r["rx_id"] for r in PRESCRIPTIONS]
    + [r["doctor_id"] for r in DOCTORS]
)

EC_RULE_STATUS = {
    "ec.prescriber_qualified": "failed",
    "ec.reason_allowed": "failed",
    "ec.single_tablet_outside": "failed",
    "ec.witnessed_intake": "not_evaluable",
    "ec.follow_up": "failed",
    "ec.assault_support": "failed",
    "ec.contraception_counselled": "failed",
}
VIOLATIONS = [
    ("ec.prescriber_qualified", "SES-E3", "violated"),
    ("ec.prescriber_qualified", "SES-E4", "violated"),  # D4: not OB/GYN, no EC training on record
    ("ec.reason_allowed", "SES-E4", "not_evidenced"),
    ("ec.single_tablet_outside", "SES-E2", "violated"),
    ("ec.single_tablet_outside", "SES-E3", "violated"),
    ("ec.single_tablet_outside", "SES-E5", "violated"),
    ("ec.follow_up", "SES-E2", "violated"),
    ("ec.follow_up", "SES-E3", "violated"),
    ("ec.follow_up", "SES-E0", "violated"),
    ("ec.follow_up", "SES-E8", "violated"),  # outside period / I2
    ("ec.assault_support", "SES-E2", "violated"),
    ("ec.assault_support", "SES-E5", "not_evidenced"),
    ("ec.assault_support", "SES-E4", "not_evidenced"),
    ("ec.contraception_counselled", "SES-E2", "violated"),
    ("ec.contraception_counselled", "SES-E4", "not_evidenced"),
]


def _insert(con: Any, table: str, row: dict[str, Any]) -> None:
    cols = list(row)
    con.execute(
        f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
        f"VALUES ({', '.join('?' * len(cols))})",
        [row[c] for c in cols],
    )


def build_db(
    path: Path, *, with_run: bool = True, institution: str = "I1", id_prefix: str = "", drop_cases: int = 0
) -> Path:
    """Write the fixture database; ``with_run`` adds a hand-built audit run (for T5).

    ``institution``/``id_prefix`` rename institution I1 and every id so several sites can be
    built for the merge tests; ``drop_cases`` leaves out the last N of E1–E7's ec_cases rows.
    """
    con = store.connect(path)
    store.ensure_schema(con)

    def ren(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for k in ("session_id", "patient_id", "doctor_id", "rx_id"):
            if out.get(k):
                out[k] = id_prefix + out[k]
        if out.get("institution_id") == "I1":
            out["institution_id"] = institution
        return out

    for d in DRUGS:
        _insert(
            con,
            "drug_master",
            {
                "narcotic": False,
                "psychotropic": False,
                "high_risk": False,
                "emergency_contraceptive": False,
                "first_visit_caution": False,
                **d,
            },
        )
    for d in DOCTORS:
        _insert(con, "doctors", ren(d))
    for p in PATIENTS:
        _insert(con, "patients", ren(p))
    for s in SESSIONS:
        _insert(con, "sessions", ren(s))
    for r in PRESCRIPTIONS:
        _insert(con, "prescriptions", ren(r))
    in_period = ["SES-E1", "SES-E2", "SES-E7", "SES-E3", "SES-E4", "SES-E5", "SES-E6"]
    dropped = set(in_period[len(in_period) - drop_cases :]) if drop_cases else set()
    for e in EC_CASES:
        if e["session_id"] not in dropped:
            _insert(con, "ec_cases", ren(e))
    if with_run:
        con.execute(
            "INSERT INTO audit_runs (run_id, started_at, as_of, toolkit_version) "
            "VALUES (?, '2026-07-20 12:00:00+09:00', ?, '0.1.0')",
            [RUN_ID, AS_OF],
        )
        for rule, status in EC_RULE_STATUS.items():
            con.execute(
                "INSERT INTO rule_results (run_id, rule_id, entity, status) VALUES (?, ?, 'ec_case', ?)",
                [RUN_ID, rule, status],
            )
        # The audit's strata hold each rule's records in scope per institution × month: the
        # period's I1 cases, plus decoys the survey must leave out (another institution, a month
        # outside the period).
        for rule, (scope, *_counts) in EXPECTED_T5.items():
            for inst, month, n in (
                (institution, "2026-05", scope),
                ("I2", "2026-05", 1),
                (institution, "2026-08", 3),
            ):
                con.execute(
                    "INSERT INTO rule_results_strata (run_id, rule_id, institution_id, doctor_id, month, "
                    "denominator, violated, not_evidenced) VALUES (?, ?, ?, NULL, ?, ?, 0, 0)",
                    [RUN_ID, rule, inst, month, n],
                )
        for rule, sid, status in VIOLATIONS:
            con.execute(
                "INSERT INTO violations (run_id, rule_id, entity, entity_id, status, institution_id, doctor_id, "
                "month) VALUES (?, ?, 'ec_case', ?, ?, ?, NULL, NULL)",
                [RUN_ID, rule, id_prefix + sid, status, "I2" if sid == "SES-E8" else institution],
            )
    con.close()
    return path


#: Hand-computed exact values for I1, 2026-04..2026-06, as of 2026-07-20 (cells not listed are 0).
EXPECTED: dict[str, int] = {
    # T1: April E1 E2 E7, May E3, June E4 E5 E6
    "T1|all|2026-04": 3,
    "T1|all|2026-05": 1,
    "T1|all|2026-06": 3,
    "T1|all|total": 7,
    "T1|age:u16|2026-04": 1,
    "T1|age:u16|total": 1,
    "T1|age:boundary|2026-04": 1,
    "T1|age:boundary|total": 1,
    "T1|age:18_19|2026-04": 1,
    "T1|age:18_19|total": 1,
    "T1|age:30s|2026-05": 1,
    "T1|age:30s|total": 1,
    "T1|age:20s|2026-06": 1,
    "T1|age:20s|total": 1,
    "T1|age:unknown|2026-06": 1,
    "T1|age:unknown|total": 1,
    "T1|age:50p|2026-06": 1,
    "T1|age:50p|total": 1,
    "T1|reason:geographic|2026-04": 2,
    "T1|reason:geographic|2026-05": 1,
    "T1|reason:geographic|2026-06": 1,
    "T1|reason:geographic|total": 4,
    "T1|reason:psychological|2026-04": 1,
    "T1|reason:psychological|2026-06": 1,
    "T1|reason:psychological|total": 2,
    "T1|reason:unknown|2026-06": 1,
    "T1|reason:unknown|total": 1,
    "T1|route:yes|2026-04": 2,
    "T1|route:yes|2026-06": 2,
    "T1|route:yes|total": 4,
    "T1|route:no|2026-04": 1,
    "T1|route:no|2026-06": 1,
    "T1|route:no|total": 2,
    "T1|route:unknown|2026-05": 1,
    "T1|route:unknown|total": 1,
    "T1|prescriber:obgyn|2026-04": 1,
    "T1|prescriber:obgyn|2026-06": 2,
    "T1|prescriber:obgyn|total": 3,
    "T1|prescriber:trained|2026-04": 2,
    "T1|prescriber:trained|total": 2,
    "T1|prescriber:untrained|2026-05": 1,
    "T1|prescriber:untrained|total": 1,
    "T1|prescriber:not_recorded|2026-06": 1,
    "T1|prescriber:not_recorded|total": 1,
    # T2 (denominator 7)
    "T2|single_tablet|met": 4,
    "T2|single_tablet|not_met": 2,
    "T2|single_tablet|unknown": 1,
    "T2|outside|met": 5,
    "T2|outside|not_met": 1,
    "T2|outside|unknown": 1,
    "T2|pharmacist_trained|met": 4,
    "T2|pharmacist_trained|not_met": 1,
    "T2|pharmacist_trained|unknown": 2,
    "T2|witnessed_intake|met": 4,
    "T2|witnessed_intake|not_met": 1,
    "T2|witnessed_intake|unknown": 2,
    "T2|contraception_counselled|met": 5,
    "T2|contraception_counselled|not_met": 1,
    "T2|contraception_counselled|unknown": 1,
    # T3
    "T3|window_in|count": 5,
    "T3|window_out|count": 1,
    "T3|window_unknown|count": 1,
    "T3|completed|count": 3,
    "T3|pending|count": 1,
    "T3|overdue|count": 2,
    "T3|status_unknown|count": 1,
    "T3|settled|count": 5,
    # T4
    "T4|suspected_yes|count": 4,
    "T4|suspected_no|count": 2,
    "T4|suspected_unknown|count": 1,
    "T4|referred_yes|count": 3,
    "T4|referred_no|count": 1,
    "T4|minor|count": 1,
    "T4|adult|count": 1,
    "T4|age_unknown|count": 2,
    "T4|cg_yes|count": 1,
    # T6: Apr E1 E2 E7 N1 N8; May E3 N2 N3; Jun E4 E5 E6 N4
    "T6|2026-04|sessions": 5,
    "T6|2026-04|narc_psych": 1,
    "T6|2026-04|over7": 1,
    "T6|2026-05|sessions": 3,
    "T6|2026-05|high_risk": 1,
    "T6|2026-05|over7": 1,
    "T6|2026-06|sessions": 4,
    "T6|2026-06|narc_psych": 1,
    "T6|total|sessions": 12,
    "T6|total|narc_psych": 2,
    "T6|total|high_risk": 1,
    "T6|total|over7": 2,
}

#: T5 from the hand-built run: rule → (in scope, compliant, violated, not evidenced); witnessed not evaluable.
EXPECTED_T5 = {
    "ec.prescriber_qualified": (7, 5, 2, 0),  # E3 trained after the visit, E4 no EC training on record
    "ec.reason_allowed": (7, 6, 0, 1),
    "ec.single_tablet_outside": (6, 3, 3, 0),
    "ec.follow_up": (7, 5, 2, 0),
    "ec.assault_support": (5, 2, 1, 2),
    "ec.contraception_counselled": (7, 5, 1, 1),
}
