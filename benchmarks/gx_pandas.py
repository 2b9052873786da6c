"""The usual alternative to the audit: the same GX suites on GX's pandas engine.

What a team typically does without ocaudit's SQL push-down: copy the records out of the
database into pandas DataFrames and validate those. Here the records are exactly what the
audit's GX run validates inside DuckDB — the check tables ``_audit_<entity>_checks`` (one row
per record, one status column per rule) named in the suites' ``meta.table``; for suites of the
older long form (a ``row_condition`` on ``rule_id``) the ``_audit_rule_checks`` view — and the
suites are the project's own ``expectations/*.json``. The only difference from ``ocaudit audit``
is where GX computes: pandas instead of DuckDB.

Timed separately: the copy (DuckDB → pandas, ``fetch_df``) and the GX validation. The counts GX
reports are compared with the audit run's ``rule_results`` (exit 1 when they differ).

Usage: ``python benchmarks/gx_pandas.py --db F [--form long|wide|suites] [--check-run RUN|latest] [--json OUT]``
(the DuckDB file must have been audited: the audit leaves its check tables in the file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.rules import suites  # noqa: E402

LONG_VIEW = "_audit_rule_checks"


def _table_of(exp: dict) -> str:
    """The relation an expectation is validated on (wide check table, or the long view)."""
    return exp["meta"].get("table") or LONG_VIEW


def long_form(doc: dict) -> dict:
    """A suite rewritten for the long view: column ``status``, row condition ``rule_id == <rule>``.

    This is the layout of ``_audit_rule_checks`` (one row per rule × in-scope record), i.e. what a
    pandas user gets from one ``SELECT * FROM _audit_rule_checks``.
    """
    exps = []
    for e in doc["expectations"]:
        kw = {
            k: v for k, v in e["kwargs"].items() if k not in ("column", "row_condition", "condition_parser")
        }
        kw.update(
            column="status",
            row_condition={
                "type": "comparison",
                "column": {"name": "rule_id"},
                "operator": "==",
                "parameter": e["meta"]["rule_id"],
            },
        )
        exps.append({**e, "kwargs": kw, "meta": {**e["meta"], "table": LONG_VIEW}})
    return {**doc, "expectations": exps}


def pandas_expectation(exp: dict) -> dict:
    """An expectation as the pandas engine takes it.

    Wide-table expectations are unchanged. A long-form expectation's structured row condition
    (``{"type": "comparison", ...}``) is rewritten into GX's pandas condition string: GX 1.24's
    pandas engine renders the structured form into ``DataFrame.query`` without quoting the
    string parameter (``rule_id == consent.recorded``) and every expectation raises.
    """
    kw = dict(exp["kwargs"])
    cond = kw.pop("row_condition", None)
    if cond:
        if not (isinstance(cond, dict) and cond.get("type") == "comparison" and cond.get("operator") == "=="):
            raise ValueError(f"unsupported row condition {cond!r}")
        kw["row_condition"] = f"{cond['column']['name']} == {json.dumps(cond['parameter'])}"
        kw["condition_parser"] = "pandas"
    return {**exp, "kwargs": kw}


def copy_out(db: str, relations: list[str]) -> tuple[dict[str, Any], float]:
    """Every relation as a pandas DataFrame; (frames, seconds)."""
    t0 = time.perf_counter()
    con = duckdb.connect(db, read_only=True)
    try:
        frames = {rel: con.execute(f'SELECT * FROM "{rel}"').fetch_df() for rel in relations}
    finally:
        con.close()
    return frames, time.perf_counter() - t0


def validate(frames: dict[str, Any], docs: dict[str, dict]) -> tuple[dict[str, dict[str, int]], float]:
    """Run every suite on GX's pandas engine, per relation; rule id → GX counts, and the seconds it took."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    t0 = time.perf_counter()
    ctx = gx.get_context(mode="ephemeral")
    ctx.enable_analytics(False)
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = ctx.data_sources.add_pandas(name="copied")
    batch_defs = {
        rel: source.add_dataframe_asset(name=rel).add_batch_definition_whole_dataframe("all")
        for rel in frames
    }
    out: dict[str, dict[str, int]] = {}
    for name, doc in docs.items():
        for rel, df in frames.items():
            exps = [pandas_expectation(e) for e in doc["expectations"] if _table_of(e) == rel]
            if not exps:
                continue
            suite = ctx.suites.add(
                gx.ExpectationSuite(name=f"{name}.{rel}", expectations=exps, meta=doc.get("meta"))
            )
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"vd_{name}.{rel}", data=batch_defs[rel], suite=suite)
            )
            res = vd.run(batch_parameters={"dataframe": df}, result_format="BASIC")
            for er in res.results:
                meta = er.expectation_config.meta
                slot = out.setdefault(meta["rule_id"], {})
                result = er.result or {}
                if "element_count" not in result:
                    slot["error"] = 1
                    continue
                # wide tables: NULL status = not in scope (GX's missing count)
                slot["denominator"] = int(result["element_count"] or 0) - int(
                    result.get("missing_count") or 0
                )
                key = "violated" if meta["check"] == "no_violation" else "not_evidenced"
                slot[key] = int(result.get("unexpected_count") or 0)
    return out, time.perf_counter() - t0


