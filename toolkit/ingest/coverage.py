"""What the ingested data cannot show: contract columns no file had, and the rules they disable.

A rule that needs a ``table.column`` the data lacks is *not evaluable* in the audit (never a pass).
The ingest says so at once, per column — ``sessions.consent_at missing → consent.recorded,
consent.explained_first will be not evaluable`` — from the rule catalogue's ``requires`` (data,
read through :func:`toolkit.rules.catalogue.rules_disabled_by`; no audit code is imported).
"""

from __future__ import annotations

from collections.abc import Iterable

from toolkit.contract import ANNUAL_REPORT_COLUMNS, TABLE_ORDER, TABLES
from toolkit.rules.catalogue import rules_disabled_by


def missing_columns(available: dict[str, set[str]], tables: Iterable[str]) -> dict[str, list[str]]:
    """Per table of ``tables``: the contract columns the ingested data lacks (contract order)."""
    wanted = set(tables)
    return {
        name: [c for c in TABLES[name].column_names if c not in available.get(name, set())]
        for name in TABLE_ORDER
        if name in wanted
    }


def coverage_lines(
    available: dict[str, set[str]],
    tables: Iterable[str],
    files: Iterable[tuple[str, str, list[str]]] = (),
) -> tuple[list[str], list[str]]:
    """(warnings, notes) naming each missing column and the rules it makes not evaluable.

    ``available``: contract columns per table after the ingest (``ingest.available_columns``);
    ``tables``: the tables this ingest read; ``files``: (table, file name, contract columns it had)
    of the files this ingest loaded. A column that disables a rule is a warning of its own; the
    columns no rule needs are one note per table. A table with no data at all (its only file
    refused) is one warning naming every rule that needs it. A file lacking a column that other
    files of its table have gets a note: the audit evaluates those rules, and its rows count as
    not evidenced there.
    """
    warnings: list[str] = []
    notes: list[str] = []
    for table, name, present in files:
        lacks = [
            c for c in TABLES[table].column_names if c in available.get(table, set()) and c not in present
        ]
        for col, ids in rules_disabled_by([f"{table}.{c}" for c in lacks]).items():
            if ids:
                notes.append(
                    f"{name} has no {col} (other files of {table} have it): its rows load with it empty "
                    f"and count as not evidenced in {', '.join(ids)}"
                )
    for name, missing in missing_columns(available, tables).items():
        if not missing:
            continue
        disabled = rules_disabled_by([f"{name}.{c}" for c in missing])
        if name not in available:
            ids = sorted({r for rules in disabled.values() for r in rules})
            if ids:
                warnings.append(
                    f"{name}: no data loaded → {len(ids)} rule(s) needing it will be not evaluable: "
                    + ", ".join(ids)
                )
            continue
        quiet = []
        for col, ids in disabled.items():
            if ids:
                warnings.append(f"{col} missing → {', '.join(ids)} will be not evaluable")
            else:
                quiet.append(col.partition(".")[2])
        annual = [c for c in quiet if f"{name}.{c}" in ANNUAL_REPORT_COLUMNS]
        quiet = [c for c in quiet if c not in annual]
        if quiet:
            notes.append(f"{name} has no column {', '.join(quiet)} (loaded as empty; no rule needs it)")
        if annual:
            notes.append(
                f"{name} has no column {', '.join(annual)} (loaded as empty; no rule needs it, the annual "
                "report `ocaudit survey annual` says what it omits without it)"
            )
    return warnings, notes
