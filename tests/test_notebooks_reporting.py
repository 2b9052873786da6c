"""Execute every reporting notebook with nbclient against a database built here; any error fails."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.reporting_fixtures import build_fixture_db, build_pipeline_db, pipeline_available

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0[1-4]_*.ipynb"))


@pytest.fixture(scope="module", params=["fixture", "pipeline"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small fixture run store, and the real pipeline's (ingest sample_data, audit twice)."""
    if request.param == "fixture":
        return build_fixture_db(tmp_path_factory.mktemp("nb") / "fx.duckdb")
    reason = pipeline_available()
    if reason:
        pytest.skip(f"real pipeline not available: {reason}")
    return build_pipeline_db(tmp_path_factory.mktemp("nbp") / "ocaudit.duckdb")


def test_all_four_notebooks_found() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01_overview",
        "02_rule_drilldown",
        "03_doctor_feedback",
        "04_trends_and_run_comparison",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_parametrised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "commit without outputs"
    )
    assert "parameters" in code[0].metadata.get("tags", [])
    assert code[0].source.startswith("DB = ")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCAUDIT_DB", str(db))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/svg+xml" in o.get("data", {}) for o in outputs), "at least one chart drawn offline"
    shown = "".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/html", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        for o in outputs
    )
    assert not re.search(r"\b0\.\d{4,}", shown), "rates are shown as percentages, not raw floats"
