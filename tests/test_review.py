"""Review marks: the state machine, the append-only history, the Excel round trip, the per-rule
counts with "marked corrected, still present" across runs, ``--except justified``, escaping and
survey packages (tests/review_fixtures.py: a tiny hand-built run store; one real pipeline test)."""

from __future__ import annotations

import re
import shutil
import stat
import sys
from pathlib import Path

import openpyxl
import pytest

from tests import review_fixtures as F
from tests.reporting_fixtures import element_attrs, html_rows
from toolkit import store
from toolkit.cli import main
from toolkit.errors import UserError
from toolkit.report import data as rd
from toolkit.report import html as report
from toolkit.report import reviews
from toolkit.review import marks, sheet, states, summary

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "<script>alert('note')</script>"
FORMULA = "=cmd|' /C calc'!A0"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return F.build(tmp_path_factory.mktemp("rv") / "base.duckdb")


@pytest.fixture()
def db(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "rv.duckdb"
    shutil.copy(base, out)
    return out


def _keys(run: str, rule: str | None = None) -> list[marks.Key]:
    ent = {r[0]: r[3] for r in F.RULES}
    return [(r, ent[r], e) for r, e in F.FINDINGS[run] if rule in (None, r)]


def _count(db: Path) -> int:
    con = store.connect(db, read_only=True)
    try:
        return con.execute("SELECT count(*) FROM review_marks").fetchone()[0]
    finally:
        con.close()


# --- the state machine --------------------------------------------------------------------------

ALLOWED = [
    ("open", "acknowledged", ""),
    ("open", "corrected", ""),
    ("open", "justified", "emergency 緊急"),
    ("acknowledged", "open", ""),
    ("acknowledged", "corrected", ""),
    ("corrected", "acknowledged", ""),
    ("corrected", "justified", "why"),
    ("justified", "open", "exception withdrawn"),
    ("justified", "corrected", ""),
]
REFUSED = [
    ("open", "open", "", "already open"),
    ("acknowledged", "acknowledged", "x", "already acknowledged"),
    ("corrected", "corrected", "", "only again once a later run still flags it"),
    ("open", "justified", "  ", "needs a note"),
    ("justified", "open", "", "needs a note"),
    ("justified", "justified", "same", "already justified"),
    ("open", "done", "", "unknown state"),
]


@pytest.mark.parametrize(("current", "new", "note"), ALLOWED)
def test_allowed_changes(current: str, new: str, note: str) -> None:
    assert states.transition_problem(current, new, note) is None


@pytest.mark.parametrize(("current", "new", "note", "why"), REFUSED)
def test_refused_changes_say_why_in_both_languages(current: str, new: str, note: str, why: str) -> None:
    msg = states.transition_problem(current, new, note, current_note="same")
    assert msg is not None and why in msg and re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", msg)


def test_same_state_allowed_only_for_a_second_fix_or_an_amended_reason() -> None:
    assert states.transition_problem("corrected", "corrected", "", still_present=True) is None
    assert states.transition_problem("justified", "justified", "new reason", current_note="old") is None


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("corrected", "corrected"),
        ("訂正済み", "corrected"),
        ("justified 正当な例外", "justified"),
        (" Open ", "open"),
        ("acknowledged 訂正済み", None),
        ("fixed", None),
        ("", None),
    ],
)
def test_parse_state(cell: str, code: str | None) -> None:
    assert states.parse_state(cell) == code


# --- append-only marks and validation ------------------------------------------------------------


def test_history_is_append_only_and_the_latest_mark_is_current(db: Path) -> None:
    key = ("consent.recorded", "session", "S3")
    marks.mark_file(db, [key], "acknowledged", "QA 田中", "checking the chart")
    marks.mark_file(db, [key], "corrected", "QA 田中", "consent time fixed in the EHR")
    con = store.connect(db, read_only=True)
    try:
        hist = marks.history(con, key)
        assert list(hist["state"]) == ["acknowledged", "corrected"]
        assert list(hist["mark_id"]) == sorted(hist["mark_id"]) and hist["run_id"].tolist() == [F.R2, F.R2]
        cur = marks.current_marks(con)
        assert cur.set_index("entity_id").loc["S3", "state"] == "corrected" and len(cur) == 1
        run = marks.current_marks(con, F.R2).set_index("entity_id")
        assert run.loc["S3", "state"] == "corrected" and run.loc["S4", "state"] == "open"
    finally:
        con.close()
    # no code path changes or deletes a mark
    pat = re.compile(r"(UPDATE|DELETE\s+FROM|TRUNCATE|DROP\s+TABLE)\s+\"?review_marks", re.IGNORECASE)
    hits = [str(p) for p in (ROOT / "toolkit").rglob("*.py") if pat.search(p.read_text(encoding="utf-8"))]
    assert hits == []


