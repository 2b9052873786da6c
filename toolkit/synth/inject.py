"""Defects injected into a clean chunk: each record (session with its lines, log and EC case,
or care plan) gets at most one, and each defect is chosen to break one rule where it can.

The ground truth is *not* taken from this bookkeeping but evaluated afterwards
(:mod:`toolkit.synth.truth`); the counts here go into ``generation.json``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from toolkit.synth.chunk import AS_OF_DAY, CARE_PLAN_ITEMS, DAY, OC, OR, World
from toolkit.synth.inject_ec_rx import EcAndPrescriptionInjections
from toolkit.synth.io import NULL_I

NE_SHARE = 0.25


class Injector(EcAndPrescriptionInjections):
    """Picks distinct records and applies defects to one chunk's tables in place."""

    def __init__(
        self, world: World, tables: dict[str, dict[str, np.ndarray]], rate: float, seed: int, chunk: int
    ) -> None:
        self.w = world
        self.t = tables
        self.rate = rate
        self.chunk = chunk
        self.rng = np.random.default_rng([seed, 2, chunk])
        s = tables["sessions"]
        self.n = len(s["session_id"])
        self.used = np.zeros(self.n, bool)
        self.plan_used = np.zeros(len(tables["care_plans"]["care_plan_id"]), bool)
        self.counts: Counter[tuple[str, str]] = Counter()
        rx = tables["prescriptions"]
        self.rx_line = np.full(self.n, -1, np.int64)
        self.rx_line[rx["_session"][::-1]] = np.arange(len(rx["_session"]))[::-1]
        al = tables["access_log"]
        self.al_join = np.full(self.n, -1, np.int64)
        self.al_leave = np.full(self.n, -1, np.int64)
        self.al_join[al["_session"][al["_k"] == 0]] = np.nonzero(al["_k"] == 0)[0]
        self.al_leave[al["_session"][al["_k"] == 3]] = np.nonzero(al["_k"] == 3)[0]
        self._unknown = 0

    # -- picking ---------------------------------------------------------------------------
    def k(self, scope: np.ndarray | int, share: float = 1.0) -> int:
        """How many records to break: the rate of the in-scope count, at least one."""
        m = scope if isinstance(scope, int) else int(np.count_nonzero(scope))
        return 0 if m == 0 else max(1, int(round(self.rate * m * share)))

    def pick(self, cand: np.ndarray, k: int, used: np.ndarray | None = None) -> np.ndarray:
        """Up to ``k`` distinct unused candidates (marked used)."""
        used = self.used if used is None else used
        idx = np.nonzero(cand & ~used)[0]
        if k <= 0 or len(idx) == 0:
            return idx[:0]
        idx = self.rng.choice(idx, size=min(k, len(idx)), replace=False)
        idx.sort()
        used[idx] = True
        return idx

    def unknown_doctor(self, k: int) -> np.ndarray:
        """Doctor ids that name no doctor (unique per chunk)."""
        out = np.empty(k, dtype=object)
        out[:] = [f"DX{self.chunk:03d}-{self._unknown + i:04d}" for i in range(k)]
        self._unknown += k
        return out

    def run(self) -> Counter[tuple[str, str]]:
        """Apply every defect; returns injected record counts per (rule, status)."""
        self._ec()
        self._overlap()
        self._plans()
        self._rx()
        self._sessions()
        return self.counts

    def _do(
        self,
        rule: str,
        status: str,
        cand: np.ndarray,
        scope: np.ndarray | int,
        fn,
        share: float = 1.0,
        used: np.ndarray | None = None,
    ) -> None:
        if status == "not_evidenced":
            share *= NE_SHARE
        idx = self.pick(cand, self.k(scope, share), used)
        if len(idx):
            fn(idx)
            self.counts[(rule, status)] += len(idx)

    # -- EC cases --------------------------------------------------------------------------
    # -- overlapping sessions --------------------------------------------------------------
    def _overlap(self) -> None:
        s = self.t["sessions"]
        kind = s["kind"]
        ocor = (kind == OC) | (kind == OR)
        o = np.lexsort((s["started_at"], s["_doc"]))
        a, b = o[:-1], o[1:]
        same = (s["_doc"][a] == s["_doc"][b]) & (s["started_at"][a] // DAY == s["started_at"][b] // DAY)
        ok = same & ocor[a] & ~s["_ec"][a] & ~s["_ec"][b] & ~self.used[a] & ~self.used[b]
        pairs = np.nonzero(ok)[0]
        k = self.k(ocor & ~s["_ec"], 0.5)
        if k == 0 or len(pairs) == 0:
            return
        self.rng.shuffle(pairs)
        done = 0
        for p in pairs:
            x, y = a[p], b[p]
            if self.used[x] or self.used[y]:
                continue
            self.used[x] = self.used[y] = True
            s["ended_at"][x] = s["started_at"][y] + 60
            self.counts[("exam.one_patient_at_a_time", "violated")] += int(ocor[x]) + int(ocor[y])
            done += 1
            if done >= k:
                break

    # -- care plans ------------------------------------------------------------------------
    def _plans(self) -> None:
        s, cp = self.t["sessions"], self.t["care_plans"]
        n_plan = len(cp["care_plan_id"])
        if n_plan == 0:
            return
        # after_first_visit: the patient's plan is missing (and its follow-ups name none)
        fu_of = s["_plan"]
        scope = s["_fu"] & cp["_online_first"][np.maximum(fu_of, 0)] & (fu_of >= 0)
        k = self.k(scope)
        plan_busy = np.zeros(n_plan, bool)
        np.logical_or.at(plan_busy, fu_of[fu_of >= 0], self.used[fu_of >= 0])
        cand = np.nonzero(cp["_online_first"] & ~plan_busy)[0]
        self.rng.shuffle(cand)
        keep = np.ones(n_plan, bool)
        got = 0
        for pidx in cand:
            if got >= k:
                break
            rows = np.nonzero(fu_of == pidx)[0]
            keep[pidx] = False
            self.plan_used[pidx] = True
            pat_rows = np.nonzero(s["_patient"] == cp["_patient"][pidx])[0]
            self.used[pat_rows] = True
            s["care_plan_id"][rows] = None
            s["substitute_doctor"][rows] = -1
            s["substitute_consent"][rows] = -1
            s["_plan"][rows] = -1
            got += len(rows)
        if got:
            self.counts[("care_plan.after_first_visit", "violated")] += got
        in_use = np.zeros(n_plan, bool)
        in_use[s["_plan"][s["_plan"] >= 0]] = True
        items = CARE_PLAN_ITEMS

        def incomplete(value: int):
            def f(idx: np.ndarray) -> None:
                for j in idx:
                    cp[items[self.rng.integers(0, len(items))]][j] = value

            return f

        def deleted(idx: np.ndarray) -> None:
            lo = (AS_OF_DAY - 45) * DAY
            cp["deleted_at"][idx] = lo + self.rng.integers(0, 40 * DAY, len(idx))

        self._do("care_plan.complete", "violated", in_use & keep, in_use, incomplete(0), used=self.plan_used)
        self._do(
            "care_plan.complete", "not_evidenced", in_use & keep, in_use, incomplete(-1), used=self.plan_used
        )
        self._do("care_plan.retained", "violated", keep, keep, deleted, used=self.plan_used)
        if not keep.all():
            for col in list(cp):
                cp[col] = cp[col][keep]

    # -- session fields --------------------------------------------------------------------
    def _sessions(self) -> None:
        s, al = self.t["sessions"], self.t["access_log"]
        rng = self.rng
        kind = s["kind"]
        oc, or_ = kind == OC, kind == OR
        ocor = oc | or_
        alls = np.ones(self.n, bool)
        not_ec = ~s["_ec"]
        first = s["_first_oc"] & not_ec
        completed = s["outcome"] == "completed"
        has_rx = self.rx_line >= 0
        fu = s["_fu"] & not_ec & (s["_plan"] >= 0)
        is_first_any = s["is_first_visit"] == 1
        no_dwd = s["care_form"] != "d_to_p_with_d"

        def set_(col: str, value):
            def f(idx: np.ndarray) -> None:
                s[col][idx] = value

            return f

        def seq(*fns):
            def f(idx: np.ndarray) -> None:
                for fn in fns:
                    fn(idx)

            return f

        def late_consent(idx: np.ndarray) -> None:
            s["consent_at"][idx] = s["started_at"][idx] + rng.integers(60, 600, len(idx))

        def late_explained(idx: np.ndarray) -> None:
            s["explained_at"][idx] = s["consent_at"][idx] + rng.integers(60, 600, len(idx))

        def no_basis(idx: np.ndarray) -> None:
            s["is_regular_doctor"][idx] = 0
            s["prior_info_source"][idx] = "none"
            s["prior_info_recorded"][idx] = 0
            s["preceded_by_session_id"][idx] = None

        def basis_unknown(idx: np.ndarray) -> None:
            s["is_regular_doctor"][idx] = 0
            s["prior_info_source"][idx] = "chart"
            s["prior_info_recorded"][idx] = -1

        def modality(idx: np.ndarray) -> None:
            s["modality"][idx] = np.array(["audio", "text", "photo", "recorded_video"], dtype=object)[
                rng.integers(0, 4, len(idx))
            ]

        def doctor_place(idx: np.ndarray) -> None:
            half = idx[: (len(idx) + 1) // 2]
            s["doctor_location"][half] = "public"
            s["doctor_location_private"][idx[len(half) :]] = 0

        def patient_place(idx: np.ndarray) -> None:
            half = idx[: (len(idx) + 1) // 2]
            s["patient_location"][half] = "other"
            s["patient_location_private"][idx[len(half) :]] = 0

        def old_tls(idx: np.ndarray) -> None:
            s["tls_version"][idx] = np.array(["1.1", "1.0"], dtype=object)[rng.integers(0, 2, len(idx))]

        def unknown_doc(idx: np.ndarray) -> None:
            s["doctor_id"][idx] = self.unknown_doctor(len(idx))

        def mfa(value: int):
            def f(idx: np.ndarray) -> None:
                al["mfa"][self.al_join[idx]] = value

            return f

        def leave_late(idx: np.ndarray) -> None:
            al["at"][self.al_leave[idx]] = s["ended_at"][idx] + rng.integers(60, 900, len(idx))

        def dangling_plan(idx: np.ndarray) -> None:
            s["care_plan_id"][idx] = np.array(
                [f"CPX{self.chunk:03d}-{i:05d}" for i in range(len(idx))], dtype=object
            )
            s["substitute_doctor"][idx] = -1
            s["substitute_consent"][idx] = -1

        plan_used = (
            self.plan_used[np.maximum(s["_plan"], 0)] if len(self.plan_used) else np.zeros(self.n, bool)
        )
        plan_clean = fu & ~plan_used  # keep the plans with an injected defect in use
        tls_known = np.array([v is not None for v in s["tls_version"]])
        net_known = s["network_interruptions"] != NULL_I
        general = s["platform"] == "general_purpose"
        V, NE = "violated", "not_evidenced"
        specs = [
            ("consent.recorded", V, ocor & not_ec, ocor, late_consent),
            ("consent.recorded", NE, or_ & not_ec, ocor, set_("consent_at", NULL_I)),
            ("consent.explicit_wish", V, oc & not_ec, oc, set_("wish_confirmed", 0)),
            ("consent.explicit_wish", NE, oc & not_ec, oc, set_("wish_confirmed", -1)),
            ("consent.explained_first", V, oc & not_ec & (s["is_emergency"] == 0), oc, late_explained),
            ("consent.explained_first", NE, oc & not_ec, oc, set_("explained_at", NULL_I)),
            (
                "judgement.each_session",
                V,
                oc & not_ec & completed & (s["feasibility"] == "appropriate"),
                ocor,
                set_("feasibility", "not_appropriate"),
            ),
            ("judgement.each_session", NE, ocor & not_ec, ocor, set_("feasibility", None)),
            (
                "judgement.stop_when_insufficient",
                V,
                oc & not_ec & completed & (s["info_sufficient"] == 1),
                ocor,
                set_("info_sufficient", 0),
            ),
            ("judgement.stop_when_insufficient", NE, ocor & not_ec, ocor, set_("info_sufficient", -1)),
            (
                "first_visit.unsuitable_symptom",
                V,
                first & completed & (s["unsuitable_symptom"] == 0),
                first,
                set_("unsuitable_symptom", 1),
            ),
            ("first_visit.unsuitable_symptom", NE, first, first, set_("unsuitable_symptom", -1)),
            ("first_visit.basis", V, first & no_dwd, first & no_dwd, no_basis),
            ("first_visit.basis", NE, first & no_dwd & ~s["_preceded"], first & no_dwd, basis_unknown),
            (
                "first_visit.emergency_in_person",
                V,
                oc & not_ec & completed & (s["is_emergency"] == 0),
                oc,
                set_("is_emergency", 1),
            ),
            (
                "first_visit.emergency_in_person",
                NE,
                oc & not_ec & (s["patient_id_method"] != "none"),
                oc,
                set_("is_emergency", -1),
            ),
            ("care_plan.exists", V, plan_clean, s["_fu"], dangling_plan),
            (
                "care_plan.exists",
                NE,
                plan_clean,
                s["_fu"],
                seq(
                    set_("care_plan_id", None), set_("substitute_doctor", -1), set_("substitute_consent", -1)
                ),
            ),
            ("care_plan.rotation_named", V, fu & s["_sub"], fu, set_("substitute_consent", 0)),
            ("care_plan.rotation_named", NE, fu & s["_sub"], fu, set_("substitute_consent", -1)),
            (
                "recording.agreed",
                V,
                not_ec,
                alls,
                seq(set_("recording_saved", 1), set_("recording_agreed", 0)),
            ),
            ("recording.agreed", NE, not_ec, alls, set_("recording_saved", -1)),
            (
                "identity.patient",
                V,
                first & (s["is_emergency"] == 0),
                first,
                set_("patient_id_method", "known_in_person"),
            ),
            ("identity.patient", NE, (first | or_) & not_ec, first | or_, set_("patient_id_method", None)),
            (
                "identity.doctor",
                V,
                ocor & is_first_any & not_ec,
                ocor & is_first_any,
                set_("doctor_id_shown", 0),
            ),
            (
                "identity.doctor",
                NE,
                ocor & is_first_any & not_ec,
                ocor & is_first_any,
                set_("doctor_id_shown", -1),
            ),
            (
                "identity.qualification",
                V,
                ocor & is_first_any & not_ec,
                ocor & is_first_any,
                set_("doctor_qualification_shown", 0),
            ),
            (
                "identity.qualification",
                NE,
                ocor & is_first_any & not_ec,
                ocor & is_first_any,
                set_("doctor_qualification_shown", -1),
            ),
            ("rx.meds_confirmed", V, oc & has_rx & not_ec, oc & has_rx, set_("meds_confirmed", 0)),
            ("rx.meds_confirmed", NE, oc & has_rx & not_ec, oc & has_rx, set_("meds_confirmed", -1)),
            ("exam.realtime_video", V, not_ec, alls, modality),
            ("exam.realtime_video", NE, not_ec, alls, set_("modality", None)),
            (
                "exam.staff_consent",
                V,
                ocor & not_ec,
                ocor,
                seq(set_("staff_present", 1), set_("staff_consent", 0)),
            ),
            ("exam.staff_consent", NE, ocor & not_ec, ocor, set_("staff_present", -1)),
            ("place.doctor_private", V, not_ec, alls, doctor_place),
            ("place.doctor_private", NE, not_ec, alls, set_("doctor_location_private", -1)),
            ("place.patient_private", V, not_ec, alls, patient_place),
            ("place.patient_private", NE, not_ec, alls, set_("patient_location_private", -1)),
            (
                "security.third_party",
                V,
                not_ec,
                alls,
                seq(set_("third_party_present", 1), set_("third_party_consent", 0)),
            ),
            ("security.third_party", NE, not_ec, alls, set_("third_party_present", -1)),
            (
                "security.institution_initiates",
                V,
                general & oc & not_ec,
                general,
                set_("initiated_by", "patient"),
            ),
            (
                "security.institution_initiates",
                NE,
                general & oc & not_ec,
                general,
                set_("initiated_by", None),
            ),
            ("security.tls", V, tls_known & not_ec, tls_known, old_tls),
            ("security.tls", NE, tls_known & not_ec, tls_known, set_("tls_version", "unknown")),
            ("training.doctor_online", NE, (or_ | first) & not_ec, ocor, unknown_doc),
            ("evidence.chart_marked_online", V, ocor & not_ec, ocor, set_("chart_marked_online", 0)),
            ("evidence.chart_marked_online", NE, ocor & not_ec, ocor, set_("chart_marked_online", -1)),
            ("security.mfa", V, not_ec & (self.al_join >= 0), alls, mfa(0)),
            ("security.mfa", NE, not_ec & (self.al_join >= 0), alls, mfa(-1)),
            ("exam.access_log", V, ocor & not_ec & (self.al_leave >= 0), ocor, leave_late),
            (
                "network.stable",
                V,
                net_known & not_ec,
                net_known,
                lambda idx: s["network_interruptions"].__setitem__(idx, rng.integers(4, 10, len(idx))),
            ),
        ]
        for rule, status, cand, scope, fn in specs:
            self._do(rule, status, cand, scope, fn)
        # "A ⇒ B" duties done while the trigger A is left empty: these records pass (Kleene
        # implication), so the audit must not report them; they are not in the ground truth
        in_person = np.isin(s["outcome"], ["switched_to_in_person", "referred"])
        kleene = [
            ("exam.staff_consent", ocor & not_ec & (s["staff_consent"] == 1), ocor, "staff_present"),
            ("security.third_party", not_ec & (s["third_party_consent"] == 1), alls, "third_party_present"),
            ("recording.agreed", not_ec & (s["recording_agreed"] == 1), alls, "recording_saved"),
            (
                "first_visit.emergency_in_person",
                oc & not_ec & in_person & (s["is_emergency"] == 1) & (s["patient_id_method"] != "none"),
                oc,
                "is_emergency",
            ),
            (
                "first_visit.unsuitable_symptom",
                first & in_person & (s["unsuitable_symptom"] == 1),
                first,
                "unsuitable_symptom",
            ),
            (
                "judgement.stop_when_insufficient",
                ocor & not_ec & in_person & (s["info_sufficient"] == 0),
                ocor,
                "info_sufficient",
            ),
        ]
        for rule, cand, scope, trigger in kleene:
            self._do(rule, "passed", cand, scope, set_(trigger, -1), share=NE_SHARE)

    # -- prescription lines ----------------------------------------------------------------
