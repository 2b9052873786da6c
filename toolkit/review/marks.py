"""Review marks on findings: validate, append, and read the current state (the latest mark).

A finding is keyed by what stays stable across runs, ``(rule_id, entity, entity_id)``. Marks are
appended to ``review_marks`` and never changed or deleted, so a finding's history is kept; its
current state is the mark with the highest ``mark_id`` (``open`` when it has none). A mark can
only name a record that some run in the store flagged for that rule, and every change must be
allowed by :mod:`toolkit.review.states`. A batch is validated whole and written in one
transaction: one bad request and nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pandas as pd

from toolkit import store
from toolkit.errors import UserError
from toolkit.review import states

Key = tuple[str, str, str]
COLUMNS = ("mark_id", "rule_id", "entity", "entity_id", "state", "marked_by", "marked_at", "note", "run_id")

#: The latest mark of every marked finding.
LATEST_SQL = (
    "SELECT mark_id, rule_id, entity, entity_id, state, marked_by, marked_at, note, run_id FROM review_marks"
    " QUALIFY row_number() OVER (PARTITION BY rule_id, entity, entity_id ORDER BY mark_id DESC) = 1"
)
#: Per run, when the newest data it audited was loaded (its latest ingest; the run start if unknown).
#: A corrected mark older than this and a finding still flagged = "marked corrected, still present".
RUN_DATA_SQL = (
    "SELECT a.run_id, a.started_at, coalesce((SELECT max(i.finished_at) FROM ingest_runs i"
    " WHERE list_contains(a.ingest_ids, i.ingest_id)), a.started_at) AS data_at FROM audit_runs a"
)


@dataclass(frozen=True)
class MarkRequest:
    """One mark to add. ``run_id``: the run whose finding the reviewer saw (None: the latest run that
    flagged it). ``expected_state``: the state the reviewer saw (from a sheet); a different current
    state means someone marked the finding since, and the request is refused."""

    rule_id: str
    entity: str
    entity_id: str
    state: str
    who: str
    note: str = ""
    run_id: str | None = None
    expected_state: str | None = None

    @property
    def key(self) -> Key:
        """(rule_id, entity, entity_id)."""
        return (self.rule_id, self.entity, self.entity_id)


class MarkError(UserError):
    """Requests that cannot be applied; ``problems`` holds (request index, message JA/EN)."""

    def __init__(self, problems: list[tuple[int, str]], where: Sequence[str] | None = None) -> None:
        self.problems = problems
        lines = [f"{where[i] if where else f'mark {i + 1}'}: {msg}" for i, msg in problems[:50]]
        more = f"\n… and {len(problems) - 50} more 他 {len(problems) - 50} 件" if len(problems) > 50 else ""
        super().__init__(
            f"{len(problems)} mark(s) refused; nothing was written 記録しませんでした:\n"
            + "\n".join(lines)
            + more
        )


def _now() -> datetime:
    return datetime.now(UTC)


def has_marks_table(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the file has the ``review_marks`` table (schema version 3 or later)."""
    return store.table_exists(con, "review_marks")


def check_requests(con: duckdb.DuckDBPyConnection, requests: Sequence[MarkRequest]) -> list[str | None]:
    """Per request: why it cannot be applied (JA/EN), or None. Also resolves each request's run."""
    return _check(con, requests)[0]


