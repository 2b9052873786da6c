"""Injections into EC cases and prescription lines (part of :class:`toolkit.synth.inject.Injector`)."""

from __future__ import annotations

import numpy as np

from toolkit.synth.chunk import DAY
from toolkit.synth.io import NULL_I

NE_SHARE = 0.25


class EcAndPrescriptionInjections:
    """The EC-case and prescription-line injections; state and helpers come from :class:`Injector`."""

    def _ec(self) -> None:
        ec, s, rx, pat = self.t["ec_cases"], self.t["sessions"], self.t["prescriptions"], self.t["patients"]
        ne = len(ec["session_id"])
        if ne == 0:
            return
        used = np.zeros(ne, bool)
        alle = np.ones(ne, bool)
        es = ec["_session"]
        line = self.rx_line[es]
        self.used[es] = True  # EC sessions carry only EC defects
        w = self.w
        ok = ~w.doc_late_training
        # trained only after the period started / no EC training on record: both violate
        unq = [d[~w.doc_qualified_ec[d] & ~w.doc_no_ec_training[d] & ok[d]] for d in w.inst_docs]
        none = [d[w.doc_no_ec_training[d] & ok[d]] for d in w.inst_docs]
        has_unq = np.array([len(unq[i]) > 0 for i in s["_inst"][es]], dtype=bool)
        has_none = np.array([len(none[i]) > 0 for i in s["_inst"][es]], dtype=bool)

        def other_doctor(pools: list[np.ndarray]):
            def f(idx: np.ndarray) -> None:
                for e in idx:
                    si = es[e]
                    pool = pools[s["_inst"][si]]
                    if len(pool):
                        s["doctor_id"][si] = w.doc_ids[pool[self.rng.integers(0, len(pool))]]
                    else:  # nobody without an EC record here: a doctor id that names no doctor
                        s["doctor_id"][si] = self.unknown_doctor(1)[0]

            return f

        def unknown_prescriber(idx: np.ndarray) -> None:
            s["doctor_id"][es[idx]] = self.unknown_doctor(len(idx))

        def unlisted_tablet(idx: np.ndarray) -> None:
            for e in idx:
                code, name = w.unlisted_ec[self.rng.integers(0, len(w.unlisted_ec))]
                rx["drug_code"][line[e]], rx["drug_name"][line[e]] = code, name

        def set_(table: dict, col: str, value, rows_of=None):
            def f(idx: np.ndarray) -> None:
                rows = idx if rows_of is None else rows_of[idx]
                table[col][rows] = value

            return f

        def due_late(idx: np.ndarray) -> None:
            half = idx[: (len(idx) + 1) // 2]
            ec["follow_up_due_on"][half] = s["started_at"][es[half]] // DAY + 35
            ec["follow_up_visited_on"][half] = ec["follow_up_due_on"][half] + 2
            ec["follow_up_visited_on"][idx[len(half) :]] = NULL_I

        def due_null(idx: np.ndarray) -> None:
            ec["follow_up_due_on"][idx] = NULL_I
            ec["follow_up_visited_on"][idx] = NULL_I

        def assault_v(idx: np.ndarray) -> None:
            ec["assault_suspected"][idx] = 1
            ec["police_or_onestop_referred"][idx] = 0
            ec["child_guidance_notified"][idx] = 1

        def assault_ne(idx: np.ndarray) -> None:
            ec["assault_suspected"][idx] = 1
            ec["police_or_onestop_referred"][idx] = 1
            ec["child_guidance_notified"][idx] = -1
            p = s["_patient"][es[idx]]
            pat["birth_date"][p] = NULL_I
            pat["birth_year"][p] = NULL_I

        def tablet(idx: np.ndarray) -> None:
            for j, e in enumerate(idx):
                r = line[e]
                if j % 2 == 0:
                    rx["quantity"][r] = 2.0
                else:
                    rx["dispensing"][r] = "inside"
                    rx["pharmacy_id"][r] = None

        specs = [
            ("ec.prescriber_qualified", "violated", has_unq, other_doctor(unq)),
            ("ec.prescriber_qualified", "violated", has_none, other_doctor(none)),
            ("ec.prescriber_qualified", "not_evidenced", alle, unknown_prescriber),
            ("ec.reason_allowed", "not_evidenced", alle, set_(ec, "reason", None)),
            ("ec.single_tablet_outside", "violated", line >= 0, tablet),
            ("ec.single_tablet_outside", "not_evidenced", line >= 0, set_(rx, "quantity", np.nan, line)),
            ("ec.witnessed_intake", "violated", line >= 0, set_(rx, "witnessed_intake", 0, line)),
            ("ec.witnessed_intake", "not_evidenced", line >= 0, set_(rx, "pharmacist_trained", -1, line)),
            # the only tablet line's code is unknown to the master: both tablet rules not evidenced
            ("ec.single_tablet_outside", "not_evidenced", (line >= 0) & bool(w.unlisted_ec), unlisted_tablet),
            ("ec.follow_up", "violated", alle, due_late),
            ("ec.follow_up", "not_evidenced", alle, due_null),
            ("ec.assault_support", "violated", alle, assault_v),
            ("ec.assault_support", "not_evidenced", alle, assault_ne),
            ("ec.contraception_counselled", "violated", alle, set_(ec, "contraception_counselled", 0)),
            ("ec.contraception_counselled", "not_evidenced", alle, set_(ec, "contraception_counselled", -1)),
        ]
        for rule, status, cand, fn in specs:
            self._do(rule, status, cand, alle, fn, used=used)

    def _rx(self) -> None:
        s, rx = self.t["sessions"], self.t["prescriptions"]
        if len(rx["rx_id"]) == 0:
            return
        rng = self.rng
        roles = self.w.roles
        first = s["_first_oc"] & ~s["_ec"]
        has_rx = self.rx_line >= 0
        hist_known = first & ~s["_hist_unknown"] & has_rx
        hist_unknown = first & s["_hist_unknown"] & has_rx
        scope_all = int(np.count_nonzero(s["_first_oc"][rx["_session"]]))  # first-visit lines

        def drug(role: str):
            def f(idx: np.ndarray) -> None:
                pool = roles[role]
                for si in idx:
                    code, name = pool[rng.integers(0, len(pool))]
                    r = self.rx_line[si]
                    rx["drug_code"][r], rx["drug_name"][r] = code, name

            return f

        def code_null(idx: np.ndarray) -> None:
            rx["drug_code"][self.rx_line[idx]] = None

        def long_supply(idx: np.ndarray) -> None:
            r = self.rx_line[idx]
            rx["days_supply"][r] = 14
            rx["quantity"][r] = 14.0

        def supply_null(idx: np.ndarray) -> None:
            rx["days_supply"][self.rx_line[idx]] = NULL_I

        V, NE = "violated", "not_evidenced"
        scope_hu = int(np.count_nonzero(s["_hist_unknown"][rx["_session"]]))
        specs = [
            ("rx.first_visit_narcotic_psychotropic", V, hist_known, scope_all, drug("narcotic")),
            ("rx.first_visit_narcotic_psychotropic", NE, hist_known, scope_all, code_null),
            ("rx.first_visit_high_risk", V, hist_unknown, scope_hu, drug("high_risk")),
            ("rx.first_visit_max_7_days", V, hist_unknown, scope_hu, long_supply),
            ("rx.first_visit_max_7_days", NE, hist_unknown, scope_hu, supply_null),
            ("rx.misuse_signal", V, hist_known, scope_all, drug("misuse")),
        ]
        for rule, status, cand, scope, fn in specs:
            self._do(rule, status, cand, scope, fn)
