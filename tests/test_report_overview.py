"""The report's first screen ("fix these first", the data-quality line), its run history, print and --out."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from tests.reporting_fixtures import RUN1, RUN2, build_fixture_db, element_attrs, html_rows
from tests.reporting_fixtures import query as _sql
from toolkit.audit import verdict as verdict_mod
from toolkit.errors import UserError
from toolkit.report import html as report
from toolkit.report import overview

RUN3 = "run-20261016-0001"  # a partial run (audit --rules) after RUN2


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reporting fixture plus: DQ checks that found nothing, and a partial run after RUN2."""
    path = build_fixture_db(tmp_path_factory.mktemp("ov") / "fx.duckdb")
    con = duckdb.connect(str(path))
    con.executemany(
        "INSERT INTO dq_results (run_id, check_id, table_name, title_en, title_ja, n, detail)"
        " VALUES (?, ?, 'sessions', 'x', 'x', 0, NULL)",
        [
            (RUN2, c)
            for c in ("dq.end_before_start", "dq.missing_times", "dq.lookalike_ids", "dq.lookalike_ids")
        ],
    )
    con.execute(
        "INSERT INTO audit_runs (run_id, started_at, finished_at, as_of, toolkit_version, parameters)"
        " VALUES (?, TIMESTAMPTZ '2026-10-16 03:00:00+00', TIMESTAMPTZ '2026-10-16 03:01:00+00',"
        " DATE '2026-10-16', '0.1.0', ?)",
        [RUN3, '{"rules": "consent.*", "partial": true, "rules_run": 1, "rules_total": 12}'],
    )
    con.execute(
        "INSERT INTO rule_results SELECT ? AS run_id, * EXCLUDE (run_id) FROM rule_results"
        " WHERE run_id = ? AND rule_id = 'consent.recorded'",
        [RUN3, RUN2],
    )
    con.close()
    return path


