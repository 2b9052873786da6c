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

from tests.fixtures.secutil import ROOT, env

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
    """Every command under both guards, in as few processes as covers them all (one test).

    ``demo`` runs ingest (contract files and a vendor mapping), audit (with the violations CSV
    and JSON), report, feedback, one EC survey per institution and the survey merge in one
    process; ``--version`` and ``generate`` run on their own.
    """
    log = tmp_path / "net.log"
    home = tmp_path / "home"
    home.mkdir()
    demo = tmp_path / "demo"
    cmds = [
        ["--version"],
        ["generate", "--sessions", "300", "--seed", "3", "--out", str(tmp_path / "gen"), "--format", "csv"],
        ["demo", "--out", str(demo)],
    ]
    for argv in cmds:
        r = _run(argv, log, home)
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-2000:])
    assert (demo / "report.html").is_file() and (demo / "violations.csv").is_file()
    assert (demo / "survey_ec" / "merged").is_dir() and any((demo / "feedback").iterdir())
    assert (demo / "annual_report" / "annual_report_2026.xlsx").is_file()
    assert (demo / "annual_report" / "annual_report_2026_months.svg").is_file()
    assert (tmp_path / "gen" / "sessions.csv").is_file()


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
