"""Test-session settings shared by every test file.

``make test`` runs on two pytest-xdist workers, one whole file per worker at a time
(``--dist loadfile``). Files holding end-to-end tests (marked ``slow``) are handed out first, so
the two workers do not end with one of them alone on a long file.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the files that hold ``slow`` tests first (stable: each file keeps its own order)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
