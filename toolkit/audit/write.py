"""Steps 3 and 6 of an audit: append the run to the run store (inside the caller's transaction).

Step 3 writes what the SQL alone decides: ``rule_results_strata`` (counts per institution ×
doctor × month), ``violations`` (ids only) and ``dq_results``. Step 6, after GX has validated
and the counts were reconciled, writes ``rule_results``, ``attestations`` and ``audit_runs``.
Every INSERT names its columns.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb

from toolkit import __version__
from toolkit.audit.dq import run_dq_checks
from toolkit.audit.results import RuleResult
from toolkit.rules import sql as rule_sql
from toolkit.rules.attestation import Attestation
from toolkit.rules.build import rowid_ranges
from toolkit.store import insert_sql

RULE_RESULT_COLUMNS = (
    "run_id",
    "rule_id",
    "section",
    "level",
    "entity",
    "title_en",
    "title_ja",
    "status",
    "denominator",
    "violated",
    "not_evidenced",
    "missing_columns",
    "message",
)
ATTESTATION_COLUMNS = (
    "run_id",
    "item_id",
    "section",
    "title_en",
    "title_ja",
    "attested",
    "attested_by",
    "attested_on",
    "note",
)
AUDIT_RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "as_of",
    "toolkit_version",
    "suite_checksums",
    "ingest_ids",
    "parameters",
)
DQ_COLUMNS = ("run_id", "check_id", "table_name", "title_en", "title_ja", "n", "detail")


def write_findings(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    tables: dict[str, str],
    evaluable: dict[str, rule_sql.RuleSQL],
    available_tables: set[str],
    n_parts: int = 1,
) -> int:
    """Strata, violations and data-quality rows of the run; returns the number of violation rows.

    The strata of an entity are inserted a few rules at a time (:func:`rule_sql.strata_rule_chunks`)
    and the violations of a session-keyed entity in ``n_parts`` rowid ranges of its table, so
    neither holds more than a part of its aggregate or join in memory at once.
    """
    n_viol = 0
    for entity in tables:
        mine = [rid for rid, r in evaluable.items() if r.entity == entity]
        for rules_chunk in rule_sql.strata_rule_chunks(mine):
            con.execute(rule_sql.strata_insert_sql(entity, rules_chunk), [run_id])
        base = rule_sql.ENTITY_BASES[entity]
        for rids in rowid_ranges(con, base.table, n_parts if base.by_session else 1):
            n_viol += con.execute(
                "INSERT INTO violations (run_id, rule_id, entity, entity_id, status, institution_id, "
                "doctor_id, month) SELECT ?, rule_id, entity, entity_id, status, institution_id, doctor_id, "
                f"month FROM ({rule_sql.entity_checks_sql(entity, mine, findings_only=True, rids=rids)})",
                [run_id],
            ).fetchone()[0]  # an INSERT returns the number of rows it inserted
    dq_rows = run_dq_checks(con, available_tables)
    if dq_rows:
        con.executemany(insert_sql("dq_results", DQ_COLUMNS), [[run_id, *row] for row in dq_rows])
    return int(n_viol)


def stored_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, tuple[int, int, int]]:
    """Rule id → (denominator, violated, not evidenced) summed over the run's strata."""
    return {
        row[0]: tuple(int(x) for x in row[1:])
        for row in con.execute(
            "SELECT rule_id, sum(denominator), sum(violated), sum(not_evidenced) FROM rule_results_strata "
            "WHERE run_id = ? GROUP BY rule_id",
            [run_id],
        ).fetchall()
    }


def write_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    results: list[RuleResult],
    attested: list[Attestation],
    started: dt.datetime,
    finished: dt.datetime,
    as_of: dt.date,
    suite_checksums: dict[str, str],
    parameters: dict,
) -> None:
    """``rule_results``, ``attestations`` and the ``audit_runs`` row that makes the run visible."""
    con.executemany(
        insert_sql("rule_results", RULE_RESULT_COLUMNS),
        [
            [
                run_id,
                r.rule_id,
                r.section,
                r.level,
                r.entity,
                r.title_en,
                r.title_ja,
                r.status,
                r.denominator,
                r.violated,
                r.not_evidenced,
                r.missing_columns,
                r.message,
            ]
            for r in results
        ],
    )
    if attested:
        con.executemany(
            insert_sql("attestations", ATTESTATION_COLUMNS),
            [
                [
                    run_id,
                    a.item_id,
                    a.section,
                    a.title_en,
                    a.title_ja,
                    a.attested,
                    a.attested_by,
                    a.attested_on,
                    a.note,
                ]
                for a in attested
            ],
        )
    ingest_ids = [
        r[0] for r in con.execute("SELECT ingest_id FROM ingest_runs ORDER BY started_at").fetchall()
    ]
    con.execute(
        insert_sql("audit_runs", AUDIT_RUN_COLUMNS),
        [
            run_id,
            started,
            finished,
            as_of,
            __version__,
            json.dumps(suite_checksums, sort_keys=True),
            ingest_ids,
            json.dumps(parameters),
        ],
    )