def _check(
    con: duckdb.DuckDBPyConnection, requests: Sequence[MarkRequest]
) -> tuple[list[str | None], list[str | None]]:
    problems: list[str | None] = [None] * len(requests)
    runs: list[str | None] = [r.run_id for r in requests]
    if not requests:
        return problems, runs
    rules = dict(
        con.execute("SELECT rule_id, any_value(entity) FROM rule_results GROUP BY rule_id").fetchall()
    )
    known_runs = {r[0] for r in con.execute("SELECT run_id FROM audit_runs").fetchall()}
    seen: dict[Key, int] = {}
    for i, r in enumerate(requests):
        p = None
        if not (r.rule_id and r.entity and r.entity_id):
            p = "規則ID・対象・記録IDが必要です rule_id, entity and entity_id are all needed"
        elif r.rule_id not in rules:
            p = f"規則 {r.rule_id!r} は監査結果にありません unknown rule {r.rule_id!r} (not in any audit run)"
        elif rules[r.rule_id] != r.entity:
            p = f"規則 {r.rule_id} の対象は {rules[r.rule_id]} です rule {r.rule_id} is about {rules[r.rule_id]!r}, not {r.entity!r}"
        elif r.run_id is not None and r.run_id not in known_runs:
            p = f"監査 {r.run_id!r} がありません no audit run {r.run_id!r} in this database"
        elif not r.who.strip():
            p = "記入者が必要です who is missing: give a name or staff id (no patient data)"
        else:
            p = states.text_problem(r.who, "marked_by 記入者", states.WHO_MAX) or states.text_problem(
                r.note, "note 備考", states.NOTE_MAX
            )
        if p is None and r.key in seen:
            p = f"同じ記録が {seen[r.key] + 1} 件目にもあります the same finding is also mark {seen[r.key] + 1}"
        seen.setdefault(r.key, i)
        problems[i] = p
    todo = [i for i, p in enumerate(problems) if p is None]
    if not todo:
        return problems, runs
    req = pd.DataFrame(
        {
            "idx": todo,
            "rule_id": [requests[i].rule_id for i in todo],
            "entity": [requests[i].entity for i in todo],
            "entity_id": [requests[i].entity_id for i in todo],
            "run_seen": pd.Series([requests[i].run_id for i in todo], dtype="object"),
        }
    )
    con.register("_review_req", req)
    try:
        latest = LATEST_SQL if has_marks_table(con) else _EMPTY_LATEST
        rows = con.execute(
            f"WITH rd AS ({RUN_DATA_SQL}), latest AS ({latest})"
            " SELECT q.idx, any_value(l.state), any_value(l.note), count(v.run_id),"
            " coalesce(bool_or(v.run_id = q.run_seen), false), arg_max(v.run_id, rd.started_at),"
            " coalesce(bool_or(rd.data_at > l.marked_at), false)"
            " FROM _review_req q"
            " LEFT JOIN latest l ON l.rule_id = q.rule_id AND l.entity = q.entity AND l.entity_id = q.entity_id"
            " LEFT JOIN violations v ON v.rule_id = q.rule_id AND v.entity = q.entity AND v.entity_id = q.entity_id"
            " LEFT JOIN rd ON rd.run_id = v.run_id GROUP BY q.idx"
        ).fetchall()
    finally:
        con.unregister("_review_req")
    for idx, cur_state, cur_note, n_hits, in_seen, last_run, rechecked in rows:
        r = requests[idx]
        current = cur_state or "open"
        if not n_hits:
            problems[idx] = (
                f"この記録は {r.rule_id} で指摘されたことがありません {r.entity} {r.entity_id} was never flagged "
                f"for {r.rule_id} by any run in this database: only findings can be marked"
            )
        elif r.run_id is not None and not in_seen:
            problems[idx] = (
                f"監査 {r.run_id} はこの記録を指摘していません run {r.run_id} did not flag this finding; "
                "export again from the run store"
            )
        elif r.expected_state is not None and r.expected_state != current:
            problems[idx] = (
                f"出力後に状態が変わりました: 今は {states.label(current)} the finding was marked since the "
                f"export (now {current}, the sheet says {r.expected_state}); was this sheet imported already? "
                "Export again"
            )
        else:
            problems[idx] = states.transition_problem(
                current,
                r.state,
                r.note,
                current_note=cur_note,
                still_present=current == "corrected" and rechecked,
            )
        runs[idx] = r.run_id or last_run
    return problems, runs


_EMPTY_LATEST = (
    "SELECT NULL::BIGINT AS mark_id, NULL AS rule_id, NULL AS entity, NULL AS entity_id, NULL AS state,"
    " NULL AS marked_by, NULL::TIMESTAMPTZ AS marked_at, NULL AS note, NULL AS run_id WHERE FALSE"
)


def add_requests(
    con: duckdb.DuckDBPyConnection, requests: Sequence[MarkRequest], where: Sequence[str] | None = None
) -> list[int]:
    """Validate every request and append them all in one transaction; the new mark ids.

    Raises :class:`MarkError` (nothing written) when any request is refused; ``where`` names each
    request in the message (e.g. a sheet row). ``con`` must be writable.
    """
    store.ensure_schema(con)
    problems, runs = _check(con, requests)
    bad = [(i, p) for i, p in enumerate(problems) if p is not None]
    if bad:
        raise MarkError(bad, where)
    if not requests:
        return []
    own = not store.in_transaction(con)
    if own:
        con.execute("BEGIN TRANSACTION")
    try:
        first = con.execute("SELECT coalesce(max(mark_id), 0) + 1 FROM review_marks").fetchall()[0][0]
        ids = list(range(first, first + len(requests)))
        at = _now()
        rows = pd.DataFrame(
            {
                "mark_id": ids,
                "rule_id": [r.rule_id for r in requests],
                "entity": [r.entity for r in requests],
                "entity_id": [r.entity_id for r in requests],
                "state": [r.state for r in requests],
                "marked_by": [r.who.strip() for r in requests],
                "marked_at": pd.Series([at] * len(requests), dtype="datetime64[us, UTC]"),
                "note": [r.note.strip() for r in requests],
                "run_id": pd.Series(runs, dtype="object"),
            }
        )
        con.register("_review_new", rows)
        cols = ", ".join(COLUMNS)
        con.execute(f"INSERT INTO review_marks ({cols}) SELECT {cols} FROM _review_new")
        con.unregister("_review_new")
        if own:
            con.execute("COMMIT")
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    return ids