@pytest.fixture(scope="module")
def out(db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default report (RUN2) written next to a report of RUN1; returns the RUN2 file."""
    folder = tmp_path_factory.mktemp("ovout")
    # an earlier report of RUN1 in the same folder (its head is all the history reads)
    (folder / "report_run1.html").write_text(f'<table class="meta" id="run-meta" data-run="{RUN1}">', "utf-8")
    (folder / "notes.html").write_text("<p>not a report</p>", "utf-8")
    path = folder / "report.html"
    report.write_report(db, path)
    return path


@pytest.fixture(scope="module")
def html(out: Path) -> str:
    return out.read_text(encoding="utf-8")


def test_fix_first_ranks_must_rules_by_records_to_review(db: Path, html: str) -> None:
    stored = _sql(
        db,
        "SELECT rule_id, violated + not_evidenced, (denominator - violated - not_evidenced) / denominator"
        " FROM rule_results WHERE run_id = ? AND level = 'must' AND status = 'failed'",
        [RUN2],
    )
    want = [r[0] for r in sorted(stored, key=lambda r: (-r[1], r[2], r[0]))]
    rows = html_rows(html, "fix-row")
    assert [r["data-rule"] for r in rows] == want and len(want) >= 5
    assert [int(r["data-to-review"]) for r in rows] == sorted((r[1] for r in stored), reverse=True)
    # no should rule and no unchecked rule in the list
    assert "network.stable" not in want and "security.mfa" not in want
    # the institutions named are the ones with most findings of the rule, largest first
    top = _sql(
        db,
        "SELECT institution_id, sum(violated + not_evidenced) n FROM rule_results_strata"
        " WHERE run_id = ? AND rule_id = ? GROUP BY 1 HAVING n > 0 ORDER BY n DESC, 1 LIMIT 3",
        [RUN2, want[0]],
    )
    assert rows[0]["data-institutions"] == ",".join(i for i, _ in top)
    # the first screen comes before the contents and every row links to its rule row in the sections
    assert html.index('id="verdict"') < html.index('id="fix-first"') < html.index("<nav>")
    for rule_id in want:
        assert f'href="#rule-{rule_id}"' in html and f'id="rule-{rule_id}"' in html


def test_dq_checks_without_findings_fold_into_one_line(db: Path, html: str) -> None:
    rows = {r["data-check"] for r in html_rows(html, "dq-row")}
    assert rows == {
        c for c, n in _sql(db, "SELECT check_id, n FROM dq_results WHERE run_id = ?", [RUN2]) if n
    }
    line = element_attrs(html, "dq-line")
    assert (line["data-findings"], line["data-clear"]) == ("2", "3")  # lookalike_ids twice, counted once
    assert element_attrs(html, "dq-clear")["data-n"] == "3"
    assert "3 checks, no findings" in html


def test_history_lists_every_run_newest_first_with_links(db: Path, html: str, out: Path) -> None:
    rows = html_rows(html, "hist")
    assert [r["data-run"] for r in rows] == [RUN3, RUN2, RUN1]
    assert ["data-partial" in r for r in rows] == [True, False, False]
    con = duckdb.connect(str(db), read_only=True)
    try:
        for r in rows:
            got = con.execute(
                "SELECT rule_id, level, status, denominator, violated, not_evidenced FROM rule_results"
                " WHERE run_id = ?",
                [r["data-run"]],
            ).df()
            must = got[(got["level"] == "must") & got["status"].isin(["passed", "failed"])]
            bad = int((must["violated"] + must["not_evidenced"]).sum())
            assert int(r["data-to-review"]) == bad
            assert float(r["data-rate"]) == pytest.approx(1 - bad / must["denominator"].sum(), abs=6e-5)
        assert rows[1]["data-verdict"] == "not_compliant"
        assert (
            rows[0]["data-verdict"]
            == verdict_mod.compute_verdict(
                [{"rule_id": "consent.recorded", "level": "must", "status": "failed"}],
                verdict_mod.RunCoverage(True, 1, 12, "consent.*", {"must": ("x",)}),
            ).code
        )
    finally:
        con.close()
    # RUN1's report in the same folder is linked; this report names itself
    assert 'href="report_run1.html"' in html
    assert f'class="hist current-run" data-run="{RUN2}"' in html and "notes.html" not in html
    assert 'id="history-table"' in html and "監査ごとの遵守率" in html  # the trend of the two complete runs


def test_history_of_300_runs_stays_small_and_fast(db: Path, out: Path, tmp_path: Path) -> None:
    """300 more stored runs (copies of RUN1's rule rows) add little to the report and to its time."""
    many = tmp_path / "many.duckdb"
    shutil.copy(db, many)
    con = duckdb.connect(str(many))
    con.execute(
        "INSERT INTO audit_runs SELECT 'run-old-' || lpad(CAST(i AS VARCHAR), 3, '0'), started_at - to_days(i::INT),"
        " finished_at - to_days(i::INT), as_of, toolkit_version, suite_checksums, ingest_ids, parameters"
        " FROM audit_runs, range(1, 301) t(i) WHERE run_id = ?",
        [RUN1],
    )
    con.execute(
        "INSERT INTO rule_results SELECT a.run_id, r.* EXCLUDE (run_id) FROM rule_results r,"
        " (SELECT run_id FROM audit_runs WHERE run_id LIKE 'run-old-%') a WHERE r.run_id = ?",
        [RUN1],
    )
    con.close()
    t0 = time.monotonic()
    rcon = report.open_store(many)
    try:
        hist = overview.run_history(rcon)
    finally:
        rcon.close()
    assert len(hist) == 303 and time.monotonic() - t0 < 3.0
    big = tmp_path / "report.html"
    report.write_report(many, big)
    grown = big.stat().st_size - out.stat().st_size
    assert len(html_rows(big.read_text(encoding="utf-8"), "hist")) == 303
    assert grown < 100_000, grown


def test_out_into_a_missing_folder_is_an_error_naming_it(db: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(UserError, match=re.escape(str(missing))):
        report.write_report(db, missing / "report.html")
    assert not missing.exists()
    with pytest.raises(UserError, match="is a folder"):
        report.write_report(db, tmp_path)


@pytest.mark.browser
def test_print_to_pdf_gives_a4_pages(out: Path, tmp_path: Path) -> None:
    """Headless Chromium "Print to PDF" of the report: A4 pages (595 × 842 pt), more than one."""
    import subprocess

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium not installed (run `make browser` to install Debian's packages)")
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    boxes = re.findall(rb"/MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert boxes
    for _x0, _y0, w, h in boxes:
        assert (round(float(w)), round(float(h))) == (595, 842)  # A4 in points
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages > 1