def test_a_bad_key_refuses_the_whole_batch(db: Path) -> None:
    good = ("consent.recorded", "session", "S1")
    bad = [
        ("consent.recorded", "session", "S-never"),  # never flagged
        ("consent.recorded", "ec_case", "S1"),  # wrong entity
        ("no.such_rule", "session", "S1"),
    ]
    with pytest.raises(marks.MarkError) as err:
        marks.mark_file(db, [good, *bad], "acknowledged", "QA")
    assert [i for i, _ in err.value.problems] == [1, 2, 3]
    assert "never flagged" in str(err.value) and "nothing was written" in str(err.value)
    assert _count(db) == 0
    with pytest.raises(marks.MarkError, match="did not flag"):  # S2 was resolved in R2
        marks.mark_file(db, [("consent.recorded", "session", "S2")], "corrected", "QA", run_id=F.R2)
    with pytest.raises(marks.MarkError, match="at most 500"):
        marks.mark_file(db, [good], "acknowledged", "QA", "x" * 501)
    with pytest.raises(marks.MarkError, match="who is missing"):
        marks.mark_file(db, [good], "acknowledged", " ")
    assert marks.mark_file(db, [("consent.recorded", "session", "S2")], "corrected", "QA", run_id=F.R1) == [1]


# --- counts across two runs ----------------------------------------------------------------------


