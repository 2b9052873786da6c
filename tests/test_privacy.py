"""Privacy end to end, through the real CLI in subprocesses on a real DuckDB file.

* the database and every output are owner-only, even when the user's umask is 022;
* direct-identifier columns are refused (exit 2, the column named, none of its values stored);
* artifacts, stdout and stderr carry ids, never other patient fields: a canary drug name and a
  canary raw value of a quarantined row appear in no output (the raw row only in ``quarantine``);
* the violations CSV neutralises formula injection in ids that come from the data;
* the survey's exported tables and package carry no patient, session or doctor id.

The HTML escaping of data (``<img onerror>`` as a doctor id) is tested by tests/test_report.py and
tests/test_feedback.py (plain HTML and headless Chromium); the survey's suppression by
tests/test_survey.py and tests/test_suppression.py.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.secutil import cli, make_data, read_csv, rewrite_csv
from toolkit import store

CANARY_FIELD = "CANARY_DRUGNAME_123"
CANARY_RAW = "CANARY_RAW_456"
INJECTION_ID = '=HYPERLINK("x")'


def _make_canary_data(out: Path) -> Path:
    d = make_data(out, sessions=120)

    def rx(rows):
        rows[0]["drug_name"] = CANARY_FIELD
        return rows

    def sessions(rows):
        bad = {**rows[1], "session_id": "S-CANARY-Q", "started_at": CANARY_RAW}  # quarantined
        inj = {**rows[2], "session_id": INJECTION_ID, "consent_at": "", "explained_at": ""}  # a violation
        return rows + [bad, inj]

    rewrite_csv(d / "prescriptions.csv", rx)
    rewrite_csv(d / "sessions.csv", sessions)
    return d


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """ingest → audit (+ CSV, JSON) → report → feedback → survey, all with umask 022."""
    root = tmp_path_factory.mktemp("privacy")
    data = _make_canary_data(root / "data")
    out = root / "out"
    db = out / "clinic.duckdb"
    cmds = [
        ["ingest", "--db", str(db), str(data)],
        [
            "audit",
            "--db",
            str(db),
            "--as-of",
            "2026-10-31",
            "--violations",
            str(out / "violations.csv"),
            "--json",
            str(out / "audit.json"),
        ],
        ["report", "--db", str(db), "--out", str(out / "report.html")],
        ["feedback", "--db", str(db), "--out", str(out / "feedback")],
        [
            "survey",
            "ec",
            "--db",
            str(db),
            "--period",
            "2026-04..2026-09",
            "--institution",
            "I0001",
            "--out",
            str(out / "survey"),
        ],
    ]
    results = {}
    for argv in cmds:
        r = cli(*argv, umask=0o022)
        results[argv[0]] = r
        assert r.returncode == 0, (argv, r.stdout[-3000:], r.stderr[-3000:])
    return {"root": root, "data": data, "out": out, "db": db, "results": results}


def _artifacts(out: Path) -> list[Path]:
    return [p for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith("clinic.duckdb")]


def _text(p: Path) -> str:
    raw = p.read_bytes()
    if p.suffix == ".xlsx":
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    for enc in ("utf-8-sig", "cp932"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


@pytest.mark.slow
def test_every_expected_output_exists(pipeline):
    out = pipeline["out"]
    names = {p.name for p in _artifacts(out)}
    assert {"violations.csv", "audit.json", "report.html", "index.html"} <= names
    assert any(n.endswith(".xlsx") for n in names) and "manifest.json" in names


@pytest.mark.slow
def test_database_and_outputs_are_owner_only(pipeline):
    out, db = pipeline["out"], pipeline["db"]
    checked = [db, *(p for p in out.parent.rglob("*") if p.name.startswith(db.name))]
    checked += _artifacts(out) + [p for p in out.rglob("*") if p.is_dir()] + [out]
    assert len(checked) > 10
    loose = [(str(p), oct(p.stat().st_mode & 0o777)) for p in checked if p.stat().st_mode & 0o077]
    assert loose == []


def test_wal_and_spill_files_are_owner_only_while_writing(tmp_path):
    """The write-ahead log appears after connect(); it must not take the caller's umask 022."""
    code = f"""
import os
import re
os.umask(0o022)
from toolkit import store
con = store.connect({str(tmp_path / "w.duckdb")!r})
con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
st = os.stat({str(tmp_path / "w.duckdb.wal")!r})
print(oct(st.st_mode & 0o777))
"""
    import subprocess
    import sys

    from tests.fixtures.secutil import ROOT, env

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0o600"


@pytest.mark.slow
def test_canaries_never_leave_the_database(pipeline):
    db = pipeline["db"]
    con = store.connect(db, read_only=True)
    try:  # the canaries did get in (the test would be vacuous otherwise) …
        assert (
            con.execute("SELECT count(*) FROM prescriptions WHERE drug_name = ?", [CANARY_FIELD]).fetchone()[
                0
            ]
            == 1
        )
        assert (
            con.execute(
                "SELECT count(*) FROM quarantine WHERE raw_row LIKE ?", [f"%{CANARY_RAW}%"]
            ).fetchone()[0]
            == 1
        )
        # … and the raw row sits only in quarantine
        for (t,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' AND table_name <> 'quarantine'"
        ).fetchall():
            n = con.execute(
                f'SELECT count(*) FROM "{t}" x WHERE CAST(x AS VARCHAR) LIKE ?', [f"%{CANARY_RAW}%"]
            )
            assert n.fetchone()[0] == 0, t
    finally:
        con.close()
    for p in _artifacts(pipeline["out"]):
        text = _text(p)
        assert CANARY_FIELD not in text and CANARY_RAW not in text, p
    for name, r in pipeline["results"].items():
        for stream in (r.stdout, r.stderr):
            assert CANARY_FIELD not in stream and CANARY_RAW not in stream, name


