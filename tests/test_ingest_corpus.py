"""The malformed-input corpus (tests/bad_inputs/cases.yaml): every file is handled as listed.

Each case ingests into a copy of one template database that already has the schema (faster
than creating a database per case).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.ingest_helpers import balanced, rows, run
from toolkit.store import connect, ensure_schema

HERE = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("corpus") / "template.duckdb"
    con = connect(db)
    ensure_schema(con)
    con.close()
    return db


def test_corpus_is_large_and_complete() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert (HERE / case["file"]).exists(), case["file"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_input(case: dict, template_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    shutil.copy(template_db, db)
    path = HERE / case["file"]
    summary, printed = run(db, path)
    assert balanced(summary)
    table = case["table"]
    mine = f"starts_with(source_file, '{path}')"
    if case.get("refused"):
        assert len(summary.errors) == 1, summary.errors
        assert case["file"].split("/")[0] in summary.errors[0]
        assert case["message"] in summary.errors[0]
        if table:
            assert table not in summary.tables or summary.tables[table].read == 0
            assert (
                rows(db, f"SELECT count(*) FROM {table} WHERE starts_with(_source_file, '{path}')")[0][0] == 0
            )
            assert rows(db, f"SELECT count(*) FROM quarantine WHERE {mine}")[0][0] == 0
        return
    assert summary.ok, summary.errors
    counts = summary.tables[table]
    assert (counts.loaded, counts.quarantined) == (case["loaded"], case["quarantined"])
    n = rows(db, f"SELECT count(*) FROM {table} WHERE starts_with(_source_file, '{path}')")[0][0]
    assert n == case.get("rows", case["loaded"])
    q = rows(db, f"SELECT line_number, reason FROM quarantine WHERE {mine} ORDER BY line_number")
    assert len(q) == case["quarantined"]
    if "lines" in case:
        assert [r[0] for r in q] == case["lines"]
    if "message" in case:
        texts = [r[1] for r in q] + summary.warnings + printed.splitlines()
        assert any(case["message"] in t for t in texts), texts
