"""Every rule on hand-built cases: a pass, a violation, a not-evidenced case, an out-of-scope
case, and the exemptions the guideline names. One database holds all cases; it is audited
once through the real GX suites, then each case's (rule, entity) status is read back from
the rule view and from the stored violations."""

from __future__ import annotations

import pytest

from tests.rule_cases import AS_OF, BASE_RX, DRUG_MASTER, EC_RX, Case, build_db, entity_id
from toolkit import store
from toolkit.audit.run import run_audit
from toolkit.rules.catalogue import load

FV = {"is_first_visit": True, "care_plan_id": None}  # a first visit (no plan yet)
FV_UNKNOWN_HISTORY = {
    **FV,
    "is_regular_doctor": False,
    "prior_info_source": "none",
    "prior_info_recorded": False,
}
REF = {"kind": "online_referral"}
UNCLASSIFIED = "2549099F1020"  # no drug-master code is a prefix of it (may be an EC tablet)
CLASSIFIED_NOT_EC = "3961001F1000"  # matches the master's prefix 3961: known, not EC
PRE = {"kind": "pre_consultation"}
C = Case
CASES: list[Case] = [
    # consent.recorded
    C("consent.recorded", "passed", "consent before start", s={}),
    C(
        "consent.recorded",
        "passed",
        "consent at the start instant",
        s={"consent_at": "2026-05-01 10:00:00+09"},
    ),
    C("consent.recorded", "violated", "consent after start", s={"consent_at": "2026-05-01 10:05:00+09"}),
    C("consent.recorded", "not_evidenced", "no consent time", s={"consent_at": None}),
    C("consent.recorded", "violated", "referral too", s={**REF, "consent_at": "2026-05-01 10:05:00+09"}),
    C("consent.recorded", "out", "pre-consultation", s={**PRE, "consent_at": None}),
    C(
        "consent.recorded",
        "violated",
        "UTC offset compared as instants",
        s={"consent_at": "2026-05-01 01:01:00+00"},
    ),
    # consent.explicit_wish
    C("consent.explicit_wish", "passed", "confirmed", s={}),
    C("consent.explicit_wish", "violated", "not confirmed", s={"wish_confirmed": False}),
    C("consent.explicit_wish", "not_evidenced", "unknown", s={"wish_confirmed": None}),
    C(
        "consent.explicit_wish",
        "out",
        "referral the patient asked for",
        s={**REF, "initiated_by": "patient", "wish_confirmed": False},
    ),
    C(
        "consent.explicit_wish",
        "violated",
        "referral placed by the institution",
        s={**REF, "initiated_by": "institution", "wish_confirmed": False},
    ),
    # consent.explained_first
    C("consent.explained_first", "passed", "explained before consent", s={}),
    C(
        "consent.explained_first",
        "violated",
        "explained after consent",
        s={"explained_at": "2026-05-01 09:55:00+09"},
    ),
    C(
        "consent.explained_first",
        "passed",
        "emergency: explained later",
        s={
            "explained_at": "2026-05-01 10:30:00+09",
            "is_emergency": True,
            "outcome": "referred",
            "referred_at": "2026-05-01 10:20:00+09",
        },
    ),
    C(
        "consent.explained_first",
        "not_evidenced",
        "emergency: never explained",
        s={"explained_at": None, "is_emergency": True},
    ),
    C("consent.explained_first", "not_evidenced", "no explanation time", s={"explained_at": None}),
    C(
        "consent.explained_first",
        "out",
        "referral is exempt (III-2-iii)",
        s={**REF, "explained_at": "2026-05-01 09:55:00+09"},
    ),
    # judgement.each_session
    C("judgement.each_session", "passed", "appropriate", s={}),
    C(
        "judgement.each_session",
        "passed",
        "not appropriate, referred with time",
        s={"feasibility": "not_appropriate", "outcome": "referred", "referred_at": "2026-05-01 10:14:00+09"},
    ),
    C(
        "judgement.each_session",
        "violated",
        "not appropriate but completed online",
        s={"feasibility": "not_appropriate", "outcome": "completed"},
    ),
    C(
        "judgement.each_session",
        "not_evidenced",
        "not appropriate, switched, no hand-over time",
        s={"feasibility": "not_appropriate", "outcome": "switched_to_in_person", "referred_at": None},
    ),
    C("judgement.each_session", "not_evidenced", "no judgement recorded", s={"feasibility": None}),
    C("judgement.each_session", "out", "pre-consultation", s={**PRE, "feasibility": None}),
    # judgement.stop_when_insufficient
    C("judgement.stop_when_insufficient", "passed", "enough information", s={}),
    C(
        "judgement.stop_when_insufficient",
        "passed",
        "insufficient, switched",
        s={"info_sufficient": False, "outcome": "switched_to_in_person"},
    ),
    C(
        "judgement.stop_when_insufficient",
        "violated",
        "insufficient, completed online",
        s={"info_sufficient": False},
    ),
    C(
        "judgement.stop_when_insufficient",
        "violated",
        "referral too (guideline V-1-(6) applies)",
        s={**REF, "info_sufficient": False},
    ),
    C("judgement.stop_when_insufficient", "not_evidenced", "unknown", s={"info_sufficient": None}),
    C(
        "judgement.stop_when_insufficient",
        "passed",
        "trigger unknown, duty done",
        s={"info_sufficient": None, "outcome": "switched_to_in_person"},
    ),
    C(
        "judgement.stop_when_insufficient",
        "not_evidenced",
        "trigger unknown, duty not done",
        s={"info_sufficient": None},
    ),
    C(
        "judgement.stop_when_insufficient",
        "not_evidenced",
        "trigger unknown, duty unknown",
        s={"info_sufficient": None, "outcome": None},
    ),
    C(
        "judgement.stop_when_insufficient",
        "not_evidenced",
        "trigger true, duty unknown",
        s={"info_sufficient": False, "outcome": None},
    ),
    C("judgement.stop_when_insufficient", "out", "pre-consultation", s={**PRE, "info_sufficient": False}),
    # first_visit.unsuitable_symptom
    C("first_visit.unsuitable_symptom", "passed", "no such symptom", s=FV),
    C(
        "first_visit.unsuitable_symptom",
        "passed",
        "symptom, referred",
        s={**FV, "unsuitable_symptom": True, "outcome": "referred", "referred_at": "2026-05-01 10:10:00+09"},
    ),
    C(
        "first_visit.unsuitable_symptom",
        "violated",
        "symptom, completed online",
        s={**FV, "unsuitable_symptom": True},
    ),
    C("first_visit.unsuitable_symptom", "not_evidenced", "unknown", s={**FV, "unsuitable_symptom": None}),
    C(
        "first_visit.unsuitable_symptom",
        "passed",
        "trigger unknown, duty done",
        s={**FV, "unsuitable_symptom": None, "outcome": "switched_to_in_person"},
    ),
    C(
        "first_visit.unsuitable_symptom",
        "not_evidenced",
        "trigger unknown, duty unknown",
        s={**FV, "unsuitable_symptom": None, "outcome": None},
    ),
    C("first_visit.unsuitable_symptom", "out", "follow-up visit", s={"unsuitable_symptom": True}),
    C(
        "first_visit.unsuitable_symptom",
        "out",
        "referral exempt",
        s={**REF, **FV, "unsuitable_symptom": True},
    ),
    # first_visit.basis
    C("first_visit.basis", "passed", "regular doctor", s=FV),
    C(
        "first_visit.basis",
        "passed",
        "prior information recorded",
        s={**FV_UNKNOWN_HISTORY, "prior_info_source": "medication_notebook", "prior_info_recorded": True},
    ),
    C(
        "first_visit.basis",
        "violated",
        "prior information not written into the chart",
        s={**FV_UNKNOWN_HISTORY, "prior_info_source": "phr", "prior_info_recorded": False},
    ),
    C(
        "first_visit.basis",
        "passed",
        "after a pre-consultation of the same patient",
        s={**FV_UNKNOWN_HISTORY, "preceded_by_session_id": "S{n}pre"},
        extra_sessions=[
            {
                "suffix": "pre",
                "kind": "pre_consultation",
                "started_at": "2026-05-01 09:00:00+09",
                "ended_at": "2026-05-01 09:20:00+09",
            }
        ],
    ),
    C(
        "first_visit.basis",
        "violated",
        "pre-consultation ended after the visit started",
        s={**FV_UNKNOWN_HISTORY, "preceded_by_session_id": "S{n}pre"},
        extra_sessions=[
            {
                "suffix": "pre",
                "kind": "pre_consultation",
                "started_at": "2026-05-01 09:00:00+09",
                "ended_at": "2026-05-01 10:05:00+09",
            }
        ],
    ),
    C(
        "first_visit.basis",
        "violated",
        "preceding session is not a pre-consultation",
        s={**FV_UNKNOWN_HISTORY, "preceded_by_session_id": "S{n}pre"},
        extra_sessions=[
            {
                "suffix": "pre",
                "kind": "online_referral",
                "started_at": "2026-05-01 09:00:00+09",
                "ended_at": "2026-05-01 09:20:00+09",
            }
        ],
    ),
    C("first_visit.basis", "violated", "no basis at all", s=FV_UNKNOWN_HISTORY),
    C(
        "first_visit.basis",
        "not_evidenced",
        "regular doctor unknown and no other basis",
        s={**FV_UNKNOWN_HISTORY, "is_regular_doctor": None},
    ),
    C("first_visit.basis", "out", "D to P with D", s={**FV_UNKNOWN_HISTORY, "care_form": "d_to_p_with_d"}),
    C("first_visit.basis", "out", "emergency contraception case (judged by ec.*)", s={}, ec={}, rx=[EC_RX]),
    C(
        "first_visit.basis",
        "out",
        "follow-up visit",
        s={"is_regular_doctor": False, "prior_info_source": "none"},
    ),
    # first_visit.emergency_in_person
    C("first_visit.emergency_in_person", "passed", "not an emergency", s={}),
    C(
        "first_visit.emergency_in_person",
        "passed",
        "emergency, switched",
        s={"is_emergency": True, "outcome": "switched_to_in_person"},
    ),
    C("first_visit.emergency_in_person", "violated", "emergency completed online", s={"is_emergency": True}),
    C("first_visit.emergency_in_person", "not_evidenced", "unknown", s={"is_emergency": None}),
    C(
        "first_visit.emergency_in_person",
        "passed",
        "trigger unknown, duty done",
        s={"is_emergency": None, "outcome": "switched_to_in_person"},
    ),
    C(
        "first_visit.emergency_in_person",
        "not_evidenced",
        "trigger true, duty unknown",
        s={"is_emergency": True, "outcome": None},
    ),
    C("first_visit.emergency_in_person", "out", "referral exempt", s={**REF, "is_emergency": True}),
    # care_plan.exists
    C("care_plan.exists", "passed", "plan of the same patient, assessed in person", s={}),
    C(
        "care_plan.exists",
        "violated",
        "plan created after the session",
        plan={"created_at": "2026-05-02 09:00:00+09"},
    ),
    C(
        "care_plan.exists",
        "violated",
        "plan without prior in-person assessment",
        plan={"in_person_assessed_at": "2026-04-05 09:00:00+09"},
    ),
    C(
        "care_plan.exists",
        "passed",
        "D to P with D needs no in-person assessment",
        s={"care_form": "d_to_p_with_d"},
        plan={"in_person_assessed_at": None},
    ),
    C("care_plan.exists", "not_evidenced", "assessment time unknown", plan={"in_person_assessed_at": None}),
    C("care_plan.exists", "not_evidenced", "no plan linked", s={"care_plan_id": None}),
    C(
        "care_plan.exists",
        "not_evidenced",
        "exemption unknown (care form empty), assessed after the plan",
        s={"care_form": None},
        plan={"in_person_assessed_at": "2026-04-05 09:00:00+09"},
    ),
    C(
        "care_plan.exists",
        "passed",
        "exemption unknown (care form empty), assessed before the plan",
        s={"care_form": None},
    ),
    C("care_plan.exists", "violated", "plan id names no plan", s={"care_plan_id": "NO_SUCH_PLAN"}),
    C("care_plan.exists", "violated", "plan of another patient", plan={"patient_id": "SOMEONE_ELSE"}),
    C("care_plan.exists", "not_evidenced", "plan's patient unknown", plan={"patient_id": None}),
    C("care_plan.exists", "not_evidenced", "session start unknown", s={"started_at": None}),
    C("care_plan.exists", "out", "first visit", s=FV),
    C("care_plan.exists", "out", "referral exempt", s={**REF, "care_plan_id": None}),
    # care_plan.complete
    C("care_plan.complete", "passed", "all nine items", entity="plan"),
    C(
        "care_plan.complete",
        "violated",
        "no emergency plan",
        plan={"has_emergency_plan": False},
        entity="plan",
    ),
    C(
        "care_plan.complete",
        "not_evidenced",
        "security scope unknown",
        plan={"has_security_scope": None},
        entity="plan",
    ),
    C(
        "care_plan.complete",
        "violated",
        "plan followed mostly at another institution",
        plan={"has_hours": False},
        extra_sessions=[
            {"suffix": "b", "institution_id": "I_PLAN_MAJOR", "started_at": "2026-05-02 10:00:00+09"},
            {"suffix": "c", "institution_id": "I_PLAN_MAJOR", "started_at": "2026-05-03 10:00:00+09"},
        ],
        entity="plan",
    ),
    C(
        "care_plan.complete",
        "out",
        "plan used by no session",
        s={"care_plan_id": None},
        plan={"has_hours": False},
        entity="plan",
    ),
    # care_plan.retained
    C("care_plan.retained", "passed", "not deleted", entity="plan"),
    C(
        "care_plan.retained",
        "violated",
        "deleted after a year",
        plan={
            "deleted_at": "2026-09-01 09:00:00+09",
            "created_at": "2025-09-01 09:00:00+09",
            "in_person_assessed_at": "2025-08-01 09:00:00+09",
        },
        entity="plan",
    ),
    C(
        "care_plan.retained",
        "passed",
        "deleted after two years",
        plan={
            "deleted_at": "2026-09-01 09:00:00+09",
            "created_at": "2024-08-01 09:00:00+09",
            "in_person_assessed_at": "2024-07-01 09:00:00+09",
        },
        entity="plan",
    ),
    C(
        "care_plan.retained",
        "passed",
        "deletion dated after the as-of date is not counted",
        plan={"deleted_at": "2026-12-01 09:00:00+09"},
        entity="plan",
    ),
    C(
        "care_plan.retained",
        "out",
        "created after the as-of date",
        plan={"created_at": "2026-11-01 09:00:00+09", "deleted_at": "2026-11-02 09:00:00+09"},
        entity="plan",
    ),
    # care_plan.after_first_visit
    C(
        "care_plan.after_first_visit",
        "passed",
        "plan made before the follow-up",
        extra_sessions=[
            {
                "suffix": "fv",
                "is_first_visit": True,
                "care_plan_id": None,
                "started_at": "2026-03-01 10:00:00+09",
                "ended_at": "2026-03-01 10:10:00+09",
            }
        ],
    ),
    C(
        "care_plan.after_first_visit",
        "violated",
        "no plan before the follow-up",
        plan=None,
        extra_sessions=[
            {
                "suffix": "fv",
                "is_first_visit": True,
                "care_plan_id": None,
                "started_at": "2026-03-01 10:00:00+09",
                "ended_at": "2026-03-01 10:10:00+09",
            }
        ],
    ),
    C(
        "care_plan.after_first_visit",
        "violated",
        "plan made only after the follow-up",
        plan={"created_at": "2026-05-03 09:00:00+09"},
        extra_sessions=[
            {
                "suffix": "fv",
                "is_first_visit": True,
                "care_plan_id": None,
                "started_at": "2026-03-01 10:00:00+09",
                "ended_at": "2026-03-01 10:10:00+09",
            }
        ],
    ),
    C("care_plan.after_first_visit", "out", "first visit was in person (no online first visit)", plan=None),
    C(
        "care_plan.after_first_visit",
        "not_evidenced",
        "start unknown: after the first visit? plan in time?",
        s={"started_at": None},
        extra_sessions=[
            {
                "suffix": "fv",
                "is_first_visit": True,
                "care_plan_id": None,
                "started_at": "2026-03-01 10:00:00+09",
                "ended_at": "2026-03-01 10:10:00+09",
            }
        ],
    ),
    # care_plan.rotation_named
    C("care_plan.rotation_named", "passed", "doctor named in plan", s={}),
    C("care_plan.rotation_named", "passed", "named among several", plan={"doctors": "DX; D{n} ;DY"}),
    C("care_plan.rotation_named", "violated", "doctor not named", plan={"doctors": "DX;DY"}),
    C(
        "care_plan.rotation_named",
        "passed",
        "stand-in with consent",
        plan={"doctors": "DX"},
        s={"substitute_doctor": True, "substitute_consent": True},
    ),
    C(
        "care_plan.rotation_named",
        "violated",
        "stand-in without consent",
        plan={"doctors": "DX"},
        s={"substitute_doctor": True, "substitute_consent": False},
    ),
    C(
        "care_plan.rotation_named",
        "not_evidenced",
        "stand-in, consent unknown",
        plan={"doctors": "DX"},
        s={"substitute_doctor": True, "substitute_consent": None},
    ),
    C("care_plan.rotation_named", "out", "no plan", s={"care_plan_id": None}),
    C(
        "care_plan.rotation_named",
        "passed",
        "trigger unknown (plan lists no doctors), stand-in with consent",
        plan={"doctors": None},
        s={"substitute_doctor": True, "substitute_consent": True},
    ),
    C(
        "care_plan.rotation_named",
        "not_evidenced",
        "trigger unknown (plan lists no doctors), no stand-in",
        plan={"doctors": None},
    ),
    C(
        "care_plan.rotation_named",
        "not_evidenced",
        "trigger unknown (session doctor empty), no stand-in",
        s={"doctor_id": None},
    ),
    # recording.agreed
    C("recording.agreed", "passed", "nothing recorded", s={}),
    C(
        "recording.agreed",
        "passed",
        "recorded with agreement",
        s={"recording_saved": True, "recording_agreed": True},
    ),
    C("recording.agreed", "violated", "recorded without agreement", s={"recording_saved": True}),
    C("recording.agreed", "violated", "pre-consultation too (V-2-(5))", s={**PRE, "recording_saved": True}),
    C("recording.agreed", "not_evidenced", "unknown whether recorded", s={"recording_saved": None}),
    C(
        "recording.agreed",
        "passed",
        "trigger unknown, duty done",
        s={"recording_saved": None, "recording_agreed": True},
    ),
    C(
        "recording.agreed",
        "not_evidenced",
        "trigger unknown, duty not done",
        s={"recording_saved": None, "recording_agreed": False},
    ),
    C(
        "recording.agreed",
        "not_evidenced",
        "trigger unknown, duty unknown",
        s={"recording_saved": None, "recording_agreed": None},
    ),
    # identity.patient
    C("identity.patient", "passed", "first visit, photo ID", s=FV),
    C(
        "identity.patient",
        "passed",
        "first visit, one ID plus questions",
        s={**FV, "patient_id_method": "one_id_plus_questions"},
    ),
    C(
        "identity.patient",
        "violated",
        "first visit, known in person only",
        s={**FV, "patient_id_method": "known_in_person"},
    ),
    C("identity.patient", "violated", "no check outside an emergency", s={"patient_id_method": "none"}),
    C(
        "identity.patient",
        "passed",
        "no check in an emergency",
        s={"patient_id_method": "none", "is_emergency": True, "outcome": "referred"},
    ),
    C("identity.patient", "not_evidenced", "method unknown", s={"patient_id_method": None}),
    C("identity.patient", "out", "follow-up, known in person", s={"patient_id_method": "known_in_person"}),
    C("identity.patient", "out", "pre-consultation", s={**PRE, "patient_id_method": "none"}),
    # identity.doctor / identity.qualification
    C("identity.doctor", "passed", "shown", s=FV),
    C("identity.doctor", "violated", "not shown", s={**FV, "doctor_id_shown": False}),
    C("identity.doctor", "not_evidenced", "unknown", s={**FV, "doctor_id_shown": None}),
    C("identity.doctor", "out", "follow-up", s={"doctor_id_shown": False}),
    C("identity.doctor", "violated", "referral first visit", s={**REF, **FV, "doctor_id_shown": False}),
    C("identity.qualification", "passed", "shown", s=FV),
    C("identity.qualification", "violated", "not shown", s={**FV, "doctor_qualification_shown": False}),
    C("identity.qualification", "not_evidenced", "unknown", s={**FV, "doctor_qualification_shown": None}),
    C("identity.qualification", "out", "follow-up", s={"doctor_qualification_shown": False}),
    # rx.first_visit_narcotic_psychotropic
    C("rx.first_visit_narcotic_psychotropic", "passed", "plain drug", s=FV, rx=[{}], entity="rx"),
    C(
        "rx.first_visit_narcotic_psychotropic",
        "violated",
        "narcotic by prefix 811",
        s=FV,
        rx=[{"drug_code": "8114001X1010"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_narcotic_psychotropic",
        "violated",
        "psychotropic by exact code",
        s=FV,
        rx=[{"drug_code": "1124000F1000"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_narcotic_psychotropic",
        "violated",
        "regular doctor does not exempt",
        s={**FV, "is_regular_doctor": True},
        rx=[{"drug_code": "1124000F1000"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_narcotic_psychotropic",
        "not_evidenced",
        "no drug code",
        s=FV,
        rx=[{"drug_code": None}],
        entity="rx",
    ),
    C(
        "rx.first_visit_narcotic_psychotropic",
        "out",
        "follow-up visit",
        rx=[{"drug_code": "1124000F1000"}],
        entity="rx",
    ),
    # rx.first_visit_high_risk
    C("rx.first_visit_high_risk", "passed", "plain drug", s=FV_UNKNOWN_HISTORY, rx=[{}], entity="rx"),
    C(
        "rx.first_visit_high_risk",
        "violated",
        "antidiabetic by prefix 396, history unknown",
        s=FV_UNKNOWN_HISTORY,
        rx=[{"drug_code": "3969010F1020"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_high_risk",
        "passed",
        "longest prefix 3961 wins over 396",
        s=FV_UNKNOWN_HISTORY,
        rx=[{"drug_code": "3961001F1020"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_high_risk",
        "out",
        "regular doctor knows the history",
        s=FV,
        rx=[{"drug_code": "3969010F1020"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_high_risk",
        "out",
        "prior information recorded",
        s={**FV_UNKNOWN_HISTORY, "prior_info_source": "referral_letter", "prior_info_recorded": True},
        rx=[{"drug_code": "3969010F1020"}],
        entity="rx",
    ),
    C(
        "rx.first_visit_high_risk",
        "not_evidenced",
        "history unknown-ness unknown, high-risk drug",
        s={**FV_UNKNOWN_HISTORY, "is_regular_doctor": None},
        rx=[{"drug_code": "3969010F1020"}],
        entity="rx",
    ),
    # rx.first_visit_max_7_days
    C(
        "rx.first_visit_max_7_days",
        "passed",
        "7 days",
        s=FV_UNKNOWN_HISTORY,
        rx=[{"days_supply": 7}],
        entity="rx",
    ),
    C(
        "rx.first_visit_max_7_days",
        "violated",
        "8 days",
        s=FV_UNKNOWN_HISTORY,
        rx=[{"days_supply": 8}],
        entity="rx",
    ),
    C(
        "rx.first_visit_max_7_days",
        "not_evidenced",
        "as-needed line without days",
        s=FV_UNKNOWN_HISTORY,
        rx=[{"days_supply": None}],
        entity="rx",
    ),
    C("rx.first_visit_max_7_days", "out", "regular doctor", s=FV, rx=[{"days_supply": 30}], entity="rx"),
    C(
        "rx.first_visit_max_7_days",
        "out",
        "referral exempt",
        s={**REF, **FV_UNKNOWN_HISTORY},
        rx=[{"days_supply": 30}],
        entity="rx",
    ),
    # rx.meds_confirmed
    C("rx.meds_confirmed", "passed", "confirmed", rx=[{}]),
    C("rx.meds_confirmed", "violated", "not confirmed", s={"meds_confirmed": False}, rx=[{}]),
    C("rx.meds_confirmed", "not_evidenced", "unknown", s={"meds_confirmed": None}, rx=[{}]),
    C("rx.meds_confirmed", "out", "no prescription", s={"meds_confirmed": False}),
    # exam.realtime_video
    C("exam.realtime_video", "passed", "video", s={}),
    C("exam.realtime_video", "violated", "text only", s={"modality": "text"}),
    C("exam.realtime_video", "violated", "audio only", s={"modality": "audio"}),
    C(
        "exam.realtime_video",
        "violated",
        "pre-consultation by recorded video",
        s={**PRE, "modality": "recorded_video"},
    ),
    C("exam.realtime_video", "not_evidenced", "unknown", s={"modality": None}),
    # exam.one_patient_at_a_time
    C(
        "exam.one_patient_at_a_time",
        "passed",
        "back-to-back sessions (half-open)",
        extra_sessions=[
            {
                "suffix": "b",
                "patient_id": "PX",
                "started_at": "2026-05-01 10:15:00+09",
                "ended_at": "2026-05-01 10:30:00+09",
            }
        ],
    ),
    C(
        "exam.one_patient_at_a_time",
        "violated",
        "overlapping sessions",
        extra_sessions=[
            {
                "suffix": "b",
                "patient_id": "PX",
                "started_at": "2026-05-01 10:14:00+09",
                "ended_at": "2026-05-01 10:30:00+09",
            }
        ],
    ),
    C(
        "exam.one_patient_at_a_time",
        "violated",
        "a session inside another",
        extra_sessions=[
            {
                "suffix": "b",
                "patient_id": "PX",
                "started_at": "2026-05-01 09:00:00+09",
                "ended_at": "2026-05-01 11:00:00+09",
            }
        ],
    ),
    C("exam.one_patient_at_a_time", "not_evidenced", "no end time", s={"ended_at": None}),
    C("exam.one_patient_at_a_time", "out", "pre-consultation", s=PRE),
    # exam.staff_consent
    C("exam.staff_consent", "passed", "staff with consent", s={"staff_present": True, "staff_consent": True}),
    C("exam.staff_consent", "violated", "staff without consent", s={"staff_present": True}),
    C("exam.staff_consent", "not_evidenced", "unknown", s={"staff_present": None}),
    C(
        "exam.staff_consent",
        "passed",
        "trigger unknown, duty done",
        s={"staff_present": None, "staff_consent": True},
    ),
    C(
        "exam.staff_consent",
        "not_evidenced",
        "trigger unknown, duty not done",
        s={"staff_present": None, "staff_consent": False},
    ),
    C(
        "exam.staff_consent",
        "not_evidenced",
        "trigger true, duty unknown",
        s={"staff_present": True, "staff_consent": None},
    ),
    C("exam.staff_consent", "out", "pre-consultation", s={**PRE, "staff_present": True}),
    # place.*
    C("place.doctor_private", "passed", "at home, private", s={"doctor_location": "home"}),
    C("place.doctor_private", "violated", "public place", s={"doctor_location": "public"}),
    C(
        "place.doctor_private",
        "violated",
        "public even if marked private",
        s={"doctor_location": "public", "doctor_location_private": True},
    ),
    C("place.doctor_private", "violated", "not isolated", s={"doctor_location_private": False}),
    C("place.doctor_private", "not_evidenced", "privacy unknown", s={"doctor_location_private": None}),
    C("place.doctor_private", "violated", "pre-consultation too", s={**PRE, "doctor_location": "public"}),
    C("place.patient_private", "passed", "workplace, private", s={"patient_location": "workplace"}),
    C("place.patient_private", "violated", "other place", s={"patient_location": "other"}),
    C("place.patient_private", "violated", "not private", s={"patient_location_private": False}),
    C("place.patient_private", "not_evidenced", "unknown", s={"patient_location": None}),
    C("place.doctor_affiliated", "passed", "published contact", entity="doctor"),
    C(
        "place.doctor_affiliated",
        "violated",
        "contact not published",
        inst={"contact_published": False},
        entity="doctor",
    ),
    C(
        "place.doctor_affiliated",
        "violated",
        "unknown institution",
        doctor={"institution_id": "NOPE"},
        entity="doctor",
    ),
    C(
        "place.doctor_affiliated",
        "not_evidenced",
        "no institution recorded",
        doctor={"institution_id": None},
        entity="doctor",
    ),
    C("place.compliance_published", "passed", "published", entity="institution"),
    C(
        "place.compliance_published",
        "violated",
        "not published",
        inst={"compliance_published": False},
        entity="institution",
    ),
    C(
        "place.compliance_published",
        "not_evidenced",
        "unknown",
        inst={"compliance_published": None},
        entity="institution",
    ),
    # security.*
    C(
        "security.third_party",
        "passed",
        "third party with consent",
        s={"third_party_present": True, "third_party_consent": True},
    ),
    C("security.third_party", "violated", "third party without consent", s={"third_party_present": True}),
    C("security.third_party", "not_evidenced", "unknown", s={"third_party_present": None}),
    C(
        "security.third_party",
        "passed",
        "trigger unknown, duty done",
        s={"third_party_present": None, "third_party_consent": True},
    ),
    C(
        "security.third_party",
        "not_evidenced",
        "trigger unknown, duty not done",
        s={"third_party_present": None, "third_party_consent": False},
    ),
    C("security.institution_initiates", "passed", "institution called", s={"platform": "general_purpose"}),
    C(
        "security.institution_initiates",
        "violated",
        "patient called in",
        s={"platform": "general_purpose", "initiated_by": "patient"},
    ),
    C(
        "security.institution_initiates",
        "not_evidenced",
        "unknown who called",
        s={"platform": "general_purpose", "initiated_by": None},
    ),
    C("security.institution_initiates", "out", "dedicated system", s={"initiated_by": "patient"}),
    C("security.tls", "passed", "TLS 1.3", s={}),
    C("security.tls", "passed", "TLS 1.2 (advisory only)", s={"tls_version": "1.2"}),
    C("security.tls", "passed", "written TLSv1.3", s={"tls_version": "TLSv1.3"}),
    C("security.tls", "violated", "TLS 1.1", s={"tls_version": "1.1"}),
    C("security.tls", "violated", "SSLv3", s={"tls_version": "SSLv3"}),
    C("security.tls", "out", "not recorded", s={"tls_version": None}),
    # training.doctor_online
    C("training.doctor_online", "passed", "trained before", s={}),
    C(
        "training.doctor_online",
        "violated",
        "trained after the session",
        doctor={"online_training_on": "2026-06-01"},
    ),
    C(
        "training.doctor_online",
        "passed",
        "trained the same day",
        doctor={"online_training_on": "2026-05-01"},
    ),
    C("training.doctor_online", "not_evidenced", "no training date", doctor={"online_training_on": None}),
    C("training.doctor_online", "out", "pre-consultation", s=PRE, doctor={"online_training_on": None}),
    # ec.*
    C("ec.prescriber_qualified", "passed", "OB/GYN", ec={}, rx=[EC_RX], doctor={"specialty": "obgyn"}),
    C(
        "ec.prescriber_qualified",
        "passed",
        "trained non-OB/GYN",
        ec={},
        rx=[EC_RX],
        doctor={"ec_training_on": "2026-01-10"},
    ),
    C("ec.prescriber_qualified", "violated", "non-OB/GYN with no EC training on record", ec={}, rx=[EC_RX]),
    C(
        "ec.prescriber_qualified",
        "not_evidenced",
        "unknown doctor",
        ec={},
        rx=[EC_RX],
        s={"doctor_id": "NO_SUCH_DOCTOR"},
    ),
    C(
        "ec.prescriber_qualified",
        "not_evidenced",
        "specialty unknown, no EC training on record",
        ec={},
        rx=[EC_RX],
        doctor={"specialty": None},
    ),
    C(
        "ec.prescriber_qualified",
        "passed",
        "specialty unknown, trained before",
        ec={},
        rx=[EC_RX],
        doctor={"specialty": None, "ec_training_on": "2026-01-10"},
    ),
    C(
        "ec.prescriber_qualified",
        "not_evidenced",
        "session date unknown, no EC training on record",
        ec={},
        rx=[EC_RX],
        s={"started_at": None},
    ),
    C(
        "ec.prescriber_qualified",
        "violated",
        "trained only after the session",
        ec={},
        rx=[EC_RX],
        doctor={"ec_training_on": "2026-06-01"},
    ),
    C("ec.reason_allowed", "passed", "psychological", ec={"reason": "psychological"}, rx=[EC_RX]),
    C("ec.reason_allowed", "not_evidenced", "reason unknown", ec={"reason": None}, rx=[EC_RX]),
    C("ec.single_tablet_outside", "passed", "one tablet outside", ec={}, rx=[EC_RX]),
    C("ec.single_tablet_outside", "violated", "two tablets", ec={}, rx=[{**EC_RX, "quantity": 2}]),
    C(
        "ec.single_tablet_outside",
        "violated",
        "inside dispensing",
        ec={},
        rx=[{**EC_RX, "dispensing": "inside"}],
    ),
    C("ec.single_tablet_outside", "violated", "two EC lines", ec={}, rx=[EC_RX, EC_RX]),
    C(
        "ec.single_tablet_outside",
        "not_evidenced",
        "quantity unknown",
        ec={},
        rx=[{**EC_RX, "quantity": None}],
    ),
    C(
        "ec.single_tablet_outside",
        "out",
        "no EC line (a classified non-EC drug)",
        ec={},
        rx=[{"drug_code": CLASSIFIED_NOT_EC}],
    ),
    C("ec.single_tablet_outside", "out", "no prescription line", ec={}, rx=[]),
    C(
        "ec.single_tablet_outside",
        "not_evidenced",
        "only line's drug unclassified (no master prefix)",
        ec={},
        rx=[{**EC_RX, "drug_code": UNCLASSIFIED}],
    ),
    C(
        "ec.single_tablet_outside",
        "not_evidenced",
        "only line's drug unclassified, two tablets",
        ec={},
        rx=[{**EC_RX, "drug_code": UNCLASSIFIED, "quantity": 2}],
    ),
    C(
        "ec.single_tablet_outside",
        "passed",
        "EC line and an unclassified line: the EC line decides",
        ec={},
        rx=[EC_RX, {"drug_code": UNCLASSIFIED}],
    ),
    C(
        "ec.single_tablet_outside",
        "violated",
        "EC line of two tablets and an unclassified line",
        ec={},
        rx=[{**EC_RX, "quantity": 2}, {"drug_code": UNCLASSIFIED}],
    ),
    C("ec.witnessed_intake", "passed", "trained pharmacist, witnessed", ec={}, rx=[EC_RX]),
    C("ec.witnessed_intake", "violated", "not witnessed", ec={}, rx=[{**EC_RX, "witnessed_intake": False}]),
    C(
        "ec.witnessed_intake",
        "not_evidenced",
        "pharmacist training unknown",
        ec={},
        rx=[{**EC_RX, "pharmacist_trained": None}],
    ),
    C(
        "ec.witnessed_intake",
        "not_evidenced",
        "only line's drug unclassified (no master prefix)",
        ec={},
        rx=[{**EC_RX, "drug_code": UNCLASSIFIED}],
    ),
    C(
        "ec.witnessed_intake",
        "passed",
        "EC line and an unclassified line: the EC line decides",
        ec={},
        rx=[EC_RX, {"drug_code": UNCLASSIFIED}],
    ),
    C(
        "ec.witnessed_intake",
        "out",
        "no EC line (a classified non-EC drug)",
        ec={},
        rx=[{"drug_code": CLASSIFIED_NOT_EC}],
    ),
    C("ec.follow_up", "passed", "due in 21 days, visited", ec={}, rx=[EC_RX]),
    C(
        "ec.follow_up",
        "violated",
        "due too late (35 days)",
        ec={"follow_up_due_on": "2026-06-05"},
        rx=[EC_RX],
    ),
    C(
        "ec.follow_up",
        "violated",
        "due too early (10 days)",
        ec={"follow_up_due_on": "2026-05-11"},
        rx=[EC_RX],
    ),
    C("ec.follow_up", "violated", "overdue, no visit", ec={"follow_up_visited_on": None}, rx=[EC_RX]),
    C(
        "ec.follow_up",
        "passed",
        "not yet due at as-of (no visit yet)",
        s={
            "started_at": "2026-10-01 10:00:00+09",
            "ended_at": "2026-10-01 10:15:00+09",
            "consent_at": "2026-10-01 09:50:00+09",
            "explained_at": "2026-10-01 09:45:00+09",
        },
        ec={"follow_up_due_on": "2026-10-22", "follow_up_visited_on": None},
        rx=[EC_RX],
    ),
    C("ec.follow_up", "not_evidenced", "no due date", ec={"follow_up_due_on": None}, rx=[EC_RX]),
    C(
        "ec.assault_support",
        "passed",
        "adult, referred to police",
        ec={"assault_suspected": True, "police_or_onestop_referred": True},
        rx=[EC_RX],
    ),
    C("ec.assault_support", "violated", "not referred", ec={"assault_suspected": True}, rx=[EC_RX]),
    C(
        "ec.assault_support",
        "violated",
        "under 18, child guidance not notified",
        ec={"assault_suspected": True, "police_or_onestop_referred": True, "child_guidance_notified": False},
        rx=[EC_RX],
        patient={"birth_date": "2010-01-01"},
    ),
    C(
        "ec.assault_support",
        "passed",
        "under 18, notified",
        ec={"assault_suspected": True, "police_or_onestop_referred": True, "child_guidance_notified": True},
        rx=[EC_RX],
        patient={"birth_date": "2010-01-01"},
    ),
    C(
        "ec.assault_support",
        "not_evidenced",
        "under 18, notification unknown",
        ec={"assault_suspected": True, "police_or_onestop_referred": True},
        rx=[EC_RX],
        patient={"birth_date": "2010-01-01"},
    ),
    C("ec.assault_support", "out", "no assault suspected", ec={}, rx=[EC_RX]),
    C("ec.contraception_counselled", "passed", "counselled", ec={}, rx=[EC_RX]),
    C(
        "ec.contraception_counselled",
        "violated",
        "not counselled",
        ec={"contraception_counselled": False},
        rx=[EC_RX],
    ),
    # should-level rules
    C("evidence.chart_marked_online", "passed", "marked", s={}),
    C("evidence.chart_marked_online", "violated", "not marked", s={"chart_marked_online": False}),
    C(
        "security.mfa",
        "violated",
        "doctor joined without MFA",
        access=[{"at": "2026-05-01 10:00:00+09", "event": "join", "actor": "doctor", "mfa": False}],
    ),
    C(
        "security.mfa",
        "not_evidenced",
        "MFA unknown",
        access=[{"at": "2026-05-01 10:00:00+09", "event": "join", "actor": "doctor", "mfa": None}],
    ),
    C("security.mfa", "out", "no doctor join logged", access=[]),
    C("exam.access_log", "passed", "join and leave logged", s={}),
    C(
        "exam.access_log",
        "violated",
        "leave missing",
        access=[{"at": "2026-05-01 10:00:00+09", "event": "join", "actor": "doctor", "mfa": True}],
    ),
    C(
        "rx.misuse_signal",
        "violated",
        "PDE5 inhibitor at a first visit",
        s=FV,
        rx=[{"drug_code": "2590011F1000"}],
        entity="rx",
    ),
    C("rx.misuse_signal", "passed", "plain drug", s=FV, rx=[{}], entity="rx"),
    C("network.stable", "passed", "3 drops", s={"network_interruptions": 3}),
    C("network.stable", "violated", "4 drops", s={"network_interruptions": 4}),
    C("network.stable", "out", "not recorded", s={"network_interruptions": None}),
]


def _expand(cases: list[Case]) -> list[Case]:
    """Fill the ``{n}`` placeholders with the case number."""
    out = []
    for n, c in enumerate(cases):

        def fill(v, n=n):  # type: ignore[no-untyped-def]
            return v.replace("{n}", str(n)) if isinstance(v, str) else v

        c.s = {k: fill(v) for k, v in c.s.items()}
        if c.plan:
            c.plan = {k: fill(v) for k, v in c.plan.items()}
        out.append(c)
    return out


EXPANDED = _expand(CASES)
_AUDITED_DB: list = []  # the audited fixture's database file


@pytest.fixture(scope="module")
def audited(tmp_path_factory):  # type: ignore[no-untyped-def]
    db = tmp_path_factory.mktemp("rules") / "cases.duckdb"
    _AUDITED_DB[:] = [db]
    build_db(db, EXPANDED)
    run = run_audit(db, as_of=__import__("datetime").date.fromisoformat(AS_OF), progress=False)
    con = store.connect(db, read_only=True)
    statuses = {
        (r, e): s
        for r, e, s in con.execute("SELECT rule_id, entity_id, status FROM _audit_rule_checks").fetchall()
    }
    stored = {
        (r, e): s
        for r, e, s in con.execute(
            "SELECT rule_id, entity_id, status FROM violations WHERE run_id = ?", [run.run_id]
        ).fetchall()
    }
    dq = dict(con.execute("SELECT check_id, n FROM dq_results WHERE run_id = ?", [run.run_id]).fetchall())
    con.close()
    return run, statuses, stored, dq


@pytest.mark.parametrize(
    "n,case", list(enumerate(EXPANDED)), ids=[f"{c.rule}:{c.expect}:{c.note}" for c in EXPANDED]
)
def test_rule_case(audited, n, case):  # type: ignore[no-untyped-def]
    _run, statuses, stored, _dq = audited
    key = (case.rule, entity_id(case, n))
    got = statuses.get(key, "out")
    assert got == case.expect, f"{case.rule} / {case.note}: expected {case.expect}, got {got}"
    if case.expect in ("violated", "not_evidenced"):
        assert stored.get(key) == case.expect
    else:
        assert key not in stored


def test_no_rule_errors_and_gx_agrees(audited):  # type: ignore[no-untyped-def]
    run, _statuses, _stored, _dq = audited
    errors = [(r.rule_id, r.message) for r in run.results if r.status == "error"]
    assert errors == []
    assert all(r.status != "not_evaluable" for r in run.results)


def test_every_rule_has_a_violation_case_and_a_pass_or_out_case():
    cat = load()
    by_rule: dict[str, set[str]] = {}
    for c in CASES:
        by_rule.setdefault(c.rule, set()).add(c.expect)
    for r in cat.rules:
        assert "violated" in by_rule.get(r.id, set()) or "not_evidenced" in by_rule.get(r.id, set()), r.id
        assert by_rule[r.id] & {"passed", "out"}, r.id


def _unclassified_only(case: Case) -> bool:
    """The EC case's lines all carry a code no drug-master code is a prefix of (computed here from
    the master's rows, not with the audit's SQL)."""
    prefixes = [row[0] for row in DRUG_MASTER]
    codes = [rx.get("drug_code", BASE_RX["drug_code"]) for rx in case.rx]
    return bool(codes) and all(not any(c.startswith(p) for p in prefixes) for c in codes)


def test_dq_counts_ec_cases_whose_tablet_the_master_cannot_classify(audited):  # type: ignore[no-untyped-def]
    _run, _statuses, _stored, dq = audited
    expected = sum(1 for c in EXPANDED if c.ec is not None and _unclassified_only(c))
    assert expected >= 3
    assert dq["dq.ec_unclassified_drug"] == expected


def test_care_plan_rules_take_the_institution_of_the_sessions_using_the_plan(audited):  # type: ignore[no-untyped-def]
    """A plan's violations and strata carry the institution whose sessions follow it (most sessions
    wins), not "(unknown)"; only a plan no session follows has no institution."""
    run, _statuses, _stored, _dq = audited
    plan_cases = [
        (n, c) for n, c in enumerate(EXPANDED) if c.rule.startswith("care_plan.") and c.entity == "plan"
    ]
    assert len(plan_cases) >= 8
    db = _AUDITED_DB[0]
    con = store.connect(db, read_only=True)
    got = dict(
        con.execute(
            "SELECT entity_id, institution_id FROM violations WHERE run_id = ? AND entity = 'care_plan'",
            [run.run_id],
        ).fetchall()
    )
    unknown_used = con.execute(
        "SELECT count(*) FROM rule_results_strata s WHERE run_id = ? AND rule_id = 'care_plan.complete'"
        " AND institution_id IS NULL",
        [run.run_id],
    ).fetchone()[0]
    con.close()
    expected = {}
    for n, c in plan_cases:
        if c.expect in ("violated", "not_evidenced"):
            used = c.s.get("care_plan_id", "CP") is not None
            major = {e.get("institution_id") for e in c.extra_sessions} - {None}
            expected[f"CP{n}"] = (
                (major.pop() if len(c.extra_sessions) > 1 and major else f"I{n}") if used else None
            )
    assert expected and {k: got.get(k) for k in expected} == expected
    assert "I_PLAN_MAJOR" in expected.values()
    assert unknown_used == 0  # care_plan.complete covers used plans only: none is unknown
