"""No ocaudit command opens a network connection.

Two guards, both on every command of the run:

* Python level: ``tests/fixtures/no_network/sitecustomize.py`` first on PYTHONPATH makes every
  name lookup or internet-socket connection raise and be recorded in a log file (GX, SQLAlchemy,
  Altair, urllib, requests …);
* system-call level (when ``strace`` is installed): the command runs under
  ``strace -f -e trace=connect,sendto,sendmsg`` and no ``AF_INET``/``AF_INET6`` call may appear —
  this also covers native code such as DuckDB's own HTTP client.

The commands must all exit 0 and both logs must show no attempt.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.secutil import ROOT, env, make_data

NO_NET = Path(__file__).resolve().parent / "fixtures" / "no_network"


STRACE = shutil.which("strace")


def _run(argv: list[str], log: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m toolkit ARGV`` under both guards; fail on any recorded attempt."""
    trace = log.with_suffix(f".strace{len(list(log.parent.glob('*.strace*')))}")
    cmd = [sys.executable, "-m", "toolkit", *argv]
    if STRACE:
        cmd = [
            STRACE,
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            str(trace),
            *cmd,
        ]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env=env(
            {"OCAUDIT_NET_LOG": str(log), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}, [NO_NET]
        ),
    )
    assert not log.exists(), (argv, log.read_text(encoding="utf-8"))
    if STRACE:
        inet = [
            ln for ln in trace.read_text(encoding="utf-8", errors="replace").splitlines() if "AF_INET" in ln
        ]
        assert inet == [], (argv, inet[:5])
    return r


def test_the_guard_catches_an_attempt(tmp_path):
    """Positive control: the hook does record and block a real connection attempt."""
    log = tmp_path / "net.log"
    code = (
        "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\nexcept OSError:\n    pass\n"
        "import urllib.request\ntry:\n    urllib.request.urlopen('http://example.invalid/', timeout=1)\n"
        "except Exception:\n    pass\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env({"OCAUDIT_NET_LOG": str(log)}, [NO_NET]),
    )
    assert r.returncode == 0, r.stderr
    text = log.read_text(encoding="utf-8")
    assert "192.0.2.1" in text and "example.invalid" in text


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
        [
            "audit",
            "--db",
            str(db),
            "--rules",
            "consent.*,ec.*",
            "--as-of",
            "2026-10-31",
            "--violations",
            str(out / "v.csv"),
            "--json",
            str(out / "a.json"),
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
            str(out / "s1"),
        ],
        [
            "survey",
            "ec",
            "--db",
            str(db),
            "--period",
            "2026-04..2026-09",
            "--institution",
            "I0002",
            "--out",
            str(out / "s2"),
        ],
        [
            "survey",
            "merge",
            str(out / "s1" / "package"),
            str(out / "s2" / "package"),
            "--out",
            str(out / "merged"),
        ],
    ]
    for argv in cmds:
        r = _run(argv, log, home)
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
    assert (out / "report.html").is_file() and (out / "merged").exists()


@pytest.mark.slow
def test_demo_opens_no_connection(tmp_path):
    log = tmp_path / "net.log"
    home = tmp_path / "home"
    home.mkdir()
    r = _run(["demo", "--out", str(tmp_path / "demo")], log, home)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert (tmp_path / "demo" / "report.html").is_file()


@pytest.mark.skipif(STRACE is None, reason="strace not installed: the system-call guard is not available")
def test_strace_guard_catches_an_attempt(tmp_path):
    """Positive control of the system-call guard."""
    trace = tmp_path / "t.strace"
    code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=0.2)\nexcept OSError:\n    pass\n"
    subprocess.run(
        [
            STRACE,
            "-f",
            "-qq",
            "-e",
            "trace=connect,sendto,sendmsg",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "AF_INET" in trace.read_text(encoding="utf-8")
