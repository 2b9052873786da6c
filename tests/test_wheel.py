"""The wheel works on its own: suites, sample data, catalogue and templates inside; a plain install runs the demo.

``expectations/``, ``sample_data/`` and ``notebooks/00_dashboard.ipynb`` stay at the repository root (the reviewed source of
truth); pyproject.toml maps them into the wheel under ``toolkit/_shipped/`` and
:mod:`toolkit.resources` finds them there when the package is not a source checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import duckdb
import pytest

from toolkit.rules import suites

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(build)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("ocaudit-*.whl")
    return whl


def _shipped(folder: str) -> dict[str, bytes]:
    base = ROOT / folder
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_wheel_holds_suites_sample_data_catalogue_and_templates(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for folder in ("expectations", "sample_data"):
            files = _shipped(folder)
            assert files, folder
            for rel, data in files.items():
                assert z.read(f"toolkit/_shipped/{folder}/{rel}") == data, f"{folder}/{rel} missing or stale"
        for inner in (
            "toolkit/rules/rules.yaml",
            "toolkit/data/drug_master.csv",
            "toolkit/report/templates/report.html.j2",
            "toolkit/dashboard/jupyter/voila/templates/ocaudit/index.html.j2",
            "toolkit/dashboard/jupyter/voila/templates/ocaudit/conf.json",
        ):
            assert inner in names, inner
        dashboard = ROOT / "notebooks" / "00_dashboard.ipynb"
        assert z.read("toolkit/_shipped/notebooks/00_dashboard.ipynb") == dashboard.read_bytes()
        assert not [
            n for n in names if n.startswith("toolkit/_shipped/notebooks/0") and "00_dashboard" not in n
        ]
    assert not any(n.startswith(("tools/", "tests/", "benchmarks/")) for n in names)


def test_no_suites_is_an_error_not_an_empty_hash(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no GX suite"):
        suites.load_suite_files(tmp_path)


@pytest.mark.slow
def test_plain_install_runs_the_demo_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    """``pip install`` of the wheel (not editable) into a fresh venv; ``ocaudit demo`` from elsewhere.

    The dependencies come from this interpreter's site-packages through a ``.pth`` line (so the
    test needs no network); the package itself only from the wheel.
    """
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "ocaudit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --ignore-installed: the .pth above also exposes an editable ocaudit of the test interpreter's
    # venv (make venv installs one), which pip would otherwise take as "already satisfied"
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OCAUDIT_NET_LOG")}
    r = subprocess.run(
        [str(py), "-c", "import toolkit; print(toolkit.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean_env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    where = r.stdout.strip()
    assert where.startswith(str(site)), f"toolkit imported from {where}, not from the installed wheel"
    notebook = subprocess.run(
        [str(py), "-c", "from toolkit.dashboard import serve; print(serve.notebook_path())"],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean_env,
        check=True,
    ).stdout.strip()
    assert notebook.startswith(str(site)) and Path(notebook).is_file(), notebook  # ocaudit dashboard finds it
    r = subprocess.run(
        [str(venv / "bin" / "ocaudit"), "demo", "--out", str(work / "X")],
        capture_output=True,
        text=True,
        cwd=work,
        env=clean_env,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert (work / "X" / "report.html").is_file()
    con = duckdb.connect(str(work / "X" / "ocaudit.duckdb"), read_only=True)
    try:
        (checksums,) = con.execute("SELECT suite_checksums FROM audit_runs").fetchone()
    finally:
        con.close()
    recorded = json.loads(checksums)
    on_disk = {name: sha for name, (_, sha) in suites.load_suite_files(ROOT / "expectations").items()}
    assert recorded == on_disk and all(len(h) == 64 for h in recorded.values())
