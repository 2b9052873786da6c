"""Words the report prints: guideline section names, how to read the figures, per-rule guidance.

Data only, so that the HTML module stays about layout. Per-rule guidance (Japanese and English)
and what each rule checks come from the rule catalogue (``toolkit/rules/rules.yaml``), the one
place a rule's meaning is written; a rule id the catalogue lacks gets a generic sentence.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from toolkit.rules.catalogue import Rule, load

#: Guideline chapter V parts: section group → (Japanese, English).
SECTIONS: dict[str, tuple[str, str]] = {
    "V-1": ("オンライン診療の提供に関する事項", "Providing online care"),
    "V-1-(1)": ("医師－患者関係／患者合意", "Doctor–patient relationship and consent"),
    "V-1-(2)": ("適用対象", "Who may be seen online (first visits, EC)"),
    "V-1-(3)": ("診療計画", "Care plan"),
    "V-1-(4)": ("本人確認", "Identity confirmation"),
    "V-1-(5)": ("薬剤処方・管理", "Prescribing"),
    "V-1-(6)": ("診察方法", "How the examination is done"),
    "V-2": ("オンライン診療の提供体制に関する事項", "Set-up for online care"),
    "V-2-(1)": ("医師の所在", "Where the doctor is"),
    "V-2-(2)": ("患者の所在", "Where the patient is"),
    "V-2-(3)": ("患者が看護師等といる場合", "Patient with a nurse (D to P with N)"),
    "V-2-(4)": ("患者が医師といる場合（D to P with D）", "Patient with a doctor (D to P with D)"),
    "V-2-(5)": ("通信環境（情報セキュリティ・プライバシー・利用端末）", "Communication security and privacy"),
    "V-3": ("その他オンライン診療に関連する事項", "Other matters"),
    "V-3-(1)": ("医師教育／患者教育", "Training of doctors and patients"),
    "V-3-(2)": ("質評価／フィードバック", "Quality evaluation and feedback"),
    "V-3-(3)": ("エビデンスの蓄積", "Building the evidence"),
}

_GENERIC = (
    "指針の該当箇所を確認し、記録を見直してください。",
    "Read the guideline section and review the records.",
)


def section_names(group: str) -> tuple[str, str]:
    """(Japanese, English) name of a section group such as 'V-1-(2)'."""
    return SECTIONS.get(group, ("", group))


@functools.cache
def _catalogue() -> dict[str, Rule]:
    """rule id → catalogue rule (empty if the catalogue cannot load)."""
    try:
        return {r.id: r for r in load().rules}
    except Exception:  # the report must still render from the run store alone
        return {}


def guidance(rule_id: str) -> tuple[str, str]:
    """(Japanese, English) guidance for a rule id, both from the rule catalogue.

    A rule id the catalogue does not hold (a run stored by another version) gets a generic line.
    """
    rule = _catalogue().get(rule_id)
    return (rule.guidance_ja, rule.guidance) if rule else _GENERIC


def what_is_checked(rule_id: str) -> str:
    """'scope: …; check: …' from the rule catalogue, or '' for rules not in it."""
    rule = _catalogue().get(rule_id)
    return f"In scope 対象: {rule.scope}. Checked 確認内容: {rule.check}." if rule else ""


HOW_TO_READ: list[tuple[str, str]] = [
    (
        "遵守率 = (対象件数 − 違反 − 記録なし) ÷ 対象件数。最低限遵守事項と推奨事項は混ぜて集計しません。",
        "Compliance rate = (records in scope − violated − not evidenced) ÷ records in scope. Must-follow and "
        "recommended rules are never pooled into one rate.",
    ),
    (
        "「記録なし」は、必要な項目が空欄で遵守を確認できなかった記録です。違反とは分けて表示します。",
        "'Not evidenced' means the record lacked the fields needed to show compliance; it counts against "
        "compliance but is shown apart from 'violated'.",
    ),
    (
        "95%信頼区間（Wilson法）: 件数が少ないほど幅が広くなります。",
        "95% interval (Wilson score): the fewer records, the wider the interval.",
    ),
    (
        "ファンネルプロット: 横軸は件数、縦軸は遵守率。破線は全体の遵守率の95%・99.8%管理限界で、"
        "外側の点は偶然では説明しにくい差を示します。順位表ではありません。",
        "Funnel plot: volume across, compliance up. Dashed lines are the 95% and 99.8% control limits around "
        "the overall rate; points outside them differ beyond chance. It is not a league table.",
    ),
    (
        "ヒートマップ: 規則×医療機関の遵守率。色は80%以下で同じ赤になります。セルの数字が遵守率です。",
        "Heat map: compliance per rule and institution; colours bottom out at 80%; the number is the rate.",
    ),
    (
        "タイムライン: 1人の医師の診療を時刻順に並べ、同時に行われた診療は2行目以降に赤で示します。",
        "Timeline: one doctor's sessions in time; a session running at the same time as another goes to a "
        "second row and is red when the audit counted it against exam.one_patient_at_a_time.",
    ),
    (
        "緊急避妊のファンネル: 事例数 → 処方あり → 薬剤師の面前内服 → 受診確認（期限前を含む）。",
        "EC funnel: cases → prescribed → witnessed intake → follow-up visit (or not yet due).",
    ),
    (
        "前回比較: 記録IDで照合した新規・継続・解消の件数と、2標本比率の検定（p<0.05）による改善・悪化。",
        "Run comparison: new, persisting and resolved records (matched by id), and better/worse by a "
        "two-proportion z-test at p < 0.05.",
    ),
]


#: Columns holding a proportion (0..1) in the report frames: shown as percentages with one decimal.
_PERCENT_COLUMNS = re.compile(r"^(rate|rate_lo|rate_hi|rate_prev|p0|lo95|hi95|lo998|hi998|.+_rate)$")


def percent_view(df: Any) -> Any:
    """``df`` (a pandas frame of rates) styled for a notebook: proportions as ``97.3%``, p values to 3 decimals.

    The frame itself is unchanged (a pandas ``Styler`` is returned), so notebooks keep computing on it.
    """
    fmt: dict[str, Any] = {c: "{:.1%}" for c in df.columns if _PERCENT_COLUMNS.match(str(c))}
    fmt.update({c: "{:.3f}" for c in df.columns if c == "p_value"})
    fmt.update({c: "{:.2f}" for c in df.columns if c == "z"})
    return df.style.format(fmt, na_rep="—")


def pooled_line(pooled: dict) -> str:
    """One line for :func:`toolkit.report.data.pooled`: rate as a percentage with its 95 % interval and counts."""

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x * 100:.1f}%"

    return (
        f"{pooled['level']}: 遵守率 compliance {pct(pooled['rate'])} (95%CI {pct(pooled['rate_lo'])}–"
        f"{pct(pooled['rate_hi'])}); 規則 rules {pooled['rules']} (指摘あり with findings {pooled['rules_failed']}); "
        f"対象 in scope {pooled['denominator']:,}, 違反 violated {pooled['violated']:,}, "
        f"記録なし not evidenced {pooled['not_evidenced']:,}"
    )
