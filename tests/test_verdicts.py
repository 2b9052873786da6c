"""Issue 16: nothing unchecked passes — one verdict, exit 3 for "could not check", partial runs.

Small run stores are written here with named-column INSERTs (real DuckDB, no mocks); the audit
tests run the real audit on the hand-built cases; the last test runs the whole "misspelled
column → ingest → audit → report --fail-on must" path through the command line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.reporting_fixtures import (
    RUN2,
    SAMPLE_DATA,
    build_fixture_db,
    element_attrs,
    html_rows,
    pipeline_available,
)
from toolkit import store
from toolkit.audit.results import AuditRun, RuleResult
from toolkit.audit.run import print_summary
from toolkit.audit.verdict import RunCoverage, compute_verdict, run_coverage
from toolkit.cli import main
from toolkit.contract import TABLE_ORDER
from toolkit.report import data as rd
from toolkit.report import feedback
from toolkit.rules.catalogue import CatalogueError, load


def _row(rule_id: str, level: str, status: str, v: int = 0, ne: int = 0, missing: list | None = None) -> dict:
    return {
        "rule_id": rule_id,
        "level": level,
        "status": status,
        "violated": v,
        "not_evidenced": ne,
        "missing_columns": missing or [],
    }


# ---------------------------------------------------------------- the one verdict function


def test_verdict_compliant_not_compliant_incomplete() -> None:
    ok = [
        _row("a.x", "must", "passed"),
        _row("a.y", "must", "not_applicable"),
        _row("s.z", "should", "failed", 3),
    ]
    assert compute_verdict(ok).code == "compliant"  # a should failure never changes the verdict
    bad = [*ok, _row("a.w", "must", "failed", 2, 1)]
    v = compute_verdict(bad)
    assert (v.code, v.must_failed, v.violated, v.not_evidenced) == ("not_compliant", ("a.w",), 2, 1)
    assert v.label == "不適合 not compliant"
    unchecked = [*ok, _row("consent.recorded", "must", "not_evaluable", missing=["sessions.consent_at"])]
    v = compute_verdict(unchecked)
    assert v.code == "incomplete" and v.label_ja == "判定不能・未完了"
    assert v.missing_columns == ("sessions.consent_at",)
    assert "sessions.consent_at" in v.line() and "consent.recorded" in v.line()
    assert compute_verdict([*ok, _row("a.e", "must", "error")]).code == "incomplete"
    assert compute_verdict([*ok, _row("a.q", "must", "weird")]).code == "incomplete"  # unknown ≠ pass
    only_should = compute_verdict([_row("s.z", "should", "passed")])  # no must rule: nothing shows compliance
    assert only_should.code == "incomplete" and "no must-follow rule" in only_should.summary_en()
    assert "0 must-follow" not in only_should.summary_en()


def test_incomplete_wins_and_still_names_the_findings() -> None:
    rows = [_row("a.w", "must", "failed", 5), _row("a.n", "must", "not_evaluable", missing=["t.c"])]
    v = compute_verdict(rows)
    assert v.code == "incomplete" and v.must_failed == ("a.w",)
    assert "violated 5" in v.summary_en() and "違反 5" in v.summary_ja()


def test_should_not_evaluable_does_not_make_must_incomplete() -> None:
    v = compute_verdict([_row("a.x", "must", "passed"), _row("s.m", "should", "not_evaluable")])
    assert v.code == "compliant" and [u.rule_id for u in v.should_unchecked] == ["s.m"]
    assert v.unchecked(("must",)) == [] and len(v.unchecked(("must", "should"))) == 1


def test_partial_run_leaving_must_rules_out_is_incomplete() -> None:
    cov = RunCoverage(True, 1, 44, "consent.recorded", {"must": ("a.y", "a.z"), "should": ()})
    v = compute_verdict([_row("consent.recorded", "must", "passed")], cov)
    assert v.code == "incomplete" and v.n_must_not_checked == 2
    assert cov.label().startswith("部分実行 partial: 1 of 44 rules")


def test_old_runs_with_only_a_rules_pattern_count_as_partial() -> None:
    assert store.run_is_partial(json.dumps({"rules": "ec.*"}))
    assert not store.run_is_partial(json.dumps({"rules": None}))
    assert not store.run_is_partial(None)
    cov = run_coverage(json.dumps({"rules": "ec.*"}), [r.id for r in load().rules if r.id.startswith("ec.")])
    assert cov.partial and cov.rules_total == len(load().rules)
    assert "consent.recorded" in cov.not_run_of("must")


# ---------------------------------------------------------------- small run stores

RULES = {
    "consent.recorded": "must",
    "consent.explained_first": "must",
    "judgement.each_session": "must",
    "network.stable": "should",
}


def _add_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    started: str,
    statuses: dict[str, tuple[str, int, int]],
    parameters: dict | None = None,
) -> None:
    """One run: ``statuses`` rule id → (status, violated, not evidenced); 40 records per checked rule."""
    con.execute(
        "INSERT INTO audit_runs (run_id, started_at, finished_at, as_of, toolkit_version, suite_checksums,"
        " ingest_ids, parameters) VALUES (?, ?, ?, '2026-10-15', '0.1.0', '{}', [], ?)",
        [run_id, started, started, json.dumps(parameters or {"rules": None})],
    )
    for rid, (status, v, ne) in statuses.items():
        checked = status not in ("not_evaluable", "error")
        n = 40 if checked else None
        missing = ["sessions.consent_at"] if status == "not_evaluable" else []
        con.execute(
            "INSERT INTO rule_results (run_id, rule_id, section, level, entity, title_en, title_ja, status,"
            " denominator, violated, not_evidenced, missing_columns, message)"
            " VALUES (?, ?, 'V-1-(1)-②-i', ?, 'session', ?, ?, ?, ?, ?, ?, ?, '')",
            [run_id, rid, RULES[rid], f"title {rid}", f"題 {rid}", status, n, v if checked else None,
             ne if checked else None, missing],
        )  # fmt: skip
        if checked:
            con.execute(
                "INSERT INTO rule_results_strata (run_id, rule_id, institution_id, doctor_id, month, denominator,"
                " violated, not_evidenced) VALUES (?, ?, 'I1', 'D1', '2026-09', 40, ?, ?)",
                [run_id, rid, v, ne],
            )
            for i in range(v + ne):
                con.execute(
                    "INSERT INTO violations (run_id, rule_id, entity, entity_id, status, institution_id,"
                    " doctor_id, month) VALUES (?, ?, 'session', ?, ?, 'I1', 'D1', '2026-09')",
                    [run_id, rid, f"S{i}", "violated" if i < v else "not_evidenced"],
                )


def _store(path: Path, runs: list[tuple]) -> Path:
    con = store.connect(path)
    try:
        store.ensure_schema(con)
        for run in runs:
            _add_run(con, *run)
    finally:
        con.close()
    return path


ALL_PASS = {r: ("passed", 0, 0) for r in RULES}
#: The issue's case: every checked rule passes, two must rules could not be checked.
HIDDEN = {
    **ALL_PASS,
    "consent.recorded": ("not_evaluable", 0, 0),
    "consent.explained_first": ("not_evaluable", 0, 0),
}
PARTIAL = {
    "partial": True,
    "rules": "consent.*",
    "rules_run": 3,
    "rules_total": 44,
    "not_run": {"must": ["judgement.each_session", "x.y"], "should": ["network.stable"]},
}


def _report(db: Path, tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "r.html"
    rc = main(["report", "--db", str(db), "--out", str(out), *extra])
    return rc, out.read_text(encoding="utf-8") if out.exists() else ""


def test_report_opens_with_incomplete_verdict_and_no_full_rate(tmp_path: Path) -> None:
    db = _store(tmp_path / "h.duckdb", [("run-h", "2026-10-15 03:00:00+00", HIDDEN)])
    rc, html = _report(db, tmp_path)
    assert rc == 0  # no threshold asked for
    box = element_attrs(html, "verdict")
    assert box["data-verdict"] == "incomplete" and box["data-must-not-checked"] == "2"
    assert html.index('id="verdict"') < html.index('id="summary"')  # it opens the report
    assert "判定不能・未完了" in html and "sessions.consent_at" in html
    assert {r["data-rule"] for r in html_rows(html, "unchecked-row")} == {
        "consent.recorded",
        "consent.explained_first",
    }
    kpi = element_attrs(html, "must-kpi")
    assert kpi["data-incomplete"] == "true" and kpi["data-not-checked"] == "2"
    tile = html[html.index('id="kpi-rate"') : html.index('id="kpi-rules"')]
    assert "未完了 incomplete" in tile and "<b>100.0%</b>" not in tile
    rules_tile = html[html.index('id="kpi-rules"') :][:400]
    assert "0 / 3" in rules_tile and "not checked: 2" in rules_tile


def test_report_compliant_verdict(tmp_path: Path) -> None:
    db = _store(tmp_path / "ok.duckdb", [("run-ok", "2026-10-15 03:00:00+00", ALL_PASS)])
    rc, html = _report(db, tmp_path, "--fail-on", "should")
    assert rc == 0
    assert element_attrs(html, "verdict")["data-verdict"] == "compliant"
    assert element_attrs(html, "must-kpi")["data-incomplete"] == "false"


@pytest.mark.parametrize(
    ("statuses", "extra", "code"),
    [
        (HIDDEN, ["--fail-on", "must"], 3),
        (HIDDEN, ["--fail-on", "should"], 3),
        (HIDDEN, ["--fail-on", "none"], 0),
        (HIDDEN, ["--max-rate", "consent.*=0.5"], 3),
        (HIDDEN, ["--max-rate", "judgement.*=0.5"], 0),
        ({**HIDDEN, "judgement.each_session": ("failed", 4, 1)}, ["--fail-on", "must"], 3),  # 3 wins over 1
        ({**ALL_PASS, "judgement.each_session": ("failed", 4, 1)}, ["--fail-on", "must"], 1),
        ({**ALL_PASS, "consent.recorded": ("error", 0, 0)}, ["--fail-on", "must"], 3),
        ({**ALL_PASS, "network.stable": ("not_evaluable", 0, 0)}, ["--fail-on", "must"], 0),
        ({**ALL_PASS, "network.stable": ("not_evaluable", 0, 0)}, ["--fail-on", "should"], 3),
        (ALL_PASS, ["--fail-on", "must"], 0),
    ],
)
def test_fail_on_exit_codes(
    tmp_path: Path, statuses: dict, extra: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path / "x.duckdb", [("run-x", "2026-10-15 03:00:00+00", statuses)])
    rc, html = _report(db, tmp_path, *extra)
    assert rc == code
    err = capsys.readouterr().err
    if code == 3:
        assert "could not check 確認できず" in err and "exit 3" in err
        assert element_attrs(html, "thresholds")["data-exit"] == "3"


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = capsys.readouterr().out
    assert "3  report: incomplete" in out and "判定不能・未完了" in out and "3 wins over 1" in out


# ---------------------------------------------------------------- partial runs


def test_reports_default_to_the_latest_complete_run_and_say_so(tmp_path: Path) -> None:
    db = _store(
        tmp_path / "p.duckdb",
        [
            ("run-a", "2026-09-15 03:00:00+00", {**ALL_PASS, "judgement.each_session": ("failed", 2, 0)}),
            ("run-b", "2026-10-15 03:00:00+00", ALL_PASS),
            (
                "run-c-partial",
                "2026-10-16 03:00:00+00",
                {"consent.recorded": ("passed", 0, 0), "consent.explained_first": ("passed", 0, 0)},
                PARTIAL,
            ),
        ],
    )
    con = store.connect(db, read_only=True)
    try:
        assert store.latest_run_id(con) == "run-b"
        assert store.latest_run_id(con, complete=False) == "run-c-partial"
        assert rd.previous_run_id(con, "run-c-partial") == "run-b"  # partial runs are never compared
    finally:
        con.close()
    rc, html = _report(db, tmp_path)
    assert rc == 0 and element_attrs(html, "run-meta")["data-run"] == "run-b"
    choice = html[html.index('id="run-choice"') :][:400]
    assert "latest complete run (default)" in choice and "run-c-partial" in choice
    assert element_attrs(html, "verdict")["data-partial"] == "false"
    # asked for by id: the banner says partial, the verdict cannot be compliant
    rc, html = _report(db, tmp_path, "--run", "run-c-partial", "--fail-on", "must")
    assert rc == 3
    assert element_attrs(html, "verdict")["data-verdict"] == "incomplete"
    assert element_attrs(html, "verdict")["data-partial"] == "true"
    assert "部分実行 partial: 3 of 44 rules" in html[html.index('id="partial-banner"') :][:300]
    assert element_attrs(html, "run-meta")["data-previous-run"] == "run-b"
    # feedback and notebooks use the same choice
    res = feedback.write_feedback(str(db), str(tmp_path / "fb"))
    assert res.run_id == "run-b"
    sheet = res.paths[0].read_text(encoding="utf-8")
    assert (
        "latest complete run (default)" in sheet
        and element_attrs(sheet, "verdict")["data-verdict"] == "compliant"
    )


def test_only_partial_runs_is_an_error_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path / "po.duckdb", [("run-p", "2026-10-16 03:00:00+00", ALL_PASS, PARTIAL)])
    rc, _ = _report(db, tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "only partial runs" in err and "--run run-p" in err


def test_run_comparison_skips_rules_not_checked_in_both_runs(tmp_path: Path) -> None:
    db = _store(
        tmp_path / "c.duckdb",
        [
            ("run-1", "2026-09-15 03:00:00+00", {**ALL_PASS, "consent.recorded": ("failed", 3, 0)}),
            ("run-2", "2026-10-15 03:00:00+00", HIDDEN),
        ],
    )
    con = store.connect(db, read_only=True)
    try:
        changes = rd.violation_changes(con, "run-2", "run-1")
    finally:
        con.close()
    # consent.recorded became not evaluable: its 3 violations are not "resolved"
    assert "consent.recorded" not in set(changes["rule_id"])


# ---------------------------------------------------------------- feedback sheets


def test_feedback_sheet_opens_with_the_doctors_verdict(tmp_path: Path) -> None:
    db = build_fixture_db(tmp_path / "fx.duckdb")
    out = tmp_path / "d1.html"
    assert main(["feedback", "--db", str(db), "--doctor", "D5", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert element_attrs(html, "verdict")["data-verdict"] == "not_compliant"
    assert html.index('id="verdict"') < html.index('id="fb-must"')
    con = store.connect(db)
    con.execute(
        "UPDATE rule_results SET status = 'not_evaluable', denominator = NULL, violated = NULL,"
        " not_evidenced = NULL, missing_columns = ['sessions.consent_at'] WHERE run_id = ? AND rule_id = ?",
        [RUN2, "consent.recorded"],
    )
    con.execute("DELETE FROM rule_results_strata WHERE run_id = ? AND rule_id = 'consent.recorded'", [RUN2])
    con.close()
    assert main(["feedback", "--db", str(db), "--doctor", "D5", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    box = element_attrs(html, "verdict")
    assert box["data-verdict"] == "incomplete" and box["data-must-not-checked"] == "1"
    assert [r["data-missing"] for r in html_rows(html, "unchecked-row")] == ["sessions.consent_at"]
    assert "品質管理担当" in html  # a doctor is told it is a data-loading problem


# ---------------------------------------------------------------- notebooks


def test_notebook_overview_shows_the_package_verdict() -> None:
    import nbformat

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "01_overview.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "display(rd.run_verdict(con, run_id))" in code and "rd.run_choice(con, RUN)" in code


def test_verdict_renders_in_a_notebook(tmp_path: Path) -> None:
    db = _store(tmp_path / "h.duckdb", [("run-h", "2026-10-15 03:00:00+00", HIDDEN)])
    con = store.connect(db, read_only=True)
    try:
        html = rd.run_verdict(con, rd.resolve_run(con, None))._repr_html_()
    finally:
        con.close()
    assert "判定不能・未完了" in html and "consent.explained_first" in html


# ---------------------------------------------------------------- audit: --rules, summary, --quiet, --as-of


def test_rules_pattern_matching_nothing_names_the_closest_ids() -> None:
    cat = load()
    with pytest.raises(CatalogueError, match=r"did you mean consent\.\*"):
        cat.select("consnet.*")
    with pytest.raises(CatalogueError, match=r"consent\.recorded"):
        cat.select("consent.recordd")
    with pytest.raises(CatalogueError, match=r"'nope\.\*' matches no rule"):
        cat.select("ec.*,nope.*")  # one bad pattern refuses the whole list
    assert len(cat.select("ec.*,consent.recorded")) == 1 + sum(r.id.startswith("ec.") for r in cat.rules)


def test_audit_cli_refuses_a_bad_rules_pattern(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = _store(tmp_path / "e.duckdb", [])
    assert main(["audit", "--db", str(db), "--rules", "consent.*,ec.folow_up", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ec.folow_up" in err and "ec.follow_up" in err
    con = store.connect(db, read_only=True)
    assert con.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 0  # nothing was audited
    con.close()


def _run(results: list[RuleResult], coverage: RunCoverage | None = None) -> AuditRun:
    import datetime as dt

    now = dt.datetime(2026, 10, 15, tzinfo=dt.UTC)
    return AuditRun("run-t", dt.date(2026, 10, 15), now, now, results, 0, coverage)


def test_print_summary_names_missing_columns_and_quiet_prints_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = [
        RuleResult("consent.recorded", "V-1", "must", "session", "t", "題", "not_evaluable",
                   missing_columns=["sessions.consent_at"]),
        RuleResult("judgement.each_session", "V-1", "must", "session", "t", "題", "passed", 10, 0, 0),
    ]  # fmt: skip
    print_summary(_run(results))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("verdict 判定: 判定不能・未完了 incomplete")
    row = next(line for line in out if line.startswith("consent.recorded"))
    assert "sessions.consent_at" in row
    print_summary(_run(results), quiet=True)
    assert capsys.readouterr().out.splitlines() == [out[0]]


@pytest.fixture(scope="module")
def case_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.rule_cases import build_db
    from tests.test_rules import EXPANDED

    path = tmp_path_factory.mktemp("cases") / "store.duckdb"
    build_db(path, EXPANDED[:6])
    return path


def test_audit_quiet_prints_verdict_and_paths_and_warns_on_early_as_of(
    case_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "a.duckdb"
    shutil.copy(case_db, db)
    out_json, out_csv = tmp_path / "s.json", tmp_path / "v.csv"
    argv = ["audit", "--db", str(db), "--as-of", "2001-01-01", "--quiet", "--json", str(out_json)]
    assert main([*argv, "--violations", str(out_csv)]) == 0
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("verdict 判定: ")
    assert lines[1].startswith("violations CSV: ") and lines[2].startswith("summary JSON: ")
    assert "warning: --as-of 2001-01-01 is earlier than all data" in cap.err
    summary = json.loads(out_json.read_text(encoding="utf-8"))
    assert summary["verdict"]["verdict"] in ("not_compliant", "compliant", "incomplete")
    assert summary["partial"] is False
    assert (out_json.stat().st_mode & 0o077) == 0
    # --rules: stored as partial, with the rules it covered
    assert main(["audit", "--db", str(db), "--as-of", "2026-10-15", "--quiet", "--rules", "consent.*"]) == 0
    cap = capsys.readouterr()
    assert "warning" not in cap.err
    assert cap.out.splitlines()[0].startswith("verdict 判定: 判定不能・未完了 incomplete")
    con = store.connect(db, read_only=True)
    try:
        params = json.loads(
            con.execute("SELECT parameters FROM audit_runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        )
        assert params["partial"] is True and params["rules"] == "consent.*"
        assert params["rules_total"] == len(load().rules)
        assert params["rules_run"] == sum(r.id.startswith("consent.") for r in load().rules)
        assert "judgement.each_session" in params["not_run"]["must"]
        latest_any = store.latest_run_id(con, complete=False)
        assert store.latest_run_id(con) != latest_any  # the report would not pick the partial run
    finally:
        con.close()


# ---------------------------------------------------------------- the whole path, through the CLI


@pytest.mark.slow
def test_misspelled_column_ingest_audit_report_fail_on_must(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sessions CSV whose ``consent_at`` header reads ``consent_time`` → exit 3 and an incomplete verdict."""
    reason = pipeline_available()
    if reason:
        pytest.skip(reason)
    src = tmp_path / "export"
    src.mkdir()
    for f in SAMPLE_DATA.iterdir():
        if f.is_file() and f.name.split(".")[0] in TABLE_ORDER:
            shutil.copy(f, src / f.name)
    sessions = src / "sessions.csv"
    header, rest = sessions.read_text(encoding="utf-8").split("\n", 1)
    assert '"consent_at"' in header
    sessions.write_text(header.replace('"consent_at"', '"consent_time"') + "\n" + rest, encoding="utf-8")
    db, out = tmp_path / "clinic.duckdb", tmp_path / "report.html"

    assert main(["ingest", "--db", str(db), str(src)]) == 0
    vendor = (
        SAMPLE_DATA / "vendor_medilink"
    )  # the care plans: so the misspelled column is all that is missing
    assert main(["ingest", "--db", str(db), str(vendor), "--mapping", str(vendor / "mapping.yaml")]) == 0
    capsys.readouterr()
    assert main(["audit", "--db", str(db), "--as-of", "2026-10-15", "--quiet"]) == 0
    audit_out = capsys.readouterr().out
    assert audit_out.splitlines()[0].startswith("verdict 判定: 判定不能・未完了 incomplete")
    assert "sessions.consent_at" in audit_out

    rc = main(["report", "--db", str(db), "--out", str(out), "--fail-on", "must"])
    assert rc == 3
    cap = capsys.readouterr()
    assert "could not check 確認できず: consent.recorded" in cap.err
    html = out.read_text(encoding="utf-8")
    box = element_attrs(html, "verdict")
    assert box["data-verdict"] == "incomplete"
    unchecked = {r["data-rule"]: r["data-missing"] for r in html_rows(html, "unchecked-row")}
    assert unchecked == {
        "consent.recorded": "sessions.consent_at",
        "consent.explained_first": "sessions.consent_at",
    }
    assert element_attrs(html, "must-kpi")["data-incomplete"] == "true"
    assert "判定不能・未完了" in html[: html.index('id="summary"')]
    assert element_attrs(html, "thresholds")["data-exit"] == "3"
