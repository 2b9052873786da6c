"""The duckdb-engine fix (#11579): without it GX's metric rows come back empty on DuckDB."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from toolkit.rules import gx_fix as gx_duckdb_fix


def _validate(db: str) -> dict:
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    ctx = gx.get_context(mode="ephemeral")
    ds = ctx.data_sources.add_sql(name="d", connection_string=f"duckdb:///{db}")
    bd = ds.add_table_asset(name="t", table_name="t").add_batch_definition_whole_table("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="s"))
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="status", value_set=["passed"], row_condition=Column("rule_id") == "a"
        )
    )
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="v", data=bd, suite=suite))
    try:
        r = vd.run(result_format="BASIC").results[0]
        info = r.exception_info or {}
        # GX nests exception info per metric id when a metric fails
        nested = [v for v in info.values() if isinstance(v, dict)]
        raised = bool(info.get("raised_exception")) or any(v.get("raised_exception") for v in nested)
        return {"raised": raised or "element_count" not in (r.result or {}), **(r.result or {})}
    finally:
        ds.get_execution_engine().close()


@pytest.fixture()
def db(tmp_path):
    path = str(tmp_path / "t.duckdb")
    con = duckdb.connect(path)
    con.execute(
        "CREATE TABLE t AS SELECT CASE WHEN i % 10 = 0 THEN 'violated' ELSE 'passed' END AS status, "
        "CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END AS rule_id FROM range(100) r(i)"
    )
    con.close()
    return path


def test_fixed_gx_pushes_counts_down_to_duckdb(db):
    gx_duckdb_fix.apply()
    res = _validate(db)
    assert not res["raised"]
    assert res["element_count"] == 50 and res["unexpected_count"] == 10


def test_without_the_fix_the_defect_shows(db, monkeypatch):
    from great_expectations.execution_engine.sqlalchemy_execution_engine import SqlAlchemyExecutionEngine

    gx_duckdb_fix.apply()  # keeps GX's original method
    monkeypatch.setattr(SqlAlchemyExecutionEngine, "execute_query", gx_duckdb_fix._original_execute_query)
    res = _validate(db)
    assert res["raised"], "GX on duckdb-engine now works unpatched: the fix may be removable"


def test_shared_config_lets_the_audit_share_the_instance(db):
    con = duckdb.connect(db, config=gx_duckdb_fix.shared_connection_config())
    try:
        gx_duckdb_fix.apply()
        assert _validate(db)["element_count"] == 50
    finally:
        con.close()


def _in_fresh_python(code: str) -> None:
    """Run ``code`` in a new interpreter (a clean ``sys.modules``); it must print ``ok``."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_preload_imports_gx_in_the_background_and_applies_the_fix():
    _in_fresh_python(
        "import sys; from toolkit.rules import gx_fix as f\n"
        "assert 'great_expectations' not in sys.modules, 'importing the fix must not import GX'\n"
        "f.shared_connection_config()\n"
        "assert 'great_expectations' not in sys.modules\n"
        "t = f.preload(); assert t is not None; t.join()\n"
        "assert f.is_applied() and f.preload() is None\n"
        "print('ok')"
    )


def test_the_ocaudit_command_skips_the_slow_iri_checker_import():
    """``ocaudit`` marks rfc3987_syntax absent before GX loads jsonschema (1.3 s saved per command)."""
    _in_fresh_python(
        "import sys; from toolkit import cli\n"
        "cli.skip_slow_optional_imports()\n"
        "import great_expectations, jsonschema\n"
        "assert sys.modules['rfc3987_syntax'] is None\n"
        "jsonschema.validate({'a': 1}, {'type': 'object'})\n"
        "print('ok')"
    )
