"""Smoke test of benchmarks/run.py: it runs end to end at a tiny scale and reports every stage.

No time is asserted (timings belong to benchmarks/RESULTS.md, not to tests). What is checked:
every stage ran and succeeded, the hand-written single-pass SQL reproduced the audit's
counts for every rule, and the export limit wrote the same violations CSV as the audit, byte for byte.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_script_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--sessions",
            "2000",
            "--repeat",
            "1",
            "--skip-gx-pandas",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    stages = res["stages"]
    for name in (
        "generate",
        "ingest",
        "bare_load",
        "audit",
        "audit_export",
        "single_pass",
        "single_pass_export",
        "report",
        "feedback",
        "survey",
        "annual",
        "dashboard",
    ):
        assert name in stages, name
        runs = stages[name]["runs"]
        assert runs and all(r["returncode"] == 0 and not r["timed_out"] for r in runs), (name, runs)
        assert stages[name]["median_seconds"] is not None
    assert stages["single_pass"]["counts_equal_audit"] is True, stages["single_pass"]["problems"]
    assert "| stage" in proc.stdout  # the table was printed
    assert res["ratios"]["audit_over_single_pass"] is not None
    spx = stages["single_pass_export"]
    assert spx["violations_equal_audit"] is True and spx["violation_rows"] > 0, spx
    assert res["ratios"]["audit_export_over_single_pass_export"] is not None
    assert stages["feedback"]["sheets"] > 1  # the doctors' sheets and the index
    figures = "\n".join(stages["dashboard"]["figures"])
    assert "first render" in figures and "click: select rule" in figures, figures
    # where the audit's time goes: every statement timed, the costliest listed
    db = tmp_path / "work" / "runs" / "sessions-2000-seed-1" / "ocaudit.duckdb"
    timed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "statements.py"), "audit", "--db", str(db)]
        + ["--as-of", res["as_of"], "--top", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert timed.returncode == 0, timed.stdout[-3000:] + timed.stderr[-3000:]
    costliest, _, by_memory = timed.stdout.partition("statements that ran at the highest RSS")
    for table in (costliest, by_memory):  # the three costliest, then the three at the highest RSS
        rows = [line for line in table.splitlines() if line.startswith("| ") and "statement" not in line]
        assert len(rows) == 3, timed.stdout
        peaks = [float(row.split("|")[3 if table is costliest else 1]) for row in rows]
        assert all(p > 0 for p in peaks), timed.stdout  # every statement has the RSS it ran at
    assert re.search(r"(\d+) statements timed", timed.stdout) and "GX done" in timed.stdout, timed.stdout


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_formats_are_the_same_records_converted_once(tmp_path: Path, fmt: str) -> None:
    """``run.py --format``: the Parquet tables as CSV or JSON Lines, converted once (cached), and the
    bare load reads them back with DuckDB's own reader of that format: the same records."""
    import duckdb

    from benchmarks import run

    tables = tmp_path / "tables"
    tables.mkdir()
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'S' || i AS session_id, i % 7 = 0 AS is_first_visit, "
        f"TIMESTAMPTZ '2026-04-01 09:00:00+09' + i * INTERVAL 1 MINUTE AS started_at FROM range(500) t(i)) "
        f"TO '{tables / 'sessions.parquet'}' (FORMAT parquet)"
    )
    converted = run.ensure_format(tables, fmt)
    assert converted == tmp_path / f"tables-{fmt}"
    assert sorted(p.name for p in converted.iterdir()) == [f"sessions.{fmt}"]
    assert converted.stat().st_mode & 0o777 == 0o700
    assert (converted / f"sessions.{fmt}").stat().st_mode & 0o777 == 0o600
    written = (converted / f"sessions.{fmt}").stat().st_mtime_ns
    assert run.ensure_format(tables, fmt) == converted  # cached: not written again
    assert (converted / f"sessions.{fmt}").stat().st_mtime_ns == written
    db = tmp_path / "bare.duckdb"
    run.bare_load(str(db), str(converted))
    con.execute(f"ATTACH '{db}' AS bare (READ_ONLY)")
    source = f"read_parquet('{tables / 'sessions.parquet'}')"
    # the time cast: each reader may type it differently
    cols = "session_id, is_first_visit, CAST(started_at AS TIMESTAMPTZ)"
    one, other = f"SELECT {cols} FROM {source}", f"SELECT {cols} FROM bare.sessions"
    differ = con.execute(
        f"SELECT count(*) FROM (({one} EXCEPT ALL {other}) UNION ALL ({other} EXCEPT ALL {one}))"
    ).fetchone()[0]
    assert con.execute("SELECT count(*) FROM bare.sessions").fetchone()[0] == 500
    assert differ == 0
