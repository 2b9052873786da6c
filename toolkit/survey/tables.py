"""EC survey tables: the layout (rows, columns, additive lines); the counts are in :mod:`toolkit.survey.counts`.

Every number of the survey is a *cell* with a stable id ``"T<n>|<row>|<col>"``. The layout
(:func:`build_layout`) says which cells each table shows, which cells add up (lines, used by
suppression) and which rates are derived. :func:`toolkit.survey.counts.compute_counts` fills every cell with an exact
count. The same layout is rebuilt from the period when packages are merged, so counts from many
institutions are added cell by cell.

Definitions (docs/survey.md): a case is in the period when its session's ``started_at`` (Japan
time) falls in one of the period's months. Age on the session date comes from ``birth_date``;
with only ``birth_year`` the age is year difference − 1 or year difference, and the case gets a
band only when both fall in the same band (else "boundary, birth year only").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from toolkit.rules.sql import rules_sql

#: Bump when a table's rows/columns change; packages with another version are not merged.
TABLE_SCHEMA_VERSION = 1
TABLE_IDS = ("T1", "T2", "T3", "T4", "T5", "T6")
EC_TOTAL = "T1|all|total"

AGE_BANDS = (
    ("u16", "16歳未満", "under 16"),
    ("16_17", "16–17歳", "16–17"),
    ("18_19", "18–19歳", "18–19"),
    ("20s", "20–29歳", "20–29"),
    ("30s", "30–39歳", "30–39"),
    ("40s", "40–49歳", "40–49"),
    ("50p", "50歳以上", "50+"),
    ("boundary", "不明（生年のみ・区分境界）", "unknown: birth year only, straddles a band"),
    ("unknown", "不明", "unknown"),
)
REASONS = (
    ("geographic", "地理的要因", "geographic"),
    ("psychological", "心理的要因", "psychological"),
    ("unknown", "不明", "unknown"),
)
ROUTES = (
    ("yes", "相談窓口等を経由", "via a support window"),
    ("no", "経由せず", "not via a support window"),
    ("unknown", "不明", "unknown"),
)
PRESCRIBERS = (
    ("obgyn", "産婦人科医", "OB/GYN"),
    ("trained", "研修受講済の医師（産婦人科以外）", "EC-trained, not OB/GYN"),
    ("untrained", "研修未受講（受講日が診療日より後）※違反", "untrained (training after visit) — violation"),
    (
        "not_recorded",
        "研修受講の記録なし（産婦人科以外）※違反",
        "non-OB/GYN, no EC training on record — violation",
    ),
    ("unknown", "医師情報不明", "doctor/specialty unknown"),
)
DIMENSIONS = (
    ("age", "年齢階級", "age band", AGE_BANDS),
    ("reason", "理由", "reason", REASONS),
    ("route", "経路", "route", ROUTES),
    ("prescriber", "処方医", "prescriber", PRESCRIBERS),
)
CONDITIONS = (
    ("single_tablet", "一錠のみ", "single tablet"),
    ("outside", "院外処方", "out-of-hospital prescription"),
    ("pharmacist_trained", "研修を受けた薬剤師による調剤", "trained pharmacist"),
    ("witnessed_intake", "薬剤師の面前での内服", "witnessed intake"),
    ("contraception_counselled", "確実な避妊法の説明", "contraception counselled"),
)
EC_RULES = (
    (
        "ec.prescriber_qualified",
        "産婦人科医又は指定研修を受講した医師が処方",
        "OB/GYN or EC-trained prescriber",
    ),
    ("ec.reason_allowed", "地理的要因又は心理的状態による場合に限る", "geographic or psychological reason"),
    ("ec.single_tablet_outside", "一錠のみの院外処方", "one tablet, outside pharmacy"),
    ("ec.witnessed_intake", "研修薬剤師による調剤と面前内服", "trained pharmacist, witnessed intake"),
    ("ec.follow_up", "約3週間後の産婦人科対面受診", "in-person OB/GYN follow-up"),
    (
        "ec.assault_support",
        "性被害疑い時の警察・ワンストップ・児相への連携",
        "assault: police/one-stop/child guidance",
    ),
    ("ec.contraception_counselled", "確実な避妊法の説明", "contraception counselled"),
)
#: EC rules whose scope is every ec_case (their in-scope count equals the EC case count), read
#: from the rules' own scopes (the as-of date does not change a scope).
ALL_CASE_RULES = tuple(
    rid
    for rid, r in rules_sql(dt.date(2000, 1, 1)).items()
    if r.entity == "ec_case" and r.scope.strip().upper() == "TRUE"
)


def cell(table: str, row: str, col: str) -> str:
    """Canonical id of a survey cell."""
    return f"{table}|{row}|{col}"


@dataclass
class TableSpec:
    """One published table: rows × columns, each shown cell a count cell id or a rate."""

    id: str
    title_ja: str
    title_en: str
    rows: list[tuple[str, str, str]]  # (key, ja, en)
    cols: list[tuple[str, str, str]]  # (key, ja, en)
    cells: dict[tuple[str, str], Any]  # (row, col) → cell id, or ("rate", num_id, den_id)
    notes: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """All tables of the survey plus the suppression lines and links over their cells."""

    months: list[str]
    tables: list[TableSpec]
    lines: list[list[str]]
    links: list[list[str]]
    owned: dict[str, list[str]]  # table id → the cell ids it owns (package rows)


def _t1(months: list[str], lines: list[list[str]]) -> tuple[TableSpec, list[str]]:
    cols = [(m, m, m) for m in months] + [("total", "計", "total")]
    rows = [("all", "緊急避妊薬の処方件数（初診オンライン）", "EC prescriptions, first online visit")]
    for dim, dja, den, cats in DIMENSIONS:
        rows += [(f"{dim}:{k}", f"{dja}: {ja}", f"{den}: {en}") for k, ja, en in cats]
    cells = {(r[0], c[0]): cell("T1", r[0], c[0]) for r in rows for c in cols}
    for r in rows:
        lines.append([cell("T1", r[0], c[0]) for c in cols])
    for dim, _, _, cats in DIMENSIONS:
        for c in cols:
            lines.append([cell("T1", f"{dim}:{k}", c[0]) for k, _, _ in cats] + [cell("T1", "all", c[0])])
    spec = TableSpec(
        "T1",
        "初診からのオンライン診療による緊急避妊薬の処方（月別・属性別）",
        "EC prescriptions from first online visits, by month and characteristic",
        rows,
        cols,
        cells,
        [
            "件数 = 期間内に開始した初診オンライン診療の緊急避妊症例 (ec_cases)。"
            " Count = EC cases whose session started (Japan time) in the month.",
            "年齢 = 診療日時点。生年のみの場合、(年差−1, 年差) が同じ階級のときのみ階級に計上。"
            " Age on the session date; with birth year only, banded only if both possible ages agree.",
        ],
    )
    return spec, sorted({v for v in cells.values()})


def _t2(lines: list[list[str]]) -> tuple[TableSpec, list[str]]:
    cols = [
        ("met", "該当", "met"),
        ("not_met", "非該当", "not met"),
        ("unknown", "不明", "unknown"),
        ("cases", "症例数（分母）", "EC cases (denominator)"),
        ("rate", "該当率(%)", "rate met (%)"),
    ]
    rows = list(CONDITIONS)
    cells: dict[tuple[str, str], Any] = {}
    owned = []
    for k, _, _ in rows:
        ids = [cell("T2", k, c) for c in ("met", "not_met", "unknown")]
        owned += ids
        for c, i in zip(("met", "not_met", "unknown"), ids, strict=True):
            cells[(k, c)] = i
        cells[(k, "cases")] = EC_TOTAL
        cells[(k, "rate")] = ("rate", ids[0], EC_TOTAL)
        lines.append(ids + [EC_TOTAL])
    return TableSpec(
        "T2",
        "処方条件の遵守状況",
        "Conditions met",
        rows,
        cols,
        cells,
        [
            "分母 = 期間内の緊急避妊症例数（全症例）。緊急避妊薬の処方行がない症例は「不明」。",
            "Denominator = all EC cases in the period; a case with no EC prescription line counts "
            "as unknown. Single tablet = exactly one EC line with quantity 1; outside/pharmacist/"
            "witnessed = true on every EC line.",
        ],
    ), owned


def _t3(lines: list[list[str]]) -> tuple[TableSpec, list[str]]:
    keys = [
        "window_in",
        "window_out",
        "window_unknown",
        "completed",
        "pending",
        "overdue",
        "status_unknown",
        "settled",
    ]
    rows = [
        ("cases", "症例数", "EC cases"),
        ("window_in", "対面受診予定が14–28日後", "in-person visit planned 14–28 days after"),
        ("window_out", "予定日が14–28日の範囲外", "planned date outside 14–28 days"),
        ("window_unknown", "予定日の記録なし", "no planned date recorded"),
        ("completed", "受診済", "completed (visit recorded)"),
        ("pending", "未受診・期限内（予定日+14日以内）", "not yet due (as-of ≤ due + 14 days)"),
        ("overdue", "未受診・期限超過", "overdue (as-of > due + 14 days, not visited)"),
        ("status_unknown", "未受診・予定日不明", "not visited, no planned date"),
        ("settled", "判定対象（受診済＋期限超過）", "due (completed + overdue)"),
    ]
    cols = [("count", "件数", "count"), ("rate", "率(%)", "rate (%)")]
    ids = {k: cell("T3", k, "count") for k in keys}
    cells: dict[tuple[str, str], Any] = {(k, "count"): i for k, i in ids.items()}
    cells[("cases", "count")] = EC_TOTAL
    cells[("completed", "rate")] = ("rate", ids["completed"], ids["settled"])
    cells[("overdue", "rate")] = ("rate", ids["overdue"], ids["settled"])
    lines.append([ids["window_in"], ids["window_out"], ids["window_unknown"], EC_TOTAL])
    lines.append([ids["completed"], ids["pending"], ids["overdue"], ids["status_unknown"], EC_TOTAL])
    lines.append([ids["completed"], ids["overdue"], ids["settled"]])
    return TableSpec(
        "T3",
        "産婦人科医による対面診療（約3週間後）",
        "In-person OB/GYN follow-up",
        rows,
        cols,
        cells,
        [
            "率の分母 = 受診済＋期限超過（予定日+14日を過ぎた未受診）。基準日 (as-of) は manifest 参照。",
            "Rate denominator = completed + overdue (cases whose outcome is settled); as-of date "
            "is given in the notes/manifest.",
        ],
    ), list(ids.values())


def _t4(lines: list[list[str]]) -> tuple[TableSpec, list[str]]:
    groups = {
        "suspected": ("suspected_yes", "suspected_no", "suspected_unknown"),
        "referred": ("referred_yes", "referred_no", "referred_unknown"),
        "age": ("minor", "adult", "age_unknown"),
        "cg": ("cg_yes", "cg_no", "cg_unknown"),
    }
    rows = [
        ("cases", "症例数", "EC cases"),
        ("suspected_yes", "性被害の疑いあり", "sexual assault suspected"),
        ("suspected_no", "疑いなし", "not suspected"),
        ("suspected_unknown", "不明", "unknown"),
        (
            "referred_yes",
            "疑いあり: 警察・ワンストップ支援センターへ連携",
            "suspected: referred to police/one-stop",
        ),
        ("referred_no", "疑いあり: 連携なし", "suspected: not referred"),
        ("referred_unknown", "疑いあり: 連携不明", "suspected: referral unknown"),
        ("minor", "疑いあり: 18歳未満", "suspected: under 18"),
        ("adult", "疑いあり: 18歳以上", "suspected: 18 or over"),
        ("age_unknown", "疑いあり: 年齢不明", "suspected: age unknown"),
        ("cg_yes", "18歳未満: 児童相談所へ通告", "under 18: child guidance notified"),
        ("cg_no", "18歳未満: 通告なし", "under 18: not notified"),
        ("cg_unknown", "18歳未満: 通告不明", "under 18: notification unknown"),
    ]
    cols = [("count", "件数", "count"), ("rate", "率(%)", "rate (%)")]
    ids = {k: cell("T4", k, "count") for g in groups.values() for k in g}
    cells: dict[tuple[str, str], Any] = {(k, "count"): i for k, i in ids.items()}
    cells[("cases", "count")] = EC_TOTAL
    cells[("referred_yes", "rate")] = ("rate", ids["referred_yes"], ids["suspected_yes"])
    cells[("cg_yes", "rate")] = ("rate", ids["cg_yes"], ids["minor"])
    lines.append([ids[k] for k in groups["suspected"]] + [EC_TOTAL])
    lines.append([ids[k] for k in groups["referred"]] + [ids["suspected_yes"]])
    lines.append([ids[k] for k in groups["age"]] + [ids["suspected_yes"]])
    lines.append([ids[k] for k in groups["cg"]] + [ids["minor"]])
    return TableSpec(
        "T4",
        "性被害が疑われる症例への対応",
        "Suspected sexual assault",
        rows,
        cols,
        cells,
        [
            "連携率の分母 = 疑いありの症例、通告率の分母 = 疑いありかつ18歳未満の症例。",
            "Referral rate denominator = suspected cases; notification rate denominator = "
            "suspected cases under 18.",
        ],
    ), list(ids.values())


def _t5(lines: list[list[str]], links: list[list[str]]) -> tuple[TableSpec, list[str]]:
    rows = list(EC_RULES)
    cols = [
        ("in_scope", "対象数", "in scope"),
        ("compliant", "遵守", "compliant"),
        ("violated", "違反", "violated"),
        ("not_evidenced", "記録なし", "not evidenced"),
        ("rate", "遵守率(%)", "compliance rate (%)"),
        ("available", "集計機関数", "institutions with an audit run"),
    ]
    cells: dict[tuple[str, str], Any] = {}
    owned = []
    for k, _, _ in rows:
        ids = {
            c: cell("T5", k, c) for c in ("in_scope", "compliant", "violated", "not_evidenced", "available")
        }
        owned += list(ids.values())
        for c, i in ids.items():
            cells[(k, c)] = i
        cells[(k, "rate")] = ("rate", ids["compliant"], ids["in_scope"])
        lines.append([ids["compliant"], ids["violated"], ids["not_evidenced"], ids["in_scope"]])
        if k in ALL_CASE_RULES:
            links.append([ids["in_scope"], EC_TOTAL])
    return TableSpec(
        "T5",
        "ec.* 規則の遵守状況（最新の監査実行）",
        "Compliance with every ec.* rule (latest audit run)",
        rows,
        cols,
        cells,
        [
            "対象数 = 期間内の症例のうち規則の対象となるもの。違反・記録なしは監査実行の violations から。",
            "In scope = the period's EC cases in the rule's scope; violated / not evidenced come from "
            "the latest audit run. Case ids are kept only in local_not_for_release/.",
        ],
    ), owned


def _t6(months: list[str], lines: list[list[str]]) -> tuple[TableSpec, list[str]]:
    counts = [
        ("sessions", "処方を伴う初診オンライン診療（分母）", "first-visit online care with a prescription"),
        ("narc_psych", "麻薬・向精神薬を含む", "with narcotics/psychotropics"),
        ("high_risk", "基礎疾患不明で特に安全管理が必要な薬剤", "high-risk drug, history not known"),
        ("over7", "基礎疾患不明で8日以上の処方", "8+ days' supply, history not known"),
    ]
    rates = [(f"{k}_rate", f"{ja} 割合(%)", f"{en} (%)") for k, ja, en in counts[1:]]
    cols = counts + rates
    rows = [(m, m, m) for m in months] + [("total", "計", "total")]
    cells: dict[tuple[str, str], Any] = {}
    owned = []
    for r, _, _ in rows:
        for c, _, _ in counts:
            cells[(r, c)] = cell("T6", r, c)
            owned.append(cell("T6", r, c))
        for c, _, _ in counts[1:]:
            cells[(r, f"{c}_rate")] = ("rate", cell("T6", r, c), cell("T6", r, "sessions"))
    for c, _, _ in counts:
        lines.append([cell("T6", r, c) for r, _, _ in rows])
    return TableSpec(
        "T6",
        "初診からのオンライン診療における処方（月別）",
        "Prescribing at first online visits, by month",
        rows,
        cols,
        cells,
        [
            "単位 = セッション（処方行を1つ以上含む初診の online_care）。各列は重複あり（合計しない）。",
            "Unit = first-visit online_care sessions with at least one prescription line; columns "
            "overlap. History known = regular doctor, or prior information from one of the six "
            "sources and recorded; otherwise (incl. unknown) history is not known.",
        ],
    ), owned


def build_layout(months: list[str]) -> Layout:
    """The survey's tables, lines and links for these months."""
    lines: list[list[str]] = []
    links: list[list[str]] = []
    owned: dict[str, list[str]] = {}
    tables = []
    for tid, (spec, ids) in zip(
        TABLE_IDS,
        (_t1(months, lines), _t2(lines), _t3(lines), _t4(lines), _t5(lines, links), _t6(months, lines)),
        strict=True,
    ):
        tables.append(spec)
        owned[tid] = ids
    return Layout(months, tables, lines, links, owned)
