"""Interactive Altair specs for the dashboard: one click selection each, tooltips in Japanese and English.

The static report charts (:mod:`toolkit.report.charts`) stay as they are; these are smaller and
carry a ``selection_point`` the app observes through ``alt.JupyterChart``. Rates are shown as
percentages with one decimal.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from toolkit.chart_theme import apply_theme
from toolkit.report.charts import COLORS, LEVEL_LABELS
from toolkit.report.data import bounded_funnel

RULE_SELECTION = "rule"
#: The variable parameter holding the selected rule: the app sets it in place (``JupyterChart.params``),
#: so choosing a rule restyles the drawn chart instead of sending and embedding a new one.
SELECTED_RULE = "selected_rule"
PROVIDER_SELECTION = "provider"
PCT = ".1%"
#: The counts behind a rate, in every tooltip that shows one.
COUNT_TOOLTIPS = [
    alt.Tooltip("denominator:Q", format=",", title="対象 in scope"),
    alt.Tooltip("violated:Q", format=",", title="違反 violated"),
    alt.Tooltip("not_evidenced:Q", format=",", title="記録なし not evidenced"),
]
RATE_TOOLTIP = alt.Tooltip("rate:Q", format=PCT, title="遵守率 compliance")
#: What every rate tooltip shows: the rate, its 95 % interval and the counts behind it.
RATE_TOOLTIPS = [
    RATE_TOOLTIP,
    alt.Tooltip("rate_lo:Q", format=PCT, title="95%信頼区間 下限 CI low"),
    alt.Tooltip("rate_hi:Q", format=PCT, title="95%信頼区間 上限 CI high"),
    *COUNT_TOOLTIPS,
]


def _title(ja: str, en: str, subtitle: str | None = None) -> alt.TitleParams:
    return alt.TitleParams(f"{ja}  {en}", subtitle=subtitle or alt.Undefined, anchor="start", fontSize=14)


def rules_chart(rules: pd.DataFrame, level: str, selected: str | None = None) -> alt.TopLevelMixin:
    """Compliance rate per evaluated rule of ``level`` with its 95 % interval; click a rule to select it."""
    df = rules[(rules["level"] == level) & (rules["denominator"] > 0)].copy()
    df["label"] = df["rule_id"] + "  " + df["title_ja"].fillna("")
    df = df[
        [
            "rule_id",
            "label",
            "title_ja",
            "title_en",
            "denominator",
            "violated",
            "not_evidenced",
            "rate",
            "rate_lo",
            "rate_hi",
        ]
    ]
    # the click selection only reports clicks; what is drawn as selected follows SELECTED_RULE, which
    # the app sets whether the rule was clicked or chosen in the control
    sel = alt.selection_point(name=RULE_SELECTION, fields=["rule_id"], on="click", clear="dblclick")
    chosen = alt.param(name=SELECTED_RULE, value=selected or "")  # always text: "" = none chosen
    lo = float(df["rate_lo"].min()) if len(df) else 0.0
    xs = alt.Scale(domain=[max(0.0, int(lo * 20) / 20), 1.0], zero=False)
    y = alt.Y("label:N", sort=list(df["label"]), title=None, axis=alt.Axis(labelLimit=380))
    tooltip = [
        alt.Tooltip("rule_id:N", title="規則 rule"),
        alt.Tooltip("title_ja:N", title="規則名"),
        alt.Tooltip("title_en:N", title="title"),
        *RATE_TOOLTIPS,
    ]
    base = alt.Chart(df).encode(y=y, tooltip=tooltip)
    band = base.mark_bar(height=14, color="#dfe7ee").encode(
        x=alt.X(
            "rate_lo:Q", scale=xs, axis=alt.Axis(format="%"), title="遵守率と95%信頼区間 compliance (95% CI)"
        ),
        x2="rate_hi:Q",
    )
    points = (
        base.mark_point(filled=True, size=110)
        .encode(
            x=alt.X("rate:Q", scale=xs),
            color=alt.condition(
                f"{SELECTED_RULE} == '' || datum.rule_id == {SELECTED_RULE}",
                alt.value(COLORS["compliant"]),
                alt.value("#b8c4cc"),
            ),
        )
        .add_params(sel)
    )
    chart = (
        (band + points)
        .add_params(chosen)
        .properties(
            width=360,
            height=alt.Step(24),
            title=_title(
                f"規則別の遵守率（{LEVEL_LABELS[level].split(' ')[1]}）",
                f"Compliance by rule ({LEVEL_LABELS[level].split(' ')[0]})",
                "点をクリックで規則を選択（ダブルクリックで解除） click a dot to select a rule (double-click clears)",
            ),
        )
    )
    return apply_theme(chart)


def provider_chart(providers: pd.DataFrame, by: str, selected: str | None = None) -> alt.TopLevelMixin:
    """Funnel plot: each provider's compliance against its volume with 95 % / 99.8 % limits; click to filter.

    Beyond :data:`~toolkit.report.data.FUNNEL_MAX_POINTS` providers only those outside the limits and
    the largest others are drawn (:func:`~toolkit.report.data.bounded_funnel`; the subtitle says how many).
    """
    who_ja, who_en = ("医師", "doctor") if by == "doctor_id" else ("医療機関", "institution")
    shown = bounded_funnel(providers, keep=selected)
    df = shown[["provider", "denominator", "violated", "not_evidenced", "rate", "lo95", "lo998", "p0"]]
    df = df.sort_values("denominator").copy()
    note = (
        ""
        if len(shown) == len(providers)
        else f" — {len(providers):,} 件中 {len(shown):,} 件を表示（95%限界外はすべて） showing {len(shown):,} of "
        f"{len(providers):,}: all outside the limits, then the largest"
    )
    sel = alt.selection_point(
        name=PROVIDER_SELECTION,
        fields=["provider"],
        on="click",
        clear="dblclick",
        value=[{"provider": selected}] if selected else alt.Undefined,
    )
    lo = float(pd.concat([df["rate"], df["lo998"]]).min()) if len(df) else 0.0
    ys = alt.Scale(domain=[max(0.0, int(lo * 20) / 20), 1.0], zero=False)
    xs = (
        alt.Scale(type="log")
        if len(df) and df["denominator"].max() > 50 * max(df["denominator"].min(), 1)
        else alt.Scale()
    )
    x = alt.X(
        "denominator:Q",
        scale=xs,
        axis=alt.Axis(tickCount=5, format="~s"),
        title=f"対象件数 records in scope (per {who_en})",
    )
    base = alt.Chart(df).encode(x=x)
    limits = base.mark_line(color=COLORS["neutral"], strokeDash=[4, 3]).encode(
        y=alt.Y("lo95:Q", scale=ys, title="遵守率 compliance", axis=alt.Axis(format="%"))
    ) + base.mark_line(color=COLORS["violated"], strokeDash=[2, 2]).encode(y=alt.Y("lo998:Q", scale=ys))
    centre = alt.Chart(df).mark_rule(color=COLORS["neutral"]).encode(y=alt.Y("mean(p0):Q", scale=ys))
    points = (
        base.mark_circle(size=110)
        .encode(
            y=alt.Y("rate:Q", scale=ys),
            color=alt.condition(sel, alt.value(COLORS["compliant"]), alt.value("#b8c4cc")),
            tooltip=[
                alt.Tooltip("provider:N", title=f"{who_ja} {who_en}"),
                RATE_TOOLTIP,
                alt.Tooltip("lo95:Q", format=PCT, title="95%下限 95% limit"),
                alt.Tooltip("lo998:Q", format=PCT, title="99.8%下限 99.8% limit"),
                *COUNT_TOOLTIPS,
            ],
        )
        .add_params(sel)
    )
    labels = base.mark_text(align="left", dx=7, dy=-7, fontSize=11, color="#333").encode(
        y=alt.Y("rate:Q", scale=ys), text="provider:N"
    )
    layers = limits + centre + points + (labels if len(df) <= 15 else alt.Chart(df).mark_point(opacity=0))
    chart = layers.properties(
        width=420,
        height=240,
        title=_title(
            f"{who_ja}別の遵守率（ファンネルプロット）",
            f"Compliance by {who_en} (funnel plot)",
            f"実線: 全体 solid: overall; 破線: 95%・99.8%下限 dashed: 95% / 99.8% limits — クリックで{who_ja}を絞り込み click to filter"
            + note,
        ),
    )
    return apply_theme(chart)


def trend_chart(trend: pd.DataFrame, label: str) -> alt.TopLevelMixin:
    """Monthly compliance of one rule (or the pooled level) with its 95 % interval."""
    df = trend[["month", "denominator", "violated", "not_evidenced", "rate", "rate_lo", "rate_hi"]].copy()
    lo = float(df["rate_lo"].min()) if len(df) else 0.0
    ys = alt.Scale(domain=[max(0.0, int(lo * 20) / 20), 1.0], zero=False)
    base = alt.Chart(df).encode(x=alt.X("month:O", title="月 month", axis=alt.Axis(labelAngle=0)))
    band = base.mark_area(opacity=0.25, color=COLORS["compliant"]).encode(
        y=alt.Y("rate_lo:Q", scale=ys, title="遵守率 compliance", axis=alt.Axis(format="%")), y2="rate_hi:Q"
    )
    line = base.mark_line(point=True, color=COLORS["compliant"]).encode(
        y=alt.Y("rate:Q", scale=ys),
        tooltip=[
            alt.Tooltip("month:O", title="月 month"),
            *RATE_TOOLTIPS,
        ],
    )
    chart = (band + line).properties(
        width=420, height=200, title=_title("月別の遵守率", "Monthly compliance", label)
    )
    return apply_theme(chart)