def test_marked_corrected_still_present_across_runs(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Marked corrected between R1 and R2: S2 was fixed (R2 no longer flags it), S1 was not."""
    monkeypatch.setattr(marks, "_now", lambda: F.BETWEEN)
    marks.mark_file(
        db,
        [("consent.recorded", "session", "S1"), ("consent.recorded", "session", "S2")],
        "corrected",
        "QA",
        "fixed at the source",
        run_id=F.R1,
    )
    marks.mark_file(db, [("ec.follow_up", "ec_case", "E1")], "justified", "Dr 佐藤", SCRIPT)
    con = store.connect(db, read_only=True)
    try:
        r2 = summary.mark_counts(con, F.R2).set_index("rule_id")
        assert r2.loc[
            "consent.recorded", ["findings", "open", "corrected_still_present", "corrected_pending"]
        ].tolist() == [3, 2, 1, 0]
        assert r2.loc["ec.follow_up", "justified"] == 1
        r1 = summary.mark_counts(con, F.R1).set_index("rule_id")  # R1's data predate the marks
        assert r1.loc["consent.recorded", ["corrected_pending", "corrected_still_present"]].tolist() == [2, 0]
        present = summary.still_present(con, F.R2)
        assert present[["rule_id", "entity_id"]].values.tolist() == [["consent.recorded", "S1"]]
        res = summary.resolved_marked(con, F.R2, F.R1, ["consent.recorded"]).set_index("rule_id")
        assert res.loc["consent.recorded"].tolist() == [1, 1, 1]  # S2: resolved, marked, corrected
        ctx = reviews.review_summary(con, F.R2, F.R1)
        assert ctx["totals"]["corrected_still_present"] == 1 and ctx["totals"]["resolved_marked"] == 1
        assert ctx["justified"] == {"ec.follow_up": 1}
        d2 = reviews.review_summary(con, F.R2, doctor="D2")  # S1 belongs to D1
        assert d2["totals"]["corrected_still_present"] == 0 and d2["totals"]["findings"] == 3
        # a feedback run reads every doctor's counts at once: each doctor's slice is the same summary
        every = reviews.DoctorReviews(con, F.R2)
        for doctor in ("D1", "D2", "no such doctor"):
            assert reviews.review_summary(con, F.R2, doctor=doctor, doctors=every) == reviews.review_summary(
                con, F.R2, doctor=doctor
            ), doctor
        # a second fix is allowed only because R2 still flags S1; S2 cannot be "corrected" again
        assert states.transition_problem("corrected", "corrected", "", still_present=True) is None
    finally:
        con.close()
    monkeypatch.undo()
    assert (
        len(marks.mark_file(db, [("consent.recorded", "session", "S1")], "corrected", "QA", "second fix"))
        == 1
    )
    with pytest.raises(marks.MarkError, match="already corrected"):
        marks.mark_file(db, [("consent.recorded", "session", "S2")], "corrected", "QA")


# --- Excel export → edit → import ---------------------------------------------------------------


def _fill(path: Path, edits: dict[str, tuple[str, str, str]]) -> Path:
    """Set new_state / new_note / new_marked_by on the rows whose entity_id is a key of ``edits``."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet.SHEET]
    head = [c.value.split(" ")[0] for c in ws[1]]
    col = {k: head.index(k) + 1 for k in ("entity_id", "new_state", "new_note", "new_marked_by")}
    for row in range(2, ws.max_row + 1):
        eid = ws.cell(row, col["entity_id"]).value
        if eid in edits:
            for k, v in zip(("new_state", "new_note", "new_marked_by"), edits[eid], strict=True):
                ws.cell(row, col[k], v)
    out = path.with_name(f"filled-{len(list(path.parent.glob('filled-*')))}.xlsx")
    wb.save(out)
    return out


def test_export_edit_import_round_trip(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marks.mark_file(db, [("network.stable", "session", "S9")], "acknowledged", "QA", FORMULA)
    out = tmp_path / "marks.xlsx"
    assert main(["review", "export", "--db", str(db), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    ws = openpyxl.load_workbook(out)[sheet.SHEET]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(rows) == len(F.FINDINGS[F.R2])
    cells = [c for row in ws.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)  # no live formula
    assert "'" + FORMULA in [c.value for c in cells]  # the note written as text
    assert ws.data_validations.dataValidation  # the new-state drop-down
    # a bad row (never-flagged id typed in) refuses the whole file, named by its row number
    bad = _fill(
        out,
        {
            "S1": ("corrected 訂正済み", "EHR fixed", "QA 田中"),
            "S4": ("justified", "", "QA"),
            "E1": ("acknowledged", "", ""),
        },
    )
    assert main(["review", "import", "--db", str(db), str(bad), "--by", "QA office"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"row \d+ 行目: .*justified mark needs a note", err) and "nothing was applied" in err
    assert _count(db) == 1
    # --skip-bad applies the good rows only
    assert main(["review", "import", "--db", str(db), str(bad), "--by", "QA office", "--skip-bad"]) == 0
    assert "1 bad row(s) skipped" in capsys.readouterr().out
    con = store.connect(db, read_only=True)
    cur = marks.current_marks(con).set_index("entity_id")
    con.close()
    assert cur.loc["S1", ["state", "marked_by", "note"]].tolist() == ["corrected", "QA 田中", "EHR fixed"]
    assert cur.loc["E1", ["state", "marked_by"]].tolist() == ["acknowledged", "QA office"]
    assert "S4" not in cur.index
    # the same sheet again: every filled row was marked since the export → refused
    with pytest.raises(UserError, match="marked since the export"):
        sheet.import_sheet(db, bad)
    # filters: only open findings of consent.*, read back as the new sheet
    out2 = tmp_path / "open.xlsx"
    assert sheet.export_sheet(db, out2, rule="consent.*", state="open").rows == 2  # S3, S4
    assert main(["review", "export", "--db", str(db), "--out", str(out2), "--state", "fixed"]) == 2


def test_import_refuses_a_file_that_is_not_a_review_sheet(db: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not an Excel"):
        sheet.import_sheet(db, junk)
    wb = openpyxl.Workbook()
    wb.active.append(["a", "b"])
    other = tmp_path / "other.xlsx"
    wb.save(other)
    with pytest.raises(UserError, match="no sheet with the columns"):
        sheet.import_sheet(db, other)


# --- report, feedback, --except justified, escaping ---------------------------------------------


def test_report_feedback_and_except_justified(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(marks, "_now", lambda: F.BETWEEN)
    marks.mark_file(db, [("consent.recorded", "session", "S1")], "corrected", "QA", SCRIPT, run_id=F.R1)
    monkeypatch.undo()
    marks.mark_file(db, _keys(F.R2, "consent.recorded")[1:], "justified", "QA", "emergency " + FORMULA)
    marks.mark_file(db, _keys(F.R2, "ec.follow_up"), "justified", "QA", "emergency")
    out = tmp_path / "r.html"
    assert (
        main(["report", "--db", str(db), "--out", str(out), "--fail-on", "must", "--except", "justified"])
        == 1
    )
    err = capsys.readouterr().err  # consent.recorded: S1 is not justified, E1 is
    assert "consent.recorded (must): 1 of 20 records violated or not evidenced (+2 justified" in err
    assert "ec.follow_up" not in err
    html = out.read_text(encoding="utf-8")
    assert SCRIPT not in html and "&lt;script&gt;" in html
    box = element_attrs(html, "review-marks")
    assert (box["data-still-present"], box["data-justified"], box["data-resolved-marked"]) == ("1", "3", "0")
    assert [r["data-entity"] for r in html_rows(html, "still-present-row")] == ["S1"]
    assert element_attrs(html, "review-except")  # the page says --except justified was applied
    rows = {r["data-rule"]: r for r in html_rows(html, "review-row")}
    assert (rows["consent.recorded"]["data-justified"], rows["consent.recorded"]["data-violated"]) == (
        "2",
        "3",
    )
    # the rate still counts justified findings; --except justified only changes the exit code
    kpi = element_attrs(html, "must-kpi")
    assert kpi["data-violated"] == str(sum(r != "network.stable" for r, _ in F.FINDINGS[F.R2]))
    marks.mark_file(db, [("consent.recorded", "session", "S1")], "justified", "QA", "emergency")
    con = store.connect(db, read_only=True)
    try:
        frame, justified = rd.rule_frame(con, F.R2), reviews.review_summary(con, F.R2)["justified"]
    finally:
        con.close()
    assert justified == {"consent.recorded": 3, "ec.follow_up": 1}
    limit = [("consent.*", 0.01)]
    assert len(report.evaluate_thresholds(frame, "must")) == 2
    assert report.evaluate_thresholds(frame, "must", limit, justified) == []
    assert report.evaluate_thresholds(frame, "none", limit) == [
        "consent.recorded: non-compliance 0.1500 > max 0.01"
    ]
    fb = tmp_path / "fb.html"
    assert main(["feedback", "--db", str(db), "--doctor", "D1", "--out", str(fb)]) == 0
    box = element_attrs(fb.read_text(encoding="utf-8"), "review-marks")
    assert (box["data-findings"], box["data-justified"]) == ("2", "2")  # S1 and E1 of doctor D1


def test_survey_packages_never_hold_notes(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import survey_fixtures as S

    from toolkit.survey import run as survey

    db = S.build_db(tmp_path / "survey.duckdb")
    con = store.connect(db)
    key = con.execute("SELECT rule_id, entity, entity_id FROM violations LIMIT 1").fetchall()[0]
    con.close()
    canary = "CANARY-NOTE-7f3a"
    marks.mark_file(db, [key], "justified", "CANARY-WHO-91c2", canary + SCRIPT)
    res = survey.run_survey_ec(db, S.PERIOD, tmp_path / "out", institution="I1", as_of=None)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and res is not None
    for p in files:
        data = p.read_bytes()
        if p.suffix == ".xlsx":
            import zipfile

            with zipfile.ZipFile(p) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        assert b"CANARY" not in data, p


# --- the real pipeline: two audits, one record fixed at the source and one not -----------------


@pytest.mark.slow
def test_two_audits_record_fixed_or_not(tmp_path: Path) -> None:
    from tests.fixtures.secutil import make_data, rewrite_csv

    data = make_data(tmp_path / "data", sessions=60)
    db = tmp_path / "p.duckdb"
    audit = ["audit", "--db", str(db), "--as-of", "2026-10-15", "--quiet", "--rules", "consent.*"]
    assert main(["ingest", "--db", str(db), str(data)]) == 0 and main(audit) == 0
    con = store.connect(db, read_only=True)
    run1 = store.runs_newest_first(con)[0][0]
    con.close()
    xlsx = tmp_path / "m.xlsx"
    assert main(["review", "export", "--db", str(db), "--out", str(xlsx), "--run", run1]) == 0
    found = [r[4] for r in openpyxl.load_workbook(xlsx)[sheet.SHEET].iter_rows(min_row=2, values_only=True)]
    fixed = "S000-0000005"  # consent_at after started_at: consent.recorded
    assert fixed in found and len(found) >= 2
    filled = _fill(xlsx, {eid: ("corrected", "fixed in the EHR", "QA") for eid in found})
    assert main(["review", "import", "--db", str(db), str(filled)]) == 0
    # only S000-0000005 is fixed at the source; the next export and audit see it
    rewrite_csv(
        data / "sessions.csv",
        lambda rows: [
            {**r, "consent_at": "2026-04-03T14:50:00+09:00"} if r["session_id"] == fixed else r for r in rows
        ],
    )
    assert main(["ingest", "--db", str(db), str(data)]) == 0 and main(audit) == 0
    con = store.connect(db, read_only=True)
    try:
        run2 = store.runs_newest_first(con)[0][0]
        assert run2 != run1
        counts = summary.mark_counts(con, run2)
        assert int(counts["corrected_still_present"].sum()) == len(found) - 1
        assert int(counts["corrected_pending"].sum()) == 0
        present = summary.still_present(con, run2)
        assert fixed not in set(present["entity_id"]) and len(present) == len(found) - 1
        res = summary.resolved_marked(con, run2, run1, ["consent.recorded"]).set_index("rule_id")
        assert res.loc[
            "consent.recorded", ["resolved", "resolved_marked", "resolved_corrected"]
        ].tolist() == [1, 1, 1]
        # run 1 (its data loaded before the marks): corrected, awaiting the next run
        assert int(summary.mark_counts(con, run1)["corrected_pending"].sum()) == len(found)
    finally:
        con.close()
    out = tmp_path / "still.xlsx"
    assert sheet.export_sheet(db, out, run_id=run2, state="still_present").rows == len(found) - 1