def compare(gx_counts: dict[str, dict[str, int]], db: str, run_id: str | None) -> list[str]:
    """Differences between GX-pandas counts and the audit run's rule_results."""
    con = duckdb.connect(db, read_only=True)
    try:
        if run_id in (None, "latest"):
            run_id = con.execute("SELECT run_id FROM audit_runs ORDER BY started_at DESC LIMIT 1").fetchone()[
                0
            ]
        rows = con.execute(
            "SELECT rule_id, denominator, violated, not_evidenced FROM rule_results "
            "WHERE run_id = ? AND status IN ('passed', 'failed', 'not_applicable')",
            [run_id],
        ).fetchall()
    finally:
        con.close()
    problems = []
    for rid, den, vio, ne in rows:
        got = gx_counts.get(rid, {})
        if den == 0 and not got:
            continue  # long form: nothing in scope means no rows in the view
        if (got.get("denominator"), got.get("violated"), got.get("not_evidenced")) != (den, vio, ne):
            problems.append(f"{rid}: GX-pandas {got} != audit ({den}, {vio}, {ne})")
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI: copy, validate, compare, report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--check-run", default="latest", help="audit run id to compare with (default latest)")
    ap.add_argument("--json", help="write timings and counts here")
    ap.add_argument(
        "--form",
        choices=("long", "wide", "suites"),
        default="suites",
        help="records to copy: long = the _audit_rule_checks view (rule, id, status rows); "
        "wide = the per-entity check tables; suites = whatever the suite files name (default)",
    )
    args = ap.parse_args(argv)
    docs = {n: d for n, (d, _sha) in suites.load_suite_files().items()}
    if args.form == "long":
        docs = {n: long_form(d) for n, d in docs.items()}
    elif args.form == "wide" and any(
        _table_of(e) == LONG_VIEW for d in docs.values() for e in d["expectations"]
    ):
        raise SystemExit("gx_pandas: the suite files are of the long form; there are no wide check tables")
    relations = sorted({_table_of(e) for d in docs.values() for e in d["expectations"]})
    frames, copy_s = copy_out(args.db, relations)
    rows = sum(len(f) for f in frames.values())
    mem = sum(int(f.memory_usage(deep=True).sum()) for f in frames.values())
    print(
        f"copy: {rows} rows of {', '.join(relations)} → pandas in {copy_s:.2f} s ({mem / 2**20:.0f} MiB)",
        flush=True,
    )
    counts, val_s = validate(frames, docs)
    print(f"GX pandas validation: {len(counts)} rules in {val_s:.2f} s")
    problems = compare(counts, args.db, args.check_run)
    print("counts identical to the audit run" if not problems else f"{len(problems)} difference(s)")
    for p in problems:
        print("  " + p)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "form": args.form,
                    "copy_seconds": copy_s,
                    "validate_seconds": val_s,
                    "rows": rows,
                    "frame_bytes": mem,
                    "relations": relations,
                    "problems": problems,
                    "counts": counts,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
