"""Per-doctor feedback sheets (フィードバック, guideline V-3-(2)): one self-contained HTML per doctor.

Each sheet shows the doctor's compliance per rule next to their institution's and all sites'
(all from ``rule_results_strata``), and the list of the doctor's records to review (rule,
record id, violated / not evidenced, month) — ids only, no patient fields.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from toolkit import __version__, store
from toolkit.audit import verdict as verdict_mod
from toolkit.errors import UserError
from toolkit.report import data as rd
from toolkit.report import reviews, stats
from toolkit.report.html import _records, jinja_env, open_store
from toolkit.store.files import make_dirs, write_text


@dataclass
class FeedbackResult:
    """Files written by :func:`write_feedback`."""

    run_id: str
    paths: list[Path]
    choice: rd.RunChoice | None = None


def doctors(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Doctors of the run with their main institution (the one with most records in scope).

    Columns: doctor_id, institution_id, denominator (records in scope, all rules), must_n,
    must_bad (violated + not evidenced of evaluated must rules), to_review (the doctor's violation
    rows, as the sheet lists them), must_rate, must_lo, must_hi and ``registered`` (False for a
    *pseudo-doctor*: an id the sessions name that the doctors table lacks).
    """
    df = con.execute(
        "SELECT doctor_id, arg_max(institution_id, n) AS institution_id, sum(n) AS denominator,"
        " sum(must_n) AS must_n, sum(must_bad) AS must_bad FROM ("
        " SELECT s.doctor_id, s.institution_id, sum(s.denominator) AS n,"
        " sum(s.denominator) FILTER (WHERE r.level = 'must' AND r.status IN ('passed', 'failed')) AS must_n,"
        " sum(s.violated + s.not_evidenced) FILTER (WHERE r.level = 'must' AND r.status IN ('passed', 'failed'))"
        " AS must_bad FROM rule_results_strata s JOIN rule_results r ON r.run_id = s.run_id AND r.rule_id = s.rule_id"
        " WHERE s.run_id = ? AND s.doctor_id IS NOT NULL GROUP BY ALL) GROUP BY doctor_id ORDER BY doctor_id",
        [run_id],
    ).df()
    counts = dict(
        con.execute(
            "SELECT doctor_id, count(*) FROM violations WHERE run_id = ? AND doctor_id IS NOT NULL GROUP BY 1",
            [run_id],
        ).fetchall()
    )
    df["to_review"] = [int(counts.get(d, 0)) for d in df["doctor_id"]]
    for c in ("must_n", "must_bad"):
        df[c] = df[c].fillna(0).astype("int64")
    cis = [stats.wilson(n - b, n) for n, b in zip(df["must_n"], df["must_bad"], strict=True)]
    df["must_rate"] = [stats.rate(n - b, n) for n, b in zip(df["must_n"], df["must_bad"], strict=True)]
    df["must_lo"], df["must_hi"] = [c[0] for c in cis], [c[1] for c in cis]
    registered: set[str] = set()
    if store.table_exists(con, "doctors"):
        registered = {r[0] for r in con.execute("SELECT doctor_id FROM doctors").fetchall()}
    df["registered"] = df["doctor_id"].isin(registered) if registered else True
    return df


_SUMS = (
    "SELECT rule_id, sum(denominator) AS denominator, sum(violated) AS violated,"
    " sum(not_evidenced) AS not_evidenced FROM rule_results_strata WHERE run_id = ? AND {} GROUP BY rule_id"
)


def _doctor_sums(con: duckdb.DuckDBPyConnection, run_id: str, doctor_id: str, cache: dict) -> pd.DataFrame:
    """The doctor's per-rule sums with their rates. The first call of a run reads every doctor's in
    one GROUP BY (kept in ``cache``); each sheet then takes its slice instead of scanning the strata
    again (a 10M-session run has tens of thousands of doctors)."""
    if "doctor_sums" not in cache:
        every = con.execute(
            "SELECT doctor_id, rule_id, sum(denominator) AS denominator, sum(violated) AS violated,"
            " sum(not_evidenced) AS not_evidenced FROM rule_results_strata WHERE run_id = ?"
            " AND doctor_id IS NOT NULL GROUP BY doctor_id, rule_id ORDER BY doctor_id, rule_id",
            [run_id],
        ).df()
        cache["doctor_sums"] = rd.FrameSlices(rd.add_rates(every), "doctor_id")
    return cache["doctor_sums"].of(doctor_id)


