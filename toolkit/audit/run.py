"""Run the rule catalogue as Great Expectations suites inside DuckDB and store the run.

:func:`run_audit` is a short list of named steps:

1. **plan** (:mod:`toolkit.audit.plan`): which selected rules the data can evaluate (needed
   columns present) — the rest are ``not_evaluable`` with the missing columns named;
2. **check tables** (:mod:`toolkit.rules.sql`): one per entity, committed so GX's connection
   sees them;
3. **findings** (:mod:`toolkit.audit.write`), in ONE transaction with steps 4–6: strata,
   violations (ids only) and data-quality rows;
4. **GX counts** (:mod:`toolkit.audit.gx_counts`): every suite in ``expectations/`` validated
   with GX's SQL data source on the DuckDB file (the expectations run as SQL in DuckDB);
5. **reconcile** (:mod:`toolkit.audit.reconcile`): GX's counts must equal the stored
   per-stratum counts; a rule whose counts disagree, or whose expectation raised, is ``error``;
6. **store** (:mod:`toolkit.audit.write`): ``rule_results``, ``attestations``, ``audit_runs``; COMMIT.

The heavy SQL of step 3 runs before GX validates, so DuckDB's working memory and GX's
validation objects do not peak together. GX itself is imported in a background thread from
the start (:func:`toolkit.rules.gx_fix.preload`), so its ≈ 3 s import overlaps steps 1–3 instead
of adding to them (it competes with DuckDB for the two cores meanwhile).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb

from toolkit import store
from toolkit.audit.export import export_violations, violations_format
from toolkit.audit.gx_counts import _gx_counts
from toolkit.audit.plan import available_columns, plan_rules
from toolkit.audit.progress import log as _log
from toolkit.audit.reconcile import reconcile
from toolkit.audit.results import AuditRun, RuleResult
from toolkit.audit.verdict import RunCoverage
from toolkit.audit.write import stored_counts, write_findings, write_run
from toolkit.errors import UserError
from toolkit.rules import attestation, gx_fix, suites
from toolkit.rules import sql as rule_sql
from toolkit.rules.build import audit_part_count, create_check_tables, tls_advisory_count
from toolkit.rules.catalogue import Catalogue, Rule, load
from toolkit.store.files import write_text

__all__ = ["AuditRun", "RuleResult", "cli_audit", "export_violations", "print_summary", "run_audit"]


def _suite_files() -> dict[str, tuple[dict, str]]:
    try:
        return suites.load_suite_files()
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc


def run_audit(
    db_path: str | os.PathLike[str],
    rules: str | None = None,
    as_of: dt.date | None = None,
    attestation_path: str | None = None,
    progress: bool = True,
    network_threshold: int = 3,
    catalogue: Catalogue | None = None,
    partitions: int | None = None,
) -> AuditRun:
    """Audit the DuckDB file and append the run to its run store.

    ``partitions`` fixes how many parts the session work is split into (default: as many as the
    memory cap needs, :func:`toolkit.rules.build.audit_part_count`); the result does not depend on it.
    """
    db = Path(db_path)
    if not db.exists():
        raise UserError(f"{db}: no such database; run 'ocaudit ingest --db {db} SOURCE' first")
    cat = catalogue or load()
    selected = cat.select(rules)
    as_of = as_of or dt.date.today()
    attested = attestation.load(attestation_path, cat)
    suite_files = _suite_files()
    started = dt.datetime.now(dt.UTC)
    run_id = f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    _log(progress, f"ocaudit audit: {len(selected)} rules, as of {as_of}, run {run_id}")

    config = gx_fix.shared_connection_config()
    gx_import = gx_fix.preload()  # GX (≈ 3 s of Python) imports while DuckDB runs the SQL below
    con = store.connect(db, wait_seconds=30, config=config)
    try:
        store.ensure_schema(con)
        avail = available_columns(con)
        warnings = as_of_warnings(con, as_of)
        results, evaluable = plan_rules(selected, avail, rule_sql.rules_sql(as_of, network_threshold))
        n_parts = partitions or audit_part_count(con)
        tables = create_check_tables(con, evaluable, n_parts)
        if "sessions" in avail and "security.tls" in evaluable:
            results["security.tls"].message = (
                f"{tls_advisory_count(con)} session(s) on TLS 1.2: allowed, but TLS 1.3 is expected "
                "(should-level advisory)"
            )
        _log(
            progress,
            f"  check tables ready ({time.perf_counter() - t0:.1f} s"
            + (f", sessions in {n_parts} parts" if n_parts > 1 else "")
            + "); writing strata, violations, data quality",
        )
        con.execute("BEGIN TRANSACTION")
        with store.committed(con):
            n_viol = write_findings(con, run_id, tables, evaluable, set(avail), n_parts)
            _log(
                progress,
                f"  run store staged ({time.perf_counter() - t0:.1f} s); running GX suites in DuckDB",
            )
            if gx_import is not None:
                gx_import.join()
            gx_counts = _gx_counts(
                db, {n: d for n, (d, _) in suite_files.items()}, tables, set(evaluable), progress
            )
            _log(progress, f"  GX done ({time.perf_counter() - t0:.1f} s); comparing counts and committing")
            reconcile(results, set(evaluable), gx_counts, stored_counts(con, run_id))
            finished = dt.datetime.now(dt.UTC)
            write_run(
                con,
                run_id,
                list(results.values()),
                attested,
                started,
                finished,
                as_of,
                {n: h for n, (_, h) in suite_files.items()},
                run_parameters(cat, selected, rules, network_threshold, attestation_path),
            )
    finally:
        con.close()
    _log(progress, f"  stored run {run_id}: {n_viol} violation record(s) in {time.perf_counter() - t0:.1f} s")
    coverage = RunCoverage(
        len(selected) < len(cat.rules),
        len(selected),
        len(cat.rules),
        rules,
        _not_run(cat, selected),
    )
    return AuditRun(run_id, as_of, started, finished, list(results.values()), n_viol, coverage, warnings)


def _not_run(cat: Catalogue, selected: Sequence[Rule]) -> dict[str, tuple[str, ...]]:
    chosen = {r.id for r in selected}
    return {
        lvl: tuple(r.id for r in cat.rules if r.level == lvl and r.id not in chosen)
        for lvl in ("must", "should")
    }


def run_parameters(
    cat: Catalogue,
    selected: Sequence[Rule],
    pattern: str | None,
    network_threshold: int,
    attestation_path: str | None,
) -> dict:
    """``audit_runs.parameters``: the options, and which rules the run covered.

    ``partial`` is true when ``--rules`` left catalogue rules out (read back by
    :func:`toolkit.store.run_is_partial`); ``not_run`` lists them per level.
    """
    return {
        "rules": pattern,
        "network_threshold": network_threshold,
        "attestation": str(attestation_path) if attestation_path else None,
        "partial": len(selected) < len(cat.rules),
        "rules_run": len(selected),
        "rules_total": len(cat.rules),
        "not_run": {k: list(v) for k, v in _not_run(cat, selected).items()},
    }


def as_of_warnings(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> list[str]:
    """A warning when ``as_of`` is earlier than every session (Japan date): time-dependent rules
    would then judge records against a date before they happened."""
    if not store.table_exists(con, "sessions"):
        return []
    first = con.execute(
        f"SELECT CAST({rule_sql.japan_time('min(started_at)')} AS DATE) FROM sessions"
    ).fetchone()[0]
    if first is None or as_of >= first:
        return []
    return [
        f"--as-of {as_of} is earlier than all data (first session {first}, Japan time): time-dependent rules "
        f"(EC follow-up due, plan retention) are judged before the records happened. 基準日がすべてのデータより前です。"
    ]


def print_summary(run: AuditRun, quiet: bool = False) -> None:
    """The verdict line, then (unless ``quiet``) a plain per-rule table on stdout.

    Not-evaluable rules show the ``table.column`` names that were missing; error rules their message.
    """
    v = run.verdict
    print(v.line())
    if quiet:
        return
    cov = run.coverage.label() if run.coverage else ""
    print(f"\nrun {run.run_id} (as of {run.as_of}; {cov})")
    print(
        f"{'rule':40} {'level':6} {'status':14} {'in scope':>9} {'violated':>9} {'not evid.':>9}  "
        "missing columns / note"
    )
    for r in run.results:
        den = "" if r.denominator is None else r.denominator
        vio = "" if r.violated is None else r.violated
        ne = "" if r.not_evidenced is None else r.not_evidenced
        note = ""
        if r.status == "not_evaluable":
            note = "missing 列なし: " + ", ".join(r.missing_columns) if r.missing_columns else r.message
        elif r.status == "error":
            note = r.message
        print(f"{r.rule_id:40} {r.level:6} {r.status:14} {den:>9} {vio:>9} {ne:>9}  {note}".rstrip())
    counts: dict[str, int] = {}
    for r in run.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(v.line())


def cli_audit(args) -> int:  # type: ignore[no-untyped-def]
    """``ocaudit audit``: run, store, print, and export on request. Exit 0 whatever it found.

    ``--quiet`` prints only the verdict line and the paths written (short cron mails).
    """
    as_of = None
    if args.as_of:
        try:
            as_of = dt.date.fromisoformat(args.as_of)
        except ValueError as exc:
            raise UserError(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)") from exc
    try:
        run = run_audit(
            args.db, rules=args.rules, as_of=as_of, attestation_path=args.attestation, progress=not args.quiet
        )
    except ValueError as exc:  # catalogue selection errors
        raise UserError(str(exc)) from exc
    for w in run.warnings:
        print(f"ocaudit: warning: {w}", file=sys.stderr)
    print_summary(run, quiet=args.quiet)
    if args.violations:
        n = export_violations(args.db, run.run_id, args.violations)
        kind = "Parquet" if violations_format(args.violations) == "parquet" else "CSV"
        print(f"violations {kind}: {args.violations} ({n} rows)")
    if args.json:
        write_text(args.json, json.dumps(run.summary(), ensure_ascii=False, indent=2))
        print(f"summary JSON: {args.json}")
    return 0
