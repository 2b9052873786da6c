"""Building the check tables in DuckDB: the helper views, the session facts, one table per entity.

The SQL itself is in :mod:`toolkit.rules.sql` and :mod:`toolkit.rules.facts`; this module runs
it in order, part by part (:mod:`toolkit.rules.parts`) when the sessions do not fit the memory
cap in one go.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

from toolkit import store
from toolkit.rules import facts
from toolkit.rules import sql as rule_sql
from toolkit.rules.parts import part_count, parts


def audit_part_count(con: duckdb.DuckDBPyConnection) -> int:
    """How many parts this database's sessions need under the memory cap (1 without sessions)."""
    if not store.table_exists(con, "sessions"):
        return 1
    n_sessions = con.execute("SELECT count(*) FROM sessions").fetchone()[0]
    return part_count(int(n_sessions), store.memory_limit_mb())


def rowid_ranges(con: duckdb.DuckDBPyConnection, table: str, n_parts: int) -> list[tuple[int, int] | None]:
    """``n_parts`` half-open rowid ranges [lo, hi) that cover ``table`` (``[None]`` for one part:
    no range at all)."""
    if n_parts <= 1:
        return [None]
    top = int(con.execute(f"SELECT coalesce(max(rowid), -1) + 1 FROM {table}").fetchone()[0])
    step = max(1, -(-top // n_parts))
    return [(lo, min(lo + step, top)) for lo in range(0, top, step)] or [None]


@contextlib.contextmanager
def _bitpacking_disabled(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Write tables without trying DuckDB's bitpacking compression, then restore the setting.

    For the check tables: DuckDB weighs every compression method for every column it writes, and
    for their one-byte status columns, which RLE compresses best anyway, weighing bitpacking was
    a fifth of the write (10M sessions: the session check table is written in 2.5 s instead of
    3.8 s, the prescription table in 0.7 s instead of 1.1 s). The price is that ``rid`` is stored
    uncompressed: about 80 MB more per 10M records, reused by the next audit.
    """
    before = con.execute("SELECT current_setting('disabled_compression_methods')").fetchone()[0]
    methods = ",".join(m for m in [*str(before or "").split(","), "bitpacking"] if m)
    con.execute(f"SET disabled_compression_methods = '{methods}'")
    try:
        yield
    finally:
        con.execute(f"SET disabled_compression_methods = '{before or ''}'")


@contextlib.contextmanager
def _joins_as_written(con: duckdb.DuckDBPyConnection, on: bool) -> Iterator[None]:
    """With ``on``, plan joins in the order written, building each hash table on the right side.

    For the statements of one part: DuckDB estimates the part filter (``hash(id) % n = k``) to keep
    about two rows, so it reorders the joins and builds its hash tables on the large unfiltered
    tables instead (30M sessions in three parts: out of memory in the access-log join). The
    statements of a part are written with the part's records on the left (probe) side of each join;
    on the right (build) side are the part's own aggregates, the doctors and drug flags, and two
    whole tables: the pre-consultation sessions and the care plans (8M plans at 30M sessions).
    """
    if not on:
        yield
        return
    before = con.execute("SELECT current_setting('disabled_optimizers')").fetchone()[0]
    methods = ",".join(m for m in [*str(before or "").split(","), "join_order", "build_side_probe_side"] if m)
    con.execute(f"SET disabled_optimizers = '{methods}'")
    try:
        yield
    finally:
        con.execute(f"SET disabled_optimizers = '{before or ''}'")


def _check_strata(con: duckdb.DuckDBPyConnection) -> None:
    """Refuse to go on if two strata share a key (they would merge their counts)."""
    shared = con.execute(f"SELECT count(*) - count(DISTINCT sk) FROM {rule_sql.STRATA_TABLE}").fetchone()[0]
    # odds ≈ 2 in 10^9 for the 285,000 strata of 10M sessions
    if shared:
        raise RuntimeError(
            f"{shared} strata share a stratum key in {rule_sql.STRATA_TABLE}; the audit cannot tell them "
            "apart. Please report this to the ocaudit maintainers."
        )


def create_check_tables(
    con: duckdb.DuckDBPyConnection, rules: dict[str, rule_sql.RuleSQL], n_parts: int = 1
) -> dict[str, str]:
    """Build the helper views, one check table per entity, and the long view; entity → table.

    With ``n_parts`` > 1 the session-keyed entities (sessions, prescriptions, EC cases) are
    checked one part at a time, each part's records appended to the same check tables; the
    others, and the strata, are built once from the whole data. The views are left whole.
    """
    con.execute("SET preserve_insertion_order = false")  # row order of the helper tables does not matter
    for sql in rule_sql.BASE_VIEWS.values():
        con.execute(sql)
    con.execute(rule_sql.STRATA_SQL)
    _check_strata(con)
    with_facts = any("f" in r.joins for r in rules.values())
    if with_facts:
        for sql in facts.session_facts_shared(n_parts):
            con.execute(sql)
    tables: dict[str, str] = {}
    try:
        with _bitpacking_disabled(con), _joins_as_written(con, n_parts > 1):
            for entity in rule_sql.ENTITY_BASES:
                con.execute(f"DROP TABLE IF EXISTS {rule_sql.check_table(entity)}")
            for part in parts(n_parts):
                if n_parts > 1:
                    views = rule_sql.base_views(part)
                    for name in rule_sql.PART_VIEWS:
                        con.execute(views[name])
                if with_facts:
                    for sql in facts.session_facts_steps(part):
                        con.execute(sql)
                for entity, base in rule_sql.ENTITY_BASES.items():
                    mine = {rid: r for rid, r in rules.items() if r.entity == entity}
                    if mine and (part.first or base.by_session):
                        con.execute(rule_sql.check_table_sql(entity, mine, append=not part.first))
                        tables[entity] = rule_sql.check_table(entity)
    finally:
        if n_parts > 1:
            for name in rule_sql.PART_VIEWS:
                con.execute(rule_sql.BASE_VIEWS[name])
    for sql in facts.SESSION_FACTS_CLEANUP:
        con.execute(sql)
    con.execute(rule_sql.checks_view_sql({rid: r.entity for rid, r in rules.items()}))
    return tables


def tls_advisory_count(con: duckdb.DuckDBPyConnection) -> int:
    """Sessions on TLS 1.2 (allowed, but 1.3 is expected): the should-level advisory of security.tls."""
    return con.execute(
        "SELECT count(*) FROM _audit_s WHERE tls_number >= 1.2 AND tls_number < 1.3 AND tls_ok"
    ).fetchone()[0]
