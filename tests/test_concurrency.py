"""One writer process at a time; readers see whole runs or are told to retry (docs/security.md).

A real ingest or audit is paused inside its write transaction by the test-only hook in
``tests/fixtures/pause_hook`` while readers and a second writer try the same file.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.fixtures.secutil import ROOT, cli, db_state, env, make_data, scalar, start_paused
from toolkit import store

RUN_TABLES = ("audit_runs", "rule_results", "violations", "rule_results_strata", "attestations")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("conc")
    first = make_data(d / "first", sessions=80)
    second = make_data(d / "second", sessions=80, mutate=True)
    db = d / "base.duckdb"
    r = cli("ingest", "--db", str(db), str(first))
    assert r.returncode == 0, r.stderr
    return db, second


def _copy(db, tmp_path):
    out = tmp_path / "work.duckdb"
    out.write_bytes(db.read_bytes())
    out.chmod(0o600)
    return out


def test_reader_during_ingest_is_told_busy_then_sees_the_whole_ingest(base, tmp_path):
    db0, second = base
    db = _copy(db0, tmp_path)
    before = db_state(db)
    resume = tmp_path / "resume"
    proc = start_paused(
        ["ingest", "--db", str(db), str(second)], "before:COMMIT", tmp_path, resume_file=resume
    )
    try:
        with pytest.raises(store.DatabaseBusyError, match=r"busy.*Retry") as exc:
            store.connect(db, read_only=True)
        assert str(db) in str(exc.value)
        t0 = time.monotonic()
        with pytest.raises(store.DatabaseBusyError):
            store.connect(db, read_only=True, wait_seconds=1.5)  # bounded wait, then the same message
        assert 1.4 <= time.monotonic() - t0 < 10
        with pytest.raises(store.DatabaseBusyError):
            store.snapshot(db)
    finally:
        resume.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    after = db_state(db)
    assert after["ingest_runs"][0] == before["ingest_runs"][0] + 1
    assert after["sessions"][0] == before["sessions"][0] + 1


def test_second_writer_fails_cleanly_and_the_first_completes(base, tmp_path):
    db0, second = base
    db = _copy(db0, tmp_path)
    before = db_state(db)
    resume = tmp_path / "resume"
    proc = start_paused(
        ["ingest", "--db", str(db), str(second)],
        "before:INSERT INTO ingest_runs",
        tmp_path,
        resume_file=resume,
    )
    try:  # OCAUDIT_BUSY_WAIT replaces the ingest's 30 s default wait (here: 1 s, then busy)
        t0 = time.monotonic()
        r = cli("ingest", "--db", str(db), str(second), extra_env={"OCAUDIT_BUSY_WAIT": "1"})
        assert r.returncode == 2
        assert "busy" in r.stderr and str(db) in r.stderr and "Traceback" not in r.stderr
        assert time.monotonic() - t0 < 25, "the 1 s bound should replace the 30 s default"
    finally:
        resume.touch()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert db_state(db)["ingest_runs"][0] == before["ingest_runs"][0] + 1  # exactly one ingest recorded


_HOLD_READER = """
import sys, time
from toolkit import store
con = store.connect(sys.argv[1], read_only=True)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold_reader(db, seconds):
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD_READER, str(db), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    assert p.stdout.readline().strip() == "holding"
    return p


def test_writer_waits_for_a_reader_within_its_bound(base, tmp_path):
    db0, second = base
    db = _copy(db0, tmp_path)
    before = db_state(db)
    reader = _hold_reader(db, 60)
    try:  # bound shorter than the reader: fails cleanly, nothing written
        t0 = time.monotonic()
        r = cli("ingest", "--db", str(db), str(second), extra_env={"OCAUDIT_BUSY_WAIT": "1"})
        assert r.returncode == 2 and "busy" in r.stderr and "Traceback" not in r.stderr
        assert time.monotonic() - t0 < 25, "the 1 s bound should replace the 30 s default"
    finally:
        reader.kill()
        reader.wait()
    assert db_state(db) == before
    reader = _hold_reader(db, 3)  # bound longer than the reader: waits, then writes
    try:
        r = cli("ingest", "--db", str(db), str(second), extra_env={"OCAUDIT_BUSY_WAIT": "60"})
        assert r.returncode == 0, r.stderr
    finally:
        reader.wait()
    assert db_state(db)["ingest_runs"][0] == before["ingest_runs"][0] + 1


def test_snapshot_holds_no_lock(base, tmp_path):
    db0, second = base
    db = _copy(db0, tmp_path)
    snap = store.snapshot(db)
    n = snap.execute("SELECT count(*) FROM sessions").fetchone()[0]
    r = cli("ingest", "--db", str(db), str(second))  # not blocked by the open snapshot
    assert r.returncode == 0, r.stderr
    assert snap.execute("SELECT count(*) FROM sessions").fetchone()[0] == n  # still the old, consistent view
    assert scalar(db, "SELECT count(*) FROM sessions") == n + 1
    snap.close()


@pytest.mark.slow
def test_reader_never_sees_a_half_written_run(base, tmp_path):
    """Paused after rule_results and violations were inserted, before audit_runs and COMMIT."""
    db0, _ = base
    db = _copy(db0, tmp_path)
    resume = tmp_path / "resume"
    args = ["audit", "--db", str(db), "--rules", "consent.recorded", "--as-of", "2026-10-31", "--quiet"]
    proc = start_paused(args, "before:INSERT INTO audit_runs", tmp_path, resume_file=resume)
    try:
        with pytest.raises(store.DatabaseBusyError):
            store.connect(db, read_only=True)
    finally:
        resume.touch()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    con = store.connect(db, read_only=True)
    try:
        run_id = con.execute("SELECT run_id FROM audit_runs").fetchall()
        assert len(run_id) == 1
        for t in RUN_TABLES[1:4]:
            orphans = con.execute(
                f"SELECT count(*) FROM {t} x WHERE NOT EXISTS "
                "(SELECT 1 FROM audit_runs a WHERE a.run_id = x.run_id)"
            ).fetchone()[0]
            assert orphans == 0, t
        assert con.execute("SELECT count(*) FROM rule_results").fetchone()[0] == 1
    finally:
        con.close()
