"""What an ingest counts and records: per-table counts, the summary, one record per file read."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.ingest import readers as rd
from toolkit.resources import DRUG_MASTER

SHIPPED_DRUG_MASTER = DRUG_MASTER
TMP_PREFIX = "ocaudit-ingest-"


@dataclass
class TableCounts:
    """Row counts of one table in one ingest (read = loaded + quarantined)."""

    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    files: int = 0


@dataclass
class IngestSummary:
    """What one ingest did: per-table counts, refused files and warnings."""

    ingest_id: str
    db_path: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: "sessions.consent_at missing → consent.recorded, … will be not evaluable" (also in warnings)
    not_evaluable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no file was refused."""
        return not self.errors


@dataclass
class _FileRec:
    sf: rd.SourceFile
    idx: int
    encoding: str | None
    columns_present: list[str]
    sha256: str = ""
    read: int | None = None  # rows read, for a file loaded directly (its bad rows alone are staged)


class _Fallback(Exception):
    """A file failed inside the direct-load transaction (which DuckDB then aborts): redo staged."""
