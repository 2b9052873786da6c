"""One self-contained chunk of synthetic sessions (clean), in NumPy columns.

Time model: the period has ``DAYS`` days of 96 ten-minute slots (07:00–23:00 Japan time);
day ``d`` belongs to chunk ``d % n_chunks``. Sessions of one institution take distinct slots
and last at most eight minutes, so no two sessions of an institution — hence of a doctor —
overlap, inside a chunk or across chunks. A patient's sessions are ordered in time and given
their roles (pre-consultation, first visit, follow-ups) in that order, so plans, consents and
preceding consultations are consistent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolkit.synth.io import NULL_I

DAY = 86400
SLOTS_PER_DAY = 96
SLOT = 600
FIRST_SLOT = 7 * 3600
PERIOD_START_DAY = int(np.datetime64("2026-04-01", "D").astype(np.int64))
DAYS = 183
AS_OF = "2026-11-15"
AS_OF_DAY = int(np.datetime64(AS_OF, "D").astype(np.int64))

T_EC, T_OR, T_ONLINE_FIRST, T_IN_PERSON_FIRST = 0, 1, 2, 3
PC, OC, OR = "pre_consultation", "online_care", "online_referral"


@dataclass
class World:
    """Global entities the chunks draw on (small: institutions and doctors)."""

    n_inst: int
    n_doc: int
    inst_weight: np.ndarray
    doc_inst: np.ndarray  # institution index of each doctor
    doc_ids: np.ndarray  # object
    inst_ids: np.ndarray  # object
    doc_qualified_ec: np.ndarray  # bool
    doc_late_training: np.ndarray  # bool: injected training after period start
    doc_no_ec_training: np.ndarray  # bool: not obgyn and no EC training on record (no date)
    inst_docs: list[np.ndarray] = field(default_factory=list)
    roles: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: (code, name) of EC tablets the drug master does not classify (for dq.ec_unclassified_drug)
    unlisted_ec: list[tuple[str, str]] = field(default_factory=list)


#: The items a care plan must hold (care_plan.complete), in the order the generator picks from.
CARE_PLAN_ITEMS = (
    "has_content",
    "has_schedule",
    "has_hours",
    "has_method",
    "has_stop_conditions",
    "has_cooperation",
    "has_emergency_plan",
    "has_doctor_names",
    "has_security_scope",
)


def _choice_obj(rng: np.random.Generator, values: list, p: list[float] | None, n: int) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr[rng.choice(len(values), size=n, p=p)]


def _bools(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return (rng.random(n) < p).astype(np.int8)


def _ids(prefix: str, chunk: int, n: int, width: int = 7) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = [f"{prefix}{chunk:03d}-{i:0{width}d}" for i in range(n)]
    return out


def _pick_in_group(
    rng: np.random.Generator,
    groups: list[np.ndarray],
    which: np.ndarray,
    exclude: list[np.ndarray] | None = None,
) -> np.ndarray:
    """For each item, a random member of groups[which[i]] not in the exclusions (-1 if none)."""
    out = np.full(len(which), -1, dtype=np.int64)
    for g in np.unique(which):
        idx = np.nonzero(which == g)[0]
        members = groups[g]
        r = rng.integers(0, 1 << 30, size=len(idx))
        if exclude is None:
            out[idx] = members[r % len(members)]
            continue
        for j, i in enumerate(idx):
            ok = [m for m in members if all(m != ex[i] for ex in exclude)]
            if ok:
                out[i] = ok[r[j] % len(ok)]
    return out


def build_chunk(
    world: World, chunk: int, n: int, days: np.ndarray, seed: int, min_ec: int
) -> dict[str, dict[str, np.ndarray]]:
    """Clean tables of one chunk: patients, care_plans, sessions, prescriptions, ec_cases, access_log.

    Extra ``_``-prefixed arrays carry the generator's own bookkeeping (patient type, roles …).
    """
    rng = np.random.default_rng([seed, 1, chunk])
    # ---- patients -------------------------------------------------------------------------
    n_ec = max(int(round(0.0053 * n)), min_ec)
    n_ec = min(n_ec, n)
    rest = n - n_ec
    m = max(16, int(rest / 1.8) + 16)
    types = rng.choice([T_OR, T_ONLINE_FIRST, T_IN_PERSON_FIRST], size=m, p=[0.12, 0.5, 0.38])
    has_pc = (types == T_ONLINE_FIRST) & (rng.random(m) < 0.35)
    sizes = np.where(
        types == T_OR,
        1,
        np.where(types == T_ONLINE_FIRST, has_pc + rng.geometric(0.4, m), rng.geometric(0.4, m)),
    )
    cum = np.cumsum(sizes)
    while cum[-1] < rest:  # pragma: no cover - m is generous
        types = np.concatenate([types, types])
        has_pc = np.concatenate([has_pc, has_pc])
        sizes = np.concatenate([sizes, sizes])
        cum = np.cumsum(sizes)
    k = int(np.searchsorted(cum, rest)) + 1 if rest > 0 else 0
    types, has_pc, sizes = types[:k], has_pc[:k], sizes[:k].copy()
    if k:
        sizes[-1] -= int(cum[k - 1] - rest)
    types = np.concatenate([np.full(n_ec, T_EC), types])
    has_pc = np.concatenate([np.zeros(n_ec, bool), has_pc])
    sizes = np.concatenate([np.ones(n_ec, np.int64), sizes]).astype(np.int64)
    n_pat = len(types)
    is_ec_pat = types == T_EC
    pat_inst = rng.choice(world.n_inst, size=n_pat, p=world.inst_weight)
    primary = _pick_in_group(rng, world.inst_docs, pat_inst)
    ec_docs = [d[world.doc_qualified_ec[d] & ~world.doc_late_training[d]] for d in world.inst_docs]
    ec_docs = [d if len(d) else world.inst_docs[i] for i, d in enumerate(ec_docs)]
    if n_ec:
        primary[is_ec_pat] = _pick_in_group(rng, ec_docs, pat_inst[is_ec_pat])
    colleague = _pick_in_group(rng, world.inst_docs, pat_inst, exclude=[primary])
    sex = _choice_obj(rng, ["female", "male", "other", "unknown"], [0.55, 0.43, 0.01, 0.01], n_pat)
    sex[is_ec_pat] = "female"
    age_days = rng.integers(0, 90 * 365, n_pat)
    age_days[is_ec_pat] = rng.integers(16 * 365 + 30, 44 * 365, int(is_ec_pat.sum()))
    birth = PERIOD_START_DAY - age_days
    birth_year = birth.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    year_only = (rng.random(n_pat) < 0.12) & ~is_ec_pat
    pat_ids = _ids("P", chunk, n_pat, 6)
    patients = {
        "patient_id": pat_ids,
        "birth_date": np.where(year_only, NULL_I, birth),
        "birth_year": birth_year.astype(np.int64),
        "sex": sex,
    }
    # ---- sessions: slots ------------------------------------------------------------------
    sp = np.repeat(np.arange(n_pat), sizes)  # patient index of each session
    s_inst = pat_inst[sp]
    cap = len(days) * SLOTS_PER_DAY
    order = rng.permutation(n)
    order = order[np.argsort(s_inst[order], kind="stable")]
    counts = np.bincount(s_inst, minlength=world.n_inst)
    if counts.max(initial=0) > cap:
        raise ValueError("too many sessions per institution for the period; raise the institution count")
    starts_of = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts_of[s_inst[order]]
    kk = counts[s_inst[order]]
    lo = rank * cap // kk
    hi = (rank + 1) * cap // kk  # > lo as kk <= cap: strata are disjoint, slots distinct
    slot = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    slot_of = np.empty(n, np.int64)
    slot_of[order] = slot
    day = days[slot_of // SLOTS_PER_DAY]
    start = (
        (PERIOD_START_DAY + day) * DAY
        + FIRST_SLOT
        + (slot_of % SLOTS_PER_DAY) * SLOT
        + rng.integers(0, 120, n)
    )
    end = start + rng.integers(180, 470, n)
    # chronological order within chunk, positions within patient
    o = np.lexsort((start, sp))
    sp, s_inst, start, end = sp[o], s_inst[o], start[o], end[o]
    pat_first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(n) - pat_first[sp]
    ptype = types[sp]
    pc_pat = has_pc[sp] & (sizes[sp] >= 1)
    kind = np.empty(n, dtype=object)
    kind[:] = OC
    kind[ptype == T_OR] = OR
    is_pc = pc_pat & (pos == 0)
    kind[is_pc] = PC
    first_pos = np.where(pc_pat, 1, 0)
    is_first = np.where(
        ptype == T_OR, rng.random(n) < 0.8, (ptype == T_EC) | ((ptype == T_ONLINE_FIRST) & (pos == first_pos))
    )
    is_fu = (kind == OC) & ~is_first
    preceded = (ptype == T_ONLINE_FIRST) & pc_pat & (pos == 1)
    s_ids = np.empty(n, dtype=object)
    # session ids follow time inside the chunk
    t_order = np.argsort(start, kind="stable")
    s_ids[t_order] = _ids("S", chunk, n)
    prev_id = np.concatenate([[None], s_ids[:-1]])
    # ---- care plans -------------------------------------------------------------------------
    fu_idx = np.nonzero(is_fu)[0]
    plan_pat, first_fu = np.unique(sp[fu_idx], return_index=True)
    first_fu = fu_idx[first_fu]
    n_plan = len(plan_pat)
    plan_ids = _ids("CP", chunk, n_plan, 6)
    plan_of_pat = np.full(n_pat, -1, np.int64)
    plan_of_pat[plan_pat] = np.arange(n_plan)
    fu_start = start[first_fu]
    online_first = types[plan_pat] == T_ONLINE_FIRST
    prev_end = end[first_fu - 1]  # the first visit precedes the first follow-up of such patients
    gap = fu_start - prev_end
    created = np.where(
        online_first,
        prev_end + (gap * 0.6).astype(np.int64),
        (fu_start // DAY - rng.integers(1, 60, n_plan)) * DAY + 9 * 3600 + rng.integers(0, 9 * 3600, n_plan),
    )
    assessed = np.where(
        online_first, prev_end + (gap * 0.3).astype(np.int64), created - rng.integers(600, 7200, n_plan)
    )
    created, assessed = created // 60 * 60, assessed // 60 * 60
    p_primary, p_coll = primary[plan_pat], colleague[plan_pat]
    docs_txt = np.empty(n_plan, dtype=object)
    docs_txt[:] = [
        f"{world.doc_ids[a]};{world.doc_ids[b]}" if b >= 0 else str(world.doc_ids[a])
        for a, b in zip(p_primary, p_coll, strict=True)
    ]
    plans = {
        "care_plan_id": plan_ids,
        "patient_id": pat_ids[plan_pat],
        "created_at": created,
        "in_person_assessed_at": assessed,
        "doctors": docs_txt,
        "deleted_at": np.full(n_plan, NULL_I, np.int64),
    }
    for h in CARE_PLAN_ITEMS:
        plans[h] = np.ones(n_plan, np.int8)
    plans["_patient"] = plan_pat
    plans["_online_first"] = online_first
    # ---- session doctors --------------------------------------------------------------------
    doc = primary[sp].copy()
    u = rng.random(n)
    coll = colleague[sp]
    use_coll = is_fu & (u < 0.10) & (coll >= 0)
    doc[use_coll] = coll[use_coll]
    want_sub = is_fu & (u >= 0.10) & (u < 0.15)
    sub = np.full(n, -1, np.int64)
    if want_sub.any():
        idx = np.nonzero(want_sub)[0]
        sub[idx] = _pick_in_group(
            rng,
            [d[~world.doc_late_training[d]] for d in world.inst_docs],
            s_inst[idx],
            exclude=[primary[sp][idx], coll[idx]],
        )
    is_sub = sub >= 0
    doc[is_sub] = sub[is_sub]
    # ---- session attributes -----------------------------------------------------------------
    ococr = kind != PC
    hist_src = np.where(rng.random(n) < 0.3, 0, 1)  # 0: regular doctor, 1: prior info
    first_basis = is_first & (kind == OC) & ~preceded & (ptype != T_EC)
    is_regular = np.where(first_basis, hist_src == 0, is_fu).astype(np.int8)
    prior_src = np.full(n, None, dtype=object)
    prior_rec = np.full(n, -1, np.int8)
    pi = first_basis & (hist_src == 1)
    prior_src[pi] = _choice_obj(
        rng,
        ["chart", "referral_letter", "health_check", "regional_network", "medication_notebook", "phr"],
        None,
        int(pi.sum()),
    )
    prior_rec[pi] = 1
    unknown_hist = is_first & (kind == OC) & ~first_basis
    prior_src[unknown_hist] = "none"
    prior_rec[unknown_hist] = 0
    platform = _choice_obj(rng, ["dedicated", "general_purpose"], [0.85, 0.15], n)
    initiated = _choice_obj(rng, ["patient", "institution"], [0.6, 0.4], n)
    initiated[platform == "general_purpose"] = "institution"
    consent = start - rng.integers(3600, 10 * DAY, n)
    explained = consent - rng.integers(60, 1800, n)
    # outcomes
    outcome = np.empty(n, dtype=object)
    outcome[:] = "completed"
    feas = np.empty(n, dtype=object)
    feas[:] = "appropriate"
    info = np.ones(n, np.int8)
    emergency = np.zeros(n, np.int8)
    unsuitable = np.where(kind == PC, -1, 0).astype(np.int8)
    r = rng.random(n)
    plain = ococr & (ptype != T_EC)
    not_ok = plain & (r < 0.03)
    emerg = plain & (r >= 0.03) & (r < 0.04)
    unsuit = plain & is_first & (kind == OC) & (r >= 0.04) & (r < 0.08)
    insuff = plain & (r >= 0.08) & (r < 0.10)
    feas[not_ok | emerg | unsuit] = "not_appropriate"
    info[insuff] = 0
    emergency[emerg] = 1
    unsuitable[unsuit] = 1
    to_person = not_ok | emerg | unsuit | insuff
    outcome[to_person] = _choice_obj(rng, ["switched_to_in_person", "referred"], None, int(to_person.sum()))
    outcome[kind == OR] = "referred"
    to_person |= kind == OR
    referred_at = np.where(to_person, end, NULL_I)
    abandoned = plain & ~to_person & (r > 0.995)
    outcome[abandoned] = "abandoned"
    method = np.empty(n, dtype=object)
    method[:] = _choice_obj(rng, ["photo_id", "two_ids", "one_id_plus_questions"], [0.5, 0.3, 0.2], n)
    known = is_fu & (rng.random(n) < 0.7)
    method[known] = "known_in_person"
    method[emerg & (rng.random(n) < 0.3)] = "none"
    doc_loc = _choice_obj(rng, ["institution", "home", "other_private"], [0.7, 0.25, 0.05], n)
    pat_loc = _choice_obj(
        rng,
        ["home", "workplace", "medical_facility", "care_facility", "online_care_facility"],
        [0.8, 0.08, 0.04, 0.04, 0.04],
        n,
    )
    third = _bools(rng, 0.1, n)
    staff = _bools(rng, 0.15, n)
    rec = _bools(rng, 0.05, n)
    tls = _choice_obj(rng, ["1.3", "1.2", None], [0.8, 0.15, 0.05], n)
    net = np.minimum(rng.poisson(0.3, n), 3).astype(np.int64)
    net[rng.random(n) < 0.05] = NULL_I
    plan_idx = np.where(is_fu, plan_of_pat[sp], -1)
    care_form = _choice_obj(rng, ["d_to_p", "d_to_p_with_n", "d_to_p_with_d"], [0.85, 0.1, 0.05], n)
    sessions = {
        "session_id": s_ids,
        "patient_id": pat_ids[sp],
        "doctor_id": world.doc_ids[doc],
        "institution_id": world.inst_ids[s_inst],
        "kind": kind,
        "care_form": care_form,
        "started_at": start,
        "ended_at": end,
        "is_first_visit": is_first.astype(np.int8),
        "is_regular_doctor": is_regular,
        "prior_info_source": prior_src,
        "prior_info_recorded": prior_rec,
        "preceded_by_session_id": np.where(preceded, prev_id, None),
        "modality": np.full(n, "video", dtype=object),
        "initiated_by": initiated,
        "platform": platform,
        "consent_at": consent,
        "wish_confirmed": np.ones(n, np.int8),
        "explained_at": explained,
        "feasibility": feas,
        "info_sufficient": info,
        "outcome": outcome,
        "referred_at": referred_at,
        "is_emergency": emergency,
        "unsuitable_symptom": unsuitable,
        "patient_id_method": method,
        "doctor_id_shown": np.ones(n, np.int8),
        "doctor_qualification_shown": np.ones(n, np.int8),
        "doctor_location": doc_loc,
        "doctor_location_private": np.ones(n, np.int8),
        "patient_location": pat_loc,
        "patient_location_private": np.ones(n, np.int8),
        "third_party_present": third,
        "third_party_consent": third.copy(),
        "staff_present": staff,
        "staff_consent": staff.copy(),
        "recording_saved": rec,
        "recording_agreed": rec.copy(),
        "tls_version": tls,
        "network_interruptions": net,
        "care_plan_id": np.where(plan_idx >= 0, plan_ids[np.maximum(plan_idx, 0)] if n_plan else None, None),
        "substitute_doctor": np.where(is_fu, is_sub, -1).astype(np.int8),
        "substitute_consent": np.where(is_sub, 1, -1).astype(np.int8),
        "meds_confirmed": np.ones(n, np.int8),
        "chart_marked_online": np.ones(n, np.int8),
        "_patient": sp,
        "_ptype": ptype,
        "_doc": doc,
        "_inst": s_inst,
        "_plan": plan_idx,
        "_first_oc": is_first & (kind == OC),
        "_fu": is_fu,
        "_ec": ptype == T_EC,
        "_hist_unknown": unknown_hist,
        "_sub": is_sub,
        "_preceded": preceded,
    }
    # ---- prescriptions ----------------------------------------------------------------------
    completed_oc = (kind == OC) & (outcome == "completed")
    is_ec_s = ptype == T_EC
    lines = np.where(completed_oc & ~is_ec_s & (rng.random(n) < 0.8), 1 + rng.poisson(1.2, n), 0)
    lines[is_ec_s] = 1
    rs = np.repeat(np.arange(n), lines)
    nr = len(rs)
    rx_ec = is_ec_s[rs]
    rx_first = is_first[rs]
    roles = world.roles
    codes = np.empty(nr, dtype=object)
    names = np.empty(nr, dtype=object)
    for mask, role in ((rx_ec, "ec"), (~rx_ec & rx_first, "benign"), (~rx_ec & ~rx_first, "chronic")):
        cnt = int(mask.sum())
        if cnt:
            pool = roles[role]
            pick = rng.integers(0, len(pool), cnt)
            codes[mask] = np.array([c for c, _ in pool], dtype=object)[pick]
            names[mask] = np.array([nm for _, nm in pool], dtype=object)[pick]
    days_supply = np.where(rx_first, rng.choice([3, 5, 7], nr), rng.choice([14, 28, 30, 56, 60, 90], nr))
    days_supply = days_supply.astype(np.int64)
    prn = ~rx_first & (rng.random(nr) < 0.05)
    days_supply[prn] = NULL_I
    per_day = rng.integers(1, 4, nr)
    qty = np.where(prn, 10.0, per_day * np.maximum(days_supply, 0)).astype(np.float64)
    days_supply[rx_ec] = 1
    qty[rx_ec] = 1.0
    outside = (rng.random(nr) < 0.85) | rx_ec
    r_end = end[rs]
    disp_at = np.where(outside, r_end + rng.integers(1800, DAY, nr), r_end + rng.integers(300, 1800, nr))
    pharm = np.empty(nr, dtype=object)
    pharm[:] = [f"PH{x:05d}" for x in rng.integers(1, 50000, nr)]
    pharm[~outside] = None
    disp = np.where(outside, "outside", "inside").astype(object)
    prescriptions = {
        "rx_id": _ids("R", chunk, nr),
        "session_id": s_ids[rs],
        "drug_code": codes,
        "drug_name": names,
        "quantity": qty,
        "days_supply": days_supply,
        "dispensing": disp,
        "pharmacy_id": pharm,
        "dispensed_at": disp_at,
        "pharmacist_trained": np.where(rx_ec, 1, -1).astype(np.int8),
        "witnessed_intake": np.where(rx_ec, 1, -1).astype(np.int8),
        "_session": rs,
    }
    # ---- EC cases ---------------------------------------------------------------------------
    ec_s = np.nonzero(is_ec_s)[0]
    ne = len(ec_s)
    s_day = start[ec_s] // DAY
    assault = _bools(rng, 0.1, ne)
    due = s_day + 21
    ec_cases = {
        "session_id": s_ids[ec_s],
        "reason": _choice_obj(rng, ["geographic", "psychological"], [0.6, 0.4], ne),
        "referred_by_support_center": _bools(rng, 0.2, ne),
        "assault_suspected": assault,
        "police_or_onestop_referred": assault.copy(),
        "child_guidance_notified": np.where(assault == 1, 1, -1).astype(np.int8),
        "contraception_counselled": np.ones(ne, np.int8),
        "follow_up_due_on": due,
        "follow_up_visited_on": due + rng.integers(-3, 8, ne),
        "_session": ec_s,
    }
    # ---- access log -------------------------------------------------------------------------
    drop = rng.random(n) < 0.1
    nev = 4 + 2 * drop
    es = np.repeat(np.arange(n), nev)
    k_in = np.arange(len(es)) - np.repeat(np.cumsum(nev) - nev, nev)
    st, en = start[es], end[es]
    mid = st + (en - st) // 2
    at = np.select(
        [k_in == 0, k_in == 1, k_in == 2, k_in == 3, k_in == 4],
        [
            st + rng.integers(0, 20, len(es)),
            st + rng.integers(5, 60, len(es)),
            en - rng.integers(0, 30, len(es)),
            en - rng.integers(0, 10, len(es)),
            mid,
        ],
        default=mid + rng.integers(10, 60, len(es)),
    )
    event = np.array(["join", "join", "leave", "leave", "drop", "reconnect"], dtype=object)[k_in]
    actor = np.array(["doctor", "patient", "patient", "doctor", "patient", "patient"], dtype=object)[k_in]
    access_log = {
        "session_id": s_ids[es],
        "at": at,
        "event": event,
        "actor": actor,
        "mfa": np.where(k_in == 0, 1, -1).astype(np.int8),
        "_session": es,
        "_k": k_in,
    }
    return {
        "patients": patients,
        "care_plans": plans,
        "sessions": sessions,
        "prescriptions": prescriptions,
        "ec_cases": ec_cases,
        "access_log": access_log,
    }
