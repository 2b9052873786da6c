"""Hand-built rule cases: one small, fully compliant world per case, with one change.

Case ``n`` owns patient ``P<n>``, doctor ``D<n>``, care plan ``CP<n>`` and session ``S<n>``
(plus any extra sessions), so cases never interact. :func:`build_db` writes all cases into a
real DuckDB file through the store's schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toolkit import store
from toolkit.contract import TABLES

BASE_SESSION: dict = dict(
    kind="online_care",
    care_form="d_to_p",
    started_at="2026-05-01 10:00:00+09",
    ended_at="2026-05-01 10:15:00+09",
    is_first_visit=False,
    is_regular_doctor=True,
    prior_info_source="chart",
    prior_info_recorded=True,
    preceded_by_session_id=None,
    modality="video",
    initiated_by="institution",
    platform="dedicated",
    consent_at="2026-05-01 09:50:00+09",
    wish_confirmed=True,
    explained_at="2026-05-01 09:45:00+09",
    feasibility="appropriate",
    info_sufficient=True,
    outcome="completed",
    referred_at=None,
    is_emergency=False,
    unsuitable_symptom=False,
    patient_id_method="photo_id",
    doctor_id_shown=True,
    doctor_qualification_shown=True,
    doctor_location="institution",
    doctor_location_private=True,
    patient_location="home",
    patient_location_private=True,
    third_party_present=False,
    third_party_consent=False,
    staff_present=False,
    staff_consent=False,
    recording_saved=False,
    recording_agreed=False,
    tls_version="1.3",
    network_interruptions=0,
    substitute_doctor=False,
    substitute_consent=False,
    meds_confirmed=True,
    chart_marked_online=True,
)
BASE_PLAN: dict = dict(
    created_at="2026-04-01 09:00:00+09",
    in_person_assessed_at="2026-03-25 09:00:00+09",
    has_content=True,
    has_schedule=True,
    has_hours=True,
    has_method=True,
    has_stop_conditions=True,
    has_cooperation=True,
    has_emergency_plan=True,
    has_doctor_names=True,
    has_security_scope=True,
    deleted_at=None,
)
BASE_DOCTOR: dict = dict(specialty="internal", online_training_on="2020-04-01", ec_training_on=None)
BASE_RX: dict = dict(
    drug_code="2171000F1000",
    drug_name="plain drug",
    quantity=14,
    days_supply=7,
    dispensing="outside",
    pharmacy_id="PH1",
    dispensed_at=None,
    pharmacist_trained=None,
    witnessed_intake=None,
)
EC_RX: dict = dict(
    drug_code="2549008F1020",
    drug_name="levonorgestrel",
    quantity=1,
    days_supply=1,
    dispensing="outside",
    pharmacist_trained=True,
    witnessed_intake=True,
)
BASE_EC: dict = dict(
    reason="geographic",
    referred_by_support_center=False,
    assault_suspected=False,
    police_or_onestop_referred=False,
    child_guidance_notified=None,
    contraception_counselled=True,
    follow_up_due_on="2026-05-22",
    follow_up_visited_on="2026-05-23",
)
EC_SESSION: dict = dict(
    is_first_visit=True,
    is_regular_doctor=False,
    prior_info_source="none",
    prior_info_recorded=False,
    care_plan_id=None,
)
DRUG_MASTER = [
    # drug_code, name, narcotic, psychotropic, high_risk, ec, caution, misuse_class
    ("811", "opioid analgesics (prefix)", True, False, True, False, True, None),
    ("1124000F1000", "hypnotic X", False, True, False, False, True, "hypnotic"),
    ("396", "antidiabetics (prefix)", False, False, True, False, True, "antidiabetic"),
    ("3961", "a sub-class that the master marks not high-risk", False, False, False, False, False, None),
    ("2549008F1020", "levonorgestrel 1.5mg", False, False, False, True, False, None),
    ("2590", "PDE5 inhibitors (prefix)", False, False, False, False, True, "pde5"),
]
AS_OF = "2026-10-15"


@dataclass
class Case:
    """One hand-built case: the rule, the expected status of its entity, and the changes."""

    rule: str
    expect: str  # passed | violated | not_evidenced | out
    note: str
    s: dict = field(default_factory=dict)
    plan: dict | None = field(default_factory=dict)  # None → no care plan
    doctor: dict = field(default_factory=dict)
    inst: dict = field(default_factory=dict)
    patient: dict = field(default_factory=dict)
    rx: list[dict] = field(default_factory=list)
    ec: dict | None = None
    extra_sessions: list[dict] = field(default_factory=list)  # each needs a 'suffix'
    entity: str = "session"  # session | rx | plan | doctor | institution
    access: list[dict] | None = None  # access-log rows of S<n>; None → a doctor join and leave


def entity_id(case: Case, n: int) -> str:
    """The id the case's rule reports."""
    return {"session": f"S{n}", "rx": f"R{n}_0", "plan": f"CP{n}", "doctor": f"D{n}", "institution": f"I{n}"}[
        case.entity
    ]


