"""Per-doctor feedback sheets: numbers equal the strata, records equal the violations, ids escaped."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb
import pytest

from tests.reporting_fixtures import RUN2, XSS, build_fixture_db, element_attrs, html_rows
from tests.reporting_fixtures import query as _sql
from toolkit.cli import main
from toolkit.report import feedback


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("fb") / "fx.duckdb")


def test_one_doctor_sheet_numbers(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "d5.html"
    assert main(["feedback", "--db", str(db), "--doctor", "D5", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = {r["data-rule"]: r for r in html_rows(html, "fb-row")}
    doc = _sql(
        db,
        "SELECT rule_id, sum(denominator), sum(violated), sum(not_evidenced) FROM rule_results_strata"
        " WHERE run_id = ? AND doctor_id = 'D5' GROUP BY rule_id HAVING sum(denominator) > 0",
        [RUN2],
    )
    assert set(rows) == {d[0] for d in doc}
    for rule_id, n, v, ne in doc:
        r = rows[rule_id]
        assert (int(r["data-denominator"]), int(r["data-violated"]), int(r["data-not-evidenced"])) == (
            n,
            v,
            ne,
        )
        assert float(r["data-rate"]) == pytest.approx((n - v - ne) / n)
        ((inst_n, inst_bad),) = _sql(
            db,
            "SELECT sum(denominator), sum(violated + not_evidenced) FROM"
            " rule_results_strata WHERE run_id = ? AND rule_id = ? AND institution_id = 'I2'",
            [RUN2, rule_id],
        )
        assert float(r["data-inst-rate"]) == pytest.approx((inst_n - inst_bad) / inst_n)
        ((all_n, all_bad),) = _sql(
            db,
            "SELECT denominator, violated + not_evidenced FROM rule_results WHERE run_id = ? AND rule_id = ?",
            [RUN2, rule_id],
        )
        assert float(r["data-all-rate"]) == pytest.approx((all_n - all_bad) / all_n)
    records = {(r["data-rule"], r["data-entity"], r["data-status"]) for r in html_rows(html, "fb-record")}
    want = set(
        _sql(
            db,
            "SELECT rule_id, entity_id, status FROM violations WHERE run_id = ? AND doctor_id = 'D5'",
            [RUN2],
        )
    )
    assert records == want
    assert element_attrs(html, "fb-meta")["data-doctor"] == "D5"
    assert "patient_id" not in html


def test_all_doctors_folder_with_index_and_escaping(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheets"
    assert main(["feedback", "--db", str(db), "--out", str(out)]) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    doctors = [r["data-doctor"] for r in html_rows(index, "fb-index-row")]
    assert sorted(doctors) == sorted(["D1", "D2", "D3", "D4", "D5", XSS])
    sheet = out / feedback.sheet_filename(XSS)
    html = sheet.read_text(encoding="utf-8")
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html and "<img" not in index
    assert "/" not in sheet.name and "<" not in sheet.name
    assert "http" not in html and "http" not in index and "<script" not in html  # self-contained, offline
    assert len(list(out.glob("feedback_*.html"))) == 6


def test_unknown_doctor_is_exit_2(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feedback", "--db", str(db), "--doctor", "NOPE", "--out", str(tmp_path / "x.html")]) == 2
    assert "NOPE" in capsys.readouterr().err


def test_sheet_leads_with_the_action_and_orders_rules_by_findings(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "d5.html"
    assert main(["feedback", "--db", str(db), "--doctor", "D5", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    doc = _sql(
        db,
        "SELECT s.rule_id, r.level, sum(s.denominator), sum(s.violated + s.not_evidenced) FROM rule_results_strata s"
        " JOIN rule_results r USING (run_id, rule_id) WHERE s.run_id = ? AND s.doctor_id = 'D5'"
        " GROUP BY ALL HAVING sum(s.denominator) > 0",
        [RUN2],
    )
    n_records = _sql(db, "SELECT count(*) FROM violations WHERE run_id = ? AND doctor_id = 'D5'", [RUN2])[0][
        0
    ]
    head = element_attrs(html, "fb-headline")
    assert int(head["data-records"]) == n_records > 0
    must_bad = sorted(((n - b) / n, rid) for rid, lvl, n, b in doc if lvl == "must" and b)
    assert head["data-lowest"] == ",".join(rid for _, rid in must_bad[:3])
    assert f"{n_records} record(s) to review; your lowest must-follow rates:" in html
    # the opening sentence, then the records to review, then the rule tables
    assert html.index('id="fb-headline"') < html.index('id="fb-records"') < html.index('id="fb-must"')
    rows = html_rows(html, "fb-row")
    must_rows = [r for r in rows if r["data-rule"] in {d[0] for d in doc if d[1] == "must"}]
    bad = [int(r["data-violated"]) + int(r["data-not-evidenced"]) for r in must_rows]
    n_act = sum(1 for b in bad if b)
    assert n_act and all(bad[:n_act]) and not any(bad[n_act:])  # findings first, then the 100 % rows
    assert bad[:n_act] == sorted(bad[:n_act], reverse=True)
    assert all(
        "finding" in (r["class"] or "")
        for r in rows
        if int(r["data-violated"]) + int(r["data-not-evidenced"])
    )
    if n_act < len(must_rows):  # rows at 100 % are folded away
        folded = element_attrs(html, "fb-must-clear")
        assert int(folded["data-n"]) == len(must_rows) - n_act
        assert html.index('id="fb-must-clear"') > html.index('id="fb-must"')
    assert "ranking" not in html.replace("not a ranking", "")


def test_index_lists_records_to_review_rates_and_pseudo_doctors(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheets"
    con = duckdb.connect(str(db))
    registered = {r[0] for r in con.execute("SELECT doctor_id FROM doctors").fetchall()}
    if not registered:  # the fixture has no doctors table rows: register all but D4 (a pseudo-doctor)
        con.executemany(
            "INSERT INTO doctors (doctor_id, institution_id) VALUES (?, ?)",
            [("D1", "I1"), ("D2", "I1"), ("D3", "I1"), ("D5", "I2"), (XSS, "I3")],
        )
    con.close()
    assert main(["feedback", "--db", str(db), "--out", str(out)]) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    rows = {r["data-doctor"]: r for r in html_rows(index, "fb-index-row")}
    for doc, r in rows.items():
        n, bad = _sql(
            db,
            "SELECT sum(s.denominator), sum(s.violated + s.not_evidenced) FROM rule_results_strata s"
            " JOIN rule_results r USING (run_id, rule_id) WHERE s.run_id = ? AND s.doctor_id = ?"
            " AND r.level = 'must' AND r.status IN ('passed', 'failed')",
            [RUN2, doc],
        )[0]
        assert float(r["data-must-rate"]) == pytest.approx((n - bad) / n)
        n_viol = _sql(db, "SELECT count(*) FROM violations WHERE run_id = ? AND doctor_id = ?", [RUN2, doc])
        assert int(r["data-to-review"]) == n_viol[0][0]
    assert [d for d, r in rows.items() if r["data-registered"] == "false"] == ["D4"]
    assert element_attrs(index, "fb-pseudo")["data-n"] == "1" and "doctors table lacks" in index
    assert list(rows) == sorted(rows)  # doctor-id order, never a ranking
    assert 'class="sortable"' in index or "sortable" in element_attrs(index, "fb-index")["class"]


def test_every_sheet_of_the_folder_equals_the_sheet_of_that_doctor_alone(db: Path, tmp_path: Path) -> None:
    """The folder run reads every doctor's sums and review counts in a few queries and slices them;
    the one-doctor run queries that doctor only: the sheets must be the same (the time stamp aside)."""
    import re

    folder = tmp_path / "all"
    assert main(["feedback", "--db", str(db), "--out", str(folder)]) == 0
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    doctors = [
        r["data-doctor"] for r in html_rows((folder / "index.html").read_text("utf-8"), "fb-index-row")
    ]
    assert doctors == sorted(doctors)  # listed by doctor, though written institution by institution
    for doctor in doctors:
        alone = tmp_path / "alone.html"
        assert main(["feedback", "--db", str(db), "--doctor", doctor, "--out", str(alone)]) == 0
        batch = (folder / feedback.sheet_filename(doctor)).read_text("utf-8")
        assert stamp.sub("", batch) == stamp.sub("", alone.read_text("utf-8")), doctor
