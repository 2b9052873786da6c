"""The dashboard app: ipywidgets controls, the verdict, interactive Altair charts and the record list.

``Dashboard(db).widget`` is what ``notebooks/00_dashboard.ipynb`` displays (in JupyterLab, or
served by Voilà through ``ocaudit dashboard``). Every interaction opens the database read-only
for the few bounded queries of :mod:`toolkit.dashboard.queries` and closes it again.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import altair as alt
import ipywidgets as widgets
import pandas as pd

from toolkit.dashboard import charts
from toolkit.dashboard import queries as q
from toolkit.dashboard.records import RecordList
from toolkit.report.charts import LEVEL_LABELS

ALL = "（すべて） all"
#: The value of the "all" choice: ipywidgets shows a Dropdown whose value is None as empty.
ANY = ""
STATUS = {
    "passed": "適合 passed",
    "failed": "不適合 failed",
    "not_applicable": "対象なし not applicable",
    "not_evaluable": "評価不能 not evaluable",
    "error": "エラー error",
}
STYLE = """<style>
.ocaudit-dash h2 {margin: 4px 0;} .ocaudit-dash h3 {margin: 14px 0 4px;}
.ocaudit-dash table {border-collapse: collapse; font-size: 13px;}
.ocaudit-dash th, .ocaudit-dash td {border-bottom: 1px solid #dde3e8; padding: 3px 8px; text-align: left;}
.ocaudit-dash td.n, .ocaudit-dash th.n {text-align: right; font-variant-numeric: tabular-nums;}
.ocaudit-dash tr.selected td {background: #e8f3ea; font-weight: 600;}
.ocaudit-dash .headline span {display: inline-block; margin-right: 22px;}
.ocaudit-dash .headline b {font-size: 20px;}
.ocaudit-dash .note {color: #5b6b7a; font-size: 12px;}
.ocaudit-dash tr.status-failed td.status {color: #c0392b;}
.ocaudit-dash td.status {white-space: nowrap;}
.ocaudit-dash tr.status-not_evaluable td.status, .ocaudit-dash tr.status-error td.status {color: #b36b00;}
.ocaudit-dash table.ocaudit-review-counts th {font-weight: 400; font-size: 12px; color: #5b6b7a;
 vertical-align: bottom; max-width: 150px; text-align: right;}
.ocaudit-dash table.ocaudit-review-counts td {font-size: 16px;}
.ocaudit-dash table.ocaudit-review-counts .review-count-not_evidenced {border-right: 2px solid #b8c4ce;}
.ocaudit-dash table.ocaudit-review-counts td.alarm b {color: #c0392b;}
.ocaudit-dash td.review-state {min-width: 150px;}
</style>"""


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal (``97.3%``), or ``—`` when there is none."""
    return "—" if value is None or pd.isna(value) else f"{float(value) * 100:.1f}%"


def _interval(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or pd.isna(lo) else f"（95%CI {pct(lo)}–{pct(hi)}）"


def _selected_point(change_new: dict, name: str, field: str) -> str | None:
    """The clicked value of a point selection in a JupyterChart's ``_vl_selections`` (None = cleared)."""
    signal = (change_new.get(name) or {}).get("value")
    points = (
        [] if not signal else signal.get("vlPoint", {}).get("or", []) if isinstance(signal, dict) else signal
    )
    return points[0].get(field) if points and isinstance(points[0], dict) else None


def _chart_widget() -> alt.JupyterChart:
    alt.JupyterChart.enable_offline()  # vega-embed bundled locally by vl-convert: no CDN at run time
    # SVG: the drawn text (titles, labels) is in the page, for screen readers and the browser tests
    return alt.JupyterChart(
        alt.Chart(pd.DataFrame()).mark_point(), embed_options={"actions": False, "renderer": "svg"}
    )


class Dashboard:
    """The whole app for one database: ``widget`` to display, :meth:`select_rule` and friends to drive it."""

    def __init__(self, db_path: str | os.PathLike[str], export_dir: str | os.PathLike[str] | None = None):
        self.db_path = str(db_path)
        run_id = q.check_database(self.db_path)  # UserError: missing file, no run store, no complete run
        self.sel = q.Selection(run_id)
        self._quiet = False
        self._results: dict = {}
        #: the selection (rule aside) the drawn rules chart shows; None = not drawn yet
        self._rules_chart_of: q.Selection | None = None
        with q.reading(self.db_path) as con:
            run_options = q.runs(con)
            months = q.months(con, self.sel)
        layout = widgets.Layout(width="300px")
        style = {"description_width": "150px"}
        self.run = widgets.Dropdown(
            options=run_options, value=run_id, description="監査 run", layout=layout, style=style
        )
        self.institution = widgets.Dropdown(description="医療機関 institution", layout=layout, style=style)
        self.doctor = widgets.Dropdown(
            description="医師 doctor",
            layout=widgets.Layout(width="400px"),
            style={"description_width": "80px"},
        )
        month_options = months or ["—"]
        self.period_from = widgets.Dropdown(
            options=month_options, value=month_options[0], description="期間 from", layout=layout, style=style
        )
        self.period_to = widgets.Dropdown(
            options=month_options,
            value=month_options[-1],
            description="まで to",
            layout=widgets.Layout(width="200px"),
            style={"description_width": "50px"},
        )
        self.level = widgets.ToggleButtons(
            options=[("最低限遵守事項 must-follow", "must"), ("推奨事項 recommended", "should")],
            value="must",
            style={"button_width": "200px"},
        )
        self.rule = widgets.Dropdown(
            description="規則 rule", layout=widgets.Layout(width="620px"), style=style
        )
        self.rule.add_class("ocaudit-rule-control")
        self.header = widgets.HTML()
        self.verdict = widgets.HTML()
        self.rules_table = widgets.HTML()
        self.rule_detail = widgets.HTML()
        self.comparison = widgets.HTML()
        self.rules_chart = _chart_widget()
        self.provider_chart = _chart_widget()
        self.trend_chart = _chart_widget()
        for chart, name in (
            (self.rules_chart, "rules"),
            (self.provider_chart, "provider"),
            (self.trend_chart, "trend"),
        ):
            chart.add_class(f"ocaudit-{name}-chart")
        self.records = RecordList(
            self.db_path, export_dir or Path(self.db_path).resolve().parent / "dashboard_exports"
        )
        self._months = months
        self._provider_by = "institution_id"
        self._fill_choices()
        for control in (
            self.run,
            self.institution,
            self.doctor,
            self.period_from,
            self.period_to,
            self.level,
            self.rule,
        ):
            control.observe(self._on_control, names="value")
        self.rules_chart.observe(self._on_rule_click, names="_vl_selections")
        self.provider_chart.observe(self._on_provider_click, names="_vl_selections")
        controls = widgets.VBox(
            [
                widgets.HBox([self.run, self.institution, self.doctor]),
                widgets.HBox([self.period_from, self.period_to, self.level]),
                self.rule,
            ]
        )
        self.widget = widgets.VBox(
            [
                widgets.HTML(STYLE),
                self.header,
                controls,
                self.verdict,
                self.rules_chart,
                # what a click filters comes right under the chart; the full table of rules last
                self.rule_detail,
                widgets.HBox([self.provider_chart, self.trend_chart]),
                self.records.widget,
                self.comparison,
                self.rules_table,
            ]
        )
        self.widget.add_class("ocaudit-dash")
        self.refresh()

    # -- driving the app (controls, chart clicks and tests call these) ---------------------------------

    def select_rule(self, rule_id: str | None) -> None:
        """Select one rule (None = all rules of the level): everything below the chart filters to it."""
        self.rule.value = rule_id or ANY

    def _on_control(self, change: dict) -> None:
        if self._quiet:
            return
        if change["owner"] in (self.run, self.institution, self.level):
            self._fill_choices()
        self.refresh()

    def _on_rule_click(self, change: dict) -> None:
        if self._quiet:
            return
        rule_id = _selected_point(change["new"], charts.RULE_SELECTION, "rule_id")
        if (rule_id or ANY) != self.rule.value and (
            rule_id is None or rule_id in dict(self.rule.options).values()
        ):
            self.rule.value = rule_id or ANY or ANY

    def _on_provider_click(self, change: dict) -> None:
        if self._quiet:
            return
        provider = _selected_point(change["new"], charts.PROVIDER_SELECTION, "provider")
        if provider is None:
            return
        if self._provider_by == "institution_id":
            if provider in dict(self.institution.options).values():
                self.institution.value = provider
        elif provider in dict(self.doctor.options).values():
            self.doctor.value = provider

    def _fill_choices(self) -> None:
        """Options of the institution, doctor and rule controls for the current run and level."""
        self._quiet = True
        try:
            self.sel = self.sel.with_(run_id=self.run.value, level=self.level.value)
            with q.reading(self.db_path) as con:
                insts = q.institutions(con, self.sel.with_(institution=None))
                self._set_options(self.institution, [(ALL, ANY)] + [(i, i) for i in insts])
                self.sel = self.sel.with_(institution=self.institution.value or None)
                # doctors are listed per institution (a large database has tens of thousands)
                docs = q.doctors(con, self.sel) if self.sel.institution else []
                first = (
                    ALL
                    if self.sel.institution
                    else "（すべて・医療機関を選ぶと選択可） all — choose an institution first"
                )
                self._set_options(self.doctor, [(first, ANY)] + [(d, d) for d in docs])
                rules = con.execute(
                    "SELECT rule_id, title_ja, title_en FROM rule_results WHERE run_id = ? AND level = ?"
                    " ORDER BY rule_id",
                    [self.sel.run_id, self.sel.level],
                ).fetchall()
            options = [("（すべての規則） all rules", ANY)] + [(f"{r} {ja} / {en}", r) for r, ja, en in rules]
            self._set_options(self.rule, options)
        finally:
            self._quiet = False

    @staticmethod
    def _set_options(control: widgets.Dropdown, options: list[tuple[str, str]]) -> None:
        keep = control.value
        control.options = options
        values = [v for _label, v in options]
        control.value = keep if keep in values else ANY

    def _read_selection(self) -> q.Selection:
        period = None
        if self._months:
            first, last = sorted((self.period_from.value, self.period_to.value))
            if (first, last) != (self._months[0], self._months[-1]):
                period = (first, last)
        return q.Selection(
            run_id=self.run.value,
            institution=self.institution.value or None,
            doctor=self.doctor.value or None,
            period=period,
            level=self.level.value,
            rule_id=self.rule.value or None,
        )

    # -- drawing ----------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the selection's figures and redraw what they change (a few bounded queries).

        One read-only connection serves the whole interaction. Choosing a rule leaves the rules chart
        drawn as it is and only moves its highlight (:data:`charts.SELECTED_RULE`); the record list is
        filled before the funnel and trend charts are sent, so it is the first thing to change.
        """
        self.sel = self._read_selection()
        whole_level = self.sel.with_(rule_id=None)  # what the verdict and the rules chart depend on
        with q.reading(self.db_path) as con:
            ov = self._cached(q.overview, con, whole_level)
            by, providers = self._cached(q.providers, con)
            trend = self._cached(q.trend, con)
            comp = self._cached(q.comparison, con)
            self._provider_by = by
            self.header.value = self._header_html(ov)
            self.verdict.value = self._verdict_html(ov)
            self.rule_detail.value = self._detail_html(ov.rules)
            self.records.show(self.sel, con=con)
        self.comparison.value = self._comparison_html(comp)
        self.rules_table.value = self._rules_html(ov.rules)
        self._quiet = True
        try:
            # a click the chart still holds for another rule would swallow the next click on that
            # rule (the same selection again is no change), so such a chart is drawn afresh
            clicked = _selected_point(self.rules_chart._vl_selections, charts.RULE_SELECTION, "rule_id")
            if self._rules_chart_of != whole_level or clicked not in (None, self.sel.rule_id):
                self.rules_chart.chart = charts.rules_chart(ov.rules, self.sel.level, self.sel.rule_id)
                self._rules_chart_of = whole_level
            else:
                setattr(self.rules_chart.params, charts.SELECTED_RULE, self.sel.rule_id or "")
            selected_provider = self.sel.institution if by == "institution_id" else self.sel.doctor
            self.provider_chart.chart = charts.provider_chart(providers, by, selected_provider)
            label = self.sel.rule_id or f"{LEVEL_LABELS[self.sel.level]}（全規則 all rules pooled）"
            self.trend_chart.chart = charts.trend_chart(trend, label)
        finally:
            self._quiet = False

    def _cached(self, query, con, sel: q.Selection | None = None):  # type: ignore[no-untyped-def]
        """``query(con, sel)`` (default the current selection), remembered: a stored run never changes
        (the run store is append-only)."""
        sel = self.sel if sel is None else sel
        key = (query.__name__, sel)
        if key not in self._results:
            if len(self._results) >= 256:
                self._results.clear()
            self._results[key] = query(con, sel)
        return self._results[key]

    def _header_html(self, ov: q.Overview) -> str:
        return (
            "<h2>オンライン診療 監査ダッシュボード <span style='font-weight:400'>Online care audit dashboard</span></h2>"
            f"<p class='note'>データベース database: <code>{html.escape(os.path.basename(self.db_path))}</code> — "
            f"監査 run <code>{html.escape(self.sel.run_id)}</code>: {html.escape(ov.choice.label())}<br>"
            f"表示範囲 shown: {html.escape(self.sel.scope.label())}</p>"
        )

    def _verdict_html(self, ov: q.Overview) -> str:
        p = ov.pooled
        level_en, level_ja = LEVEL_LABELS[self.sel.level].split(" ")
        headline = (
            "<p class='headline'>"
            f"<span>{html.escape(level_ja)}の遵守率 {html.escape(level_en)} compliance<br><b>{pct(p['rate'])}</b> {_interval(p['rate_lo'], p['rate_hi'])}</span>"
            f"<span>確認した規則 rules checked<br><b>{p['rules']}</b>（うち指摘あり with findings {p['rules_failed']}）</span>"
            f"<span>対象 in scope<br><b>{p['denominator']:,}</b></span>"
            f"<span>違反 violated<br><b>{p['violated']:,}</b></span>"
            f"<span>記録なし not evidenced<br><b>{p['not_evidenced']:,}</b></span></p>"
        )
        return f"<div class='ocaudit-verdict'>{ov.verdict._repr_html_()}</div>{headline}"

    def _rules_html(self, rules: pd.DataFrame) -> str:
        df = rules[rules["level"] == self.sel.level]
        rows = []
        for r in df.itertuples(index=False):
            cls = f"rule-row status-{r.status}" + (" selected" if r.rule_id == self.sel.rule_id else "")
            rows.append(
                f"<tr class='{cls}' data-rule='{html.escape(r.rule_id)}'>"
                f"<td><code>{html.escape(r.rule_id)}</code></td>"
                f"<td>{html.escape(r.title_ja or '')}<br><span class='note'>{html.escape(r.title_en or '')}</span></td>"
                f"<td class='status'>{html.escape(STATUS.get(r.status, r.status))}</td>"
                f"<td class='n'>{r.denominator:,}</td><td class='n'>{r.violated:,}</td><td class='n'>{r.not_evidenced:,}</td>"
                f"<td class='n'>{pct(r.rate)}</td></tr>"
            )
        head = (
            "<tr><th>規則 rule</th><th>内容 title</th><th>結果 status</th><th class='n'>対象<br>in scope</th>"
            "<th class='n'>違反<br>violated</th><th class='n'>記録なし<br>not evidenced</th><th class='n'>遵守率<br>compliance</th></tr>"
        )
        return (
            "<h3>規則の一覧（この水準のすべての規則） All rules of this level</h3><p class='note'>遵守率 = (対象 − 違反 − 記録なし) ÷ 対象。"
            " Compliance = (in scope − violated − not evidenced) ÷ in scope. 評価不能の規則は適合ではありません"
            " a not-evaluable rule is not a pass.</p>"
            f"<table class='ocaudit-rules'>{head}{''.join(rows)}</table>"
        )

    def _detail_html(self, rules: pd.DataFrame) -> str:
        if self.sel.rule_id is None:
            return (
                "<h3>選択した規則 Selected rule: なし none</h3><p class='note'>上の図の点をクリックするか「規則 rule」で選ぶと、"
                "以下の図と記録がその規則に絞られます。 Click a dot above or choose a rule to filter the charts"
                " and records below to it.</p>"
            )
        r = rules[rules["rule_id"] == self.sel.rule_id].iloc[0]
        missing = ", ".join(r["missing_columns"]) if len(r["missing_columns"]) else ""
        extra = f"<br>不足している列 missing columns: <code>{html.escape(missing)}</code>" if missing else ""
        return (
            f"<h3>選択した規則 Selected rule: <code>{html.escape(r['rule_id'])}</code> {html.escape(r['title_ja'] or '')}"
            f" <span style='font-weight:400'>{html.escape(r['title_en'] or '')}</span></h3>"
            f"<p>指針 guideline {html.escape(r['section'] or '')} — {html.escape(STATUS.get(r['status'], r['status']))} — "
            f"遵守率 compliance <b>{pct(r['rate'])}</b> {_interval(r['rate_lo'], r['rate_hi'])}; 対象 in scope {r['denominator']:,},"
            f" 違反 violated {r['violated']:,}, 記録なし not evidenced {r['not_evidenced']:,}{extra}</p>"
        )

    def _comparison_html(self, comp: q.Comparison) -> str:
        title = "<h3>前回の監査との比較 Compared with the previous complete run</h3>"
        if comp.reason:
            return f"{title}<p class='comparison-empty'>{html.escape(comp.reason)}</p>"
        rows = "".join(
            f"<tr><td><code>{html.escape(r.rule_id)}</code></td><td class='n'>{r.new:,}</td>"
            f"<td class='n'>{r.persisting:,}</td><td class='n'>{r.resolved:,}</td></tr>"
            for r in comp.changes.itertuples(index=False)
        )
        return (
            f"{title}<p class='note'>前回 previous: <code>{html.escape(comp.previous_run_id or '')}</code>"
            " — 記録IDで照合 matched by record id.</p><table class='ocaudit-changes'><tr><th>規則 rule</th>"
            "<th class='n'>新規 new</th><th class='n'>継続 persisting</th><th class='n'>解消 resolved</th></tr>"
            f"{rows}</table>"
        )
