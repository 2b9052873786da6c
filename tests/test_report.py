"""The HTML report: numbers read back from the page equal the run store's; exit codes; escaping; offline."""

from __future__ import annotations

import argparse
import re
import stat
from pathlib import Path

import duckdb
import pytest

from tests.fixtures.chrome import headless_chrome
from tests.reporting_fixtures import (
    RUN1,
    RUN2,
    XSS,
    build_fixture_db,
    build_pipeline_db,
    element_attrs,
    html_rows,
    pipeline_available,
)
from tests.reporting_fixtures import query as _sql
from toolkit.cli import main
from toolkit.errors import UserError
from toolkit.periods import period_bounds
from toolkit.report import html as report


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("rep") / "fx.duckdb")


@pytest.fixture(scope="module")
def html(db: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("out") / "report.html"
    res = report.write_report(db, out)
    assert res.run_id == RUN2 and res.previous_run_id == RUN1
    return out.read_text(encoding="utf-8")


def test_rule_rows_equal_rule_results(db: Path, html: str) -> None:
    rows = {r["data-rule"]: r for r in html_rows(html, "rule-row")}
    stored = _sql(
        db,
        "SELECT rule_id, level, status, denominator, violated, not_evidenced FROM rule_results"
        " WHERE run_id = ?",
        [RUN2],
    )
    assert set(rows) == {s[0] for s in stored}
    for rule_id, level, status, n, v, ne in stored:
        r = rows[rule_id]
        assert (r["data-level"], r["data-status"]) == (level, status)
        if status == "not_evaluable":
            assert r["data-denominator"] == "" and r["data-rate"] == ""
            continue
        assert (int(r["data-denominator"]), int(r["data-violated"]), int(r["data-not-evidenced"])) == (
            n,
            v,
            ne,
        )
        assert int(r["data-compliant"]) == n - v - ne
        if n:
            assert float(r["data-rate"]) == pytest.approx((n - v - ne) / n)
            assert float(r["data-rate-lo"]) <= float(r["data-rate"]) <= float(r["data-rate-hi"])
        else:
            assert r["data-rate"] == ""


def test_summary_is_must_only_and_pooled(db: Path, html: str) -> None:
    summary = {r["data-rule"] for r in html_rows(html, "summary-row")}
    must = {
        r[0] for r in _sql(db, "SELECT rule_id FROM rule_results WHERE run_id = ? AND level = 'must'", [RUN2])
    }
    assert summary == must
    n, bad = _sql(
        db,
        "SELECT sum(denominator), sum(violated + not_evidenced) FROM rule_results"
        " WHERE run_id = ? AND level = 'must' AND status IN ('passed', 'failed')",
        [RUN2],
    )[0]
    kpi = element_attrs(html, "must-kpi")
    assert int(kpi["data-denominator"]) == n
    assert float(kpi["data-rate"]) == pytest.approx((n - bad) / n)


def test_sections_and_appendices_present(html: str) -> None:
    sections = [r["data-section"] for r in html_rows(html, "guideline-section")]
    # must rules, attestation-only (V-2-(2)) and should-only (V-2-(5), V-3-(3)) sections, in guideline order
    assert sections == [
        "V-1-(1)",
        "V-1-(2)",
        "V-1-(6)",
        "V-2-(1)",
        "V-2-(2)",
        "V-2-(5)",
        "V-3-(1)",
        "V-3-(3)",
    ]
    items = {r["data-item"]: r["data-attested"] for r in html_rows(html, "attest-item")}
    assert items == {"place.clean_safe": "True", "emergency.setup": ""}
    for anchor in (
        "summary",
        "dq",
        "coverage",
        "changes",
        "providers",
        "appendix-should",
        "appendix-catalogue",
        "appendix-params",
        "appendix-howto",
    ):
        assert f'id="{anchor}"' in html
    assert html.index('id="dq"') < html.index('id="must-overall"') < html.index('id="sec-V-1-(1)"')
    assert "security.mfa" in html[html.index('id="not-evaluated"') :]


def test_dq_and_coverage(db: Path, html: str) -> None:
    dq = {r["data-check"]: int(r["data-n"]) for r in html_rows(html, "dq-row")}
    assert dq == dict(_sql(db, "SELECT check_id, n FROM dq_results WHERE run_id = ?", [RUN2]))
    cov = {r["data-section"]: r for r in html_rows(html, "coverage-row")}
    assert cov["V-2-(2)"]["data-attested"] == "1" and cov["V-2-(2)"]["data-evaluated"] == "0"
    assert "未回答 not answered" in html


def test_changes_equal_violation_set_differences(db: Path, html: str) -> None:
    got = {
        r["data-rule"]: (int(r["data-new"]), int(r["data-persisting"]), int(r["data-resolved"]))
        for r in html_rows(html, "change-row")
    }
    q = "SELECT DISTINCT rule_id, entity_id FROM violations WHERE run_id = ?"
    cur, prev = set(_sql(db, q, [RUN2])), set(_sql(db, q, [RUN1]))
    for rule_id, (new, persisting, resolved) in got.items():
        c = {e for r, e in cur if r == rule_id}
        p = {e for r, e in prev if r == rule_id}
        assert (new, persisting, resolved) == (len(c - p), len(c & p), len(p - c))
    verdicts = {r["data-rule"]: r["data-verdict"] for r in html_rows(html, "rate-change-row")}
    assert verdicts["first_visit.basis"] == "worse"  # the fixture's deliberately worse rule
    assert verdicts["training.doctor_online"] == "no_change"


def test_ec_funnel_counts(db: Path, html: str) -> None:
    stages = {int(r["data-stage"]): int(r["data-count"]) for r in html_rows(html, "ec-stage")}
    ((fu_n, fu_ok),) = _sql(
        db,
        "SELECT denominator, denominator - violated - not_evidenced FROM rule_results"
        " WHERE run_id = ? AND rule_id = 'ec.follow_up'",
        [RUN2],
    )
    ((wi_n, wi_ok),) = _sql(
        db,
        "SELECT denominator, denominator - violated - not_evidenced FROM rule_results"
        " WHERE run_id = ? AND rule_id = 'ec.witnessed_intake'",
        [RUN2],
    )
    assert stages == {1: fu_n, 2: wi_n, 3: wi_ok, 4: fu_ok}


def test_charts_inline_and_offline(html: str) -> None:
    assert html.count("<svg") >= 9
    assert 'id="timeline-doctor"' in html
    # the only script is the one inline block of the template (sortable tables), with no src
    assert html.replace("&lt;script", "").count("<script") == 1 and "<script>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert not re.search(r"https?://", html)
    assert "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only in-page references such as url(#clip)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # charts' clip/gradient ids do not collide


def test_xss_payload_is_escaped(html: str, db: Path, tmp_path: Path) -> None:
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(2)</script>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert not re.search(r"<img\b", html, flags=re.I)


def test_institution_and_period_filter_recomputes_from_strata(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    report.write_report(db, out, institution="I1", period="2026-08..2026-09")
    rows = {r["data-rule"]: r for r in html_rows(out.read_text(encoding="utf-8"), "rule-row")}
    want = _sql(
        db,
        "SELECT rule_id, sum(denominator), sum(violated), sum(not_evidenced) FROM rule_results_strata"
        " WHERE run_id = ? AND institution_id = 'I1' AND (month IS NULL OR month BETWEEN"
        " '2026-08' AND '2026-09') GROUP BY rule_id",
        [RUN2],
    )
    assert want
    for rule_id, n, v, ne in want:
        r = rows[rule_id]
        assert (int(r["data-denominator"]), int(r["data-violated"]), int(r["data-not-evidenced"])) == (
            n,
            v,
            ne,
        )


def test_report_file_is_owner_only(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    report.write_report(db, out, run_id=RUN1)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert 'id="no-previous"' in out.read_text(encoding="utf-8")


def _rates(db: Path) -> dict[str, float]:
    return {
        r: (v + ne) / n
        for r, n, v, ne in _sql(
            db,
            "SELECT rule_id, denominator, violated, not_evidenced FROM rule_results WHERE run_id = ? AND"
            " denominator > 0",
            [RUN2],
        )
    }


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ([], 0),
        (["--fail-on", "none"], 0),
        (["--fail-on", "must"], 1),
        (["--fail-on", "should"], 3),  # should rule security.mfa is not evaluable: could not check
        (["--max-rate", "security.mfa=0.5"], 3),  # a max-rate on a rule that could not be checked
        (["--max-rate", "training.doctor_online=0"], 0),  # the rule that always passes
        (["--max-rate", "ec.*=0.5"], 0),
        (["--max-rate", "ec.*=0.01"], 1),
        (["--max-rate", "first_visit.basis=0.99"], 0),
        (["--run", "no-such-run"], 2),
        (["--period", "2026-13..2026-14"], 2),
        (["--period", "2026-09..2026-07"], 2),
        (["--institution", "NOPE"], 2),
        (["--max-rate", "consent.recorded"], 2),
        (["--max-rate", "nosuch.*=0.1"], 2),
    ],
)
def test_exit_codes(
    db: Path, tmp_path: Path, extra: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["report", "--db", str(db), "--out", str(tmp_path / "r.html"), *extra])
    assert rc == code
    cap = capsys.readouterr()
    if code == 2:
        assert "ocaudit: error:" in cap.err
    else:
        assert "report written" in cap.out


def test_max_rate_boundary_is_exclusive(db: Path) -> None:
    rate = _rates(db)["consent.recorded"]
    con = duckdb.connect(str(db), read_only=True)
    frame = report.rule_frame(con, RUN2)
    con.close()
    assert report.evaluate_thresholds(frame, "none", [("consent.recorded", rate)]) == []
    assert report.evaluate_thresholds(frame, "none", [("consent.recorded", rate - 1e-6)])


def test_must_threshold_ignores_should_rules(db: Path) -> None:
    con = duckdb.connect(str(db), read_only=True)
    frame = report.rule_frame(con, RUN2)
    con.close()
    must_only = report.evaluate_thresholds(frame, "must")
    assert all("(must)" in b for b in must_only)
    assert any("(should)" in b for b in report.evaluate_thresholds(frame, "should"))


def test_no_runs_and_missing_db(tmp_path: Path) -> None:
    empty = build_fixture_db(tmp_path / "empty.duckdb", runs=0)
    with pytest.raises(UserError, match="no audit runs"):
        report.write_report(empty, tmp_path / "r.html")
    with pytest.raises(UserError, match="no such database"):
        report.write_report(tmp_path / "missing.duckdb", tmp_path / "r.html")


def test_cli_report_namespace(db: Path, tmp_path: Path) -> None:
    args = argparse.Namespace(
        db=str(db),
        out=str(tmp_path / "x.html"),
        run=None,
        institution=None,
        period=None,
        fail_on="none",
        max_rate=[],
    )
    assert report.cli_report(args) == 0


def test_violations_frame_filters(db: Path) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        all_v = report.violations_frame(con, RUN2)
        assert len(all_v) == _sql(db, "SELECT count(*) FROM violations WHERE run_id = ?", [RUN2])[0][0]
        sub = report.violations_frame(
            con, RUN2, rule_id="ec.*", institution="I2", doctor="D5", month="2026-08"
        )
        assert len(sub) and set(sub["doctor_id"]) == {"D5"} and sub["rule_id"].str.startswith("ec.").all()
        assert set(sub.columns) >= {"rule_id", "title_ja", "entity_id", "status", "institution_id", "month"}
        n = _sql(
            db,
            "SELECT count(*) FROM violations WHERE run_id = ? AND rule_id LIKE 'ec.%' AND doctor_id = 'D5'"
            " AND month = '2026-08'",
            [RUN2],
        )[0][0]
        assert len(sub) == n
    finally:
        con.close()


@pytest.mark.browser
def test_report_renders_in_headless_chromium(html: str, tmp_path: Path) -> None:
    """Open the report file:// in headless Chromium: title, drawn SVG charts, no XSS element, no network use."""
    import shutil

    chromium, driver = (
        shutil.which("chromium") or "/usr/bin/chromium",
        shutil.which("chromedriver") or "/usr/bin/chromedriver",
    )
    if not (Path(chromium).exists() and Path(driver).exists()):
        pytest.skip("chromium/chromedriver not installed (run `make browser` to install Debian's packages)")

    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    assert not re.search(r"""\s(src|href)\s*=\s*["']?\s*https?:""", html, flags=re.I)
    browser = headless_chrome(chromium, driver, tmp_path / "chrome-profile", "1280,1000")
    try:
        browser.get(page.as_uri())
        assert "Online care audit report" in browser.title
        sizes = browser.execute_script(
            "return Array.from(document.querySelectorAll('figure.chart > svg'))"
            ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; });"
        )
        assert len(sizes) >= 9 and all(w > 50 and h > 50 for w, h in sizes)
        assert browser.execute_script("return document.querySelectorAll('img[onerror], img').length") == 0
        # one small inline script (sortable tables), nothing loaded from anywhere
        assert browser.execute_script("return document.querySelectorAll('script').length") == 1
        assert browser.execute_script("return document.querySelectorAll('script[src]').length") == 0
        assert len(html[html.index("<script>") : html.index("</script>")]) < 3000
        browser.find_element("css selector", "#fix-first-table th:nth-child(3)").click()  # sort by records
        order = browser.execute_script(
            "return Array.from(document.querySelectorAll('#fix-first-table tr.fix-row'))"
            ".map(r => +r.dataset.toReview)"
        )
        assert order == sorted(order) and len(order) > 1
        shown = browser.execute_script("return document.body.innerText")
        assert "<img src=x onerror=alert(1)>" in shown  # the payload is displayed as text
        external = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('file:') && !n.startsWith('data:'))"
        )
        assert external == []
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def pipeline_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = pipeline_available()
    if reason:
        pytest.skip(f"real pipeline not available: {reason}")
    return build_pipeline_db(tmp_path_factory.mktemp("pipe") / "ocaudit.duckdb")


