"""Charts: built from real run-store frames; the encoded data equals the frames; titles are bilingual."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from tests.reporting_fixtures import RUN1, RUN2, build_fixture_db
from toolkit.report import charts, stats, timeline
from toolkit.report import data as rd


@pytest.fixture(scope="module")
def fx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("ch") / "fx.duckdb")


@pytest.fixture(scope="module")
def con(fx_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(str(fx_path), read_only=True)
    yield c
    c.close()


def _datasets(chart) -> list[list[dict]]:
    return list(chart.to_dict()["datasets"].values())


def _titles(spec: dict) -> list[str]:
    out = []
    if isinstance(spec, dict):
        t = spec.get("title")
        if isinstance(t, dict):
            out.append(t.get("text", ""))
        elif isinstance(t, str):
            out.append(t)
        for v in spec.values():
            out.extend(_titles(v))
    elif isinstance(spec, list):
        for v in spec:
            out.extend(_titles(v))
    return out


def _all_charts(con: duckdb.DuckDBPyConnection) -> dict:
    frame = rd.rule_frame(con, RUN2)
    return {
        "must": charts.compliance_by_rule(frame, "must"),
        "should": charts.compliance_by_rule(frame, "should"),
        "funnel_i": charts.funnel(rd.provider_frame(con, RUN2, "institution_id"), "institution"),
        "funnel_d": charts.funnel(rd.provider_frame(con, RUN2, "doctor_id"), "doctor"),
        "trend": charts.trend(rd.trend_frame(con, RUN2)),
        "heatmap": charts.heatmap(rd.heatmap_frame(con, RUN2)),
        "ec": charts.ec_funnel(rd.ec_funnel_frame(frame)),
        "timeline": charts.timeline(timeline.timeline_frame(con, RUN2, "D1"), "D1"),
        "changes": charts.run_changes(rd.violation_changes(con, RUN2, RUN1)),
        "rates": charts.rate_change(rd.rate_changes(frame, rd.rule_frame(con, RUN1))),
    }


def test_every_chart_has_japanese_and_english_title_and_renders(con: duckdb.DuckDBPyConnection) -> None:
    for name, chart in _all_charts(con).items():
        titles = _titles(chart.to_dict())
        assert titles, name
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", titles[0]) and re.search(
            r"[A-Za-z]{3}", titles[0]
        ), name
        svg = charts.to_svg(chart)
        assert svg.startswith("<svg") and "<text" in svg, name
        assert "http://" not in svg and "https://" not in svg, name


def test_compliance_chart_data_match_frame_and_levels_apart(con: duckdb.DuckDBPyConnection) -> None:
    frame = rd.rule_frame(con, RUN2)
    must = charts.compliance_by_rule(frame, "must").to_dict()
    rows = [r for ds in must["datasets"].values() for r in ds if "rate" in r]
    by_rule = {r["rule_id"]: r for r in rows}
    expect = frame[(frame["level"] == "must") & (frame["denominator"] > 0)]
    assert set(by_rule) == set(expect["rule_id"])  # no should rule in the must chart
    for r in expect.itertuples():
        got = by_rule[r.rule_id]
        assert got["denominator"] == r.denominator
        assert got["rate"] == pytest.approx(r.rate)
        assert (got["rate_lo"], got["rate_hi"]) == pytest.approx(stats.wilson(r.compliant, r.denominator))
        assert got["violated_rate"] == pytest.approx(r.violated / r.denominator)
        assert got["not_evidenced_rate"] == pytest.approx(r.not_evidenced / r.denominator)


def test_funnel_limits_and_positions(con: duckdb.DuckDBPyConnection) -> None:
    prov = rd.provider_frame(con, RUN2, "doctor_id")
    n, v, ne = [
        x[0]
        for x in zip(
            *con.execute(
                "SELECT sum(s.denominator), sum(s.violated), sum(s.not_evidenced) FROM rule_results_strata s JOIN rule_results r"
                " USING (run_id, rule_id) WHERE run_id = ? AND r.level = 'must' AND s.doctor_id IS NOT NULL",
                [RUN2],
            ).fetchall(),
            strict=True,
        )
    ]
    p0 = (n - v - ne) / n
    assert prov["p0"].iloc[0] == pytest.approx(p0)
    for r in prov.itertuples():
        assert (r.lo998, r.hi998) == pytest.approx(stats.funnel_limits(p0, r.denominator, stats.Z998))
    assert prov.set_index("provider").loc["D5", "position"] == "below_998"  # the fixture's weak doctor


def test_trend_overall_equals_pooled_strata(con: duckdb.DuckDBPyConnection) -> None:
    t = rd.trend_frame(con, RUN2)
    overall = t[t["rule_id"].str.startswith("(")].set_index("month")
    for month, n in con.execute(
        "SELECT month, sum(s.denominator) FROM rule_results_strata s JOIN rule_results r USING (run_id, rule_id)"
        " WHERE run_id = ? AND r.level = 'must' AND month IS NOT NULL GROUP BY month",
        [RUN2],
    ).fetchall():
        assert overall.loc[month, "denominator"] == n


def test_timeline_lanes_and_flags(con: duckdb.DuckDBPyConnection) -> None:
    t = timeline.timeline_frame(con, RUN2, "D1").set_index("session_id")
    assert list(t["lane"]) == [0, 1, 0, 0]  # S-2 overlaps S-1, so it goes to a second row
    assert t.loc["S-1", "overlapping"] and t.loc["S-2", "overlapping"] and not t.loc["S-3", "overlapping"]
    assert str(t.loc["S-1", "start"]) == "2026-08-03 09:00:00"  # shown in Japan time


def test_svg_ids_are_unique_per_chart(con: duckdb.DuckDBPyConnection) -> None:
    heat = charts.heatmap(rd.heatmap_frame(con, RUN2))
    a, b = charts.to_svg(heat), charts.to_svg(heat)
    ids_a = set(re.findall(r'\sid="([^"]+)"', a))
    assert ids_a and not ids_a & set(re.findall(r'\sid="([^"]+)"', b))


def test_empty_provider_frame_does_not_fail(tmp_path: Path) -> None:
    import pandas as pd

    chart = charts.funnel(
        pd.DataFrame(columns=["provider", "denominator", "rate", "p0", "position"]), "doctor"
    )
    assert "データなし" in _titles(chart.to_dict())[0]


def _find(spec, key: str) -> list:
    """Every value of ``key`` anywhere in a Vega-Lite spec."""
    out = []
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k == key:
                out.append(v)
            out.extend(_find(v, key))
    elif isinstance(spec, list):
        for v in spec:
            out.extend(_find(v, key))
    return out


def test_rule_labels_wrap_and_are_never_cut_off(con: duckdb.DuckDBPyConnection) -> None:
    import pandas as pd

    frame = rd.rule_frame(con, RUN2).copy()
    long_title = "対面診療による評価に基づく診療計画に沿って実施していることを確認できる記録がある"
    frame.loc[frame["rule_id"] == "consent.recorded", "title_ja"] = long_title
    spec = charts.compliance_by_rule(frame, "must").to_dict()
    axes = [a for a in _find(spec, "axis") if isinstance(a, dict) and "labelExpr" in a]
    assert axes and all(a["labelLimit"] == 0 and "split(datum.label" in a["labelExpr"] for a in axes)
    labels = {r["rule"] for ds in spec["datasets"].values() for r in ds if "rule" in r}
    label = next(lab for lab in labels if lab.startswith("consent.recorded"))
    assert label.replace(charts.LINE_BREAK, "").endswith(long_title)  # the whole title, in lines
    assert max(len(x) for x in label.split(charts.LINE_BREAK)[1:]) <= charts.LABEL_LINE
    # rows are tall enough for the wrapped lines
    steps = [h["step"] for h in _find(spec, "height") if isinstance(h, dict)]
    assert steps and min(steps) >= (label.count(charts.LINE_BREAK) + 1) * charts.LABEL_LINE_PX
    assert pd.Series(list(labels)).str.len().max() > 40


def test_funnel_axes_are_set_by_providers_with_data(con: duckdb.DuckDBPyConnection) -> None:
    prov = rd.provider_frame(con, RUN2, "institution_id")
    tiny = prov.iloc[[0]].copy()
    tiny[["provider", "denominator", "compliant", "rate"]] = ["I-TINY", 1, 0, 0.0]
    tiny["position"] = "below_998"
    spec = charts.funnel(
        __import__("pandas").concat([prov, tiny], ignore_index=True), "institution"
    ).to_dict()
    y_domains = [s["domain"] for s in _find(spec, "scale") if isinstance(s, dict) and "domain" in s]
    lo = min(d[0] for d in y_domains if d[1] == 1.0)
    assert lo >= float(prov["rate"].min()) - 0.2 and lo > 0.3  # not stretched to 0 by I-TINY's 0 %
    numeric = [
        s
        for s in _find(spec, "scale")
        if isinstance(s, dict) and isinstance(s.get("domain", [""])[0], float | int)
    ]
    assert numeric and all(s.get("clamp") for s in numeric)
    assert "1 smaller or unknown drawn at the edge" in str(spec["title"])


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def test_heatmap_text_meets_wcag_aa_on_every_colour(con: duckdb.DuckDBPyConnection) -> None:
    spec = charts.heatmap(rd.heatmap_frame(con, RUN2)).to_dict()
    ranges = [s["range"] for s in _find(spec, "scale") if isinstance(s, dict) and "range" in s]
    assert ranges == [charts.HEATMAP_RANGE]
    text = [m for m in _find(spec, "mark") if isinstance(m, dict) and m.get("type") == "text"]
    assert text and text[0]["color"] == charts.HEATMAP_TEXT
    stops = charts.HEATMAP_RANGE
    # every colour the RGB interpolation can give (10 steps between stops) against the text colour
    shades = []
    for a, b in zip(stops, stops[1:], strict=False):
        ca, cb = ([int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in (a, b))
        for t in range(11):
            shades.append(
                "#" + "".join(f"{round(x + (y - x) * t / 10):02x}" for x, y in zip(ca, cb, strict=True))
            )
    lt = _luminance(charts.HEATMAP_TEXT)
    assert min((_luminance(c) + 0.05) / (lt + 0.05) for c in shades) >= 4.5


def test_trend_axis_zoomed_and_months_without_sessions_left_out(fx_path: Path, tmp_path: Path) -> None:
    import shutil

    from tests.reporting_fixtures import MONTHS

    con_path = str(tmp_path / "t.duckdb")
    shutil.copy(fx_path, con_path)
    c = duckdb.connect(con_path)
    # a care plan written long before the sessions: its month has no session records
    c.execute(
        "INSERT INTO rule_results_strata VALUES (?, 'consent.recorded', 'I1', NULL, '2024-01', 0, 0, 0),"
        " (?, 'training.doctor_online', 'I1', NULL, '2023-05', 4, 0, 0)",
        [RUN2, RUN2],
    )
    c.execute(
        "UPDATE rule_results SET entity = 'care_plan' WHERE rule_id = 'training.doctor_online' AND run_id = ?",
        [RUN2],
    )
    tf = rd.trend_frame(c, RUN2)
    c.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert set(tf["month"]) == set(MONTHS)
    spec = charts.trend(tf).to_dict()
    doms = [s["domain"] for s in _find(spec, "scale") if isinstance(s, dict) and "domain" in s]
    overall = tf[tf["rule_id"].str.startswith("(")]
    assert doms[0] == charts.zoomed_domain(overall)
    assert doms[0][0] > 0.5 and doms[0][0] <= overall["rate_lo"].min()  # zoomed, data inside
