"""The dashboard without a browser: bounded queries, the app driven from Python, the CSV button, the CLI checks.

One fixture run store (two runs, three institutions) built once; one record id is a spreadsheet
formula so the CSV is seen to neutralise it. The notebook ``00_dashboard`` is executed as an
ordinary notebook (nbclient), as JupyterLab would.
"""

from __future__ import annotations

import csv
import re
import stat
from pathlib import Path

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

from tests.reporting_fixtures import RUN1, RUN2, build_fixture_db
from toolkit import cli
from toolkit.dashboard import charts
from toolkit.dashboard import queries as q
from toolkit.review import marks
from toolkit.store import insert_sql

pytest.importorskip("ipywidgets", reason="ipywidgets not installed: pip install 'ocaudit[notebooks]'")

from toolkit.dashboard.app import Dashboard, pct  # noqa: E402
from toolkit.dashboard.records import write_records_csv  # noqa: E402

FORMULA_ID = '=HYPERLINK("http://x")'
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_dashboard.ipynb"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_fixture_db(tmp_path_factory.mktemp("dash") / "fx.duckdb")
    con = duckdb.connect(str(path))
    cols = ("run_id", "rule_id", "entity", "entity_id", "status", "institution_id", "doctor_id", "month")
    con.execute(
        insert_sql("violations", cols),
        [RUN2, "training.doctor_online", "doctor", FORMULA_ID, "violated", "I1", "D1", None],
    )
    con.close()
    return path


