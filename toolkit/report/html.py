"""Self-contained HTML compliance report (報告書) from the run store, and its scheduler exit codes.

``write_report`` reads one audit run (the latest by default), optionally narrowed to one
institution and/or a month range (rates are then recomputed from ``rule_results_strata``),
renders ``templates/report.html.j2`` with charts inlined as SVG, and writes one owner-only
HTML file with no external URL. The page opens with the run's verdict
(:func:`toolkit.report.data.run_verdict`). ``cli_report`` adds the thresholds and their exit
codes (:data:`EXIT_CODES`): 3 when a rule the thresholds cover could not be checked, 1 when
``--fail-on`` or ``--max-rate`` is broken, 2 on usage/data errors.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import jinja2
import numpy as np
import pandas as pd

from toolkit import __version__, store
from toolkit.audit import verdict as verdict_mod
from toolkit.errors import UserError
from toolkit.periods import period_bounds
from toolkit.report import charts, overview, reviews, text, timeline
from toolkit.report import data as rd
from toolkit.report.data import (  # noqa: F401  (re-exported for notebooks)
    Scope,
    rule_frame,
    violations_frame,
)
from toolkit.store.files import write_text

TEMPLATES = Path(__file__).parent / "templates"

#: ``ocaudit report`` exit codes. 3 wins over 1: an audit that could not check a rule must not
#: look like the routine "violations found" month (see docs/reporting.md).
EXIT_CODES = {
    0: "ok: no threshold broken, and every rule the thresholds cover was checked",
    1: "threshold broken: --fail-on found violated or not-evidenced records, or --max-rate was exceeded",
    2: "usage or data error (no database or run, unknown run/institution, bad --period or --rules)",
    3: "incomplete: a rule --fail-on or --max-rate covers could not be checked (not evaluable, error, "
    "or not in a partial run); wins over 1",
}


@dataclass
class ReportResult:
    """What :func:`write_report` produced, and the thresholds it found broken."""

    path: Path
    run_id: str
    previous_run_id: str | None
    scope: Scope
    breaches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    incomplete: list[str] = field(default_factory=list)
    verdict: verdict_mod.Verdict | None = None
    choice: rd.RunChoice | None = None

    @property
    def exit_code(self) -> int:
        """3 when a rule the thresholds cover could not be checked, else 1 when one is broken, else 0."""
        if self.incomplete:
            return 3
        return 1 if self.breaches else 0


@functools.cache
def jinja_env() -> jinja2.Environment:
    """The Jinja2 environment of report and feedback templates (autoescape on for every template).

    One per process: its templates are compiled once (a feedback run renders a sheet per doctor).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = lambda v: "–" if v is None or pd.isna(v) else f"{int(v):,}"
    env.filters["attr"] = lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else v
    env.globals["guidance"] = text.guidance
    env.globals["what_is_checked"] = text.what_is_checked
    env.globals["section_names"] = text.section_names
    return env


def _pct(v: float | None, digits: int = 1) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"{v * 100:.{digits}f}%"


