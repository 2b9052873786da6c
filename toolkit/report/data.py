"""Read the run store into the frames that charts, the report, feedback sheets and notebooks use.

Everything comes from the stored aggregates (``rule_results``, ``rule_results_strata``,
``violations``, ``dq_results``, ``attestations``); only :mod:`toolkit.report.timeline` reads the
raw ``sessions`` table, for one doctor and a date window. Compliance rate =
(denominator − violated − not_evidenced) / denominator; ``must`` and ``should`` rules are never
pooled together.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import duckdb
import pandas as pd

from toolkit import store
from toolkit.audit import verdict
from toolkit.errors import UserError
from toolkit.report import stats

EVALUATED = ("passed", "failed")
#: How charts and lists name the strata without an institution (a record whose session is unknown).
UNKNOWN_INSTITUTION = "(unknown 不明)"


@dataclass(frozen=True)
class Scope:
    """What part of a run a report covers: one institution, doctor and/or a month range (None = all)."""

    institution: str | None = None
    period: tuple[str, str] | None = None
    doctor: str | None = None

    @property
    def filtered(self) -> bool:
        """True when the rates must be recomputed from the strata."""
        return self.institution is not None or self.period is not None or self.doctor is not None

    def label(self) -> str:
        """Human label, e.g. 'institution I1, 2026-04..2026-06'."""
        parts = []
        if self.institution is not None:
            parts.append(f"institution 医療機関 {self.institution}")
        if self.doctor is not None:
            parts.append(f"doctor 医師 {self.doctor}")
        if self.period is not None:
            parts.append(f"period 期間 {self.period[0]}..{self.period[1]}")
        return ", ".join(parts) or "all institutions and months 全医療機関・全期間"


def resolve_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """The given run id if it exists, else the latest **complete** run; UserError when there is none.

    A partial run (``audit --rules``) is reported only when asked for by id; when the database
    holds only partial runs the error names them.
    """
    return run_choice(con, run_id).run_id


@dataclass(frozen=True)
class RunChoice:
    """Which run a report, sheet or notebook shows, and why (so the page can say so)."""

    run_id: str
    requested: bool
    partial: bool
    newer_partial: tuple[str, ...] = ()

    def label(self) -> str:
        """``最新の完全な監査（既定） latest complete run (default)`` or ``指定した監査 run given with --run``."""
        if self.requested:
            kind = "部分実行 partial run" if self.partial else "完全な監査 complete run"
            return f"指定した監査 run given with --run ({kind})"
        text = "最新の完全な監査（既定） latest complete run (default)"
        if self.newer_partial:
            text += (
                f"; これより新しい部分実行 {len(self.newer_partial)} 件は含みません "
                f"newer partial run(s) not shown: {', '.join(self.newer_partial)} (report one with --run)"
            )
        return text


def run_choice(con: duckdb.DuckDBPyConnection, run_id: str | None) -> RunChoice:
    """The run to show: ``run_id`` when given (UserError if unknown), else the latest complete run."""
    runs = store.runs_newest_first(con)
    if run_id is not None:
        for rid, partial in runs:
            if rid == run_id:
                return RunChoice(rid, True, partial)
        known = ", ".join(rid for rid, _ in runs[:5]) or "none"
        raise UserError(f"no audit run {run_id!r} in this database; latest runs: {known}")
    newer = []
    for rid, partial in runs:
        if not partial:
            return RunChoice(rid, False, False, tuple(newer))
        newer.append(rid)
    if newer:
        raise UserError(
            "no complete audit run in this database, only partial runs (audit --rules): "
            f"{', '.join(newer[:5])}; run `ocaudit audit --db FILE` without --rules, or report a partial "
            f"run with --run {newer[0]}"
        )
    raise UserError("no audit runs in this database yet: run `ocaudit audit --db FILE` first")


def previous_run_id(con: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    """The latest **complete** run started before ``run_id``, or None (partial runs are not compared)."""
    rows = con.execute(
        "SELECT run_id, parameters FROM audit_runs"
        " WHERE started_at < (SELECT started_at FROM audit_runs WHERE run_id = ?) ORDER BY started_at DESC",
        [run_id],
    ).fetchall()
    return next((rid for rid, params in rows if not store.run_is_partial(params)), None)


def run_verdict(
    con: duckdb.DuckDBPyConnection, run_id: str, frame: pd.DataFrame | None = None
) -> verdict.Verdict:
    """The verdict of a run (or of the part of it in ``frame``, a :func:`rule_frame` of the run).

    The one place reports, feedback sheets and notebooks get it from: :func:`toolkit.audit.verdict.compute_verdict`
    over the run's rule rows, with the run's coverage (partial or complete).
    """
    rows = rule_frame(con, run_id) if frame is None else frame
    return verdict.compute_verdict(rows.to_dict("records"), run_coverage(con, run_id))


def run_coverage(con: duckdb.DuckDBPyConnection, run_id: str) -> verdict.RunCoverage:
    """Whether the run covered every rule of the catalogue, or was partial (``audit --rules``)."""
    params = con.execute("SELECT parameters FROM audit_runs WHERE run_id = ?", [run_id]).fetchone()
    ids = [
        r[0] for r in con.execute("SELECT rule_id FROM rule_results WHERE run_id = ?", [run_id]).fetchall()
    ]
    return verdict.run_coverage(params[0] if params else None, ids)


def run_info(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    """The audit_runs row as a dict; ``parameters`` is parsed from JSON when possible."""
    df = con.execute("SELECT * FROM audit_runs WHERE run_id = ?", [run_id]).df()
    info = df.iloc[0].to_dict()
    if info.get("as_of") is not None and not pd.isna(info["as_of"]):
        info["as_of"] = pd.Timestamp(info["as_of"]).strftime("%Y-%m-%d")
    for k in ("started_at", "finished_at"):
        if info.get(k) is not None and not pd.isna(info[k]):
            info[k] = pd.Timestamp(info[k]).strftime("%Y-%m-%d %H:%M:%S %z")
    try:
        info["parameters_parsed"] = json.loads(info.get("parameters") or "{}")
    except (TypeError, ValueError):
        info["parameters_parsed"] = {"raw": info.get("parameters")}
    return info


def strata_where(scope: Scope, alias: str = "s") -> tuple[str, list]:
    """SQL condition and parameters selecting strata/violations inside ``scope``.

    Strata without a month (rules about institutions, doctors or care plans, which are not dated)
    are kept under a period filter.
    """
    cond, params = [], []
    if scope.institution is not None:
        cond.append(f"{alias}.institution_id = ?")
        params.append(scope.institution)
    if scope.doctor is not None:
        cond.append(f"{alias}.doctor_id = ?")
        params.append(scope.doctor)
    if scope.period is not None:
        cond.append(f"({alias}.month IS NULL OR {alias}.month BETWEEN ? AND ?)")
        params.extend(scope.period)
    return (" AND ".join(cond) or "TRUE"), params


def add_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Add compliant, rate, rate_lo/rate_hi (95 % Wilson) and non-compliance rates to a counts frame."""
    df = df.copy()
    for c in ("denominator", "violated", "not_evidenced"):
        df[c] = df[c].fillna(0).astype("int64")
    df["compliant"] = df["denominator"] - df["violated"] - df["not_evidenced"]
    den = df["denominator"].where(df["denominator"] > 0)
    df["rate"] = (df["compliant"] / den).astype("float64")
    df["violated_rate"] = (df["violated"] / den).astype("float64")
    df["not_evidenced_rate"] = (df["not_evidenced"] / den).astype("float64")
    cis = [stats.wilson(k, n) for k, n in zip(df["compliant"], df["denominator"], strict=True)]
    df["rate_lo"] = pd.Series([c[0] for c in cis], index=df.index, dtype="float64")
    df["rate_hi"] = pd.Series([c[1] for c in cis], index=df.index, dtype="float64")
    return df