@pytest.mark.slow
def test_end_to_end_sample_data(
    pipeline_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ingest sample_data → audit twice → report: the page's numbers equal the run store's."""
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(pipeline_db), "--out", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    (run_id,) = _sql(pipeline_db, "SELECT run_id FROM audit_runs ORDER BY started_at DESC LIMIT 1")[0]
    assert element_attrs(html, "run-meta")["data-run"] == run_id
    assert element_attrs(html, "run-meta")["data-previous-run"]
    rows = {r["data-rule"]: r for r in html_rows(html, "rule-row")}
    stored = _sql(
        pipeline_db,
        "SELECT rule_id, status, denominator, violated, not_evidenced FROM rule_results WHERE run_id = ?",
        [run_id],
    )
    assert len(stored) >= 40 and set(rows) == {s[0] for s in stored}
    for rule_id, status, n, v, ne in stored:
        r = rows[rule_id]
        assert r["data-status"] == status
        if status in ("not_evaluable", "error"):
            assert r["data-denominator"] == "" and r["data-rate"] == ""  # unknown, not zero
            continue
        assert (int(r["data-denominator"]), int(r["data-violated"]), int(r["data-not-evidenced"])) == (
            n,
            v,
            ne,
        )
    # same data audited twice: nothing new, nothing resolved, no significant change
    for c in html_rows(html, "change-row"):
        assert c["data-new"] == "0" and c["data-resolved"] == "0"
    assert {r["data-verdict"] for r in html_rows(html, "rate-change-row")} <= {"no_change"}
    assert html.count("<svg") >= 8
    assert not re.search(r"https?://", html)
    fail = main(["report", "--db", str(pipeline_db), "--out", str(out), "--fail-on", "must"])
    any_must_bad = _sql(
        pipeline_db,
        "SELECT count(*) FROM rule_results WHERE run_id = ? AND level = 'must'"
        " AND violated + not_evidenced > 0",
        [run_id],
    )[0][0]
    must_unchecked = _sql(
        pipeline_db,
        "SELECT count(*) FROM rule_results WHERE run_id = ? AND level = 'must'"
        " AND status IN ('not_evaluable', 'error')",
        [run_id],
    )[0][0]
    assert fail == (3 if must_unchecked else 1 if any_must_bad else 0)  # could not check wins (exit 3)
    assert main(["feedback", "--db", str(pipeline_db), "--out", str(tmp_path / "fb")]) == 0
    assert (tmp_path / "fb" / "index.html").exists()


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-04..2026-06", ("2026-04", "2026-06")),
        (" 2026-04..2026-04 ", ("2026-04", "2026-04")),
        (None, None),
        ("2026-4..2026-06", UserError),
        ("2026-04-01..2026-06-30", UserError),
        ("2026-06..2026-04", UserError),
        ("2026-04", ("2026-04", "2026-04")),  # one month: the same parser as the survey's
        ("2026-13..2027-01", UserError),
    ],
)
def test_parse_period(text: str | None, want: tuple | type) -> None:
    if want is UserError:
        with pytest.raises(UserError):
            period_bounds(text)
    else:
        assert period_bounds(text) == want


@pytest.mark.parametrize(
    ("items", "want"),
    [
        (["ec.*=0.01"], [("ec.*", 0.01)]),
        (["consent.recorded=0", "exam.*=1"], [("consent.recorded", 0.0), ("exam.*", 1.0)]),
        (["ec.*=1.5"], UserError),
        (["=0.1"], UserError),
        (["ec.*=abc"], UserError),
    ],
)
def test_parse_max_rates(items: list[str], want: list | type) -> None:
    if want is UserError:
        with pytest.raises(UserError):
            report.parse_max_rates(items)
    else:
        assert report.parse_max_rates(items) == want
