"""Altair charts: a results frame (from :mod:`toolkit.report.data`) in, a chart out.

Every chart is titled in Japanese and English. :func:`to_svg` renders a chart to inline SVG with
vl-convert (no network, no JavaScript), which is how the HTML report embeds them; notebooks show
the Altair objects directly.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re

import altair as alt
import pandas as pd
import vl_convert as vlc

from toolkit.chart_theme import apply_theme
from toolkit.report import stats
from toolkit.report.data import bounded_funnel

COLORS = {"violated": "#c0392b", "not_evidenced": "#e9a23b", "compliant": "#2e7d32", "neutral": "#5b6b7a"}
KIND_LABELS = {"violated": "Violated 違反", "not_evidenced": "Not evidenced 記録なし"}
VERDICT_LABELS = {
    "better": "Better 改善 (p<0.05)",
    "worse": "Worse 悪化 (p<0.05)",
    "no_change": "No significant change 有意差なし",
}
#: Heat-map colours: light tints from red (≤ 80 %) through amber to green (100 %), interpolated in
#: RGB, so the dark cell text keeps a WCAG AA contrast (≥ 4.5:1) on every cell (tests check it).
HEATMAP_DOMAIN = [0.8, 0.9, 1.0]
HEATMAP_RANGE = ["#f4b6ae", "#fbe3a1", "#b9e0bb"]
HEATMAP_TEXT = "#1d2329"
#: At most this many providers outside the limits are named on the plot (the largest).
FUNNEL_MAX_LABELS = 12
#: Providers with fewer records than this do not set the funnel plot's axes (drawn at the edge).
FUNNEL_MIN_N = 10
LEVEL_LABELS = {"must": "Must-follow 最低限遵守事項", "should": "Recommended 推奨事項"}


def _title(en: str, ja: str, subtitle: str | None = None) -> alt.TitleParams:
    return alt.TitleParams(text=f"{ja} / {en}", subtitle=subtitle or alt.Undefined, anchor="start")


_svg_counter = itertools.count(1)


@functools.lru_cache(maxsize=128)
def _render_svg(spec_json: str) -> str:
    """vl-convert's SVG of a Vega-Lite spec, remembered per spec in this process.

    Rendering is most of a report's time (≈ 0.15 s a chart); a report, feedback sheets or a
    dashboard drawn again on the same run store render the same specs, so they cost it once.
    """
    return vlc.vegalite_to_svg(json.loads(spec_json))


def to_svg(chart: alt.TopLevelMixin) -> str:
    """Render a chart to an SVG string ready to inline in HTML (no XML prolog, no namespace URLs).

    Element ids (clip paths, gradients) get a per-chart prefix so that several charts inlined in
    one page do not point at each other's definitions.
    """
    svg = _render_svg(json.dumps(chart.to_dict(), sort_keys=True))
    prefix = f"c{next(_svg_counter)}-"
    for old in set(re.findall(r'\sid="([^"]+)"', svg)):
        svg = (
            svg.replace(f'id="{old}"', f'id="{prefix}{old}"')
            .replace(f"url(#{old})", f"url(#{prefix}{old})")
            .replace(f'href="#{old}"', f'href="#{prefix}{old}"')
        )
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = svg.replace(' xmlns="http://www.w3.org/2000/svg"', "").replace(
        ' xmlns:xlink="http://www.w3.org/1999/xlink"', ""
    )
    return svg.replace("<svg ", '<svg role="img" ', 1)


#: Characters per line of a rule title in an axis label; longer titles wrap onto more lines.
LABEL_LINE = 18
#: Axis labels are split into lines at this character (an axis ``labelExpr`` turns them into lines).
LINE_BREAK = "|"
#: Pixels per line of a wrapped axis label.
LABEL_LINE_PX = 12


def wrap_label(first: str, title: str, width: int = LABEL_LINE) -> str:
    """``first`` then ``title`` in lines of at most ``width`` characters, joined by :data:`LINE_BREAK`.

    Axis labels are never cut off: a long title takes more lines instead (the full text stays).
    """
    title = (title or "").replace(LINE_BREAK, "/")
    lines = [first, *(title[i : i + width] for i in range(0, len(title), width))]
    return LINE_BREAK.join(line for line in lines if line)


def wrapped_axis(**kwargs) -> alt.Axis:  # type: ignore[no-untyped-def]
    """An axis whose labels are split at :data:`LINE_BREAK` and never truncated (``labelLimit`` 0)."""
    return alt.Axis(labelLimit=0, labelExpr=f"split(datum.label, '{LINE_BREAK}')", **kwargs)


def _rule_label(df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            wrap_label(f"{rid}  (n={n})", t)
            for rid, t, n in zip(df["rule_id"], df["title_ja"].fillna(""), df["denominator"], strict=True)
        ],
        index=df.index,
        dtype=object,
    )


def compliance_by_rule(frame: pd.DataFrame, level: str = "must") -> alt.TopLevelMixin:
    """Per rule of one level: non-compliance stacked by kind (left) and rate with 95 % Wilson interval (right).

    ``frame`` is a :func:`report_data.rule_frame`; rules that were not evaluated are left out.
    """
    df = frame[(frame["level"] == level) & (frame["denominator"] > 0)].copy()
    df["rule"] = _rule_label(df)
    order = list(df["rule"])
    lines = max([r.count(LINE_BREAK) + 1 for r in order] or [1])
    step = max(22, lines * LABEL_LINE_PX + 8)
    long = df.melt(
        id_vars=["rule", "denominator"],
        value_vars=["violated_rate", "not_evidenced_rate"],
        var_name="kind",
        value_name="share",
    )
    long["kind"] = long["kind"].str.replace("_rate", "").map(KIND_LABELS)
    y = alt.Y("rule:N", sort=order, title=None, axis=wrapped_axis())
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=y,
            x=alt.X("share:Q", stack="zero", axis=alt.Axis(format="%"), title="Non-compliance 不遵守の割合"),
            color=alt.Color(
                "kind:N",
                title="Kind 種類",
                scale=alt.Scale(
                    domain=list(KIND_LABELS.values()), range=[COLORS["violated"], COLORS["not_evidenced"]]
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=["rule:N", "kind:N", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(width=220, height=alt.Step(step))
    )
    base = alt.Chart(df).encode(y=alt.Y("rule:N", sort=order, title=None, axis=None))
    lo = max(0.0, math.floor(float(df["rate_lo"].min() if len(df) else 0) * 20) / 20)
    xs = alt.Scale(domain=[lo, 1.0], zero=False)
    rules = base.mark_rule(color=COLORS["neutral"]).encode(
        x=alt.X("rate_lo:Q", scale=xs, axis=alt.Axis(format="%"), title="Compliance 遵守率 (95% CI)"),
        x2="rate_hi:Q",
    )
    points = base.mark_point(filled=True, size=60, color=COLORS["compliant"]).encode(
        x=alt.X("rate:Q", scale=xs),
        tooltip=[
            "rule:N",
            alt.Tooltip("rate:Q", format=".2%"),
            alt.Tooltip("rate_lo:Q", format=".2%"),
            alt.Tooltip("rate_hi:Q", format=".2%"),
            "denominator:Q",
            "violated:Q",
            "not_evidenced:Q",
        ],
    )
    right = (rules + points).properties(width=220, height=alt.Step(step))
    chart = alt.hconcat(bars, right, spacing=8).properties(
        title=_title(
            f"Compliance by rule — {LEVEL_LABELS[level].split(' ')[0]}",
            f"規則別の遵守率（{LEVEL_LABELS[level].split(' ')[1]}）",
            "Left: violated vs not evidenced 左: 違反と記録なし — right: rate with 95% Wilson interval 右: 遵守率と95%信頼区間",
        )
    )
    return apply_theme(chart)


def funnel(providers: pd.DataFrame, who: str = "institution") -> alt.TopLevelMixin:
    """Funnel plot: each provider's pooled must-rule compliance against volume, with 95 % / 99.8 % limits.

    ``providers`` is a :func:`report_data.provider_frame`. Points outside the 99.8 % limits are
    unlikely to differ from the overall rate by chance alone.
    """
    labels = {"institution": ("institution", "医療機関"), "doctor": ("doctor", "医師")}[who]
    df = providers.copy()
    if df.empty:
        return apply_theme(
            alt.Chart(pd.DataFrame({"x": []}))
            .mark_point()
            .properties(
                title=_title(
                    f"Funnel plot by {labels[0]} (no data)", f"{labels[1]}別ファンネルプロット（データなし）"
                )
            )
        )
    p0 = float(df["p0"].iloc[0])
    n_all = len(df)
    df = bounded_funnel(df)
    known = ~df["provider"].astype(str).str.startswith("(")
    axis_set = df[known & (df["denominator"] >= FUNNEL_MIN_N)]
    if axis_set.empty:
        axis_set = df[known] if known.any() else df
    n_max = float(axis_set["denominator"].max()) * 1.1
    n_min = max(1.0, float(axis_set["denominator"].min()) * 0.8)
    grid = []
    for i in range(80):
        n = n_min * (n_max / n_min) ** (i / 79)
        lo95, hi95 = stats.funnel_limits(p0, n, stats.Z95)
        lo998, hi998 = stats.funnel_limits(p0, n, stats.Z998)
        grid.append({"n": n, "lo95": lo95, "hi95": hi95, "lo998": lo998, "hi998": hi998, "p0": p0})
    g = pd.DataFrame(grid)
    lines = g.melt(id_vars=["n"], value_vars=["lo95", "hi95", "lo998", "hi998", "p0"], var_name="limit")
    lines["band"] = lines["limit"].map(
        {
            "lo95": "95% limits 管理限界",
            "hi95": "95% limits 管理限界",
            "lo998": "99.8% limits 管理限界",
            "hi998": "99.8% limits 管理限界",
            "p0": "Overall rate 全体の遵守率",
        }
    )
    y_lo = max(0.0, min(float(axis_set["rate"].min()), float(g["lo998"].min())) - 0.02)
    ys = alt.Scale(domain=[y_lo, 1.0], zero=False, clamp=True)
    xs = alt.Scale(domain=[0, n_max], clamp=True)
    n_edge = int((~df.index.isin(axis_set.index)).sum())
    notes = [
        f"{len(df)} of {n_all} drawn: all outside the 95% limits, then the largest {n_all}件中{len(df)}件を表示"
    ]
    notes = (
        notes[: int(n_all > len(df))]
        + [
            f"Axes set by providers with ≥{FUNNEL_MIN_N} records; {n_edge} smaller or unknown drawn at the edge "
            f"軸は{FUNNEL_MIN_N}件以上の{labels[1]}で設定、{n_edge}件は端に表示"
        ][: int(n_edge > 0)]
    )
    limit_lines = (
        alt.Chart(lines)
        .mark_line(strokeWidth=1.2)
        .encode(
            x=alt.X("n:Q", scale=xs, title="Records in scope 対象件数 (volume)"),
            y=alt.Y("value:Q", scale=ys, axis=alt.Axis(format="%"), title="Compliance 遵守率"),
            detail="limit:N",
            color=alt.Color(
                "band:N",
                title="Reference 基準",
                scale=alt.Scale(
                    domain=["Overall rate 全体の遵守率", "95% limits 管理限界", "99.8% limits 管理限界"],
                    range=["#333333", "#8aa2b8", "#c0392b"],
                ),
            ),
            strokeDash=alt.StrokeDash(
                "band:N",
                legend=None,
                scale=alt.Scale(
                    domain=["Overall rate 全体の遵守率", "95% limits 管理限界", "99.8% limits 管理限界"],
                    range=[[1, 0], [4, 3], [2, 2]],
                ),
            ),
        )
    )
    df["outside"] = df["position"].str.endswith("998")
    pts = (
        alt.Chart(df)
        .mark_circle(size=70, opacity=0.85)
        .encode(
            x=alt.X("denominator:Q", scale=xs),
            y=alt.Y("rate:Q", scale=ys),
            stroke=alt.condition("datum.outside", alt.value("#000"), alt.value(None)),
            tooltip=[
                alt.Tooltip("provider:N", title=f"{labels[0]} {labels[1]}"),
                "denominator:Q",
                alt.Tooltip("rate:Q", format=".2%"),
                "position:N",
            ],
        )
    )
    text = (
        alt.Chart(df[df["position"] != "inside"].nlargest(FUNNEL_MAX_LABELS, "denominator"))
        .mark_text(align="left", dx=6, fontSize=10)
        .encode(x=alt.X("denominator:Q", scale=xs), y=alt.Y("rate:Q", scale=ys), text="provider:N")
    )
    chart = (limit_lines + pts + text).properties(
        width=520,
        height=300,
        title=_title(
            f"Funnel plot of must-follow compliance by {labels[0]}",
            f"{labels[1]}別の最低限遵守事項の遵守率（ファンネルプロット）",
            [
                "Points outside the red 99.8% limits differ from the overall rate beyond chance 赤線の外側は偶然では説明しにくい差",
                *notes,
            ],
        ),
    )
    return apply_theme(chart)


def zoomed_domain(d: pd.DataFrame, margin: float = 0.01) -> list[float]:
    """A rate axis zoomed to ``d``'s rates and intervals (a little margin, within 0..1, at least 2 points wide).

    Intervals of tiny months are clipped at the axis (the scale clamps) rather than stretching it.
    """
    if d.empty:
        return [0.0, 1.0]
    big = d[d["denominator"] >= FUNNEL_MIN_N]
    src = big if len(big) else d
    lo = min(float(src["rate_lo"].min()), float(d["rate"].min()))
    hi = max(float(src["rate_hi"].max()), float(d["rate"].max()))
    lo, hi = max(0.0, math.floor((lo - margin) * 100) / 100), min(1.0, math.ceil((hi + margin) * 100) / 100)
    if hi - lo < 0.02:
        lo = max(0.0, hi - 0.02)
    return [lo, hi]


def trend(trends: pd.DataFrame, max_rules: int = 12) -> alt.TopLevelMixin:
    """Monthly compliance with 95 % intervals: the pooled line on top, one small panel per rule below.

    Each rate axis is zoomed to its data (:func:`zoomed_domain`); months are the ones in
    ``trends`` only (:func:`toolkit.report.data.trend_frame` leaves out months without sessions).
    """
    df = trends.copy()
    overall = df[df["rule_id"].str.startswith("(")]
    per_rule = df[~df["rule_id"].str.startswith("(")]
    keep = list(
        per_rule.groupby("rule_id")["denominator"].sum().sort_values(ascending=False).index[:max_rules]
    )
    per_rule = per_rule[per_rule["rule_id"].isin(keep)]

    def panel(d: pd.DataFrame, width: int, height: int) -> alt.LayerChart:
        ys = alt.Scale(zero=False, domain=zoomed_domain(d), clamp=True)
        base = alt.Chart(d).encode(x=alt.X("month:O", title="Month 月"))
        band = base.mark_area(opacity=0.25, color=COLORS["neutral"]).encode(
            y=alt.Y("rate_lo:Q", scale=ys, axis=alt.Axis(format="%"), title="Compliance 遵守率"),
            y2="rate_hi:Q",
        )
        line = base.mark_line(point=True, color=COLORS["compliant"]).encode(
            y=alt.Y("rate:Q", scale=ys),
            tooltip=[
                "rule_id:N",
                "month:O",
                alt.Tooltip("rate:Q", format=".2%"),
                "denominator:Q",
                "violated:Q",
                "not_evidenced:Q",
            ],
        )
        return (band + line).properties(width=width, height=height)

    top = panel(overall, 520, 160).properties(title="All must-follow rules pooled 全規則（最低限遵守事項）")
    small = alt.Chart(per_rule).encode().properties()
    facets = (
        panel(per_rule, 150, 90).facet(facet=alt.Facet("rule_id:N", title=None), columns=4)
        if len(per_rule)
        else small.mark_point()
    )
    chart = alt.vconcat(top, facets).properties(
        title=_title(
            "Monthly compliance trend",
            "月別の遵守率の推移",
            "Shaded band: 95% Wilson interval 網掛け: 95%信頼区間",
        )
    )
    return apply_theme(chart)


def heatmap(cells: pd.DataFrame) -> alt.TopLevelMixin:
    """Rule × institution heat map of compliance; each cell shows the rate and its denominator."""
    df = cells.copy()
    df["label"] = (df["rate"] * 100).round(1).astype(str) + "%"
    base = alt.Chart(df).encode(
        x=alt.X("institution_id:N", title="Institution 医療機関"), y=alt.Y("rule_id:N", title="Rule 規則")
    )
    rect = base.mark_rect().encode(
        color=alt.Color(
            "rate:Q",
            title="Compliance 遵守率",
            scale=alt.Scale(domain=HEATMAP_DOMAIN, range=HEATMAP_RANGE, clamp=True, interpolate="rgb"),
            legend=alt.Legend(format="%"),
        ),
        tooltip=[
            "rule_id:N",
            "institution_id:N",
            alt.Tooltip("rate:Q", format=".2%"),
            "denominator:Q",
            "violated:Q",
            "not_evidenced:Q",
        ],
    )
    text = base.mark_text(fontSize=10, color=HEATMAP_TEXT).encode(text="label:N")
    chart = (rect + text).properties(
        width=alt.Step(70),
        height=alt.Step(20),
        title=_title(
            "Compliance by rule and institution",
            "規則×医療機関の遵守率",
            "Colour scale clipped at 80% 80%以下は同色",
        ),
    )
    return apply_theme(chart)


def ec_funnel(stages: pd.DataFrame) -> alt.TopLevelMixin:
    """Emergency-contraception follow-up funnel (prescribed → witnessed intake → follow-up visit)."""
    df = stages.copy()
    order = list(df["stage"])
    base = alt.Chart(df).encode(y=alt.Y("stage:N", sort=order, title=None, axis=alt.Axis(labelLimit=0)))
    bars = base.mark_bar(color="#6a4c93").encode(
        x=alt.X("count:Q", title="Cases 件数"), tooltip=["stage:N", "count:Q"]
    )
    text = base.mark_text(align="left", dx=4).encode(x="count:Q", text="count:Q")
    chart = (bars + text).properties(
        width=360,
        height=alt.Step(28),
        title=_title(
            "Emergency contraception follow-up funnel",
            "緊急避妊薬処方後の経過（ファンネル）",
            "From the ec.* rule counts of this run 本監査の ec.* 規則の件数",
        ),
    )
    return apply_theme(chart)


def timeline(sessions: pd.DataFrame, doctor_id: str) -> alt.TopLevelMixin:
    """One doctor's sessions as bars in time (Japan time); overlapping sessions flagged in red."""
    df = sessions.copy()
    df["flag"] = df["overlapping"].map(
        {True: "Overlap 重複 (exam.one_patient_at_a_time)", False: "No overlap 重複なし"}
    )
    df["row"] = df["lane"] + 1
    chart = (
        alt.Chart(df)
        .mark_bar(height=14, cornerRadius=2)
        .encode(
            x=alt.X("start:T", title="Time (JST) 時刻", axis=alt.Axis(format="%m-%d %H:%M")),
            x2="end:T",
            y=alt.Y("row:O", title="Parallel row 並行行"),
            color=alt.Color(
                "flag:N",
                title=None,
                scale=alt.Scale(
                    domain=["Overlap 重複 (exam.one_patient_at_a_time)", "No overlap 重複なし"],
                    range=[COLORS["violated"], "#8aa2b8"],
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                "session_id:N",
                "kind:N",
                alt.Tooltip("start:T", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("end:T", format="%H:%M"),
                "flag:N",
            ],
        )
        .properties(
            width=560,
            height=alt.Step(24),
            title=_title(
                f"Session timeline of doctor {doctor_id}",
                f"医師 {doctor_id} の診療タイムライン",
                "A second row means two sessions at once 2行目以降は同時刻の診療",
            ),
        )
    )
    return apply_theme(chart)


def run_changes(changes: pd.DataFrame) -> alt.TopLevelMixin:
    """Per rule: violations new, resolved and persisting since the previous run (stacked bars)."""
    long = changes.melt(
        id_vars=["rule_id"],
        value_vars=["new", "persisting", "resolved"],
        var_name="change",
        value_name="count",
    )
    names = {"new": "New 新規", "persisting": "Persisting 継続", "resolved": "Resolved 解消"}
    long["change"] = long["change"].map(names)
    long.loc[long["change"] == names["resolved"], "count"] *= -1
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=alt.Y("rule_id:N", title=None, axis=alt.Axis(labelLimit=300)),
            x=alt.X("count:Q", title="← resolved 解消 | new and persisting 新規・継続 →"),
            color=alt.Color(
                "change:N",
                title=None,
                scale=alt.Scale(
                    domain=list(names.values()),
                    range=[COLORS["violated"], COLORS["not_evidenced"], COLORS["compliant"]],
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=["rule_id:N", "change:N", "count:Q"],
        )
        .properties(
            width=420,
            height=alt.Step(20),
            title=_title(
                "Violations since the previous run",
                "前回監査からの違反の変化",
                "Matched by rule id + record id 規則ID・記録IDで照合",
            ),
        )
    )
    return apply_theme(chart)


def rate_change(rates: pd.DataFrame) -> alt.TopLevelMixin:
    """Per rule: previous → current rate, coloured by the two-proportion z-test verdict (p < 0.05)."""
    df = rates.copy()
    df["verdict_label"] = df["verdict"].map(VERDICT_LABELS)
    dom = list(VERDICT_LABELS.values())
    ys = alt.Scale(zero=False)
    base = alt.Chart(df).encode(y=alt.Y("rule_id:N", title=None, axis=alt.Axis(labelLimit=300)))
    link = base.mark_rule(color="#999").encode(
        x=alt.X(
            "rate_prev:Q",
            scale=ys,
            axis=alt.Axis(format="%"),
            title="Compliance: previous ○ → current ● 遵守率",
        ),
        x2="rate:Q",
    )
    prev = base.mark_point(color="#666").encode(x="rate_prev:Q")
    cur = base.mark_point(filled=True, size=70).encode(
        x="rate:Q",
        color=alt.Color(
            "verdict_label:N",
            title=None,
            scale=alt.Scale(domain=dom, range=[COLORS["compliant"], COLORS["violated"], "#8aa2b8"]),
            legend=alt.Legend(orient="bottom"),
        ),
        tooltip=[
            "rule_id:N",
            alt.Tooltip("rate_prev:Q", format=".2%"),
            alt.Tooltip("rate:Q", format=".2%"),
            alt.Tooltip("z:Q", format=".2f"),
            alt.Tooltip("p_value:Q", format=".3f"),
            "verdict_label:N",
        ],
    )
    chart = (link + prev + cur).properties(
        width=420,
        height=alt.Step(20),
        title=_title(
            "Rate change since the previous run",
            "前回監査からの遵守率の変化",
            "Two-proportion z-test 2標本比率の検定",
        ),
    )
    return apply_theme(chart)


def history_trend(history: list[dict]) -> alt.TopLevelMixin:
    """Pooled must-follow rate of every complete run over time, with its 95 % interval.

    ``history`` is :func:`toolkit.report.overview.run_history`; partial runs are left out (they
    checked only some rules). Points are drawn only for up to 60 runs, to keep the SVG small.
    """
    df = pd.DataFrame(
        [h for h in history if not h["partial"] and h["rate"] is not None],
        columns=["run_id", "started", "rate", "rate_lo", "rate_hi", "to_review", "verdict_label"],
    )
    df["denominator"] = FUNNEL_MIN_N  # every run sets the axis
    df["started"] = pd.to_datetime(df["started"])
    ys = alt.Scale(zero=False, domain=zoomed_domain(df), clamp=True)
    span = (df["started"].max() - df["started"].min()) if len(df) else pd.Timedelta(0)
    fmt = "%m-%d %H:%M" if span < pd.Timedelta(days=3) else "%Y-%m-%d"
    base = alt.Chart(df).encode(
        x=alt.X("started:T", title="Run started 実行日時 (UTC)", axis=alt.Axis(format=fmt, tickCount=6))
    )
    band = base.mark_area(opacity=0.2, color=COLORS["neutral"]).encode(
        y=alt.Y("rate_lo:Q", scale=ys, axis=alt.Axis(format="%"), title="Pooled must rate 遵守率"),
        y2="rate_hi:Q",
    )
    line = base.mark_line(point=len(df) <= 60, color=COLORS["compliant"]).encode(
        y=alt.Y("rate:Q", scale=ys),
        tooltip=["run_id:N", alt.Tooltip("rate:Q", format=".2%"), "to_review:Q", "verdict_label:N"],
    )
    chart = (band + line).properties(
        width=520,
        height=120,
        title=_title(
            "Pooled must-follow rate by run",
            "監査ごとの最低限遵守事項の遵守率",
            "Complete runs only 完全な監査のみ — band: 95% Wilson interval 網掛け: 95%信頼区間",
        ),
    )
    return apply_theme(chart)
