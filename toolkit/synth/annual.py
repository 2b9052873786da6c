"""Generator part for the annual report (contract v1.1): municipality codes, billing, in-person visits.

Every value here comes from its own random streams (``[seed, 21, …]``), drawn after the chunk's
other tables are final, so the tables and columns of contract v1 stay byte-for-byte what they were.

The expected figures of ``ocaudit survey annual --year 2026`` are computed here in plain Python
over the generated rows (:class:`AnnualTruth`), independently of the toolkit's SQL, following the
definitions in README (情報通信機器を用いた診療に係る報告書):

* billed 初診/再診 in person: ``in_person_visits`` with ``insurance_billed`` true, split by
  ``is_first_visit``; online: ``online_care`` sessions with ``insurance_billed`` true;
* 診療前相談あり: an online 初診 with ``preceded_by_session_id``, or a ``pre_consultation`` session
  of the same patient ending at or before its start;
* その後自院で対面診療なし: no ``in_person_visits`` row of the same patient and institution after
  its start and before the cut-off (1 August, Japan time);
* the 80 % share: online billed care with the patient in another municipality, over all billed
  care (in person and online); a patient in person is at the institution.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from toolkit.synth.io import NULL_I

REPORT_YEAR = 2026
DAY = 86_400
PERIOD_FROM = int(np.datetime64("2025-08-01", "D").astype(np.int64)) * DAY  # Japan wall seconds
PERIOD_TO = int(np.datetime64("2026-08-01", "D").astype(np.int64)) * DAY  # exclusive cut-off
VISITS_FROM_DAY = int(np.datetime64("2025-08-01", "D").astype(np.int64))
VISITS_TO_DAY = int(np.datetime64("2026-09-30", "D").astype(np.int64))

#: prefecture → 5-digit codes of its municipalities here (the institution's first)
PREF_CODES: dict[str, tuple[str, ...]] = {
    "東京都": ("13101", "13104", "13113", "13208"),
    "大阪府": ("27100", "27140"),
    "神奈川県": ("14100", "14130"),
    "愛知県": ("23100",),
    "福岡県": ("40130", "40100"),
    "北海道": ("01100", "01202"),
    "京都府": ("26100",),
    "兵庫県": ("28100",),
    "埼玉県": ("11100",),
    "千葉県": ("12100",),
    "宮城県": ("04100",),
    "広島県": ("34100",),
    "沖縄県": ("47201", "47207"),
    "長野県": ("20201", "20202"),
}
#: municipalities far from anywhere: where the online-specialised clinic's patients live
FAR_CODES = ("13421", "47207", "01202", "20202", "04100", "34100", "47201")
ALL_CODES = tuple(sorted({c for cs in PREF_CODES.values() for c in cs} | set(FAR_CODES)))


def _check(code5: str) -> str:
    """JIS X 0402 check digit, written out here again (the generator does not import the toolkit's)."""
    total = 0
    for digit, weight in zip(code5, (6, 5, 4, 3, 2), strict=True):
        total += int(digit) * weight
    return str((11 - total % 11) % 10)


def _six(code5: str) -> str:
    return code5 + _check(code5)


def _month(seconds: int) -> str:
    return str(np.datetime64(seconds // DAY, "D"))[:7]


def institution_codes(prefectures: np.ndarray) -> tuple[np.ndarray, int]:
    """Municipality codes of the institutions (the prefecture's first municipality; 6 digits, every
    third written with 5) and the index of the online-specialised clinic (the last one), whose
    patients mostly live elsewhere. No random draw: v1 streams are untouched by construction."""
    codes = np.empty(len(prefectures), dtype=object)
    for i, pref in enumerate(prefectures):
        own = PREF_CODES[pref][0]
        codes[i] = own if i % 3 == 2 else _six(own)
    return codes, len(prefectures) - 1


def _norm(code: Any) -> str | None:
    """5-digit form of a valid code, else None (the truth's own check)."""
    if code is None:
        return None
    text = str(code)
    if len(text) == 5 and text.isdigit():
        return text
    if len(text) == 6 and text.isdigit() and _check(text[:5]) == text[5]:
        return text[:5]
    return None


class AnnualChunk:
    """Adds the v1.1 columns and ``in_person_visits`` to one chunk's tables (in place)."""

    def __init__(
        self,
        tables: dict[str, dict[str, np.ndarray]],
        inst_ids: np.ndarray,
        inst_codes: np.ndarray,
        far_inst: int,
        inst_docs: list[np.ndarray],
        doc_ids: np.ndarray,
        seed: int,
        chunk: int,
        inject: bool,
    ) -> None:
        self.t = tables
        self.inst_index = {str(x): i for i, x in enumerate(inst_ids)}
        self.inst_codes = inst_codes
        self.far = far_inst
        self.inst_docs = inst_docs
        self.doc_ids = doc_ids
        self.rng = np.random.default_rng([seed, 21, 1, chunk])
        self.chunk = chunk
        self.inject = inject
        self.dq: Counter[str] = Counter()

    def run(self) -> Counter[str]:
        """Fill the columns; returns the injected data-quality findings by check id."""
        s, p = self.t["sessions"], self.t["patients"]
        rng = self.rng
        n, n_pat = len(s["session_id"]), len(p["patient_id"])
        # the institution of each patient: that of the earliest session
        start = np.where(s["started_at"] == NULL_I, np.iinfo(np.int64).max, s["started_at"])
        pat_inst = rng.integers(0, len(self.inst_codes), n_pat)
        seen = np.zeros(n_pat, bool)
        s_inst = np.array([self.inst_index.get(str(x), -1) for x in s["institution_id"]], np.int64)
        pos = np.searchsorted(p["patient_id"].astype(str), s["patient_id"].astype(str))  # ids are sorted
        pos = np.minimum(pos, max(n_pat - 1, 0))
        known = (
            (n_pat > 0) & (p["patient_id"].astype(str)[pos] == s["patient_id"].astype(str)) & (s_inst >= 0)
        )
        order = np.lexsort((start, pos))  # per patient, earliest session first
        order = order[known[order]]
        first_of = order[np.unique(pos[order], return_index=True)[1]]
        pat_inst[pos[first_of]] = s_inst[first_of]
        seen[pos[first_of]] = True
        home = np.array([_norm(self.inst_codes[i]) or "13101" for i in pat_inst], dtype=object)
        r = rng.random(n_pat)
        far_own = _norm(self.inst_codes[self.far])
        far_list = np.array([c for c in FAR_CODES if c != far_own], dtype=object)  # never its own
        far_pick = far_list[rng.integers(0, len(far_list), n_pat)]
        any_pick = np.array(ALL_CODES, dtype=object)[rng.integers(0, len(ALL_CODES), n_pat)]
        is_far = pat_inst == self.far
        code = np.where(is_far, np.where(r < 0.96, far_pick, home), np.where(r < 0.85, home, any_pick))
        six = rng.random(n_pat) < 0.5
        code = np.array([_six(c) if w else c for c, w in zip(code, six, strict=True)], dtype=object)
        code[(~is_far) & (rng.random(n_pat) < 0.03)] = None
        if self.inject and n_pat > 2:
            k = int(rng.integers(0, n_pat))
            good = str(code[k] or home[k])[:5]
            code[k] = good + str((int(_check(good)) + 3) % 10)  # a wrong check digit
            self.dq["dq.patient_bad_municipality"] += 1
        p["municipality_code"] = code
        # sessions: insurance billing and, for some, where the patient was that time
        kind = s["kind"]
        billed = np.where(rng.random(n) < 0.94, 1, 0).astype(np.int8)
        billed[rng.random(n) < 0.02] = -1
        billed[kind != "online_care"] = 0
        ec_ids = {str(x) for x in self.t["ec_cases"]["session_id"]}
        billed[np.array([str(x) in ec_ids for x in s["session_id"]], bool)] = 0  # EC is private care
        s["insurance_billed"] = billed
        away = rng.random(n) < 0.06
        s["patient_municipality_code"] = np.where(
            away, np.array(ALL_CODES, dtype=object)[rng.integers(0, len(ALL_CODES), n)], None
        )
        self.t["in_person_visits"] = self._visits(pat_inst, seen)
        return self.dq

    def _visits(self, pat_inst: np.ndarray, seen: np.ndarray) -> dict[str, np.ndarray]:
        s, p, rng = self.t["sessions"], self.t["patients"], self.rng
        first_at: dict[str, int] = {}
        online_first: dict[str, int] = {}
        for j in range(len(s["session_id"])):
            pid, st = str(s["patient_id"][j]), int(s["started_at"][j])
            if st == NULL_I:
                continue
            first_at[pid] = min(first_at.get(pid, st), st)
            if s["kind"][j] == "online_care" and s["is_first_visit"][j] == 1:
                online_first[pid] = min(online_first.get(pid, st), st)
        rows: list[tuple[str, int, int, int]] = []  # patient, institution index, time, is_first
        injected_earlier = False
        for k, pid in enumerate(p["patient_id"]):
            pid = str(pid)
            if not seen[k]:
                continue
            inst = int(pat_inst[k])
            far = inst == self.far
            t0 = online_first.get(pid)
            if t0 is not None:
                n_after = rng.geometric(0.5) if rng.random() < (0.05 if far else 0.55) else 0
                for _ in range(int(n_after)):
                    rows.append((pid, inst, t0 + int(rng.integers(3, 60)) * DAY, 0))
                if self.inject and not injected_earlier and not far:
                    rows.append((pid, inst, t0 - int(rng.integers(10, 90)) * DAY, 0))
                    injected_earlier = True
                    self.dq["dq.first_visit_after_earlier_visit"] += 1
            else:
                first = first_at.get(pid)
                if first is None:
                    continue
                # the online-specialised clinic saw these patients in person long before the period
                t_in = first - int(rng.integers(400, 900) if far else rng.integers(20, 300)) * DAY
                rows.append((pid, inst, t_in, 1))
                n_re = 0 if far else rng.poisson(1.6)
                span = max(DAY, VISITS_TO_DAY * DAY - t_in)
                for _ in range(int(n_re)):
                    rows.append((pid, inst, t_in + int(rng.integers(1, span // DAY + 1)) * DAY, 0))
        n = len(rows)
        pats = np.array([r[0] for r in rows], dtype=object)
        insts = np.array([r[1] for r in rows], np.int64)
        day_start = np.array([r[2] for r in rows], np.int64) // DAY * DAY
        at = day_start + 9 * 3600 + rng.integers(0, 9 * 3600, n)
        first = np.array([r[3] for r in rows], np.int8)
        billed = np.where(rng.random(n) < 0.95, 1, 0).astype(np.int8)
        billed[rng.random(n) < 0.02] = -1
        docs = np.array(
            [self.doc_ids[self.inst_docs[i][rng.integers(0, len(self.inst_docs[i]))]] for i in insts],
            dtype=object,
        )
        inst_ids = np.array(list(self.inst_index), dtype=object)[insts] if n else np.empty(0, dtype=object)
        if self.inject and n:
            pats = np.append(pats, f"P9{self.chunk:03d}-unknown")  # a patient not in patients
            inst_ids = np.append(inst_ids, inst_ids[0])
            inst_ids = np.append(inst_ids, f"I9{self.chunk:03d}X")  # an institution not in institutions
            pats = np.append(pats, pats[0])
            at = np.append(at, [at[0] + 3600, at[0] + 7200])
            first = np.append(first, [0, 1]).astype(np.int8)
            billed = np.append(billed, [1, 1]).astype(np.int8)
            docs = np.append(docs, [docs[0], None])
            self.dq["dq.in_person_unknown_patient"] += 1
            self.dq["dq.in_person_unknown_institution"] += 1
        order = np.argsort(at, kind="stable")
        m = len(at)
        ids = np.array([f"V{self.chunk:03d}-{i:06d}" for i in range(m)], dtype=object)
        return {
            "visit_id": ids,
            "patient_id": pats[order],
            "institution_id": inst_ids[order],
            "doctor_id": docs[order],
            "visited_at": at[order],
            "is_first_visit": first[order],
            "insurance_billed": billed[order],
        }


class AnnualTruth:
    """The expected annual-report figures, accumulated chunk by chunk (plain Python, no SQL)."""

    KEYS = (
        "in_person_first",
        "in_person_revisit",
        "online_first",
        "online_revisit",
        "online_first_pre_consultation",
        "online_first_no_in_person_after",
    )

    def __init__(self, inst_ids: np.ndarray, inst_codes: np.ndarray) -> None:
        self.inst_code = {str(i): _norm(c) for i, c in zip(inst_ids, inst_codes, strict=True)}
        self.inst_raw = list(inst_codes)
        self.months: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.elsewhere: dict[str, Counter[str]] = defaultdict(Counter)
        self.unknown_place: Counter[str] = Counter()
        self.dq: Counter[str] = Counter()

    def add(self, tables: dict[str, dict[str, np.ndarray]]) -> None:
        """Count one chunk's final rows."""
        s, v, p = tables["sessions"], tables["in_person_visits"], tables["patients"]
        pat_code = {str(a): b for a, b in zip(p["patient_id"], p["municipality_code"], strict=True)}
        pre_ends: dict[str, list[int]] = defaultdict(list)
        for j in range(len(s["session_id"])):
            if s["kind"][j] == "pre_consultation" and s["ended_at"][j] != NULL_I:
                pre_ends[str(s["patient_id"][j])].append(int(s["ended_at"][j]))
        self.dq["dq.patient_bad_municipality"] += sum(
            1 for c in p["municipality_code"] if c is not None and _norm(c) is None
        )
        self.dq["dq.session_bad_municipality"] += sum(
            1 for c in s["patient_municipality_code"] if c is not None and _norm(c) is None
        )
        visits: dict[tuple[str, str], list[int]] = defaultdict(list)
        for j in range(len(v["visit_id"])):
            pid, iid, at = str(v["patient_id"][j]), str(v["institution_id"][j]), int(v["visited_at"][j])
            visits[(pid, iid)].append(at)
            self.dq["dq.in_person_unknown_patient"] += pid not in pat_code
            self.dq["dq.in_person_unknown_institution"] += iid not in self.inst_code
            if (
                iid not in self.inst_code
                or not PERIOD_FROM <= at < PERIOD_TO
                or v["insurance_billed"][j] != 1
                or v["is_first_visit"][j] not in (0, 1)  # unknown: neither 初診 nor 再診
            ):
                continue
            key = "in_person_first" if v["is_first_visit"][j] == 1 else "in_person_revisit"
            self.months[(iid, _month(at))][key] += 1
        for j in range(len(s["session_id"])):
            iid, pid, st = str(s["institution_id"][j]), str(s["patient_id"][j]), int(s["started_at"][j])
            first = s["kind"][j] == "online_care" and s["is_first_visit"][j] == 1
            if first and st != NULL_I and any(t < st for t in visits.get((pid, iid), ())):
                self.dq["dq.first_visit_after_earlier_visit"] += 1
            if s["kind"][j] != "online_care" or s["insurance_billed"][j] != 1 or iid not in self.inst_code:
                continue
            if st == NULL_I or not PERIOD_FROM <= st < PERIOD_TO or s["is_first_visit"][j] not in (0, 1):
                continue
            c = self.months[(iid, _month(st))]
            if s["is_first_visit"][j] == 1:
                c["online_first"] += 1
                if s["preceded_by_session_id"][j] is not None or any(e <= st for e in pre_ends.get(pid, ())):
                    c["online_first_pre_consultation"] += 1
                if not any(st < t < PERIOD_TO for t in visits.get((pid, iid), ())):
                    c["online_first_no_in_person_after"] += 1
            elif s["is_first_visit"][j] == 0:
                c["online_revisit"] += 1
            raw = s["patient_municipality_code"][j]
            place = _norm(raw if raw is not None else pat_code.get(pid))
            own = self.inst_code[iid]
            if place is None or own is None:
                self.unknown_place[iid] += 1
            elif place != own:
                self.elsewhere[iid][place] += 1

    def summary(self) -> dict[str, Any]:
        """``generation.json``'s ``annual_report``: per institution, twelve months and the 80 % rule."""
        months = [
            str(m)
            for m in np.arange(np.datetime64("2025-08"), np.datetime64("2026-08"), dtype="datetime64[M]")
        ]
        out: dict[str, Any] = {}
        for iid in sorted(self.inst_code):
            rows = {m: {k: self.months.get((iid, m), Counter())[k] for k in self.KEYS} for m in months}
            total = sum(
                r[k]
                for r in rows.values()
                for k in ("in_person_first", "in_person_revisit", "online_first", "online_revisit")
            )
            other = sum(self.elsewhere[iid].values())
            top = sorted(self.elsewhere[iid].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            out[iid] = {
                "months": rows,
                "all_care": total,
                "elsewhere": other,
                "unknown_place": self.unknown_place[iid],
                "above_80_percent": total > 0 and other * 10 > total * 8,
                "top_municipalities": [c for c, _ in top] if total and other * 10 > total * 8 else [],
            }
        return {
            "year": REPORT_YEAR,
            "period": {"from": "2025-08-01", "to": "2026-07-31"},
            "institutions": out,
            "dq": dict(
                sorted(
                    {
                        **self.dq,
                        "dq.institution_bad_municipality": sum(
                            1 for c in self.inst_raw if c is not None and _norm(c) is None
                        ),
                    }.items()
                )
            ),
        }
