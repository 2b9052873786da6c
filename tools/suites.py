"""Regenerate ``expectations/*.json`` from the catalogue: ``python -m tools.suites``.

Developer-only: the suites are reviewed files at the repository root; the tests fail when they
drift from the catalogue (tests/test_catalogue.py).
"""

from __future__ import annotations

from pathlib import Path

from toolkit.rules.catalogue import Catalogue, load
from toolkit.rules.suites import render, suite_documents

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"


def write_suites(catalogue: Catalogue, directory: Path = EXPECTATIONS_DIR) -> list[Path]:
    """Write every suite file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in suite_documents(catalogue).items():
        p = directory / f"{name}.json"
        p.write_text(render(doc), encoding="utf-8")
        paths.append(p)
    return paths


if __name__ == "__main__":
    for path in write_suites(load()):
        print(f"wrote {path}")
