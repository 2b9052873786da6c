"""No ocaudit command opens a network connection.

Each command runs in a subprocess with ``tests/fixtures/no_network/sitecustomize.py`` first on
PYTHONPATH: every name lookup or internet-socket connection raises and is recorded in a log
file. The commands must all exit 0 and the log must stay empty. (This covers Python code and
libraries using Python sockets — GX, SQLAlchemy, Altair, requests. DuckDB's own C++ HTTP client,
used only by extensions such as httpfs, is not loaded by ocaudit and autoloading is not asked
for; the DuckDB-level guard is in the same test: the database is opened with no extension
installed in the throw-away HOME.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.secutil import ROOT, cli, env, make_data

NO_NET = Path(__file__).resolve().parent / "fixtures" / "no_network"


def _run(argv: list[str], log: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return cli(*argv, pythonpath=[NO_NET], timeout=600,
               extra_env={"OCAUDIT_NET_LOG": str(log), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")})


def test_the_guard_catches_an_attempt(tmp_path):
    """Positive control: the hook does record and block a real connection attempt."""
    log = tmp_path / "net.log"
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\nexcept OSError:\n    pass\n" \
           "import urllib.request\ntry:\n    urllib.request.urlopen('http://example.invalid/', timeout=1)\n" \
           "except Exception:\n    pass\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env({"OCAUDIT_NET_LOG": str(log)}, [NO_NET]))
    assert r.returncode == 0, r.stderr
    text = log.read_text(encoding="utf-8")
    assert "create_connection" in text and "getaddrinfo" in text


@pytest.mark.slow
def test_every_command_opens_no_connection(tmp_path):
    log = tmp_path / "net.log"
    home = tmp_path / "home"
    home.mkdir()
    gen = tmp_path / "gen"
    data = make_data(tmp_path / "data", sessions=150)
    db = tmp_path / "out" / "clinic.duckdb"
    out = tmp_path / "out"
    cmds = [
        ["--version"],
        ["generate", "--sessions", "300", "--seed", "3", "--out", str(gen), "--format", "csv"],
        ["ingest", "--db", str(db), str(data)],
        ["audit", "--db", str(db), "--rules", "consent.*,ec.*", "--as-of", "2026-10-31",
         "--violations", str(out / "v.csv"), "--json", str(out / "a.json")],
        ["report", "--db", str(db), "--out", str(out / "report.html")],
        ["feedback", "--db", str(db), "--out", str(out / "feedback")],
        ["survey", "ec", "--db", str(db), "--period", "2026-04..2026-09", "--institution", "I0001",
         "--out", str(out / "s1")],
        ["survey", "ec", "--db", str(db), "--period", "2026-04..2026-09", "--institution", "I0002",
         "--out", str(out / "s2")],
        ["survey", "merge", str(out / "s1" / "package"), str(out / "s2" / "package"), "--out", str(out / "merged")],
    ]
    for argv in cmds:
        r = _run(argv, log, home)
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
        assert not log.exists(), (argv, log.read_text(encoding="utf-8"))
    assert (out / "report.html").is_file() and (out / "merged").exists()


@pytest.mark.slow
def test_demo_opens_no_connection(tmp_path):
    log = tmp_path / "net.log"
    home = tmp_path / "home"
    home.mkdir()
    r = _run(["demo", "--out", str(tmp_path / "demo")], log, home)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert not log.exists(), log.read_text(encoding="utf-8")
    assert (tmp_path / "demo" / "report.html").is_file()
