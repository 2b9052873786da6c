"""Where the files the toolkit ships are: the drug master, the GX suites, the sample data, the dashboard notebook.

``expectations/``, ``sample_data/`` and ``notebooks/`` live at the repository root, where they
are reviewed. A wheel carries copies of them inside the package, under ``toolkit/_shipped/``
(pyproject.toml maps the folders there; of ``notebooks/`` only ``00_dashboard.ipynb``), so a plain ``pip install .`` works from any directory. A source
checkout (editable install, or ``python -m toolkit`` in the repository) reads the root folders
themselves, so an edited suite is what the next audit runs.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DRUG_MASTER = PACKAGE_DIR / "data" / "drug_master.csv"
_SHIPPED_DIR = PACKAGE_DIR / "_shipped"
_CHECKOUT_ROOT = PACKAGE_DIR.parent


def shipped_dir(name: str) -> Path:
    """The folder ``name`` (``expectations``, ``sample_data``, ``notebooks``): checkout copy first, else the wheel's.

    Raises FileNotFoundError naming both places when neither exists (a broken install).
    """
    for candidate in (_CHECKOUT_ROOT / name, _SHIPPED_DIR / name):
        if candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    raise FileNotFoundError(
        f"{name}/ is neither in the source checkout ({_CHECKOUT_ROOT / name}) nor in the installed "
        f"package ({_SHIPPED_DIR / name}); reinstall ocaudit (pip install .)"
    )


def expectations_dir() -> Path:
    """The GX suites folder the audit runs (``expectations/``)."""
    return shipped_dir("expectations")


def sample_dir() -> Path:
    """The shipped sample data folder the demo ingests (``sample_data/``)."""
    return shipped_dir("sample_data")
