"""Small helpers shared by the ingest tests: write files, run an ingest, query the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from toolkit.ingest.run import IngestSummary, ingest_source

SESSION_HEADER = (
    "session_id,patient_id,doctor_id,institution_id,kind,care_form,started_at,ended_at,"
    "is_first_visit,network_interruptions"
)


def session_row(
    sid: str,
    kind: str = "online_care",
    started: str = "2026-04-01T09:00:00",
    first: str = "true",
    interruptions: str = "0",
) -> str:
    """One sessions.csv line with the columns of :data:`SESSION_HEADER`."""
    return f"{sid},P1,D1,I1,{kind},d_to_p,{started},2026-04-01T09:15:00+09:00,{first},{interruptions}"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def run(
    db: Path, source: Path, mapping: Path | None = None, encoding: str | None = None
) -> tuple[IngestSummary, str]:
    """Ingest and return the summary and everything printed."""
    lines: list[str] = []
    summary = ingest_source(db, source, mapping, encoding, out=lines.append)
    return summary, "\n".join(lines)


def rows(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    """Rows of a query on the database file (read-only connection)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def balanced(summary: IngestSummary) -> bool:
    """read = loaded + quarantined for every table."""
    return all(c.read == c.loaded + c.quarantined for c in summary.tables.values())