def section_group(section: str | None) -> str:
    """'V-1-(2)-②-ix' → 'V-1-(2)'; 'V-3' stays 'V-3'."""
    m = re.match(r"^(V-\d+)(?:-\((\d+)\))?", section or "")
    if not m:
        return section or "?"
    return m[1] + (f"-({m[2]})" if m[2] else "")


def section_key(group: str) -> tuple:
    """Sort key putting section groups in guideline order: V-1-(2) before V-1-(10) before V-2."""
    return tuple(int(n) for n in re.findall(r"\d+", group)) or (99,)


def rule_frame(con: duckdb.DuckDBPyConnection, run_id: str, scope: Scope = Scope()) -> pd.DataFrame:
    """One row per rule of the run, with counts, rate and interval (recomputed from strata if filtered)."""
    meta = con.execute(
        "SELECT rule_id, section, level, entity, title_en, title_ja, status, denominator, violated,"
        " not_evidenced, missing_columns, message FROM rule_results WHERE run_id = ? ORDER BY rule_id",
        [run_id],
    ).df()
    if scope.filtered:
        where, params = strata_where(scope)
        sums = con.execute(
            f"SELECT rule_id, sum(denominator) AS denominator, sum(violated) AS violated,"
            f" sum(not_evidenced) AS not_evidenced FROM rule_results_strata s"
            f" WHERE run_id = ? AND {where} GROUP BY rule_id",
            [run_id, *params],
        ).df()
        meta = meta.drop(columns=["denominator", "violated", "not_evidenced"]).merge(
            sums, on="rule_id", how="left"
        )
        meta = add_rates(meta)
        ok = meta["status"].isin(EVALUATED + ("not_applicable",))
        meta.loc[ok & (meta["denominator"] == 0), "status"] = "not_applicable"
        bad = meta["violated"] + meta["not_evidenced"]
        meta.loc[ok & (meta["denominator"] > 0), "status"] = "passed"
        meta.loc[ok & (meta["denominator"] > 0) & (bad > 0), "status"] = "failed"
    else:
        meta = add_rates(meta)
    meta["missing_columns"] = [
        list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else []
        for v in meta["missing_columns"]
    ]
    meta["section_group"] = meta["section"].map(section_group)
    den = meta["denominator"].where(meta["denominator"] > 0)
    meta["noncompliance_rate"] = ((meta["violated"] + meta["not_evidenced"]) / den).astype("float64")
    meta["_key"] = meta["section_group"].map(section_key)
    meta = meta.sort_values(["_key", "section", "rule_id"]).drop(columns="_key").reset_index(drop=True)
    return meta