def _insert(con, table: str, row: dict) -> None:  # type: ignore[no-untyped-def]
    cols = [c for c in row if c in TABLES[table].column_names]
    con.execute(
        f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) VALUES ({", ".join("?" * len(cols))})',
        [row[c] for c in cols],
    )


def build_db(path: Path, cases: list[Case]) -> None:
    """Write every case into a new DuckDB file."""
    con = store.connect(path)
    store.ensure_schema(con)
    for row in DRUG_MASTER:
        con.execute(
            "INSERT INTO drug_master (drug_code, drug_name, narcotic, psychotropic, high_risk, "
            "emergency_contraceptive, first_visit_caution, misuse_class) VALUES (?,?,?,?,?,?,?,?)",
            list(row),
        )
    for n, c in enumerate(cases):
        _insert(
            con,
            "institutions",
            {
                "institution_id": f"I{n}",
                "name": f"Clinic {n}",
                "prefecture": "東京都",
                "contact_published": True,
                "compliance_published": True,
                **c.inst,
            },
        )
        _insert(con, "doctors", {"doctor_id": f"D{n}", "institution_id": f"I{n}", **BASE_DOCTOR, **c.doctor})
        _insert(
            con, "patients", {"patient_id": f"P{n}", "birth_date": "1990-06-01", "sex": "female", **c.patient}
        )
        if c.plan is not None:
            _insert(
                con,
                "care_plans",
                {"care_plan_id": f"CP{n}", "patient_id": f"P{n}", "doctors": f"D{n}", **BASE_PLAN, **c.plan},
            )
        session = {
            "session_id": f"S{n}",
            "patient_id": f"P{n}",
            "doctor_id": f"D{n}",
            "institution_id": f"I{n}",
            **BASE_SESSION,
            "care_plan_id": f"CP{n}" if c.plan is not None else None,
        }
        if c.ec is not None:
            session.update(EC_SESSION)
        session.update(c.s)
        _insert(con, "sessions", session)
        for extra in c.extra_sessions:
            ex = dict(extra)
            suffix = ex.pop("suffix")
            _insert(con, "sessions", {**session, "session_id": f"S{n}{suffix}", **ex})
        for i, rx in enumerate(c.rx):
            _insert(con, "prescriptions", {"rx_id": f"R{n}_{i}", "session_id": f"S{n}", **BASE_RX, **rx})
        if c.ec is not None:
            _insert(con, "ec_cases", {"session_id": f"S{n}", **BASE_EC, **c.ec})
        access = (
            c.access
            if c.access is not None
            else [
                {"at": session["started_at"], "event": "join", "actor": "doctor", "mfa": True},
                {"at": session["ended_at"], "event": "leave", "actor": "doctor", "mfa": True},
            ]
        )
        for a in access:
            _insert(con, "access_log", {"session_id": f"S{n}", **a})
    con.close()
