"""The EC survey notebook runs with nbclient against the hand-built fixture database."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).parent))
import survey_fixtures as F  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_ec_survey.ipynb"


def test_notebook_committed_clean_and_parametrised() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), (
        "commit without outputs"
    )
    assert "parameters" in code[0].metadata.get("tags", [])
    assert code[0].source.startswith("DB = ") and "PERIOD = " in code[0].source


def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = F.build_db(tmp_path / "survey.duckdb")
    monkeypatch.setenv("OCAUDIT_DB", str(db))
    monkeypatch.setenv("OCAUDIT_PERIOD", F.PERIOD)
    monkeypatch.delenv("OCAUDIT_INSTITUTION", raising=False)  # every institution: I1 and the decoy I2
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    svgs = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(svgs) >= 4, "every chart drawn offline"
    text = "".join(o.get("text", "") for o in outputs)
    assert "EC cases 症例数: 7" in text  # I1's seven cases
    assert "institution 医療機関: I1" in text and "institution 医療機関: I2" in text
    assert "医療機関 2 件 institutions" in text