def pooled(frame: pd.DataFrame, level: str) -> dict:
    """Pooled compliance of one level's evaluated rules: counts, rate and Wilson interval."""
    sub = frame[(frame["level"] == level) & frame["status"].isin(EVALUATED)]
    n, v, ne = (int(sub[c].sum()) for c in ("denominator", "violated", "not_evidenced"))
    lo, hi = stats.wilson(n - v - ne, n)
    return {
        "level": level,
        "rules": len(sub),
        "rules_failed": int((sub["status"] == "failed").sum()),
        "denominator": n,
        "violated": v,
        "not_evidenced": ne,
        "compliant": n - v - ne,
        "rate": stats.rate(n - v - ne, n),
        "rate_lo": lo,
        "rate_hi": hi,
    }


def provider_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    by: str = "institution_id",
    scope: Scope = Scope(),
    level: str = "must",
    rule_id: str | None = None,
) -> pd.DataFrame:
    """Per institution (or doctor) pooled compliance of one level's rules (or of ``rule_id`` only), with funnel limits.

    Columns: provider, denominator, violated, not_evidenced, compliant, rate, p0 (overall rate),
    lo95/hi95/lo998/hi998 (limits at that volume) and ``position`` (inside, below_95, below_998,
    above_95, above_998).
    """
    if by not in ("institution_id", "doctor_id"):
        raise ValueError("by must be institution_id or doctor_id")
    where, params = strata_where(scope)
    if rule_id is not None:
        where, params = f"{where} AND s.rule_id = ?", [*params, rule_id]
    df = con.execute(
        f"SELECT s.{by} AS provider, any_value(s.institution_id) AS institution_id,"
        " sum(s.denominator) AS denominator, sum(s.violated) AS violated,"
        " sum(s.not_evidenced) AS not_evidenced FROM rule_results_strata s"
        " JOIN rule_results r ON r.run_id = s.run_id AND r.rule_id = s.rule_id"
        f" WHERE s.run_id = ? AND r.level = ? AND r.status IN ('passed','failed') AND s.{by} IS NOT NULL"
        f" AND {where} GROUP BY s.{by} HAVING sum(s.denominator) > 0 ORDER BY provider",
        [run_id, level, *params],
    ).df()
    df = add_rates(df)
    total = df["denominator"].sum()
    p0 = float(df["compliant"].sum() / total) if total else float("nan")
    df["p0"] = p0
    for name, z in (("95", stats.Z95), ("998", stats.Z998)):
        lims = [stats.funnel_limits(p0, n, z) if total else (None, None) for n in df["denominator"]]
        df[f"lo{name}"] = [x[0] for x in lims]
        df[f"hi{name}"] = [x[1] for x in lims]
    pos = pd.Series("inside", index=df.index)
    pos[df["rate"] < df["lo95"]] = "below_95"
    pos[df["rate"] < df["lo998"]] = "below_998"
    pos[df["rate"] > df["hi95"]] = "above_95"
    pos[df["rate"] > df["hi998"]] = "above_998"
    df["position"] = pos
    return df


