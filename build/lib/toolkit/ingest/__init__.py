"""Stage 1, ingest: exports (CSV incl. CP932, Parquet, JSON Lines, vendor mappings) → canonical tables.

- :mod:`~toolkit.ingest.readers`: file discovery and formats; :mod:`~toolkit.ingest.mapping`: vendor mappings;
- :mod:`~toolkit.ingest.parse`: the set-based parse SELECT (contract checks → quarantine reasons);
- :mod:`~toolkit.ingest.read`, :mod:`~toolkit.ingest.direct`, :mod:`~toolkit.ingest.write`: the load paths;
- :mod:`~toolkit.ingest.run`: the orchestrator (``ingest_source``) and the command.
"""

from toolkit.ingest.records import IngestSummary, TableCounts
from toolkit.ingest.run import available_columns, cli_ingest, ingest_source

__all__ = ["IngestSummary", "TableCounts", "available_columns", "cli_ingest", "ingest_source"]