def add_marks(
    con: duckdb.DuckDBPyConnection,
    keys: Sequence[Key],
    state: str,
    who: str,
    note: str = "",
    run_id: str | None = None,
) -> list[int]:
    """Mark every finding in ``keys`` ((rule_id, entity, entity_id) tuples) ``state``; the new mark ids.

    All or nothing: :class:`MarkError` lists every refused key. ``run_id``: the run the reviewer
    was looking at (each key must be one of its findings); None = the latest run flagging each key.
    """
    reqs = [MarkRequest(str(r), str(e), str(i), state, who, note or "", run_id) for r, e, i in keys]
    return add_requests(con, reqs, [f"{r} {e} {i}" for r, e, i in keys])


def mark_file(
    db_path: str | os.PathLike[str],
    keys: Sequence[Key],
    state: str,
    who: str,
    note: str = "",
    run_id: str | None = None,
    wait_seconds: float = 10.0,
) -> list[int]:
    """:func:`add_marks` on the DuckDB file (opened to write, waiting up to ``wait_seconds`` if busy)."""
    con = store.connect(db_path, wait_seconds=wait_seconds)
    try:
        return add_marks(con, keys, state, who, note, run_id)
    finally:
        con.close()


def findings_sql(
    run_id: str,
    rule: str | None = None,
    states_wanted: Sequence[str] = (),
    where: str = "TRUE",
    params: Sequence[object] = (),
    latest: str | None = None,
) -> tuple[str, list]:
    """SQL (and parameters) of a run's findings with their current mark, in a stable order.

    Columns: rule_id, entity, entity_id, status, institution_id, doctor_id, month, level, title_ja,
    title_en, state (``open`` when never marked), marked_by, marked_at, note, mark_id, run_seen
    (the run the latest mark was made on), still_present (corrected before the run's data was
    loaded, and flagged again). ``rule`` may be a glob; ``states_wanted`` may hold ``still_present``;
    ``where``: an extra condition on the run's violations (alias ``v``).
    """
    cond, args = [f"v.run_id = ? AND ({where})"], [run_id, *params]
    if rule:
        cond.append("v.rule_id GLOB ?" if any(c in rule for c in "*?[") else "v.rule_id = ?")
        args.append(rule)
    outer = []
    plain = [s for s in states_wanted if s != "still_present"]
    if plain:
        outer.append(f"coalesce(l.state, 'open') IN ({', '.join('?' for _ in plain)})")
    if "still_present" in states_wanted:
        outer.append("(l.state = 'corrected' AND l.marked_at < rd.data_at)")
    sql = (
        f"WITH rd AS ({RUN_DATA_SQL}), latest AS ({latest or LATEST_SQL}),"
        " f AS (SELECT v.rule_id, v.entity, v.entity_id, min(v.status) AS status,"
        " any_value(v.institution_id) AS institution_id, any_value(v.doctor_id) AS doctor_id,"
        " min(v.month) AS month FROM violations v WHERE " + " AND ".join(cond) + " GROUP BY ALL)"
        " SELECT f.rule_id, f.entity, f.entity_id, f.status, f.institution_id, f.doctor_id, f.month,"
        " r.level, r.title_ja, r.title_en, coalesce(l.state, 'open') AS state, l.marked_by, l.marked_at,"
        " l.note, l.mark_id, l.run_id AS run_seen,"
        " coalesce(l.state = 'corrected' AND l.marked_at < rd.data_at, false) AS still_present"
        " FROM f LEFT JOIN latest l ON l.rule_id = f.rule_id AND l.entity = f.entity AND l.entity_id = f.entity_id"
        " LEFT JOIN rule_results r ON r.run_id = ? AND r.rule_id = f.rule_id"
        " LEFT JOIN rd ON rd.run_id = ?"
        + (" WHERE " + " OR ".join(outer) if outer else "")
        + " ORDER BY f.rule_id, f.month NULLS LAST, f.institution_id, f.doctor_id, f.entity_id"
    )
    return sql, [*args, run_id, run_id, *plain]


def current_marks(
    con: duckdb.DuckDBPyConnection,
    run_id: str | None = None,
    rule: str | None = None,
    states_wanted: Sequence[str] = (),
) -> pd.DataFrame:
    """The current mark of findings.

    Without ``run_id``: every marked finding's latest mark (columns of ``review_marks``). With it:
    every finding of that run with its current state (``open`` if never marked) and the columns
    of :func:`findings_sql`, filtered by ``rule`` (glob) and ``states_wanted``.
    """
    latest = LATEST_SQL if has_marks_table(con) else _EMPTY_LATEST
    if run_id is None:
        return con.execute(f"SELECT * FROM ({latest}) ORDER BY rule_id, entity_id").df()
    sql, args = findings_sql(run_id, rule, states_wanted, latest=latest)
    return con.execute(sql, args).df()


def history(con: duckdb.DuckDBPyConnection, key: Key) -> pd.DataFrame:
    """Every mark of one finding, oldest first (the append-only history)."""
    if not has_marks_table(con):
        return pd.DataFrame(columns=list(COLUMNS))
    return con.execute(
        f"SELECT {', '.join(COLUMNS)} FROM review_marks WHERE rule_id = ? AND entity = ? AND entity_id = ?"
        " ORDER BY mark_id",
        list(key),
    ).df()
