"""What the report's first screen and run history show: "fix these first", the data-quality line, every run.

* :func:`fix_first` ranks the must rules with findings by records to review (violated + not
  evidenced), with their rate, interval and the institutions that carry most of the findings.
* :func:`dq_summary` keeps the data-quality checks with findings as rows and folds the rest into
  one count ("12 checks, no findings").
* :func:`run_history` lists every stored run, newest first, with its verdict
  (:func:`toolkit.audit.verdict.compute_verdict`, the same as everywhere else), pooled must rate
  and records to review, and the report file of the run when one is in the report's folder.

Every row is a plain dict, so a later column (e.g. review marks per rule) is one more key.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd

from toolkit.audit import verdict as verdict_mod
from toolkit.report import data as rd
from toolkit.report import stats

UNKNOWN_INSTITUTION = rd.UNKNOWN_INSTITUTION
#: How many institutions a "fix these first" row names.
TOP_INSTITUTIONS = 3
#: Reports in the output folder whose head is read to link runs to their report (bounded work).
MAX_LINKED_FILES = 500
_RUN_META = re.compile(rb'id="run-meta" data-run="([^"]+)"')


def fix_first(
    con: duckdb.DuckDBPyConnection, run_id: str, frame: pd.DataFrame, scope: rd.Scope | None = None
) -> list[dict]:
    """Must rules with findings, most records to review first (ties: lower rate, then rule id).

    Each row: rule_id, titles, section and its group (the report section it links to), to_review,
    violated, not_evidenced, denominator, rate, rate_lo, rate_hi, and ``institutions``: up to
    :data:`TOP_INSTITUTIONS` dicts (institution_id, n, share of the rule's findings), largest first.
    """
    must = frame[(frame["level"] == "must") & frame["status"].isin(rd.EVALUATED)].copy()
    must["to_review"] = must["violated"] + must["not_evidenced"]
    must = must[must["to_review"] > 0].sort_values(
        ["to_review", "rate", "rule_id"], ascending=[False, True, True]
    )
    if must.empty:
        return []
    where, params = rd.strata_where(scope or rd.Scope())
    marks = ", ".join("?" for _ in range(len(must)))
    by_inst = con.execute(
        f"SELECT rule_id, coalesce(institution_id, '{UNKNOWN_INSTITUTION}') AS institution_id,"
        " sum(violated + not_evidenced) AS n FROM rule_results_strata s"
        f" WHERE run_id = ? AND rule_id IN ({marks}) AND {where} GROUP BY ALL HAVING n > 0"
        " ORDER BY rule_id, n DESC, institution_id",
        [run_id, *must["rule_id"], *params],
    ).fetchall()
    tops: dict[str, list[tuple[str, int]]] = {}
    for rule_id, inst, n in by_inst:
        tops.setdefault(rule_id, []).append((inst, int(n)))
    rows = []
    for r in must.to_dict("records"):
        total = int(r["to_review"])
        rows.append(
            {
                "rule_id": r["rule_id"],
                "title_ja": r["title_ja"],
                "title_en": r["title_en"],
                "section": r["section"],
                "section_group": r["section_group"],
                "to_review": total,
                "violated": int(r["violated"]),
                "not_evidenced": int(r["not_evidenced"]),
                "denominator": int(r["denominator"]),
                "rate": r["rate"],
                "rate_lo": r["rate_lo"],
                "rate_hi": r["rate_hi"],
                "institutions": [
                    {"institution_id": i, "n": n, "share": n / total}
                    for i, n in tops.get(r["rule_id"], [])[:TOP_INSTITUTIONS]
                ],
            }
        )
    return rows


def dq_summary(dq_rows: list[dict]) -> dict:
    """Data-quality checks split into ``with_findings`` (rows with n > 0, largest first) and
    ``no_findings`` (ids of the checks that found nothing, each once)."""
    with_findings = [d for d in dq_rows if (d.get("n") or 0) > 0]
    found = {d["check_id"] for d in with_findings}
    no_findings = sorted({d["check_id"] for d in dq_rows if not (d.get("n") or 0)} - found)
    return {"with_findings": with_findings, "no_findings": no_findings}


def report_links(folder: Path, current: Path | None = None, current_run: str | None = None) -> dict[str, str]:
    """run id → file name of a report of that run in ``folder`` (read from each HTML file's head).

    ``current`` (the report being written, for ``current_run``) wins for its run. At most
    :data:`MAX_LINKED_FILES` files are looked at, 16 KB each.
    """
    links: dict[str, str] = {}
    if folder.is_dir():
        files = sorted(p for p in folder.glob("*.html") if p.is_file() and p != current)
        for p in files[:MAX_LINKED_FILES]:
            try:
                with p.open("rb") as f:
                    m = _RUN_META.search(f.read(16384))
            except OSError:
                continue
            if m:
                links.setdefault(m[1].decode("utf-8", "replace"), p.name)
    if current is not None and current_run is not None:
        links[current_run] = current.name
    return links


def run_history(con: duckdb.DuckDBPyConnection, links: dict[str, str] | None = None) -> list[dict]:
    """Every stored run, newest first: run_id, started (UTC), as_of, partial, verdict code and label,
    pooled must rate with its interval, records to review (must rules), and ``report`` (file name or None).

    Two queries whatever the number of runs; the verdict of each comes from
    :func:`toolkit.audit.verdict.compute_verdict` over its stored rule rows.
    """
    links = links or {}
    runs = con.execute(
        "SELECT run_id, strftime(started_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') AS started,"
        " CAST(as_of AS VARCHAR) AS as_of, parameters FROM audit_runs ORDER BY started_at DESC, run_id DESC"
    ).fetchall()
    by_run: dict[str, list[dict]] = {}
    for rid, rule_id, level, status, den, v, ne in con.execute(
        "SELECT run_id, rule_id, level, status, denominator, violated, not_evidenced FROM rule_results"
    ).fetchall():
        by_run.setdefault(rid, []).append(
            {
                "rule_id": rule_id,
                "level": level,
                "status": status,
                "denominator": int(den or 0),
                "violated": int(v or 0),
                "not_evidenced": int(ne or 0),
            }
        )
    out = []
    for rid, started, as_of, params in runs:
        rows = by_run.get(rid, [])
        cov = verdict_mod.run_coverage(params, [r["rule_id"] for r in rows])
        v = verdict_mod.compute_verdict(rows, cov)
        must = [r for r in rows if r["level"] == "must" and r["status"] in rd.EVALUATED]
        n = sum(r["denominator"] for r in must)
        bad = sum(r["violated"] + r["not_evidenced"] for r in must)
        lo, hi = stats.wilson(n - bad, n)
        out.append(
            {
                "run_id": rid,
                "started": started,
                "as_of": as_of,
                "partial": cov.partial,
                "verdict": v.code,
                "verdict_label": v.label,
                "rate": stats.rate(n - bad, n),
                "rate_lo": lo,
                "rate_hi": hi,
                "to_review": bad,
                "report": links.get(rid),
            }
        )
    return out
