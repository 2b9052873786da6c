"""The twelve months of the annual report as a chart (Altair; SVG offline through vl-convert)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from toolkit.chart_theme import apply_theme
from toolkit.survey.annual import AnnualReport

#: measure → legend label (ja / en), in legend order
SERIES = {
    "in_person_first": "対面 初診料 / in person, first visit",
    "in_person_revisit": "対面 再診料 / in person, revisit",
    "online_first": "オンライン 初診料 / online, first visit",
    "online_revisit": "オンライン 再診料 / online, revisit",
}
COLORS = ["#9fb3c8", "#52606d", "#f0a04b", "#c05621"]


def months_frame(report: AnnualReport) -> pd.DataFrame:
    """Long frame: institution, month (``8月``…), order, series, count (None = not in the data)."""
    rows = []
    for inst in report.institutions:
        for k, month in enumerate(report.months):
            for key, label in SERIES.items():
                rows.append(
                    {
                        "institution": inst.institution_id,
                        "month": f"{month} ({int(month[5:])}月)",
                        "order": k,
                        "series": label,
                        "count": inst.rows[month][key],
                    }
                )
    return pd.DataFrame(rows)


def months_chart(report: AnnualReport) -> alt.TopLevelMixin:
    """Grouped bars per month: billed 初診/再診 in person and online, one row per institution."""
    df = months_frame(report)
    months = list(dict.fromkeys(df["month"]))
    missing = df["count"].isna().any()
    df = df.dropna(subset=["count"])
    subtitle = f"{report.year - 1}-08 – {report.year}-07 (Japan time)" + (
        "; 対面診療の記録なし（非表示）/ no in-person records (not drawn)" if missing else ""
    )
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("month:N", sort=months, title=None, axis=alt.Axis(labelAngle=-45)),
            xOffset=alt.XOffset("series:N", sort=list(SERIES.values())),
            y=alt.Y("count:Q", title="算定件数 / billed"),
            color=alt.Color(
                "series:N",
                sort=list(SERIES.values()),
                scale=alt.Scale(domain=list(SERIES.values()), range=COLORS),
                legend=alt.Legend(title=None, orient="bottom", columns=2, labelLimit=320),
            ),
            tooltip=["institution:N", "month:N", "series:N", "count:Q"],
        )
        .properties(width=560, height=160)
        .facet(row=alt.Row("institution:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
        .properties(
            title=alt.TitleParams(
                text="情報通信機器を用いた診療に係る報告書 月別件数 / annual report: the twelve months",
                subtitle=subtitle,
                anchor="start",
            )
        )
    )
    return apply_theme(chart)