def _comparison(
    con: duckdb.DuckDBPyConnection, run_id: str, institution_id: str | None, cache: dict
) -> pd.DataFrame:
    """Per rule of the run: its titles and section, the institution's and all sites' rates (one per
    institution, kept in ``cache``: its doctors' sheets share it)."""
    key = ("comparison", institution_id)
    if key in cache:
        return cache[key]
    if "all" not in cache:
        cache["all"] = rd.add_rates(con.execute(_SUMS.format("TRUE"), [run_id]).df())
    if "meta" not in cache:
        cache["meta"] = con.execute(
            "SELECT rule_id, section, level, title_en, title_ja, status FROM rule_results WHERE run_id = ?",
            [run_id],
        ).df()
    if "institution_sums" not in cache:  # every institution's in one GROUP BY, as for the doctors
        every = con.execute(
            "SELECT institution_id, rule_id, sum(denominator) AS denominator, sum(violated) AS violated,"
            " sum(not_evidenced) AS not_evidenced FROM rule_results_strata WHERE run_id = ?"
            " GROUP BY institution_id, rule_id ORDER BY institution_id, rule_id",
            [run_id],
        ).df()
        cache["institution_sums"] = rd.FrameSlices(rd.add_rates(every), "institution_id")
    inst = cache["institution_sums"].of(institution_id)
    keep = ["rule_id", "denominator", "rate", "rate_lo", "rate_hi"]
    df = cache["meta"].merge(
        inst[keep].rename(columns=lambda c: c if c == "rule_id" else f"inst_{c}"), on="rule_id", how="left"
    )
    df = df.merge(
        cache["all"][keep].rename(columns=lambda c: c if c == "rule_id" else f"all_{c}"),
        on="rule_id",
        how="left",
    )
    df["section_group"] = df["section"].map(rd.section_group)
    df["_k"] = df["section_group"].map(rd.section_key)
    for k in [k for k in cache if isinstance(k, tuple) and k[0] == "comparison"]:
        del cache[k]  # one institution's at a time: write_feedback goes institution by institution
    cache[key] = df
    return df


def doctor_frame(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    doctor_id: str,
    institution_id: str | None,
    cache: dict | None = None,
) -> pd.DataFrame:
    """Per rule in which the doctor had records: the doctor's, the institution's and all sites' rates.

    ``cache`` (a dict kept by the caller) saves re-reading every doctor's and the institution and
    all-site sums per doctor.
    """
    cache = {} if cache is None else cache
    doc = _doctor_sums(con, run_id, doctor_id, cache)
    df = doc[doc["denominator"] > 0].merge(
        _comparison(con, run_id, institution_id, cache), on="rule_id", how="left"
    )
    df["to_review"] = df["violated"] + df["not_evidenced"]
    # what needs action first: rules with findings (most records to review, then lowest rate), then the rest
    df["_clear"] = df["to_review"] == 0
    df["_neg"] = -df["to_review"]
    return (
        df.sort_values(["level", "_clear", "_neg", "rate", "_k", "rule_id"])
        .drop(columns=["_k", "_clear", "_neg"])
        .reset_index(drop=True)
    )


#: How many of the doctor's lowest must-follow rates the sheet's opening sentence names.
LOWEST_NAMED = 3


def headline(frame: pd.DataFrame, n_records: int) -> dict:
    """The sheet's opening sentence: records to review and the doctor's lowest must-follow rates.

    ``lowest``: up to :data:`LOWEST_NAMED` must rules with findings, lowest rate first (rule_id,
    title_ja, title_en, rate). Only the doctor's own rules: never a comparison with other doctors.
    """
    must = frame[(frame["level"] == "must") & (frame["to_review"] > 0)].sort_values(["rate", "rule_id"])
    lowest = must.head(LOWEST_NAMED)[["rule_id", "title_ja", "title_en", "rate"]].to_dict("records")
    return {"n_records": n_records, "lowest": lowest}


def doctor_verdict(
    con: duckdb.DuckDBPyConnection, run_id: str, frame: pd.DataFrame, cache: dict | None = None
) -> verdict_mod.Verdict:
    """The verdict of one doctor's records (``frame``: :func:`doctor_frame`).

    A rule the run could not check (not evaluable, error) could not be checked for the doctor
    either and keeps its status; the others are judged on the doctor's own counts (no record in
    scope = not applicable). Decided by :func:`toolkit.audit.verdict.compute_verdict`.
    """
    cache = {} if cache is None else cache
    if "verdict_meta" not in cache:
        cache["verdict_meta"] = (
            con.execute(
                "SELECT rule_id, level, status, missing_columns, message, title_ja, title_en FROM rule_results"
                " WHERE run_id = ?",
                [run_id],
            )
            .df()
            .to_dict("records"),
            rd.run_coverage(con, run_id),
        )
    meta, coverage = cache["verdict_meta"]
    mine = frame.set_index("rule_id")
    rows = []
    for m in meta:
        if m["status"] not in verdict_mod.UNCHECKED:
            d = mine.loc[m["rule_id"]] if m["rule_id"] in mine.index else None
            v, ne = (int(d["violated"]), int(d["not_evidenced"])) if d is not None else (0, 0)
            has = d is not None and int(d["denominator"]) > 0
            m = {**m, "violated": v, "not_evidenced": ne}
            m["status"] = "failed" if v + ne else ("passed" if has else "not_applicable")
        rows.append(m)
    return verdict_mod.compute_verdict(rows, coverage)


