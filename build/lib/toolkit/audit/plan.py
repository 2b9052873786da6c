"""Step 1 of an audit: which of the selected rules the ingested data can evaluate.

A rule whose needed ``table.column`` is absent is ``not_evaluable``, with the missing columns
named; a rule without SQL is an ``error``. Neither is ever a pass.
"""

from __future__ import annotations

from toolkit.audit.results import RuleResult
from toolkit.contract import TABLE_ORDER, TABLES
from toolkit.rules import sql as rule_sql
from toolkit.rules.catalogue import Rule


def available_columns(con) -> dict[str, set[str]]:  # type: ignore[no-untyped-def]
    """Contract columns the data has, per table.

    Tables with ingest records: the columns their files had (:func:`toolkit.ingest.run.available_columns`).
    A table filled another way (rows but no ingest record) has all its columns; a table with
    neither is absent, and the rules needing it are not evaluable.
    """
    from toolkit.ingest import run as ingest

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


def plan_rules(
    selected: list[Rule], available: dict[str, set[str]], all_sql: dict[str, rule_sql.RuleSQL]
) -> tuple[dict[str, RuleResult], dict[str, rule_sql.RuleSQL]]:
    """A provisional result per selected rule, and the SQL of the rules that can be evaluated.

    Rules that cannot be evaluated get their final status here (``not_evaluable`` or ``error``).
    """
    results: dict[str, RuleResult] = {}
    evaluable: dict[str, rule_sql.RuleSQL] = {}
    for r in selected:
        base = RuleResult(r.id, r.section, r.level, r.entity, r.title_en, r.title_ja, status="error")
        miss = missing_columns(r, available)
        if miss:
            base.status, base.missing_columns = "not_evaluable", miss
            base.message = "needed columns absent from the ingested data: " + ", ".join(miss)
        elif r.id not in all_sql:
            base.message = "no SQL implementation for this rule"
        else:
            evaluable[r.id] = all_sql[r.id]
        results[r.id] = base
    return results, evaluable
