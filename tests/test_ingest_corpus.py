"""The malformed-input corpus (tests/bad_inputs/cases.yaml): every file is handled as listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.ingest_helpers import balanced, rows, run

HERE = Path(__file__).resolve().parent / "bad_inputs"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))["cases"]


def test_corpus_is_large_and_complete() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert (HERE / case["file"]).exists(), case["file"]


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_input(case: dict, tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    summary, printed = run(db, HERE / case["file"])
    assert balanced(summary)
    table = case["table"]
    if case.get("refused"):
        assert len(summary.errors) == 1, summary.errors
        assert case["file"].split("/")[0] in summary.errors[0]
        assert case["message"] in summary.errors[0]
        if table:
            assert rows(db, f"SELECT count(*) FROM {table}")[0][0] == 0
            assert rows(db, "SELECT count(*) FROM quarantine WHERE table_name = ?", [table])[0][0] == 0
        return
    assert summary.ok, summary.errors
    counts = summary.tables[table]
    assert (counts.loaded, counts.quarantined) == (case["loaded"], case["quarantined"])
    assert rows(db, f"SELECT count(*) FROM {table}")[0][0] == case.get("rows", case["loaded"])
    q = rows(db, "SELECT line_number, reason FROM quarantine WHERE table_name = ? ORDER BY line_number", [table])
    assert len(q) == case["quarantined"]
    if "lines" in case:
        assert [r[0] for r in q] == case["lines"]
    if "message" in case:
        texts = [r[1] for r in q] + summary.warnings
        assert any(case["message"] in t for t in texts), texts
