"""The annual report to the Regional Bureau: 情報通信機器を用いた診療に係る報告書 (filed each August).

``ocaudit survey annual --db F --year 2026`` counts, per institution and month of the previous
1 August – 31 July (Japan time), the billed 初診/再診 in person and online, how many online 初診 had
a pre-consultation and how many were not followed by in-person care at the institution, and the
share of care for patients located in another municipality (the form's 80 % rule, with the five
municipalities with most care). Every definition is in :data:`DEFINITIONS` (written beside the
figures) and in README; the workbook layout is :mod:`toolkit.survey.annual_workbook`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from toolkit import municipality, store
from toolkit.audit.plan import available_columns
from toolkit.errors import UserError
from toolkit.rules.facts import japan_time

#: measure → (form label ja, label en); the order of the CSV columns
MEASURES: dict[str, tuple[str, str]] = {
    "in_person_first": ("対面診療 初診料 算定件数", "in person: first-visit fee billed"),
    "in_person_revisit": ("対面診療 再診料 算定件数", "in person: revisit fee billed"),
    "online_first": ("情報通信機器を用いた診療 初診料 算定件数", "online: first-visit fee billed"),
    "online_revisit": ("情報通信機器を用いた診療 再診料 算定件数", "online: revisit fee billed"),
    "online_first_pre_consultation": (
        "初診料を算定した患者の内、診療前相談を行った件数",
        "of the online first visits: had a pre-consultation",
    ),
    "online_first_no_in_person_after": (
        "初診料を算定した患者の内、その後自院にて対面診療を行わなかった件数",
        "of the online first visits: not seen in person at the institution afterwards",
    ),
}
IN_PERSON_MEASURES = ("in_person_first", "in_person_revisit", "online_first_no_in_person_after")

#: (ja, en) definitions written into the workbook and definitions.txt
DEFINITIONS: tuple[tuple[str, str], ...] = (
    (
        "対象期間: 報告年の前年8月1日0時～当年7月31日24時（日本時間）。月は日本時間の暦月。",
        "Period: 1 August of the previous year 00:00 to 31 July of the report year 24:00, Japan time; "
        "months are Japan-time calendar months.",
    ),
    (
        "対面診療の初診料・再診料: in_person_visits の行のうち insurance_billed が真のもの（列が無い場合は全行）を、"
        "is_first_visit が真なら初診料、偽なら再診料（外来診療料を含む）として数えます。",
        "In-person first-visit / revisit fees: in_person_visits rows with insurance_billed true (every row "
        "when the column is absent), is_first_visit true = 初診料, false = 再診料 (incl. 外来診療料).",
    ),
    (
        "情報通信機器を用いた診療の初診料・再診料: kind が online_care のセッションのうち insurance_billed が真のもの"
        "（列が無い場合は全 online_care セッション）。診療前相談（pre_consultation）と受診勧奨（online_referral）は数えません。",
        "Online first-visit / revisit fees: sessions of kind online_care with insurance_billed true (every "
        "online_care session when the column is absent). Pre-consultations and online referrals are not counted.",
    ),
    (
        "不明（空欄）の insurance_billed・is_first_visit は算定として数えず、件数を注記に示します。",
        "An empty (unknown) insurance_billed or is_first_visit is not counted as billed; how many there were "
        "is given in the notes.",
    ),
    (
        "診療前相談を行った件数: 初診料を算定したオンライン初診のうち、preceded_by_session_id があるもの、または同じ患者の"
        "診療前相談（pre_consultation）が初診の開始時刻までに終了しているもの。",
        "Had a pre-consultation: online first visits with preceded_by_session_id, or with a pre_consultation "
        "session of the same patient that ended at or before the first visit started.",
    ),
    (
        "その後自院にて対面診療を行わなかった件数: 初診料を算定したオンライン初診のうち、同じ患者の同じ医療機関での"
        "対面診療（in_person_visits、算定の有無を問わない）が初診の後から対象期間の末日（7月31日）までに無いもの。",
        "Not seen in person afterwards: online first visits with no in_person_visits row (billed or not) of "
        "the same patient at the same institution after the first visit and before the end of 31 July.",
    ),
    (
        "8割の判定: 全診療件数（上表の対面・情報通信機器の初診料・再診料の合計）のうち、患者の所在が医療機関と異なる"
        "市町村又は特別区である件数の割合が8割を超えるか。患者の所在は sessions.patient_municipality_code、"
        "無ければ patients.municipality_code。対面診療の患者は医療機関に所在するものとします。",
        "The 80 % rule: of all care counted above (in person and online, first visits and revisits), the "
        "share with the patient in another municipality than the institution's is above 80 %. The patient's "
        "place is sessions.patient_municipality_code, else patients.municipality_code; a patient seen in "
        "person is at the institution.",
    ),
    (
        "市町村コードは JIS X 0402（5桁、または検査数字付き6桁）。検査数字の誤ったコードは所在不明として扱い、"
        "データ品質の指摘になります。8割を超える場合、診療件数の多い市町村5箇所を記載します（同数はコード順）。",
        "Municipality codes are JIS X 0402 (5 digits, or 6 with the check digit); a code with a wrong check "
        "digit counts as an unknown place and is a data-quality finding. Above 80 %, the five municipalities "
        "with most care are listed (ties by code).",
    ),
)


@dataclass
class InstitutionAnnual:
    """One institution's figures; a measure is None when the data needed for it is missing."""

    institution_id: str
    name: str
    municipality_code: str | None  # 5 digits, None when missing or invalid
    rows: dict[str, dict[str, int | None]]  # month → measure → count
    all_care: int = 0
    elsewhere: int = 0
    unknown_place: int = 0
    above_80: bool | None = None  # None: cannot be decided
    top: list[tuple[str, int]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        """Share of all care with the patient elsewhere (None without any care)."""
        return self.elsewhere / self.all_care if self.all_care else None

    def total(self, measure: str) -> int | None:
        """The twelve months' sum of a measure (None when it could not be counted)."""
        vals = [r[measure] for r in self.rows.values()]
        return None if any(v is None for v in vals) else sum(v or 0 for v in vals)


@dataclass
class AnnualReport:
    """The whole report: its year, months, institutions and notes on what the data lacked."""

    year: int
    months: list[str]
    institutions: list[InstitutionAnnual]
    notes: list[tuple[str, str]]


def parse_year(text: str | int) -> int:
    """``--year``: the four-digit year of the August the report is filed in (UserError otherwise)."""
    value = str(text).strip()
    if not re.fullmatch(r"20[0-9]{2}", value):
        raise UserError(
            f"--year {value!r}: give the four-digit year of the August the report is filed in, e.g. 2026 "
            "(the report of August 2026 covers 2025-08-01 – 2026-07-31) / 報告する年（西暦4桁）を指定してください"
        )
    return int(value)


def period_months(year: int) -> list[str]:
    """``2026`` → ``['2025-08', …, '2026-07']``."""
    return [f"{year - 1}-{m:02d}" for m in range(8, 13)] + [f"{year}-{m:02d}" for m in range(1, 8)]


def _bounds(year: int) -> tuple[str, str]:
    return f"{year - 1}-08-01 00:00:00+09:00", f"{year}-08-01 00:00:00+09:00"


def _note(notes: list[tuple[str, str]], ja: str, en: str) -> None:
    if (ja, en) not in notes:
        notes.append((ja, en))


def _institutions(con: duckdb.DuckDBPyConnection, only: str | None) -> list[tuple[str, str, str | None]]:
    rows = con.execute(
        "SELECT institution_id, coalesce(name, ''), municipality_code FROM institutions "
        "WHERE institution_id IS NOT NULL ORDER BY 1"
    ).fetchall()
    if not rows:
        rows = [
            (r[0], "", None)
            for r in con.execute(
                "SELECT DISTINCT institution_id FROM sessions WHERE institution_id IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
    if only is not None:
        rows = [r for r in rows if r[0] == only]
        if not rows:
            raise UserError(f"--institution {only}: no such institution in the database")
    return rows


def compute_annual(con: duckdb.DuckDBPyConnection, year: int, institution: str | None = None) -> AnnualReport:
    """Every figure of the report, from the database (read-only queries)."""
    if (
        not store.table_exists(con, "sessions")
        or not con.execute("SELECT count(*) FROM sessions").fetchone()[0]
    ):
        raise UserError("the database has no sessions; run `ocaudit ingest --db FILE SOURCE` first")
    avail = available_columns(con)
    months = period_months(year)
    lo, hi = _bounds(year)
    notes: list[tuple[str, str]] = []
    has_visits = "in_person_visits" in avail and bool(
        con.execute("SELECT count(*) FROM in_person_visits").fetchone()[0]
    )
    s_billed = "insurance_billed" in avail.get("sessions", set())
    v_billed = has_visits and "insurance_billed" in avail.get("in_person_visits", set())
    if not has_visits:
        _note(
            notes,
            "対面診療の記録（in_person_visits）がありません: 対面診療の初診料・再診料と「その後自院にて対面診療を"
            "行わなかった件数」は空欄です。8割の判定の全診療件数は情報通信機器を用いた診療だけで数えています（割合は上限）。",
            "No in-person visits (in_person_visits) in the database: the in-person counts and 'not seen in "
            "person afterwards' are left blank; the 80 % rule counts online care only (the share is an upper bound).",
        )
    if not s_billed:
        _note(
            notes,
            "sessions.insurance_billed がありません: すべての online_care セッションを算定として数えています"
            "（自費診療も含まれます）。",
            "sessions.insurance_billed is absent: every online_care session is counted as billed (private-pay "
            "care included).",
        )
    if has_visits and not v_billed:
        _note(
            notes,
            "in_person_visits.insurance_billed がありません: すべての対面診療を算定として数えています。",
            "in_person_visits.insurance_billed is absent: every in-person visit is counted as billed.",
        )
    has_place = bool(
        {"patient_municipality_code"} & avail.get("sessions", set())
        or {"municipality_code"} & avail.get("patients", set())
    )
    has_inst_code = "municipality_code" in avail.get("institutions", set())
    if not has_place or not has_inst_code:
        missing = [
            c
            for c, ok in (
                ("institutions.municipality_code", has_inst_code),
                ("sessions.patient_municipality_code / patients.municipality_code", has_place),
            )
            if not ok
        ]
        _note(
            notes,
            f"市町村コード（{', '.join(missing)}）がありません: 8割の判定と市町村の記載はできません（判定不能）。",
            f"Municipality codes ({', '.join(missing)}) are absent: the 80 % rule and the municipality list "
            "cannot be filled in (not decidable).",
        )
    jt_s = japan_time("s.started_at")
    billed_s = "s.insurance_billed IS TRUE" if s_billed else "TRUE"
    online_sql = f"""
WITH s AS (
  SELECT s.*, strftime({jt_s}, '%Y-%m') AS month FROM sessions s
  WHERE s.kind = 'online_care' AND s.started_at >= ?::TIMESTAMPTZ AND s.started_at < ?::TIMESTAMPTZ
    AND {billed_s} AND s.is_first_visit IS NOT NULL
)
SELECT s.institution_id, s.month,
  count(*) FILTER (WHERE s.is_first_visit) AS online_first,
  count(*) FILTER (WHERE NOT s.is_first_visit) AS online_revisit,
  count(*) FILTER (WHERE s.is_first_visit AND (s.preceded_by_session_id IS NOT NULL OR EXISTS (
      SELECT 1 FROM sessions pc WHERE pc.kind = 'pre_consultation' AND pc.patient_id = s.patient_id
      AND pc.ended_at <= s.started_at))) AS pre,
  count(*) FILTER (WHERE s.is_first_visit AND NOT EXISTS (
      SELECT 1 FROM in_person_visits v WHERE v.patient_id = s.patient_id AND v.institution_id = s.institution_id
      AND v.visited_at > s.started_at AND v.visited_at < ?::TIMESTAMPTZ)) AS no_after
FROM s GROUP BY ALL"""
    online = {
        (r[0], r[1]): r[2:] for r in con.execute(online_sql, [lo, hi, hi]).fetchall() if r[0] is not None
    }
    unknown_billing = con.execute(
        "SELECT count(*) FILTER (WHERE insurance_billed IS NULL), count(*) FILTER (WHERE is_first_visit IS NULL) "
        "FROM sessions WHERE kind = 'online_care' AND started_at >= ?::TIMESTAMPTZ AND started_at < ?::TIMESTAMPTZ",
        [lo, hi],
    ).fetchone()
    if s_billed and unknown_billing[0]:
        _note(
            notes,
            f"insurance_billed が空欄の online_care セッション {unknown_billing[0]} 件は算定に数えていません。",
            f"{unknown_billing[0]} online_care session(s) with an empty insurance_billed are not counted.",
        )
    if unknown_billing[1]:
        _note(
            notes,
            f"is_first_visit が空欄の online_care セッション {unknown_billing[1]} 件は初診・再診のどちらにも数えていません。",
            f"{unknown_billing[1]} online_care session(s) with an empty is_first_visit are counted as neither.",
        )
    in_person: dict[tuple[str, str], tuple[int, int]] = {}
    if has_visits:
        jt_v = japan_time("v.visited_at")
        billed_v = "v.insurance_billed IS TRUE" if v_billed else "TRUE"
        for iid, month, first, re_ in con.execute(
            f"SELECT v.institution_id, strftime({jt_v}, '%Y-%m'), count(*) FILTER (WHERE v.is_first_visit), "
            f"count(*) FILTER (WHERE NOT v.is_first_visit) FROM in_person_visits v "
            f"WHERE v.visited_at >= ?::TIMESTAMPTZ AND v.visited_at < ?::TIMESTAMPTZ AND {billed_v} GROUP BY ALL",
            [lo, hi],
        ).fetchall():
            in_person[(iid, month)] = (first, re_)
        n_unknown = con.execute(
            "SELECT count(*) FILTER (WHERE is_first_visit IS NULL), count(*) FILTER (WHERE insurance_billed IS NULL) "
            "FROM in_person_visits WHERE visited_at >= ?::TIMESTAMPTZ AND visited_at < ?::TIMESTAMPTZ",
            [lo, hi],
        ).fetchone()
        if n_unknown[0]:
            _note(
                notes,
                f"is_first_visit が空欄の対面診療 {n_unknown[0]} 件は初診・再診のどちらにも数えていません。",
                f"{n_unknown[0]} in-person visit(s) with an empty is_first_visit are counted as neither.",
            )
        if v_billed and n_unknown[1]:
            _note(
                notes,
                f"insurance_billed が空欄の対面診療 {n_unknown[1]} 件は算定に数えていません。",
                f"{n_unknown[1]} in-person visit(s) with an empty insurance_billed are not counted.",
            )
    place_sql = municipality.normalised_sql("coalesce(s.patient_municipality_code, p.municipality_code)")
    places: dict[str, list[tuple[str | None, int]]] = {}
    for iid, place, n in con.execute(
        f"""SELECT s.institution_id, {place_sql} AS place, count(*) FROM sessions s
LEFT JOIN patients p ON p.patient_id = s.patient_id
WHERE s.kind = 'online_care' AND s.started_at >= ?::TIMESTAMPTZ AND s.started_at < ?::TIMESTAMPTZ
  AND {billed_s} AND s.is_first_visit IS NOT NULL GROUP BY ALL""",
        [lo, hi],
    ).fetchall():
        places.setdefault(iid, []).append((place, n))
    out = []
    for iid, name, raw_code in _institutions(con, institution):
        rows: dict[str, dict[str, int | None]] = {}
        for m in months:
            o = online.get((iid, m), (0, 0, 0, 0))
            v = in_person.get((iid, m), (0, 0))
            rows[m] = {
                "in_person_first": v[0] if has_visits else None,
                "in_person_revisit": v[1] if has_visits else None,
                "online_first": o[0],
                "online_revisit": o[1],
                "online_first_pre_consultation": o[2],
                "online_first_no_in_person_after": o[3] if has_visits else None,
            }
        inst = InstitutionAnnual(iid, name, municipality.normalise(raw_code), rows)
        _decide_80(inst, places.get(iid, []), raw_code, has_place and has_inst_code)
        out.append(inst)
    return AnnualReport(year, months, out, notes)


def _decide_80(
    inst: InstitutionAnnual, places: list[tuple[str | None, int]], raw: str | None, can: bool
) -> None:
    """Fill the 80 % rule of one institution (share, unknowns, top five)."""
    inst.all_care = sum(
        sum(
            v or 0
            for k, v in r.items()
            if k in ("in_person_first", "in_person_revisit", "online_first", "online_revisit")
        )
        for r in inst.rows.values()
    )
    if not can:
        return
    own = inst.municipality_code
    if own is None:
        inst.unknown_place = sum(n for _p, n in places)
        what = "がありません" if raw is None else f"（{raw}）が JIS X 0402 として正しくありません"
        inst.notes.append(
            (
                f"医療機関の市町村コード{what}: 8割の判定はできません。",
                f"The institution's municipality code is {'missing' if raw is None else f'invalid ({raw})'}: "
                "the 80 % rule cannot be decided.",
            )
        )
        return
    other = {p: n for p, n in places if p is not None and p != own}
    inst.elsewhere = sum(other.values())
    inst.unknown_place = sum(n for p, n in places if p is None)
    if not inst.all_care:
        inst.above_80 = False
        return
    above = inst.elsewhere * 10 > inst.all_care * 8
    could = (inst.elsewhere + inst.unknown_place) * 10 > inst.all_care * 8
    if inst.unknown_place:
        inst.notes.append(
            (
                f"患者の所在が不明（市町村コードなし・誤り）の情報通信機器を用いた診療 {inst.unknown_place} 件は"
                "「異なる市町村」に数えていません。",
                f"{inst.unknown_place} online visit(s) with an unknown patient place (no or invalid code) are not "
                "counted as 'another municipality'.",
            )
        )
    if not above and could:
        inst.above_80 = None
        inst.notes.append(
            (
                "所在不明の件数によっては8割を超えるため、判定できません。市町村コードを補ってください。",
                "Depending on the unknown places the share could exceed 80 %: not decidable. Complete the "
                "municipality codes.",
            )
        )
        return
    inst.above_80 = above
    if above:
        inst.top = sorted(other.items(), key=lambda kv: (-kv[1], kv[0]))[:5]


def cli_survey_annual(args: argparse.Namespace) -> int:
    """``ocaudit survey annual``: 0 ok, 2 usage/data error."""
    from toolkit.survey.annual_workbook import write_annual

    year = parse_year(args.year)
    con = store.connect(args.db, read_only=True)
    try:
        report = compute_annual(con, year, getattr(args, "institution", None))
    finally:
        con.close()
    paths = write_annual(report, Path(args.out), chart=bool(getattr(args, "chart", False)))
    print(
        f"情報通信機器を用いた診療に係る報告書 {year}年8月報告 / annual report of August {year} "
        f"({report.months[0]} – {report.months[-1]}): {len(report.institutions)} institution(s)"
    )
    for inst in report.institutions:
        verdict = {True: "above 80 % (municipalities listed)", False: "not above 80 %", None: "not decidable"}
        print(
            f"  {inst.institution_id}: online 初診 {inst.total('online_first')}, 再診 {inst.total('online_revisit')}; "
            f"other municipality {inst.elsewhere}/{inst.all_care} — {verdict[inst.above_80]}"
        )
    for ja, en in report.notes:
        print(f"note: {ja} / {en}", file=sys.stderr)
    for p in paths:
        print(f"wrote {p}")
    return 0
