"""Run the rule catalogue as Great Expectations suites inside DuckDB and store the run.

Order of work (one call of :func:`run_audit`):

1. decide which rules the data can evaluate (needed columns present) — the rest are
   ``not_evaluable`` with the missing columns named;
2. build one check table per entity (:mod:`toolkit.rule_sql`), committed so GX's connection
   sees them;
3. in ONE transaction append the run: first ``rule_results_strata`` (counts per institution ×
   doctor × month), ``violations`` (ids only) and ``dq_results``; then validate every suite in
   ``expectations/`` with GX's SQL data source on the DuckDB file (the expectations run as SQL
   in DuckDB, nothing is copied to pandas); then ``rule_results``, ``attestations`` and
   ``audit_runs``, and COMMIT. GX's counts must equal the stored per-stratum counts; a rule
   whose counts disagree, or whose expectation raised, is stored as ``error`` — never as a pass.

GX itself is imported in a background thread from the start (:func:`toolkit.gx_duckdb_fix.preload`),
so its ≈ 3 s import overlaps steps 1–3 instead of adding to them (it competes with DuckDB for
the two cores meanwhile; see :func:`~toolkit.gx_duckdb_fix.preload`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from toolkit import __version__, attestation, rule_sql, store, suites
from toolkit.catalogue import Catalogue, Rule, load
from toolkit.contract import TABLE_ORDER, TABLES
from toolkit.errors import UserError

VIOLATION_CSV_COLUMNS = ("run_id", "rule_id", "section", "level", "entity", "entity_id", "status")


@dataclass
class RuleResult:
    """The outcome of one rule in one run (one row of ``rule_results``)."""

    rule_id: str
    section: str
    level: str
    entity: str
    title_en: str
    title_ja: str
    status: str
    denominator: int | None = None
    violated: int | None = None
    not_evidenced: int | None = None
    missing_columns: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def compliance_rate(self) -> float | None:
        """(denominator − violated − not evidenced) / denominator, or None when nothing in scope."""
        if not self.denominator:
            return None
        return (self.denominator - (self.violated or 0) - (self.not_evidenced or 0)) / self.denominator


@dataclass
class AuditRun:
    """What :func:`run_audit` stored."""

    run_id: str
    as_of: dt.date
    started_at: dt.datetime
    finished_at: dt.datetime
    results: list[RuleResult]
    n_violations: int

    def summary(self) -> dict:
        """JSON-ready per-rule summary."""
        return {
            "run_id": self.run_id, "as_of": self.as_of.isoformat(), "toolkit_version": __version__,
            "started_at": self.started_at.isoformat(), "finished_at": self.finished_at.isoformat(),
            "rules": [{**asdict(r), "compliance_rate": r.compliance_rate} for r in self.results],
        }


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def available_columns(con) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """Contract columns the data has, per table.

    Tables with ingest records: the columns their files had (:func:`toolkit.ingest.available_columns`).
    A table filled another way (rows but no ingest record) has all its columns; a table with
    neither is absent, and the rules needing it are not evaluable.
    """
    from toolkit import ingest

    out = ingest.available_columns(con)
    for name in TABLE_ORDER:
        if name not in out and con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] > 0:
            out[name] = set(TABLES[name].column_names)
    return out


def missing_columns(rule: Rule, available: dict[str, set[str]]) -> list[str]:
    """The ``table.column`` names a rule needs that the ingested data does not have."""
    out = []
    for req in rule.requires:
        table, _, col = req.partition(".")
        if table not in available or col not in available[table]:
            out.append(req)
    return out


def _gx_counts(db_path: Path, suite_docs: dict[str, dict], tables: dict[str, str], rule_ids: set[str],
               progress: bool) -> dict[str, dict]:
    """Validate the suites with GX; rule id → {denominator, violated, not_evidenced} or {error}.

    Each suite's expectations are validated against the check table of their entity (one GX
    table asset per entity on the DuckDB file).
    """
    from toolkit import gx_duckdb_fix

    gx_duckdb_fix.apply()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.enable_analytics(False)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ds = ctx.data_sources.add_sql(name="ocaudit", connection_string=f"duckdb:///{db_path}")
    batches = {ent: ds.add_table_asset(name=tbl, table_name=tbl).add_batch_definition_whole_table("all")
               for ent, tbl in tables.items()}
    try:
        return _validate_suites(gx, ctx, batches, suite_docs, rule_ids, progress)
    finally:
        # release GX's pooled DuckDB connection, or later connections in this process are refused
        ds.get_execution_engine().close()
        ds.get_engine().dispose()


def _validate_suites(gx, ctx, batches: dict, suite_docs: dict[str, dict], rule_ids: set[str],  # type: ignore[no-untyped-def]
                     progress: bool) -> dict[str, dict]:
    out: dict[str, dict] = {}
    todo = []
    for name, doc in suite_docs.items():
        for entity, batch_def in batches.items():
            exps = [e for e in doc["expectations"]
                    if e["meta"]["rule_id"] in rule_ids and e["meta"].get("entity") == entity]
            if exps:
                todo.append((name, entity, batch_def, exps, doc.get("meta")))
    for i, (name, entity, batch_def, exps, meta) in enumerate(todo, 1):
        _log(progress, f"  [{i}/{len(todo)}] suite {name} on {entity} records: {len(exps) // 2} rules")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}.{entity}", expectations=exps, meta=meta))
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"vd_{name}.{entity}", data=batch_def,
                                                                    suite=suite))
        res = vd.run(result_format="BASIC")
        for er in res.results:
            meta_e = er.expectation_config.meta
            rid, kind = meta_e["rule_id"], meta_e["check"]
            slot = out.setdefault(rid, {})
            result = er.result or {}
            if "element_count" not in result or result.get("unexpected_count") is None and result["element_count"]:
                info = er.exception_info or {}
                msgs = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
                msgs.append(info.get("exception_message") if isinstance(info.get("exception_message"), str) else None)
                msg = "; ".join(m for m in msgs if m) or "no result"
                slot["error"] = f"GX expectation '{kind}' failed to run: {msg}"
                continue
            slot["denominator"] = int(result["element_count"] or 0) - int(result.get("missing_count") or 0)
            key = "violated" if kind == "no_violation" else "not_evidenced"
            slot[key] = int(result.get("unexpected_count") or 0)
    return out


def _status(denominator: int, violated: int, not_evidenced: int) -> str:
    if denominator == 0:
        return "not_applicable"
    return "failed" if violated + not_evidenced else "passed"


def run_audit(db_path: str | os.PathLike[str], rules: str | None = None, as_of: dt.date | None = None,
              attestation_path: str | None = None, progress: bool = True,
              network_threshold: int = 3, catalogue: Catalogue | None = None) -> AuditRun:
    """Audit the DuckDB file and append the run to its run store."""
    db = Path(db_path)
    if not db.exists():
        raise UserError(f"{db}: no such database; run 'ocaudit ingest --db {db} SOURCE' first")
    cat = catalogue or load()
    selected = cat.select(rules)
    as_of = as_of or dt.date.today()
    attested = attestation.load(attestation_path, cat)
    started = dt.datetime.now(dt.UTC)
    run_id = f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    _log(progress, f"ocaudit audit: {len(selected)} rules, as of {as_of}, run {run_id}")

    from toolkit import gx_duckdb_fix

    config = gx_duckdb_fix.shared_connection_config()
    gx_import = gx_duckdb_fix.preload()  # GX (≈ 3 s of Python) imports while DuckDB runs the SQL below
    con = store.connect(db, wait_seconds=30, config=config)
    try:
        store.ensure_schema(con)
        avail = available_columns(con)
        results: dict[str, RuleResult] = {}
        evaluable: dict[str, rule_sql.RuleSQL] = {}
        all_sql = rule_sql.rules_sql(as_of, network_threshold)
        for r in selected:
            base = RuleResult(r.id, r.section, r.level, r.entity, r.title_en, r.title_ja, status="error")
            miss = missing_columns(r, avail)
            if miss:
                base.status, base.missing_columns = "not_evaluable", miss
                base.message = "needed columns absent from the ingested data: " + ", ".join(miss)
            elif r.id not in all_sql:
                base.message = "no SQL implementation for this rule"
            else:
                evaluable[r.id] = all_sql[r.id]
            results[r.id] = base
        tables = rule_sql.create_check_tables(con, evaluable)
        if "sessions" in avail and "security.tls" in evaluable:
            results["security.tls"].message = (
                f"{rule_sql.tls_advisory_count(con)} session(s) on TLS 1.2: allowed, but TLS 1.3 is expected "
                "(should-level advisory)")
        _log(progress, f"  check tables ready ({time.perf_counter() - t0:.1f} s); writing strata, violations, "
                       "data quality")

        # The run is written in ONE transaction. The heavy SQL (strata, violations, DQ) runs first,
        # before GX validates, so DuckDB's working memory and GX's validation objects do not peak
        # together; GX then validates the committed check tables on its own connection.
        con.execute("BEGIN TRANSACTION")
        try:
            for entity in tables:
                mine = [rid for rid, r in evaluable.items() if r.entity == entity]
                con.execute(rule_sql.strata_insert_sql(entity, mine), [run_id])
            n_viol = con.execute(f"""INSERT INTO violations
                SELECT ?, rule_id, entity, entity_id, status, institution_id, doctor_id, month
                FROM {rule_sql.CHECKS_VIEW} WHERE status <> 'passed'""",  # view = evaluable rules only
                [run_id]).fetchone()[0]  # an INSERT returns the number of rows it inserted
            from toolkit.dq import run_dq_checks
            dq_rows = run_dq_checks(con, set(avail))
            if dq_rows:
                con.executemany("INSERT INTO dq_results VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [[run_id, *row] for row in dq_rows])
            _log(progress, f"  run store staged ({time.perf_counter() - t0:.1f} s); running GX suites in DuckDB")

            suite_files = suites.load_suite_files()
            if not suite_files:
                suite_files = {n: (d, "") for n, d in suites.suite_documents(cat).items()}
            if gx_import is not None:
                gx_import.join()
            gx_counts = _gx_counts(db, {n: d for n, (d, _) in suite_files.items()}, tables, set(evaluable),
                                   progress)
            _log(progress, f"  GX done ({time.perf_counter() - t0:.1f} s); comparing counts and committing")
            stored = {row[0]: row[1:] for row in con.execute(
                "SELECT rule_id, sum(denominator), sum(violated), sum(not_evidenced) FROM rule_results_strata "
                "WHERE run_id = ? GROUP BY rule_id", [run_id]).fetchall()}
            for rid in evaluable:
                res = results[rid]
                gxc = gx_counts.get(rid)
                den, vio, ne = (int(x) for x in stored.get(rid, (0, 0, 0)))
                res.denominator, res.violated, res.not_evidenced = den, vio, ne
                if gxc is None:
                    res.status, res.message = "error", "the expectations suites hold no expectation for this rule"
                elif "error" in gxc:
                    res.status, res.message = "error", gxc["error"]
                elif (gxc.get("denominator"), gxc.get("violated"), gxc.get("not_evidenced")) != (den, vio, ne):
                    res.status = "error"
                    res.message = (f"GX counts {gxc} differ from the stored counts "
                                   f"(denominator={den}, violated={vio}, not_evidenced={ne})")
                else:
                    res.status = _status(den, vio, ne)
            con.executemany("INSERT INTO rule_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                [run_id, r.rule_id, r.section, r.level, r.entity, r.title_en, r.title_ja, r.status,
                 r.denominator, r.violated, r.not_evidenced, r.missing_columns, r.message]
                for r in results.values()])
            con.executemany("INSERT INTO attestations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                [run_id, a.item_id, a.section, a.title_en, a.title_ja, a.attested, a.attested_by,
                 a.attested_on, a.note] for a in attested])
            ingest_ids = [r[0] for r in con.execute(
                "SELECT ingest_id FROM ingest_runs ORDER BY started_at").fetchall()]
            finished = dt.datetime.now(dt.UTC)
            con.execute("INSERT INTO audit_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                run_id, started, finished, as_of, __version__,
                json.dumps({n: h for n, (_, h) in suite_files.items()}, sort_keys=True), ingest_ids,
                json.dumps({"rules": rules, "network_threshold": network_threshold,
                            "attestation": str(attestation_path) if attestation_path else None})])
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT (disk full) already ended it
                con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    _log(progress, f"  stored run {run_id}: {n_viol} violation record(s) in {time.perf_counter() - t0:.1f} s")
    return AuditRun(run_id, as_of, started, finished, list(results.values()), int(n_viol))


def export_violations(db_path: str | os.PathLike[str], run_id: str, out: str | os.PathLike[str]) -> int:
    """Write the violations CSV of a run (exactly :data:`VIOLATION_CSV_COLUMNS`); returns rows written."""
    from toolkit.safe_export import neutralise

    con = store.connect(db_path, read_only=True, wait_seconds=30)
    try:
        rows = con.execute("""SELECT v.run_id, v.rule_id, r.section, r.level, v.entity, v.entity_id, v.status
            FROM violations v JOIN rule_results r ON r.run_id = v.run_id AND r.rule_id = v.rule_id
            WHERE v.run_id = ? ORDER BY v.rule_id, v.entity_id""", [run_id]).fetchall()
    finally:
        con.close()
    old = os.umask(0o077)
    try:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(VIOLATION_CSV_COLUMNS)
            for row in rows:
                w.writerow([neutralise(v) for v in row])  # no BOM: plain UTF-8 CSV
    finally:
        os.umask(old)
    return len(rows)


def print_summary(run: AuditRun) -> None:
    """A plain per-rule table on stdout."""
    print(f"\nrun {run.run_id} (as of {run.as_of})")
    print(f"{'rule':40} {'level':6} {'status':14} {'in scope':>9} {'violated':>9} {'not evid.':>9}")
    for r in run.results:
        den = "" if r.denominator is None else r.denominator
        vio = "" if r.violated is None else r.violated
        ne = "" if r.not_evidenced is None else r.not_evidenced
        print(f"{r.rule_id:40} {r.level:6} {r.status:14} {den:>9} {vio:>9} {ne:>9}")
    counts: dict[str, int] = {}
    for r in run.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def cli_audit(args) -> int:  # type: ignore[no-untyped-def]
    """``ocaudit audit``: run, store, print, and export on request. Exit 0 whatever it found."""
    as_of = None
    if args.as_of:
        try:
            as_of = dt.date.fromisoformat(args.as_of)
        except ValueError as exc:
            raise UserError(f"--as-of {args.as_of!r} is not a date (YYYY-MM-DD)") from exc
    try:
        run = run_audit(args.db, rules=args.rules, as_of=as_of, attestation_path=args.attestation,
                        progress=not args.quiet)
    except ValueError as exc:  # catalogue selection errors
        raise UserError(str(exc)) from exc
    print_summary(run)
    if args.violations:
        n = export_violations(args.db, run.run_id, args.violations)
        print(f"violations CSV: {args.violations} ({n} rows)")
    if args.json:
        old = os.umask(0o077)
        try:
            Path(args.json).write_text(json.dumps(run.summary(), ensure_ascii=False, indent=2), encoding="utf-8")
        finally:
            os.umask(old)
        print(f"summary JSON: {args.json}")
    return 0
