"""Altair charts of the EC survey: cell values in, chart out (Japanese + English labels).

Every function takes the survey's cell values (``SurveyResult.values`` or merged values) and an
optional set of suppressed cells: suppressed cells are left out of the chart (and say so in the
subtitle), so a chart drawn for publication never shows a small count.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from toolkit.chart_theme import apply_theme
from toolkit.survey.tables import AGE_BANDS, EC_TOTAL, cell


def _value(values: dict[str, int], masked: set[str] | None, cid: str) -> int | None:
    return None if masked and cid in masked else int(values.get(cid, 0))


def _subtitle(frame: pd.DataFrame) -> str | alt.UndefinedType:
    n = int(frame["count"].isna().sum())
    return f"{n} 件の秘匿セルは非表示 ({n} suppressed cell(s) not drawn)" if n else alt.Undefined


def age_band_chart(values: dict[str, int], masked: set[str] | None = None) -> alt.Chart:
    """Bar chart of EC cases by age band (period total)."""
    df = pd.DataFrame(
        [
            {
                "band": f"{ja} ({en})",
                "order": i,
                "count": _value(values, masked, cell("T1", f"age:{k}", "total")),
            }
            for i, (k, ja, en) in enumerate(AGE_BANDS)
        ]
    )
    return apply_theme(
        alt.Chart(
            df,
            title=alt.TitleParams(
                "年齢階級別の処方件数 / EC prescriptions by age band", subtitle=_subtitle(df), anchor="start"
            ),
        )
        .mark_bar(color="#8e44ad")
        .encode(
            y=alt.Y("band:N", sort=alt.SortField("order"), title="年齢階級 (age band)"),
            x=alt.X("count:Q", title="件数 (count)"),
            tooltip=["band:N", "count:Q"],
        )
        .properties(width=420)
    )


def follow_up_funnel_chart(values: dict[str, int], masked: set[str] | None = None) -> alt.Chart:
    """Funnel: EC cases → planned in window → due (completed + overdue) → completed."""
    steps = [
        ("EC症例 (EC cases)", EC_TOTAL),
        ("14–28日後に予定 (planned in window)", cell("T3", "window_in", "count")),
        ("判定対象 (due)", cell("T3", "settled", "count")),
        ("受診済 (completed)", cell("T3", "completed", "count")),
        ("期限超過 (overdue)", cell("T3", "overdue", "count")),
    ]
    df = pd.DataFrame(
        [{"step": s, "order": i, "count": _value(values, masked, c)} for i, (s, c) in enumerate(steps)]
    )
    return apply_theme(
        alt.Chart(
            df,
            title=alt.TitleParams(
                "対面受診のフォローアップ / In-person follow-up funnel",
                subtitle=_subtitle(df),
                anchor="start",
            ),
        )
        .mark_bar(color="#2e7d32")
        .encode(
            y=alt.Y("step:N", sort=alt.SortField("order"), title=None),
            x=alt.X("count:Q", title="件数 (count)"),
            tooltip=["step:N", "count:Q"],
        )
        .properties(width=420)
    )


def monthly_chart(values: dict[str, int], months: list[str], masked: set[str] | None = None) -> alt.Chart:
    """Monthly EC cases (T1) and first-visit online prescribing sessions (T6), side by side."""
    rows = []
    for m in months:
        rows.append(
            {
                "month": m,
                "series": "緊急避妊 (EC cases)",
                "count": _value(values, masked, cell("T1", "all", m)),
            }
        )
        rows.append(
            {
                "month": m,
                "series": "初診処方 (first-visit sessions with Rx)",
                "count": _value(values, masked, cell("T6", m, "sessions")),
            }
        )
    df = pd.DataFrame(rows)
    return apply_theme(
        alt.Chart(
            df, title=alt.TitleParams("月別件数 / Monthly counts", subtitle=_subtitle(df), anchor="start")
        )
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="月 (month)"),
            xOffset="series:N",
            y=alt.Y("count:Q", title="件数 (count)"),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["month:O", "series:N", "count:Q"],
        )
        .properties(width=420)
    )
