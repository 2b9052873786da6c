"""Step 4 of an audit: validate the GX suites on the check tables, inside DuckDB.

GX's SQL data source runs the expectations as SQL on the DuckDB file (nothing is copied to
pandas). Its counts are compared with the stored ones in :mod:`toolkit.audit.reconcile`.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.audit.progress import log as _log


def _gx_counts(
    db_path: Path, suite_docs: dict[str, dict], tables: dict[str, str], rule_ids: set[str], progress: bool
) -> dict[str, dict]:
    """Validate the suites with GX; rule id → {denominator, violated, not_evidenced} or {error}.

    Each suite's expectations are validated against the check table of their entity (one GX
    table asset per entity on the DuckDB file).
    """
    from toolkit.rules import gx_fix as gx_duckdb_fix

    gx_duckdb_fix.apply()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.enable_analytics(False)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ds = ctx.data_sources.add_sql(name="ocaudit", connection_string=f"duckdb:///{db_path}")
    batches = {
        ent: ds.add_table_asset(name=tbl, table_name=tbl).add_batch_definition_whole_table("all")
        for ent, tbl in tables.items()
    }
    try:
        return _validate_suites(gx, ctx, batches, suite_docs, rule_ids, progress)
    finally:
        # release GX's pooled DuckDB connection, or later connections in this process are refused
        ds.get_execution_engine().close()
        ds.get_engine().dispose()


def _validate_suites(
    gx,
    ctx,
    batches: dict,
    suite_docs: dict[str, dict],
    rule_ids: set[str],  # type: ignore[no-untyped-def]
    progress: bool,
) -> dict[str, dict]:
    out: dict[str, dict] = {}
    todo = []
    for name, doc in suite_docs.items():
        for entity, batch_def in batches.items():
            exps = [
                e
                for e in doc["expectations"]
                if e["meta"]["rule_id"] in rule_ids and e["meta"].get("entity") == entity
            ]
            if exps:
                todo.append((name, entity, batch_def, exps, doc.get("meta")))
    for i, (name, entity, batch_def, exps, meta) in enumerate(todo, 1):
        _log(progress, f"  [{i}/{len(todo)}] suite {name} on {entity} records: {len(exps) // 2} rules")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{name}.{entity}", expectations=exps, meta=meta))
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=f"vd_{name}.{entity}", data=batch_def, suite=suite)
        )
        res = vd.run(result_format="BASIC")
        for er in res.results:
            meta_e = er.expectation_config.meta
            rid, kind = meta_e["rule_id"], meta_e["check"]
            slot = out.setdefault(rid, {})
            result = er.result or {}
            if (
                "element_count" not in result
                or result.get("unexpected_count") is None
                and result["element_count"]
            ):
                info = er.exception_info or {}
                msgs = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
                msgs.append(
                    info.get("exception_message") if isinstance(info.get("exception_message"), str) else None
                )
                msg = "; ".join(m for m in msgs if m) or "no result"
                slot["error"] = f"GX expectation '{kind}' failed to run: {msg}"
                continue
            slot["denominator"] = int(result["element_count"] or 0) - int(result.get("missing_count") or 0)
            key = "violated" if kind == "no_violation" else "not_evidenced"
            slot[key] = int(result.get("unexpected_count") or 0)
    return out