def open_store(db_path: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file read-only; UserError when it is missing or holds no run store."""
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: no such database file; run `ocaudit ingest` and `ocaudit audit` first")
    con = store.connect(db_path, read_only=True)
    with contextlib.suppress(duckdb.Error):  # inside Jupyter without ipywidgets DuckDB refuses the setting
        con.execute("SET enable_progress_bar = false")
    if not store.table_exists(con, "audit_runs"):
        con.close()
        raise UserError(f"{db_path}: no audit runs yet (no run store); run `ocaudit audit --db {db_path}`")
    return con


def _records(df: pd.DataFrame) -> list[dict]:
    """Frame → list of dicts with NaN/NA turned into None (templates print '–')."""
    rows = df.to_dict("records")
    for row in rows:
        for k, v in row.items():
            if v is not None and not isinstance(v, str | list | tuple | dict | np.ndarray) and pd.isna(v):
                row[k] = None
    return rows


def _svg(chart_fn, *args) -> str | None:
    """Render one chart; a chart that fails is left out rather than failing the whole report."""
    try:
        return charts.to_svg(chart_fn(*args))
    except Exception as exc:  # pragma: no cover - defensive: report the gap, keep the report
        print(f"ocaudit: warning: chart {chart_fn.__name__} could not be drawn: {exc}", file=sys.stderr)
        return None


def _check_scope(con: duckdb.DuckDBPyConnection, run_id: str, scope: Scope) -> None:
    if scope.institution is None:
        return
    n = con.execute(
        "SELECT count(*) FROM rule_results_strata WHERE run_id = ? AND institution_id = ?",
        [run_id, scope.institution],
    ).fetchone()[0]
    if n == 0:
        known = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT institution_id FROM rule_results_strata WHERE run_id = ? AND institution_id IS NOT NULL"
                " ORDER BY 1 LIMIT 20",
                [run_id],
            ).fetchall()
        ]
        raise UserError(
            f"--institution {scope.institution!r}: not in run {run_id}; known: {', '.join(known)}"
        )


def coverage(frame: pd.DataFrame, attest: pd.DataFrame) -> list[dict]:
    """Per guideline section: must-follow rules checked from data and attestation items, with status."""
    rows: dict[str, dict] = {}
    for r in _records(frame[frame["level"] == "must"]):
        g = rows.setdefault(r["section_group"], {"section": r["section_group"], "rules": [], "attest": []})
        g["rules"].append(r)
    for a in _records(attest):
        g = rd.section_group(a["section"])
        rows.setdefault(g, {"section": g, "rules": [], "attest": []})["attest"].append(a)
    out = []
    for key in sorted(rows, key=rd.section_key):
        g = rows[key]
        g["ja"], g["en"] = text.section_names(key)
        g["evaluated"] = sum(r["status"] in rd.EVALUATED for r in g["rules"])
        g["not_evaluated"] = len(g["rules"]) - g["evaluated"]
        g["attested_yes"] = sum(a["attested"] is not None and bool(a["attested"]) for a in g["attest"])
        g["attested_no"] = sum(a["attested"] is not None and not bool(a["attested"]) for a in g["attest"])
        g["unanswered"] = sum(a["attested"] is None for a in g["attest"])
        out.append(g)
    return out


def sections(frame: pd.DataFrame, cov: list[dict]) -> list[dict]:
    """One entry per guideline section group: its must rules, attestation items and should-rule ids."""
    should = frame[frame["level"] == "should"]
    out = []
    for c in cov:
        out.append(
            {
                "group": c["section"],
                "ja": c["ja"],
                "en": c["en"],
                "rules": c["rules"],
                "attest": c["attest"],
                "should": list(should.loc[should["section_group"] == c["section"], "rule_id"]),
            }
        )
    for g in sorted(set(should["section_group"]) - {c["section"] for c in cov}, key=rd.section_key):
        ja, en = text.section_names(g)
        out.append(
            {
                "group": g,
                "ja": ja,
                "en": en,
                "rules": [],
                "attest": [],
                "should": list(should.loc[should["section_group"] == g, "rule_id"]),
            }
        )
    return sorted(out, key=lambda e: rd.section_key(e["group"]))


def build_context(
    con: duckdb.DuckDBPyConnection,
    run_id: str | None = None,
    scope: Scope | None = None,
    out: Path | None = None,
) -> dict:
    """Everything the report template shows, read from the run store (charts rendered to SVG).

    ``out`` (the file being written) lets the run history link the reports in its folder.
    """
    scope = scope or Scope()
    choice = rd.run_choice(con, run_id)
    run_id = choice.run_id
    _check_scope(con, run_id, scope)
    prev_id = rd.previous_run_id(con, run_id)
    frame = rd.rule_frame(con, run_id, scope)
    attest = rd.attestation_frame(con, run_id)
    ctx: dict = {
        "run": rd.run_info(con, run_id),
        "run_id": run_id,
        "choice": choice,
        "verdict": rd.run_verdict(con, run_id, frame),
        "scope": scope,
        "prev_id": prev_id,
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rules": _records(frame),
        "dq": _records(rd.dq_frame(con, run_id)),
        "attest": _records(attest),
        "coverage": coverage(frame, attest),
        "must": rd.pooled(frame, "must"),
        "should": rd.pooled(frame, "should"),
        "how_to_read": text.HOW_TO_READ,
        "sortable": True,
    }
    ctx["not_evaluated"] = [r for r in ctx["rules"] if r["status"] in verdict_mod.UNCHECKED]
    ctx["fix_first"] = overview.fix_first(con, run_id, frame, scope)
    ctx["dq_summary"] = overview.dq_summary(ctx["dq"])
    links = overview.report_links(out.parent, out, run_id) if out is not None else {}
    ctx["history"] = overview.run_history(con, links)
    ctx["sections"] = sections(frame, ctx["coverage"])
    svg: dict[str, str | None] = {
        "timeline": None,
        "changes": None,
        "rate_change": None,
        "must": _svg(charts.compliance_by_rule, frame, "must"),
        "should": _svg(charts.compliance_by_rule, frame, "should") if ctx["should"]["rules"] else None,
    }
    providers_i = rd.provider_frame(con, run_id, "institution_id", scope)
    providers_d = rd.provider_frame(con, run_id, "doctor_id", scope)
    svg["funnel_institution"] = _svg(charts.funnel, providers_i, "institution") if len(providers_i) else None
    svg["funnel_doctor"] = _svg(charts.funnel, providers_d, "doctor") if len(providers_d) else None
    ctx["outliers"] = _records(providers_d[providers_d["position"].isin(["below_998", "below_95"])])
    trends = rd.trend_frame(con, run_id, scope)
    svg["trend"] = _svg(charts.trend, trends) if len(trends) else None
    cells = rd.heatmap_frame(con, run_id, scope)
    svg["heatmap"] = _svg(charts.heatmap, cells) if len(cells) else None
    ec = rd.ec_funnel_frame(frame)
    ctx["ec_funnel"] = _records(ec)
    svg["ec_funnel"] = _svg(charts.ec_funnel, ec) if len(ec) else None
    complete_runs = sum(1 for h in ctx["history"] if not h["partial"] and h["rate"] is not None)
    svg["history"] = _svg(charts.history_trend, ctx["history"]) if complete_runs > 1 else None
    ctx["timeline_doctor"] = None
    if store.table_exists(con, "sessions"):
        doc = timeline.busiest_overlap_doctor(con, run_id, scope)
        if doc is not None:
            tl = timeline.timeline_frame(con, run_id, doc)
            if len(tl):
                ctx["timeline_doctor"] = doc
                svg["timeline"] = _svg(charts.timeline, tl, doc)
    ctx["changes"], ctx["rate_changes"], ctx["change_totals"] = [], [], {}
    ctx["rate_by_rule"], ctx["change_rules"] = {}, set()
    ctx["change_verdicts"] = {
        "better": "改善 better",
        "worse": "悪化 worse",
        "no_change": "有意差なし no significant change",
        "no_data": "–",
    }
    if prev_id is not None:
        changes = rd.violation_changes(con, run_id, prev_id, scope)
        rates = rd.rate_changes(frame, rd.rule_frame(con, prev_id, scope))
        ctx["changes"] = _records(changes)
        ctx["rate_changes"] = _records(rates)
        ctx["change_totals"] = {k: int(changes[k].sum()) for k in ("new", "resolved", "persisting")}
        ctx["rate_by_rule"] = {r["rule_id"]: r for r in ctx["rate_changes"]}
        ctx["change_rules"] = set(changes["rule_id"])
        svg["changes"] = _svg(charts.run_changes, changes) if len(changes) else None
        svg["rate_change"] = _svg(charts.rate_change, rates) if len(rates) else None
    ctx["review"] = reviews.review_summary(con, run_id, prev_id, scope, changes=changes if prev_id else None)
    ctx["svg"] = svg
    ctx["frame"] = frame
    return ctx


def parse_max_rates(items: Sequence[str]) -> list[tuple[str, float]]:
    """['ec.*=0.01', ...] → [('ec.*', 0.01), ...]; UserError on a malformed item."""
    out = []
    for item in items:
        pattern, sep, value = item.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not pattern.strip() or not 0.0 <= rate <= 1.0:
            raise UserError(
                f"--max-rate {item!r}: expected RULE=RATE with RATE between 0 and 1, e.g. ec.*=0.01"
            )
        out.append((pattern.strip(), rate))
    return out


def evaluate_thresholds(
    frame: pd.DataFrame,
    fail_on: str = "none",
    max_rates: Sequence[tuple[str, float]] = (),
    ignored: dict[str, int] | None = None,
) -> list[str]:
    """Plain-language list of broken thresholds (empty = exit 0).

    ``fail_on='must'``: any must rule with violated + not_evidenced > 0; ``'should'``: any must or
    should rule. ``max_rates``: (glob, R) — a matching rule whose non-compliance rate exceeds R.
    A pattern that matches no rule of the run is a usage error. ``ignored``: rule → findings left
    out of both checks (``--except justified``: the justified ones); the rates shown do not change.
    """
    levels = {"must": ("must",), "should": ("must", "should"), "none": ()}[fail_on]
    ignored = ignored or {}
    breaches = []
    for r in frame.itertuples():
        skip = ignored.get(r.rule_id, 0)
        bad = r.violated + r.not_evidenced - skip
        if r.level in levels and bad > 0:
            but = f" (+{skip} justified, ignored 正当な例外は除外)" if skip else ""
            breaches.append(
                f"{r.rule_id} ({r.level}): {bad} of {r.denominator} records violated or not evidenced{but}"
            )
    for pattern, limit in max_rates:
        hit = frame[frame["rule_id"].map(lambda rid, p=pattern: fnmatch.fnmatchcase(rid, p))]
        if hit.empty:
            raise UserError(
                f"--max-rate {pattern}: no rule of this run matches; rule ids look like consent.recorded"
            )
        for r in hit.itertuples():
            skip = ignored.get(r.rule_id, 0)
            rate = (r.violated + r.not_evidenced - skip) / r.denominator if r.denominator > 0 else 0.0
            if rate > limit:
                but = f" ({skip} justified ignored 正当な例外を除外)" if skip else ""
                breaches.append(f"{r.rule_id}: non-compliance {rate:.4f} > max {limit}{but}")
    return breaches


def evaluate_incomplete(
    v: verdict_mod.Verdict,
    frame: pd.DataFrame,
    fail_on: str = "none",
    max_rates: Sequence[tuple[str, float]] = (),
) -> list[str]:
    """The rules the thresholds cover that could not be checked (non-empty = exit 3).

    ``fail_on='must'``: must rules not evaluable, in error, or not in a partial run;
    ``'should'``: must and should rules. ``max_rates``: matching rules not evaluable or in error.
    """
    levels = {"must": ("must",), "should": ("must", "should"), "none": ()}[fail_on]
    out = v.unchecked(levels)
    for pattern, _limit in max_rates:
        hit = frame[frame["rule_id"].map(lambda rid, p=pattern: fnmatch.fnmatchcase(rid, p))]
        for r in hit.itertuples():
            if r.status in verdict_mod.UNCHECKED:
                line = f"{r.rule_id} ({r.status}): --max-rate {pattern} cannot be checked"
                if line not in out:
                    out.append(line)
    return out


def write_report(
    db_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    run_id: str | None = None,
    institution: str | None = None,
    period: str | tuple[str, str] | None = None,
    fail_on: str = "none",
    max_rates: Sequence[str] = (),
    except_states: Sequence[str] = (),
) -> ReportResult:
    """Write the HTML report of one run to ``out`` (mode 0600) and evaluate the thresholds.

    ``except_states=("justified",)``: findings marked justified do not break ``fail_on``/``max_rates``.
    """
    t0 = time.monotonic()
    per = period_bounds(period) if isinstance(period, str) or period is None else tuple(period)
    scope = Scope(institution=institution, period=per)
    limits = parse_max_rates(max_rates)
    path = Path(out)
    if path.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name, e.g. {path / 'report.html'}")
    if not path.parent.is_dir():
        raise UserError(
            f"--out {out}: 出力先のフォルダ {path.parent} がありません。 the folder {path.parent} does not exist; "
            f"create it first (mkdir -p {path.parent}) or write into an existing folder"
        )
    con = open_store(db_path)
    try:
        ctx = build_context(con, run_id, scope, path)
    finally:
        con.close()
    ignored = ctx["review"]["justified"] if "justified" in except_states else {}
    breaches = evaluate_thresholds(ctx["frame"], fail_on, limits, ignored)
    incomplete = evaluate_incomplete(ctx["verdict"], ctx["frame"], fail_on, limits)
    ctx["thresholds"] = {
        "fail_on": fail_on,
        "max_rates": limits,
        "except": list(except_states),
        "breaches": breaches,
        "incomplete": incomplete,
    }
    html = jinja_env().get_template("report.html.j2").render(**ctx)
    write_text(path, html)
    return ReportResult(
        path=path,
        run_id=ctx["run_id"],
        previous_run_id=ctx["prev_id"],
        scope=scope,
        breaches=breaches,
        seconds=time.monotonic() - t0,
        incomplete=incomplete,
        verdict=ctx["verdict"],
        choice=ctx["choice"],
    )


def cli_report(args: argparse.Namespace) -> int:
    """``ocaudit report``: write the report, print where and the verdict; exit 3/1/0 (:data:`EXIT_CODES`)."""
    res = write_report(
        args.db,
        args.out,
        run_id=args.run,
        institution=args.institution,
        period=args.period,
        fail_on=args.fail_on,
        max_rates=args.max_rate or [],
        except_states=getattr(args, "except_states", None) or [],
    )
    print(
        f"report written 報告書を出力しました: {res.path.resolve()} (run {res.run_id}, {res.seconds:.1f} s; "
        f"{res.choice.label() if res.choice else ''})"
    )
    if res.verdict is not None:
        print(res.verdict.line())
    for b in res.incomplete:
        print(f"could not check 確認できず: {b}", file=sys.stderr)
    for b in res.breaches:
        print(f"threshold broken 基準超過: {b}", file=sys.stderr)
    if res.exit_code:
        print(f"ocaudit report: exit {res.exit_code} — {EXIT_CODES[res.exit_code]}", file=sys.stderr)
    return res.exit_code