def trend_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    scope: Scope = Scope(),
    level: str = "must",
    rule_id: str | None = None,
    per_rule: bool = True,
) -> pd.DataFrame:
    """Monthly compliance per rule plus a pooled ``(all rules 全規則)`` row per month (one level).

    Only months with session records in the run count: a care plan's month is the month it was
    written, which may lie long before the audited sessions, and would stretch the time axis.
    ``rule_id``: that rule only (its rows and the pooled row are then the same figures);
    ``per_rule=False``: the pooled rows only (one scan of the strata instead of two).
    """
    where, params = strata_where(scope)
    if rule_id is not None:
        where, params = f"{where} AND s.rule_id = ?", [*params, rule_id]
    base = (
        " FROM rule_results_strata s JOIN rule_results r ON r.run_id = s.run_id AND r.rule_id = s.rule_id"
        f" WHERE s.run_id = ? AND r.level = ? AND r.status IN ('passed','failed')"
        f" AND s.month IS NOT NULL AND {where}"
        " AND s.month IN (SELECT DISTINCT m.month FROM rule_results_strata m JOIN rule_results mr"
        "  ON mr.run_id = m.run_id AND mr.rule_id = m.rule_id WHERE m.run_id = s.run_id"
        "  AND mr.entity = 'session' AND m.denominator > 0)"
    )
    sums = "sum(s.denominator) AS denominator, sum(s.violated) AS violated, sum(s.not_evidenced) AS not_evidenced"
    per_rule = (
        con.execute(f"SELECT s.rule_id, s.month, {sums}{base} GROUP BY ALL", [run_id, level, *params]).df()
        if per_rule
        else None
    )
    overall = con.execute(
        f"SELECT '(all rules 全規則)' AS rule_id, s.month, {sums}{base} GROUP BY ALL",
        [run_id, level, *params],
    ).df()
    frames = [overall] if per_rule is None else [overall, per_rule]
    df = add_rates(pd.concat(frames, ignore_index=True))
    return df[df["denominator"] > 0].sort_values(["rule_id", "month"]).reset_index(drop=True)


def heatmap_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    scope: Scope = Scope(),
    level: str = "must",
    max_institutions: int = 30,
) -> pd.DataFrame:
    """Compliance per rule × institution (one level), for the ``max_institutions`` largest institutions."""
    where, params = strata_where(scope)
    df = con.execute(
        f"WITH cells AS (SELECT s.rule_id, coalesce(s.institution_id, '{UNKNOWN_INSTITUTION}') AS institution_id,"
        " sum(s.denominator) AS denominator, sum(s.violated) AS violated, sum(s.not_evidenced) AS not_evidenced"
        " FROM rule_results_strata s JOIN rule_results r ON r.run_id = s.run_id AND r.rule_id = s.rule_id"
        f" WHERE s.run_id = ? AND r.level = ? AND r.status IN ('passed','failed') AND {where}"
        " GROUP BY ALL HAVING sum(s.denominator) > 0),"
        " top AS (SELECT institution_id FROM cells GROUP BY 1 ORDER BY sum(denominator) DESC, 1 LIMIT ?)"
        " SELECT * FROM cells WHERE institution_id IN (SELECT institution_id FROM top) ORDER BY 1, 2",
        [run_id, level, *params, max_institutions],
    ).df()
    return add_rates(df)


