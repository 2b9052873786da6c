"""Words the report prints: guideline section names and per-rule guidance (Japanese and English).

Data only, so that report.py stays about layout. Guidance is keyed by rule id, with a fallback by
rule-id prefix (``ec.`` → the EC guidance) and a generic sentence for rules not listed.
"""

from __future__ import annotations

import functools

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

GUIDANCE: dict[str, tuple[str, str]] = {
    "consent.": (
        "オンライン診療の前に、説明と患者の明示的な希望・同意を診療録に記録してください。",
        "Before online care, explain it and record the patient's explicit wish and consent.",
    ),
    "judgement.": (
        "診療の都度、オンラインで可能か判断し、不適切・情報不足なら対面診療へ切り替えてください。",
        "Judge at every session whether online care is possible; switch to in-person care "
        "when it is not appropriate or information is insufficient.",
    ),
    "first_visit.": (
        "初診は、かかりつけの医師か、診療前相談・既往の情報がある場合に限り、"
        "不適切な症状や急病急変は対面へつないでください。",
        "Online first visits need a regular doctor, prior information or a pre-consultation; "
        "unsuitable symptoms and emergencies go to in-person care.",
    ),
    "care_plan.": (
        "対面で評価した上で診療計画を作成し、必要事項を記載して2年間保存してください。",
        "Make a care plan after an in-person assessment, fill in every item and keep it 2 years.",
    ),
    "recording.": (
        "録画・録音は患者の同意を得た場合に限ってください。",
        "Record sessions only with the patient's agreement.",
    ),
    "identity.": (
        "初診等では、患者の本人確認と医師の氏名・資格の提示を行い、方法を記録してください。",
        "On first visits, check the patient's identity and show the doctor's name and "
        "qualification; record how.",
    ),
    "rx.": (
        "初診では麻薬・向精神薬・ハイリスク薬を処方せず、8日分以上を処方しないでください。",
        "On online first visits do not prescribe narcotics, psychotropics or high-risk drugs, "
        "nor more than 7 days.",
    ),
    "exam.": (
        "リアルタイムの映像で、同時に1人の患者を診察し、同席者の同意を得てください。",
        "Examine by real-time video, one patient at a time, with consent for staff present.",
    ),
    "place.": (
        "医師・患者ともにプライバシーが保たれた場所で行い、所属と遵守状況を公表してください。",
        "Both sides in a private place; publish the doctor's affiliation and the compliance status.",
    ),
    "security.": (
        "第三者の同席には同意を得て、汎用サービスでは医療機関側から接続し、TLS 1.2以上を使ってください。",
        "Third parties only with consent; on general-purpose platforms the institution "
        "connects; TLS 1.2 or later.",
    ),
    "training.": (
        "オンライン診療を行う医師は厚生労働省の研修を修了してください。",
        "Doctors providing online care complete the MHLW training.",
    ),
    "ec.": (
        "緊急避妊薬は研修を受けた医師が処方し、薬剤師の面前で1錠を内服、約3週間後の受診を確認してください。",
        "Emergency contraception: trained prescriber, one tablet taken in front of a pharmacist, "
        "follow-up visit about 3 weeks later.",
    ),
    "evidence.": (
        "診療録にオンライン診療である旨を明記してください（エビデンスの蓄積）。",
        "Mark online sessions in the chart so evidence can be built up.",
    ),
    "network.": (
        "通信が不安定な場合は対面診療への切替を検討してください。",
        "Consider in-person care when the connection is unstable.",
    ),
}
_GENERIC = (
    "指針の該当箇所を確認し、記録を見直してください。",
    "Read the guideline section and review the records.",
)


def section_names(group: str) -> tuple[str, str]:
    """(Japanese, English) name of a section group such as 'V-1-(2)'."""
    return SECTIONS.get(group, ("", group))


@functools.cache
def _catalogue() -> dict[str, tuple[str, str, str]]:
    """rule id → (guidance, scope, check) in English from the rule catalogue (empty if it cannot load)."""
    try:
        from toolkit.rules.catalogue import load

        return {r.id: (r.guidance, r.scope, r.check) for r in load().rules}
    except Exception:  # the report must still render from the run store alone
        return {}


def guidance(rule_id: str) -> tuple[str, str]:
    """(Japanese, English) guidance for a rule id.

    Japanese: by rule id, else by rule-id prefix, else a generic line. English: the rule
    catalogue's own guidance when the rule is in it, else the same fallbacks.
    """
    ja, en = GUIDANCE.get(rule_id) or GUIDANCE.get(rule_id.split(".")[0] + ".", _GENERIC)
    cat = _catalogue().get(rule_id)
    return ja, (cat[0] if cat and cat[0] else en)


def what_is_checked(rule_id: str) -> str:
    """'scope: …; check: …' from the rule catalogue, or '' for rules not in it."""
    cat = _catalogue().get(rule_id)
    return f"In scope 対象: {cat[1]}. Checked 確認内容: {cat[2]}." if cat else ""


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