@pytest.mark.slow
def test_violations_csv_neutralises_formula_injection(pipeline):
    rows = read_csv(pipeline["out"] / "violations.csv")
    ids = [r["entity_id"] for r in rows]
    assert "'" + INJECTION_ID in ids  # the violating session is listed, as text
    assert INJECTION_ID not in ids


@pytest.mark.slow
def test_no_csv_cell_is_a_formula(pipeline):
    n = 0
    for p in _artifacts(pipeline["out"]):
        if p.suffix != ".csv":
            continue
        with open(p, newline="", encoding="utf-8-sig") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    n += 1
                    bad = cell[:1] in ("=", "+", "@", "\t", "\r") or (
                        cell[:1] == "-" and not _is_number(cell)
                    )
                    assert not bad, (p.name, cell)
    assert n > 100


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@pytest.mark.slow
def test_survey_exports_carry_no_ids(pipeline):
    data = pipeline["data"]
    ids = {r["session_id"] for r in read_csv(data / "sessions.csv")}
    ids |= {r["patient_id"] for r in read_csv(data / "patients.csv")}
    ids |= {r["doctor_id"] for r in read_csv(data / "doctors.csv")}
    ids |= {r["rx_id"] for r in read_csv(data / "prescriptions.csv")}
    survey = pipeline["out"] / "survey"
    exported = [p for p in _artifacts(survey) if "local_not_for_release" not in p.parts]
    assert len(exported) >= 5
    for p in exported:
        text = _text(p)
        found = sorted(i for i in ids if i and i in text)
        assert found == [], p


@pytest.mark.parametrize("column", ["氏名", "保険者番号", "phone"])
def test_identifier_column_refused_end_to_end(tmp_path, column):
    d = make_data(tmp_path / "data", sessions=5)
    value = f"IDVALUE_{abs(hash(column)) % 10**6}"
    rows = read_csv(d / "patients.csv")
    with open(d / "patients.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], column])
        w.writeheader()
        w.writerows({**r, column: value} for r in rows)
    db = tmp_path / "clinic.duckdb"
    r = cli("ingest", "--db", str(db), str(d))
    assert r.returncode == 2
    assert column in r.stderr and "patients.csv" in r.stderr and "Traceback" not in r.stderr
    assert value not in r.stdout + r.stderr
    if db.exists():
        con = store.connect(db, read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == 0  # nothing of that file
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall():
                hit = con.execute(
                    f'SELECT count(*) FROM "{t}" x WHERE CAST(x AS VARCHAR) LIKE ?', [f"%{value}%"]
                )
                assert hit.fetchone()[0] == 0, t
        finally:
            con.close()


def test_error_messages_name_ids_not_values(tmp_path):
    """A quarantined row is explained by file, line and column — its values are not printed."""
    d = make_data(tmp_path / "data", sessions=5)
    rewrite_csv(
        d / "sessions.csv",
        lambda rows: (
            rows + [{**rows[0], "session_id": "S-Q1", "started_at": CANARY_RAW, "platform": CANARY_FIELD}]
        ),
    )
    r = cli("ingest", "--db", str(tmp_path / "c.duckdb"), str(d))
    assert r.returncode == 0, r.stderr
    assert "quarantined" in r.stdout and "started_at" in r.stdout
    assert CANARY_RAW not in r.stdout + r.stderr and CANARY_FIELD not in r.stdout + r.stderr
    assert os.stat(tmp_path / "c.duckdb").st_mode & 0o077 == 0


def test_identifier_column_dropped_by_the_mapping_is_not_stored(tmp_path):
    d = make_data(tmp_path / "data", sessions=5)
    rows = read_csv(d / "patients.csv")
    with open(d / "patients.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "氏名"])
        w.writeheader()
        w.writerows({**r, "氏名": "CANARY_NAME_789"} for r in rows)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("tables:\n  patients:\n    drop: [氏名]\n", encoding="utf-8")
    db = tmp_path / "clinic.duckdb"
    r = cli("ingest", "--db", str(db), str(d), "--mapping", str(mapping))
    assert r.returncode == 0, r.stderr
    con = store.connect(db, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM patients").fetchone()[0] == len(rows)
        hit = con.execute(
            "SELECT count(*) FROM quarantine x WHERE CAST(x AS VARCHAR) LIKE '%CANARY_NAME_789%'"
        )
        assert hit.fetchone()[0] == 0
    finally:
        con.close()


@pytest.mark.slow
def test_html_outputs_load_nothing_from_outside(pipeline):
    htmls = [p for p in _artifacts(pipeline["out"]) if p.suffix == ".html"]
    assert len(htmls) >= 2
    for p in htmls:
        text = _text(p)
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, flags=re.I), p
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", text, flags=re.I), p