@pytest.fixture(scope="module")
def app(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Dashboard:
    return Dashboard(db, export_dir=tmp_path_factory.mktemp("exports") / "csv")


def _ids(db: Path, rule_id: str, institution: str | None = None) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    sql = "SELECT entity_id FROM violations WHERE run_id = ? AND rule_id = ?"
    params = [RUN2, rule_id]
    if institution:
        sql += " AND institution_id = ?"
        params.append(institution)
    rows = [r[0] for r in con.execute(sql, params).fetchall()]
    con.close()
    return rows


def test_record_pages_cover_the_rule_exactly_once_with_ids_only(db: Path) -> None:
    sel = q.Selection(RUN2, rule_id="consent.recorded")
    with q.reading(db) as con:
        total = q.record_count(con, sel)
        pages = [q.record_page(con, sel, page, 40) for page in range(-(-total // 40) + 1)]
    assert list(pages[0].columns) == list(q.RECORD_COLUMNS)
    assert all(len(p) == 40 for p in pages[:-2]) and len(pages[-1]) == 0  # LIMIT/OFFSET, past the end empty
    shown = [eid for p in pages for eid in p["entity_id"]]
    assert len(shown) == total == len(set(shown))
    assert sorted(shown) == sorted(_ids(db, "consent.recorded"))


def test_first_view_is_the_latest_complete_run_with_verdict_and_all_rules(app: Dashboard) -> None:
    assert app.sel.run_id == RUN2 and app.sel.rule_id is None
    assert "不適合 not compliant" in app.verdict.value
    assert "最新の完全な監査（既定）" in app.header.value
    assert app.rules_table.value.count("class='rule-row") == 8
    shown = app.verdict.value + app.rules_table.value
    assert re.search(r"\d+\.\d%", shown) and not re.search(r"\d\.\d{2,}", shown)  # percentages, one decimal
    assert app.records.total > 0


def test_selecting_a_rule_filters_records_funnel_trend_and_comparison(app: Dashboard, db: Path) -> None:
    app.select_rule("exam.one_patient_at_a_time")
    try:
        assert app.sel.rule_id == "exam.one_patient_at_a_time"
        assert set(app.records.current["rule_id"]) == {"exam.one_patient_at_a_time"}
        assert app.records.total == len(_ids(db, "exam.one_patient_at_a_time"))
        assert "data-rule='exam.one_patient_at_a_time'" in app.rules_table.value.split("selected")[1][:80]
        assert "exam.one_patient_at_a_time" in app.trend_chart.spec["title"]["subtitle"]
        assert app.comparison.value.count("<tr>") == 2  # header + this rule
        # a click on an institution in the funnel narrows everything to it
        app._on_provider_click({"new": {"provider": {"value": {"vlPoint": {"or": [{"provider": "I2"}]}}}}})
        assert app.sel.institution == "I2"
        assert set(app.records.current["institution_id"]) == {"I2"}
        in_i2 = _ids(db, "exam.one_patient_at_a_time", "I2")
        assert app.records.total == len(in_i2) and set(app.records.current["entity_id"]) <= set(in_i2)
        assert [o[1] for o in app.doctor.options] == ["", "D4", "D5"]
    finally:
        app.institution.value = ""
        app.select_rule(None)
    assert app.sel.rule_id is None and app.sel.institution is None


def test_chart_click_selects_the_rule(app: Dashboard) -> None:
    app._on_rule_click({"new": {"rule": {"value": {"vlPoint": {"or": [{"rule_id": "consent.recorded"}]}}}}})
    assert app.rule.value == "consent.recorded" and app.sel.rule_id == "consent.recorded"
    app._on_rule_click({"new": {"rule": {"value": None}}})  # double-click clears
    assert app.sel.rule_id is None


def test_csv_button_writes_the_whole_list_formula_safe_owner_only(app: Dashboard, db: Path) -> None:
    app.select_rule("training.doctor_online")
    path = app.records.save_csv()
    assert "1 件を保存しました saved 1 records" in app.records.csv_status.value
    app.select_rule(None)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == q.RECORD_COLUMNS
    assert [r[2] for r in rows[1:]] == ["'" + FORMULA_ID]
    big = write_records_csv(db, q.Selection(RUN2), path.with_name("all.csv"))
    with q.reading(db) as con:
        assert big == q.record_count(con, q.Selection(RUN2))


def test_comparison_says_why_there_is_none_for_the_first_run(db: Path) -> None:
    with q.reading(db) as con:
        comp = q.comparison(con, q.Selection(RUN1))
    assert (
        comp.previous_run_id is None
        and "最初の完全な監査" in comp.reason
        and "first complete audit" in comp.reason
    )


def test_percentages_have_one_decimal() -> None:
    assert pct(0.97349) == "97.3%" and pct(1.0) == "100.0%" and pct(None) == "—"


def test_cli_dashboard_refuses_a_missing_database_or_one_without_a_complete_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dashboard", "--db", str(tmp_path / "none.duckdb"), "--no-browser"]) == 2
    assert "no such database file" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert cli.main(["dashboard", "--db", str(empty), "--no-browser"]) == 2
    assert "ocaudit: error:" in capsys.readouterr().err


def test_cli_dashboard_refuses_a_port_in_use(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["dashboard", "--db", str(db), "--port", str(port), "--no-browser"]) == 2
    assert "使用中" in capsys.readouterr().err


def test_notebook_is_thin_and_runs_as_a_plain_notebook(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) <= 3 and code[0].source.startswith("DB = ") and "parameters" in code[0].metadata["tags"]
    assert all(not c.get("outputs") for c in code)
    monkeypatch.setenv("OCAUDIT_DB", str(db))
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


def test_funnel_draws_at_most_max_providers_keeping_those_outside_the_limits() -> None:
    import pandas as pd

    from toolkit.report.data import FUNNEL_MAX_POINTS, bounded_funnel

    n = FUNNEL_MAX_POINTS + 500
    providers = pd.DataFrame(
        {
            "provider": [f"I{i}" for i in range(n)],
            "denominator": range(1, n + 1),
            "rate": [0.5 if i % 100 == 0 else 0.95 for i in range(n)],
            "position": ["below_998" if i % 100 == 0 else "inside" for i in range(n)],
        }
    )
    shown = bounded_funnel(providers, keep="I7")
    assert len(shown) == FUNNEL_MAX_POINTS
    assert set(providers.loc[providers["position"] != "inside", "provider"]) | {"I7"} <= set(
        shown["provider"]
    )


def test_the_app_builds_under_the_no_network_guard(db: Path, tmp_path: Path) -> None:
    """The kernel's part (imports, vega-embed bundled offline, queries, chart specs, a click, the CSV)
    under the Python-level no-network guard of test_no_network.py; the served page is checked in
    test_dashboard_browser.py (a web server needs loopback sockets, which that guard forbids)."""
    import subprocess
    import sys

    from tests.fixtures.secutil import ROOT, env

    log = tmp_path / "net.log"
    code = (
        "import sys\nfrom toolkit.dashboard.app import Dashboard\n"
        "app = Dashboard(sys.argv[1], export_dir=sys.argv[2])\napp.select_rule('consent.recorded')\n"
        "assert app.records.total > 0\nprint(app.records.save_csv())\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(db), str(tmp_path / "csv")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=env({"OCAUDIT_NET_LOG": str(log)}, [ROOT / "tests" / "fixtures" / "no_network"]),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert not log.exists(), log.read_text(encoding="utf-8")[:3000]
    assert Path(r.stdout.strip().splitlines()[-1]).is_file()


UNSAFE_NOTE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def _marks(db: Path) -> list[tuple[str, str, str, str, str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        if not marks.has_marks_table(con):
            return []
        return con.execute(
            "SELECT rule_id, entity, entity_id, state, marked_by, note FROM review_marks ORDER BY mark_id"
        ).fetchall()
    finally:
        con.close()


def test_marking_two_records_in_the_app_appends_them_and_shows_state_counts_and_escaped_note(
    app: Dashboard, db: Path
) -> None:
    app.select_rule("ec.witnessed_intake")
    review = app.records.review
    try:
        assert len(review.picker.options) == app.records.total == 11  # the page's records, all open
        review.select_all.click()
        assert len(review.selected_keys) == 11
        review.clear.click()
        chosen = tuple(value for _label, value in review.picker.options[:2])
        review.picker.value = chosen
        review.state.value = "acknowledged"
        review.who.value = "qa-01 <b>"
        review.note.value = UNSAFE_NOTE
        review.save_button.click()
        assert "2 件を記録しました 2 records marked" in review.status.value
        assert [m[:4] for m in _marks(db)] == [(*key, "acknowledged") for key in chosen]
        with q.reading(db) as con:
            current = marks.current_marks(con, RUN2, "ec.witnessed_intake")
        by_key = {(r.rule_id, r.entity, r.entity_id): r.state for r in current.itertuples()}
        assert [k for k, s in by_key.items() if s == "acknowledged"] == list(chosen)
        # the list shows the new state, the name and note escaped; the counts moved
        table = app.records.table.value
        assert table.count('class="review-state state-acknowledged"') == 2
        assert table.count('class="review-state state-open"') == 9
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in table
        assert "qa-01 &lt;b&gt;" in table and "<script" not in table and "<img" not in table
        counts = review.counts.value
        assert "確認中 acknowledged</th>" in counts and "未対応 open</th>" in counts
        assert "review-count-acknowledged'><b>2</b>" in counts and "review-count-open'><b>9</b>" in counts
        assert (
            "review-count-violated'><b>8</b>" in counts and "review-count-not_evidenced'><b>3</b>" in counts
        )
        assert [label.endswith("確認中 acknowledged") for label, _v in review.picker.options[:3]] == [
            True,
            True,
            False,
        ]
        # the review-state filter narrows the list (counted afresh: marks change)
        records = app.records
        records.state_filter.value = "acknowledged"
        assert records.total == 2 and list(records.current["entity_id"]) == [k[2] for k in chosen]
        records.state_filter.value = "open"
        assert records.total == 9 and not set(records.current["entity_id"]) & {k[2] for k in chosen}
        records.state_filter.value = "still_present"
        assert records.total == 0 and "指摘なし no findings" in records.table.value
    finally:
        app.records.state_filter.value = ""
        app.select_rule(None)


def test_a_refused_mark_lists_the_problems_and_writes_nothing(app: Dashboard, db: Path) -> None:
    app.select_rule("ec.witnessed_intake")
    review = app.records.review
    try:
        before = _marks(db)
        review.save_button.click()  # nothing chosen
        assert "choose at least one record" in review.status.value and _marks(db) == before
        # one record already acknowledged (same state: refused), one open: all or nothing
        options = review.picker.options
        done = next(v for label, v in options if label.endswith("acknowledged"))
        fresh = next(v for label, v in options if label.endswith("open"))
        review.picker.value = (fresh, done)
        review.state.value = "acknowledged"
        review.who.value = "qa-02"
        review.note.value = ""
        assert review.save() == 0
        assert "記録しませんでした nothing was written" in review.status.value
        assert f"{done[2]} [ec.witnessed_intake]: すでに 確認中 acknowledged です" in review.status.value
        assert fresh[2] not in review.status.value  # only the refused record is listed
        review.picker.value = (fresh,)
        review.state.value = "justified"  # needs a note
        assert review.save() == 0 and "a justified mark needs a note" in review.status.value
        review.state.value, review.who.value = "acknowledged", ""
        assert review.save() == 0 and "who is missing" in review.status.value
        assert _marks(db) == before
    finally:
        app.select_rule(None)


def test_choosing_a_rule_moves_the_highlight_without_redrawing_the_rules_chart(app: Dashboard) -> None:
    drawn = app.rules_chart.spec
    app.select_rule("consent.recorded")
    try:
        assert app.rules_chart.spec is drawn  # not sent again: only the parameter changed
        assert getattr(app.rules_chart.params, charts.SELECTED_RULE) == "consent.recorded"
        assert app.rules_chart._params[charts.SELECTED_RULE] == "consent.recorded"  # synced to the page
        assert "consent.recorded" in app.trend_chart.spec["title"]["subtitle"]
    finally:
        app.select_rule(None)
    assert app.rules_chart.spec is drawn and getattr(app.rules_chart.params, charts.SELECTED_RULE) == ""
    app.level.value = "should"
    try:
        assert app.rules_chart.spec is not drawn  # another level: other rules, drawn afresh
    finally:
        app.level.value = "must"


def test_a_chart_click_is_never_swallowed_after_the_control_chose_another_rule(app: Dashboard) -> None:
    # what the page sends when a dot is clicked
    clicked = {"rule": {"value": {"vlPoint": {"or": [{"rule_id": "consent.recorded"}]}}, "store": []}}
    app.rules_chart._vl_selections = clicked
    try:
        assert app.sel.rule_id == "consent.recorded"
        drawn = app.rules_chart.spec
        app.select_rule("exam.one_patient_at_a_time")  # the control, not the chart
        # the chart would still hold the click on consent.recorded, and clicking it again would be no
        # change: so it is drawn afresh with no click held
        assert app.rules_chart.spec is not drawn
        assert app.rules_chart._vl_selections["rule"]["value"] is None
        app.rules_chart._vl_selections = clicked
        assert app.sel.rule_id == "consent.recorded"
    finally:
        app.select_rule(None)