def ec_funnel_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """EC follow-up funnel from the ec.* rule counts of a :func:`rule_frame`.

    Stages: EC cases (ec.follow_up denominator) → cases with an EC prescription line
    (ec.witnessed_intake denominator) → witnessed intake (its compliant count) → follow-up
    visit confirmed or not yet due (ec.follow_up compliant count). Empty when the run has no EC rules.
    """
    idx = frame.set_index("rule_id")
    if "ec.follow_up" not in idx.index or "ec.witnessed_intake" not in idx.index:
        return pd.DataFrame(columns=["order", "stage", "count"])
    fu, wi = idx.loc["ec.follow_up"], idx.loc["ec.witnessed_intake"]
    rows = [
        (1, "EC cases 緊急避妊の事例", fu["denominator"]),
        (2, "Prescribed (EC line) 処方あり", wi["denominator"]),
        (3, "Witnessed intake 薬剤師の面前内服", wi["compliant"]),
        (4, "Follow-up visit (or not yet due) 受診確認（期限前含む）", fu["compliant"]),
    ]
    return pd.DataFrame(rows, columns=["order", "stage", "count"]).astype({"count": "int64"})


def violations_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    rule_id: str | None = None,
    institution: str | None = None,
    doctor: str | None = None,
    month: str | None = None,
    period: tuple[str, str] | None = None,
    limit: int | None = None,
    source: str = "violations",
) -> pd.DataFrame:
    """The run's violating records (ids only) with rule titles, filtered by rule/institution/doctor/month.

    ``rule_id`` may be a glob ('ec.*'). Columns: rule_id, level, section, title_en, title_ja,
    entity, entity_id, status (violated|not_evidenced), institution_id, doctor_id, month.
    ``source`` names a table with the violations layout (e.g. a temp copy sorted by doctor).
    """
    if not re.fullmatch(r"[a-z_]+", source):
        raise ValueError("source must be a plain table name")
    cond, params = ["v.run_id = ?"], [run_id]
    for col, val in (("institution_id", institution), ("doctor_id", doctor), ("month", month)):
        if val is not None:
            cond.append(f"v.{col} = ?")
            params.append(val)
    if rule_id is not None:
        cond.append("v.rule_id GLOB ?" if any(ch in rule_id for ch in "*?[") else "v.rule_id = ?")
        params.append(rule_id)
    if period is not None:
        cond.append("v.month BETWEEN ? AND ?")
        params.extend(period)
    sql = (
        "SELECT v.rule_id, r.level, r.section, r.title_en, r.title_ja, v.entity, v.entity_id, v.status,"
        " v.institution_id, v.doctor_id, v.month FROM " + source + " v LEFT JOIN rule_results r"
        " ON r.run_id = v.run_id AND r.rule_id = v.rule_id WHERE "
        + " AND ".join(cond)
        + " ORDER BY v.rule_id, v.month NULLS LAST, v.institution_id, v.doctor_id, v.entity_id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return con.execute(sql, params).df()


def violation_changes(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    prev_run_id: str,
    scope: Scope = Scope(),
    rule_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Per rule: violations new, resolved and persisting since ``prev_run_id`` (by rule_id + entity_id).

    Only rules checked in both runs are compared: a rule that became not evaluable (or was not
    in a run) would otherwise show all its earlier violations as "resolved". ``rule_ids``: only
    these rules (filtered in SQL, so one rule's comparison reads only its violations).
    """
    where_c, pc = strata_where(scope, "v")
    if rule_ids is not None:
        where_c, pc = f"{where_c} AND list_contains(?::VARCHAR[], v.rule_id)", [*pc, list(rule_ids)]
    both = (
        " AND rule_id IN (SELECT a.rule_id FROM rule_results a JOIN rule_results b ON a.rule_id = b.rule_id"
        " WHERE a.run_id = ? AND b.run_id = ? AND a.status IN ('passed', 'failed', 'not_applicable')"
        " AND b.status IN ('passed', 'failed', 'not_applicable'))"
    )
    sql = (
        "WITH cur AS (SELECT DISTINCT rule_id, entity_id FROM violations v WHERE run_id = ? AND "
        + where_c
        + both
        + "),"
        " prev AS (SELECT DISTINCT rule_id, entity_id FROM violations v WHERE run_id = ? AND "
        + where_c
        + both
        + ")"
        " SELECT coalesce(c.rule_id, p.rule_id) AS rule_id,"
        " count(*) FILTER (WHERE p.entity_id IS NULL) AS new,"
        " count(*) FILTER (WHERE c.entity_id IS NULL) AS resolved,"
        " count(*) FILTER (WHERE c.entity_id IS NOT NULL AND p.entity_id IS NOT NULL) AS persisting"
        " FROM cur c FULL OUTER JOIN prev p ON c.rule_id = p.rule_id AND c.entity_id = p.entity_id"
        " GROUP BY 1 ORDER BY 1"
    )
    return con.execute(sql, [run_id, *pc, run_id, prev_run_id, prev_run_id, *pc, run_id, prev_run_id]).df()


def rate_changes(current: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """Per rule evaluated in both runs: previous and current rate, z, p and verdict (better/worse/no_change)."""
    cols = ["rule_id", "denominator", "compliant", "rate", "status"]
    m = current[["rule_id", "level", "title_en", "title_ja", *cols[1:]]].merge(
        previous[cols], on="rule_id", how="inner", suffixes=("", "_prev")
    )
    m = m[m["status"].isin(EVALUATED) & m["status_prev"].isin(EVALUATED)].copy()
    res = [
        stats.two_proportion_z(k1, n1, k2, n2)
        for k1, n1, k2, n2 in zip(
            m["compliant_prev"], m["denominator_prev"], m["compliant"], m["denominator"], strict=True
        )
    ]
    m["z"] = [r[0] for r in res]
    m["p_value"] = [r[1] for r in res]
    m["verdict"] = [
        stats.change_verdict(k1, n1, k2, n2)
        for k1, n1, k2, n2 in zip(
            m["compliant_prev"], m["denominator_prev"], m["compliant"], m["denominator"], strict=True
        )
    ]
    return m.reset_index(drop=True)


def dq_frame(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Data-quality findings of the run, largest first."""
    return con.execute(
        "SELECT check_id, table_name, title_en, title_ja, n, detail FROM dq_results"
        " WHERE run_id = ? ORDER BY n DESC, check_id",
        [run_id],
    ).df()


def attestation_frame(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Attestation checklist answers of the run (attested NULL = not answered)."""
    return con.execute(
        "SELECT item_id, section, title_en, title_ja, attested, attested_by,"
        " CAST(attested_on AS VARCHAR) AS attested_on, note"
        " FROM attestations WHERE run_id = ? ORDER BY section, item_id",
        [run_id],
    ).df()


class FrameSlices:
    """The rows of a frame by the value of one column, each found without scanning the frame."""

    def __init__(self, frame: pd.DataFrame, column: str, *, keep_column: bool = False) -> None:
        self.frame = frame.reset_index(drop=True)
        self.columns = [c for c in frame.columns if keep_column or c != column]
        self._at = self.frame.groupby(column, sort=False, dropna=False).indices
        #: the key pandas gave the rows whose column is missing (NaN, None or NA)
        self._missing = next((k for k in self._at if not isinstance(k, str) and pd.isna(k)), None)

    def of(self, value: object) -> pd.DataFrame:
        """The rows whose column equals ``value`` (None: is missing), in the frame's order; the column
        itself is dropped unless ``keep_column``."""
        at = self._at.get(self._missing if value is None or pd.isna(value) else value)
        if at is None:
            return self.frame.iloc[0:0][self.columns].reset_index(drop=True)
        return self.frame.iloc[at][self.columns].reset_index(drop=True)


#: At most this many points in a funnel plot (an SVG of 8,000 doctors would weigh megabytes).
FUNNEL_MAX_POINTS = 500


def bounded_funnel(
    providers: pd.DataFrame, max_points: int = FUNNEL_MAX_POINTS, keep: str | None = None
) -> pd.DataFrame:
    """At most ``max_points`` rows of a :func:`report_data.provider_frame`: every provider outside the
    95 % limits (and ``keep``; the lowest rates first when even these are too many), then the
    largest others. The report's and the dashboard's funnel plots (``charts.funnel``,
    ``dashboard.charts.provider_chart``) both draw this."""
    if len(providers) <= max_points:
        return providers
    flagged = (providers["position"] != "inside") | (providers["provider"] == keep)
    outside = providers[flagged].nsmallest(max_points, "rate")
    rest = providers[~flagged].nlargest(max(0, max_points - len(outside)), "denominator")
    return pd.concat([outside, rest])