def sheet_filename(doctor_id: str) -> str:
    """A safe, unique file name for a doctor id (odd characters replaced, short hash added)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", doctor_id).strip("._")[:40] or "doctor"
    return f"feedback_{safe}_{hashlib.sha256(doctor_id.encode()).hexdigest()[:8]}.html"


def render_sheet(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    doctor_id: str,
    institution_id: str | None,
    cache: dict | None = None,
    source: str = "violations",
    choice: rd.RunChoice | None = None,
) -> str:
    """HTML of one doctor's feedback sheet (``source``: see :func:`report_data.violations_frame`).

    It opens with the verdict of the doctor's records (:func:`doctor_verdict`).
    """
    cache = {} if cache is None else cache
    frame = doctor_frame(con, run_id, doctor_id, institution_id, cache)
    records = rd.violations_frame(con, run_id, doctor=doctor_id, source=source)
    if "run_info" not in cache:
        cache["run_info"] = rd.run_info(con, run_id)
    ctx = {
        "run": cache["run_info"],
        "run_id": run_id,
        "choice": choice or rd.run_choice(con, run_id),
        "verdict": doctor_verdict(con, run_id, frame, cache),
        "doctor_id": doctor_id,
        "institution_id": institution_id,
        "version": __version__,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "must": _records(frame[frame["level"] == "must"]),
        "should": _records(frame[frame["level"] == "should"]),
        "records": _records(records),
        "review": reviews.review_summary(
            con, run_id, doctor=doctor_id, source=source, doctors=cache.get("reviews")
        ),
        "headline": headline(frame, len(records)),
    }
    return jinja_env().get_template("feedback.html.j2").render(**ctx)


def write_feedback(
    db_path: str, out: str, doctor: str | None = None, run_id: str | None = None
) -> FeedbackResult:
    """Write one sheet (``doctor`` given: ``out`` is the file) or all sheets plus an index (``out`` is a folder)."""
    con = open_store(db_path)
    try:
        choice = rd.run_choice(con, run_id)
        run_id = choice.run_id
        docs = doctors(con, run_id)
        if doctor is not None:
            row = docs[docs["doctor_id"] == doctor]
            if row.empty:
                known = ", ".join(docs["doctor_id"].head(10))
                raise UserError(
                    f"--doctor {doctor!r}: no records of this doctor in run {run_id}; e.g. {known}"
                )
            path = Path(out)
            if path.is_dir():
                path = path / sheet_filename(doctor)
            write_text(path, render_sheet(con, run_id, doctor, row["institution_id"].iloc[0], choice=choice))
            return FeedbackResult(run_id, [path], choice)
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--out {out}: without --doctor, --out must be a folder (one sheet per doctor)")
        make_dirs(folder, fix_existing=True)
        paths, entries, cache = [], [], {}
        # one sorted in-memory copy of the run's violations: per-doctor reads then skip most of it
        con.execute(
            "CREATE OR REPLACE TEMP TABLE fb_violations AS SELECT * FROM violations WHERE run_id = ?"
            " ORDER BY doctor_id",
            [run_id],
        )
        cache["reviews"] = reviews.DoctorReviews(con, run_id, "fb_violations")
        # institution by institution (their doctors share the comparison columns), listed by doctor
        for d in docs.sort_values(["institution_id", "doctor_id"], na_position="last").itertuples():
            p = folder / sheet_filename(d.doctor_id)
            write_text(
                p, render_sheet(con, run_id, d.doctor_id, d.institution_id, cache, "fb_violations", choice)
            )
            paths.append(p)
            entries.append(
                {
                    "doctor_id": d.doctor_id,
                    "institution_id": d.institution_id,
                    "file": p.name,
                    "denominator": int(d.denominator),
                    "to_review": int(d.to_review),
                    "must_rate": d.must_rate,
                    "must_lo": d.must_lo,
                    "must_hi": d.must_hi,
                    "registered": bool(d.registered),
                }
            )
        order = sorted(range(len(entries)), key=lambda i: entries[i]["doctor_id"])
        entries, paths = [entries[i] for i in order], [paths[i] for i in order]
        index = (
            jinja_env()
            .get_template("feedback_index.html.j2")
            .render(
                run_id=run_id,
                choice=choice,
                verdict=rd.run_verdict(con, run_id),
                entries=entries,
                pseudo=[e["doctor_id"] for e in entries if not e["registered"]],
                sortable=True,
                version=__version__,
                generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            )
        )
        write_text(folder / "index.html", index)
        return FeedbackResult(run_id, [*paths, folder / "index.html"], choice)
    finally:
        con.close()


def cli_feedback(args: argparse.Namespace) -> int:
    """``ocaudit feedback``: write the sheets and print where they are."""
    res = write_feedback(args.db, args.out, doctor=args.doctor, run_id=args.run)
    which = f"run {res.run_id}; {res.choice.label()}" if res.choice else f"run {res.run_id}"
    if args.doctor is not None:
        print(f"feedback sheet written フィードバックを出力しました: {res.paths[0].resolve()} ({which})")
    else:
        print(
            f"{len(res.paths) - 1} feedback sheets written フィードバックを出力しました: "
            f"{Path(args.out).resolve()} (index.html; {which})"
        )
    return 0
