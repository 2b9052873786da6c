"""ocaudit benchmarks: every stage as its own process, timed, with peak memory, against baselines.

    python benchmarks/run.py --sessions 100000 --repeat 3            # quick mode (make bench-quick)
    python benchmarks/run.py --sessions 1000000 --repeat 3 --json out.json
    python benchmarks/run.py --sessions 10000000 --repeat 1 --skip-gx-pandas --timeout 1800

What it does, at one scale:

1. **Data.** ``ocaudit generate --sessions N --seed S --format parquet`` once, cached in
   ``WORKDIR/data/sessions-N-seed-S/`` (its wall time and peak RSS are measured the first time
   and kept next to the data). The contract tables are linked into ``tables/`` so the ingest sees
   only them (``ground_truth.csv`` and ``generation.json`` are not exports).
2. **Stages**, each a separate process of the ``ocaudit`` console script, ``--repeat`` times:
   ``ingest`` (into a fresh DuckDB file every time), ``audit`` (whole catalogue, ``--as-of`` from
   ``generation.json``; every repeat appends a run to the same file, as a monthly re-run would),
   ``report`` and ``survey ec`` (period from ``generation.json``).
3. **Comparisons** in the same run: DuckDB's bare load of the same files
   (``CREATE TABLE t AS SELECT * FROM read_parquet(...)`` in a fresh file; vs ingest), the
   hand-written single-pass SQL of ``benchmarks/single_pass.py`` (vs audit; it must reproduce the
   audit's counts exactly, which also validates the audit), the same SQL also writing every
   violation id (``single_pass_export``, vs ``audit_export`` = the audit with ``--violations``, the
   README's everyday command; the two CSV files must have the same SHA-256), and the same GX suites
   on GX's pandas engine over the audit's check records copied out of DuckDB
   (``benchmarks/gx_pandas.py``, once).

Wall time is the child's elapsed time (median, min, max over the repeats); peak memory is the
child's maximum resident set size from ``/usr/bin/time -v`` (psutil polling of the process tree
when GNU time is missing). The load average is recorded with every run: other work on the
machine shows up there. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from toolkit.contract import TABLE_ORDER  # noqa: E402
from toolkit.survey.package import sha256_file  # noqa: E402

GNU_TIME = "/usr/bin/time"
ALL_STAGES = ("ingest", "audit", "report", "feedback", "survey", "annual", "dashboard")
#: The contract's tables: the generator's files the ingest is given (not its ground truth).
CONTRACT_TABLES = tuple(TABLE_ORDER)

#: The targets at 10M sessions on the benchmark machine (the GX-pandas one at 1M): issue 6's, with
#: issue 17's where it tightened them (the export ratio, the ingest at 1.3× the bare load). Issue
#: 17's 30M point (ingest and audit ≤ 3.3× their 10M times) is measured apart: RESULTS.md.
TARGETS = {
    "audit_seconds": 60.0,
    "audit_over_single_pass": 3.0,
    "audit_export_over_single_pass_export": 2.0,
    "ingest_over_bare_load": 1.3,
    "report_seconds": 30.0,
    "survey_seconds": 30.0,
    "peak_rss_mib": 2048.0,
    "gx_pandas_speedup": 10.0,
}


# ----------------------------------------------------------------------------- measuring one child
@dataclass
class Run:
    """One measured child process."""

    seconds: float
    peak_rss_mib: float | None
    returncode: int
    load_1min: float | None
    timed_out: bool = False


@dataclass
class Stage:
    """All runs of one stage, with the command and a note."""

    name: str
    command: list[str]
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok_runs(self) -> list[Run]:
        """Runs that finished with exit code 0."""
        return [r for r in self.runs if r.returncode == 0 and not r.timed_out]

    def median(self) -> float | None:
        """Median wall time of the successful runs."""
        ok = self.ok_runs
        return statistics.median(r.seconds for r in ok) if ok else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        ok = self.ok_runs
        rss = [r.peak_rss_mib for r in self.runs if r.peak_rss_mib is not None]
        return {
            "command": " ".join(self.command),
            "runs": [asdict(r) for r in self.runs],
            "median_seconds": self.median(),
            "min_seconds": min((r.seconds for r in ok), default=None),
            "max_seconds": max((r.seconds for r in ok), default=None),
            "peak_rss_mib": max(rss, default=None),
            "note": self.note,
            **self.extra,
        }


def _poll_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """Peak RSS (MiB) of a process tree, sampled every 50 ms (fallback when GNU time is missing)."""
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            total = sum(p.memory_info().rss for p in procs if p.is_running())
            peak[0] = max(peak[0], total / 2**20)
        except psutil.Error:
            pass
        stop.wait(0.05)


def measure(cmd: list[str], log: Path, timeout: float | None = None, cwd: Path | None = None) -> Run:
    """Run ``cmd`` as a child, return wall time, peak RSS, exit code (stdout+stderr → ``log``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    time_out = log.with_suffix(".time")
    use_gnu = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-v", "-o", str(time_out), *cmd] if use_gnu else cmd
    load = os.getloadavg()[0]
    peak = [0.0]
    stop = threading.Event()
    with open(log, "w", encoding="utf-8") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        poller = threading.Thread(target=_poll_rss, args=(proc.pid, stop, peak), daemon=True)
        poller.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group only
            rc = proc.wait()
        seconds = time.perf_counter() - t0
        stop.set()
        poller.join()
    rss = peak[0] or None
    if use_gnu and time_out.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_out.read_text())
        if m:
            rss = int(m.group(1)) / 1024
    return Run(round(seconds, 3), None if rss is None else round(rss, 1), rc, round(load, 2), timed_out)


def _gnu_time_figures(path: Path) -> tuple[float | None, float | None]:
    """(wall seconds, peak RSS MiB) from a ``/usr/bin/time -v`` output file."""
    if not path.exists():
        return None, None
    text = path.read_text()
    wall = rss = None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(p) for p in m.group(1).split(":")]
        wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        rss = int(m.group(1)) / 1024
    return wall, rss


# ----------------------------------------------------------------------------- the stages
def ocaudit_cmd(memory_limit: str | None = None) -> list[str]:
    """The ``ocaudit`` console script next to this Python (else ``python -m toolkit``).

    With ``memory_limit`` (an experiment, not the shipped behaviour): ``ocaudit`` run through
    :func:`limited_main`, which sets DuckDB's ``memory_limit`` on every connection it opens.
    """
    if memory_limit:
        return [sys.executable, str(Path(__file__).resolve()), "--limited-ocaudit", memory_limit]
    script = Path(sys.executable).parent / "ocaudit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "toolkit"]


def limited_main(memory_limit: str, argv: list[str]) -> int:
    """``ocaudit argv`` with ``SET memory_limit`` (and no insertion-order preservation) on every DuckDB connection.

    Used by ``--duckdb-memory-limit`` to measure the effect of the setting the benchmarks propose for
    ``toolkit/store.py`` without changing the toolkit.
    """
    import duckdb

    sys.path.insert(0, str(REPO))
    original = duckdb.connect

    def connect(*a: Any, **kw: Any) -> Any:
        con = original(*a, **kw)
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        return con

    duckdb.connect = connect  # type: ignore[assignment]
    from toolkit import cli

    cli.skip_slow_optional_imports()  # as the ocaudit console script does
    return cli.main(argv)


def ensure_data(sessions: int, seed: int, workdir: Path, timeout: float | None) -> tuple[Path, dict, Stage]:
    """Generated data at this scale (cached); (tables dir, generation.json, the generate 'stage')."""
    base = workdir / "data" / f"sessions-{sessions}-seed-{seed}"
    gen = base / "gen"
    cmd = [
        *ocaudit_cmd(),
        "generate",
        "--sessions",
        str(sessions),
        "--seed",
        str(seed),
        "--out",
        str(gen),
        "--format",
        "parquet",
    ]
    stage = Stage("generate", cmd)
    rc_file = base / "generate.rc"
    if not (gen / "generation.json").exists() or not rc_file.exists() or rc_file.read_text().strip() != "0":
        if gen.exists():
            shutil.rmtree(gen)
        print(f"generating {sessions:,} sessions (seed {seed}) → {gen}", flush=True)
        run = measure(cmd, base / "generate.log", timeout)
        rc_file.write_text(f"{run.returncode}\n")
        if run.returncode != 0:
            raise SystemExit(f"generation failed (exit {run.returncode}); see {base / 'generate.log'}")
        stage.runs.append(run)
    else:
        wall, rss = _gnu_time_figures(base / "generate.time")
        if wall is not None:
            stage.runs.append(Run(round(wall, 3), None if rss is None else round(rss, 1), 0, None))
        stage.note = "cached: measured when the data was first generated"
    tables = base / "tables"
    tables.mkdir(exist_ok=True)
    for f in sorted(gen.iterdir()):
        name = f.name.split(".")[0]
        link = tables / f.name
        if name in CONTRACT_TABLES and not link.exists():
            link.symlink_to(f.resolve())
    meta = json.loads((gen / "generation.json").read_text(encoding="utf-8"))
    return tables, meta, stage


#: DuckDB's own reader of each input format, for the bare load (a file's last suffix).
READERS = {"parquet": "read_parquet", "csv": "read_csv_auto", "jsonl": "read_json_auto"}
#: What ``COPY … TO`` writes for each input format the ingest is measured on.
COPY_FORMATS = {"csv": "(FORMAT csv, HEADER true)", "jsonl": "(FORMAT json)"}


def ensure_format(tables: Path, fmt: str) -> Path:
    """The contract tables of ``tables`` (Parquet) as ``fmt`` files, converted once and cached next to
    them in ``tables-<fmt>/`` (the same records: DuckDB's ``COPY`` of each Parquet file)."""
    if fmt == "parquet":
        return tables
    import duckdb

    out = tables.with_name(f"tables-{fmt}")
    done = out.with_name(out.name + ".complete")
    if not done.exists():
        out.mkdir(mode=0o700, exist_ok=True)
        print(f"converting {tables} → {out} ({fmt}, once)", flush=True)
        con = duckdb.connect()
        try:
            for f in sorted(tables.iterdir()):
                target = out / f"{f.name.split('.')[0]}.{fmt}"
                con.execute(f"COPY (SELECT * FROM read_parquet('{f}')) TO '{target}' {COPY_FORMATS[fmt]}")
                target.chmod(0o600)  # owner only, as every file ocaudit writes
        finally:
            con.close()
        done.write_text("ok\n")
        done.chmod(0o600)
    return out


def bare_load(db: str, tables: str) -> None:
    """DuckDB's own load of the same files: one ``CREATE TABLE … AS SELECT * FROM read_*`` per table."""
    import duckdb

    con = duckdb.connect(db)
    try:
        for f in sorted(Path(tables).iterdir()):
            name = f.name.split(".")[0]
            reader = READERS[f.name.rsplit(".", 1)[-1]]
            con.execute(f"CREATE TABLE \"{name}\" AS SELECT * FROM {reader}('{f}')")
    finally:
        con.close()


def largest_institution(db: Path) -> str:
    """The institution with most sessions (the EC survey is written per institution)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT institution_id FROM sessions WHERE institution_id IS NOT NULL "
            "GROUP BY ALL ORDER BY count(*) DESC, institution_id LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise SystemExit("no sessions with an institution in the database")
    return str(row[0])


def _fresh(db: Path) -> None:
    for p in (db, db.with_name(db.name + ".wal")):
        if p.exists():
            p.unlink()


def _period(meta: dict) -> str:
    period = meta.get("period") or {}
    start, end = period.get("from", "2026-04-01"), period.get("to", "2026-09-30")
    return f"{start[:7]}..{end[:7]}"


def _filing_year(meta: dict) -> int:
    """The annual report's filing year whose twelve months (August to July) hold the data's first month."""
    start = dt.date.fromisoformat((meta.get("period") or {}).get("from", "2026-04-01"))
    return start.year + 1 if start.month >= 8 else start.year


def run_benchmarks(args: argparse.Namespace) -> dict[str, Any]:
    """Everything at one scale; returns the JSON-ready results."""
    workdir = Path(args.workdir).resolve()
    stages_wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages_wanted) - set(ALL_STAGES)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; choose from {','.join(ALL_STAGES)}")
    tables, meta, gen_stage = ensure_data(args.sessions, args.seed, workdir, args.timeout)
    tables = ensure_format(tables, args.format)
    as_of = str(meta.get("as_of"))
    suffix = f"-memlimit-{args.duckdb_memory_limit}" if args.duckdb_memory_limit else ""
    suffix += "" if args.format == "parquet" else f"-{args.format}"
    runs_dir = workdir / "runs" / f"sessions-{args.sessions}-seed-{args.seed}{suffix}"
    logs = runs_dir / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    db = runs_dir / "ocaudit.duckdb"
    oc = ocaudit_cmd(args.duckdb_memory_limit)
    k = args.repeat
    stages: dict[str, Stage] = {"generate": gen_stage}

    def step(stage: Stage, i: int, db_to_clear: Path | None = None, total: int = k) -> Run:
        if db_to_clear is not None:
            _fresh(db_to_clear)
        run = measure(stage.command, logs / f"{stage.name}-{i}.log", args.timeout)
        stage.runs.append(run)
        status = "TIMEOUT" if run.timed_out else ("ok" if run.returncode == 0 else f"exit {run.returncode}")
        print(
            f"  {stage.name:<14} run {i + 1}/{total}: {run.seconds:8.2f} s  peak {run.peak_rss_mib or 0:7.0f} MiB  "
            f"load {run.load_1min or 0:4.1f}  {status}",
            flush=True,
        )
        return run

    if "ingest" in stages_wanted or not db.exists():
        ing = stages["ingest"] = Stage("ingest", [*oc, "ingest", "--db", str(db), str(tables)])
        if "ingest" not in stages_wanted:
            ing.note = "run once to create the database (not requested as a stage)"
        if "ingest" in stages_wanted:  # ingest and bare load interleaved: the machine's drift hits both
            bare_db = runs_dir / "bare.duckdb"
            bare = stages["bare_load"] = Stage(
                "bare_load",
                [sys.executable, str(Path(__file__).resolve()), "--bare-load", str(bare_db), str(tables)],
            )
            for i in range(k):
                step(ing, i, db)
                step(bare, i, bare_db)
            _fresh(bare_db)
        else:
            step(ing, 0, db, total=1)
        if not ing.ok_runs:
            raise SystemExit(f"ingest failed; see {logs}")

    if "audit" in stages_wanted:
        aud = stages["audit"] = Stage("audit", [*oc, "audit", "--db", str(db), "--as-of", as_of])
        for i in range(k):
            step(aud, i)
        aud.extra = {"phases_last_run": audit_phases(logs / f"audit-{k - 1}.log")}
        audit_csv = runs_dir / "violations.csv"
        aex = stages["audit_export"] = Stage(
            "audit_export", [*oc, "audit", "--db", str(db), "--as-of", as_of, "--violations", str(audit_csv)]
        )
        aex.note = "the audit with the violations CSV (the README's everyday command)"
        for i in range(k):
            step(aex, i)
        sp_json = runs_dir / "single_pass.json"
        sp = stages["single_pass"] = Stage("single_pass", _single_pass_cmd(db, as_of, sp_json))
        for i in range(k):
            step(sp, i)
        if sp_json.exists():
            res = json.loads(sp_json.read_text())
            sp.extra = {
                "counts_equal_audit": not res["problems"],
                "problems": res["problems"],
                "query_seconds": res["seconds"],
                "seconds_by_table": res["seconds_by_table"],
                "compared_run": res["run_id"],
            }
            sp.note = (
                "counts identical to the audit for every rule"
                if not res["problems"]
                else f"COUNTS DIFFER from the audit: {len(res['problems'])} rule(s)"
            )
        single_pass_export_stage(stages, db, as_of, runs_dir, audit_csv, k, step)
        if not args.skip_gx_pandas:
            for form in [f.strip() for f in args.gx_pandas_forms.split(",") if f.strip()]:
                gx_pandas_stage(stages, form, db, runs_dir, args.gx_pandas_repeat, step)

    if "report" in stages_wanted:
        rep = stages["report"] = Stage(
            "report", [*oc, "report", "--db", str(db), "--out", str(runs_dir / "report.html")]
        )
        for i in range(k):
            step(rep, i)

    if "feedback" in stages_wanted:
        fb_dir = runs_dir / "feedback"
        fb = stages["feedback"] = Stage("feedback", [*oc, "feedback", "--db", str(db), "--out", str(fb_dir)])
        fb.note = "a sheet for every doctor and the index"
        for i in range(k):
            if fb_dir.exists():
                shutil.rmtree(fb_dir)
            step(fb, i)
        fb.extra = {"sheets": sum(1 for _ in fb_dir.glob("*.html")) if fb_dir.exists() else None}

    if "survey" in stages_wanted:
        inst = largest_institution(db)
        sv = stages["survey"] = Stage(
            "survey",
            [
                *oc,
                "survey",
                "ec",
                "--db",
                str(db),
                "--period",
                _period(meta),
                "--institution",
                inst,
                "--out",
                str(runs_dir / "survey"),
            ],
        )
        sv.note = f"one institution's survey (it is per institution): {inst}, the one with most sessions"
        for i in range(k):
            if (runs_dir / "survey").exists():
                shutil.rmtree(runs_dir / "survey")
            step(sv, i)

    if "annual" in stages_wanted:
        an_dir = runs_dir / "annual"
        year = _filing_year(meta)
        an = stages["annual"] = Stage(
            "annual", [*oc, "survey", "annual", "--db", str(db), "--year", str(year), "--out", str(an_dir)]
        )
        an.note = f"the annual report of every institution, filing year {year}"
        for i in range(k):
            if an_dir.exists():
                shutil.rmtree(an_dir)
            step(an, i)

    if "dashboard" in stages_wanted:
        dash = stages["dashboard"] = Stage(
            "dashboard",
            [sys.executable, str(HERE / "dashboard.py"), "--db", str(db), "--repeat", str(k)],
        )
        dash.note = (
            "in-process: imports, first render and rule clicks (medians in the log); the whole process"
        )
        step(dash, 0, total=1)
        log = logs / "dashboard-0.log"
        dash.extra = {"figures": log.read_text(encoding="utf-8").splitlines() if log.exists() else []}

    return {
        "sessions": args.sessions,
        "seed": args.seed,
        "format": args.format,
        "repeat": k,
        "as_of": as_of,
        "duckdb_memory_limit_experiment": args.duckdb_memory_limit,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "data": {
            "counts": meta.get("counts"),
            "bytes": sum(f.stat().st_size for f in tables.iterdir()),
            "db_bytes": db.stat().st_size if db.exists() else None,
        },
        "stages": {n: s.summary() for n, s in stages.items()},
        "ratios": ratios(stages),
        "targets": targets(stages, args.sessions),
    }


def _single_pass_cmd(db: Path, as_of: str, json_out: Path, *extra: str) -> list[str]:
    """``single_pass.py`` on ``db`` compared with its latest run (``extra``: e.g. ``--violations F``)."""
    return [
        sys.executable,
        str(HERE / "single_pass.py"),
        "--db",
        str(db),
        "--as-of",
        as_of,
        "--check-run",
        "latest",
        *extra,
        "--json",
        str(json_out),
    ]


def _sha256(path: Path) -> str | None:
    return sha256_file(path) if path.exists() else None


def single_pass_export_stage(
    stages: dict[str, Stage], db: Path, as_of: str, runs_dir: Path, audit_csv: Path, k: int, step: Any
) -> None:
    """The export limit: single_pass.py with ``--violations`` (counts, then every violation id to
    CSV), ``k`` times; its file must be byte-identical to the last ``audit_export`` run's."""
    sp_csv, sp_json = runs_dir / "single_pass_violations.csv", runs_dir / "single_pass_export.json"
    spx = stages["single_pass_export"] = Stage(
        "single_pass_export", _single_pass_cmd(db, as_of, sp_json, "--violations", str(sp_csv))
    )
    for i in range(k):
        step(spx, i)
    if not sp_json.exists():
        return
    res = json.loads(sp_json.read_text())
    ours, theirs = _sha256(sp_csv), _sha256(audit_csv)
    same = ours is not None and ours == theirs
    spx.extra = {
        "counts_equal_audit": not res["problems"],
        "violations_equal_audit": same,
        "violation_rows": res.get("violation_rows"),
        "violations_sha256": ours,
        "audit_violations_sha256": theirs,
        "query_seconds": res["seconds"],
        "violations_seconds": res.get("violations_seconds"),
    }
    spx.note = (
        f"{res.get('violation_rows')} violation rows, CSV byte-identical to the audit's (SHA-256)"
        if same
        else "VIOLATIONS CSV DIFFERS from the audit's export"
    )


def audit_phases(log: Path) -> dict[str, float]:
    """Seconds since the audit started at each progress line: check tables ready, run store staged
    (strata, violations, DQ), GX done, run stored."""
    out: dict[str, float] = {}
    if not log.exists():
        return out
    text = log.read_text(encoding="utf-8", errors="replace")
    for key, pattern in (
        ("check_tables_ready", r"check tables ready \(([\d.]+) s\)"),
        ("run_store_staged", r"run store staged \(([\d.]+) s\)"),
        ("gx_done", r"GX done \(([\d.]+) s\)"),
        ("run_stored", r"violation record\(s\) in ([\d.]+) s"),
    ):
        m = re.search(pattern, text)
        if m:
            out[key] = float(m.group(1))
    return out


def gx_pandas_stage(
    stages: dict[str, Stage], form: str, db: Path, runs_dir: Path, repeat: int, step: Any
) -> None:
    """The same GX suites on GX's pandas engine over records copied out of DuckDB (one form)."""
    out = runs_dir / f"gx_pandas_{form}.json"
    gp = stages[f"gx_pandas_{form}"] = Stage(
        f"gx_pandas_{form}",
        [sys.executable, str(HERE / "gx_pandas.py"), "--db", str(db), "--form", form, "--json", str(out)],
    )
    _fresh_json(out)
    for i in range(repeat):
        step(gp, i, total=repeat)
    if out.exists():
        res = json.loads(out.read_text())
        gp.extra = {
            "copy_seconds": res["copy_seconds"],
            "validate_seconds": res["validate_seconds"],
            "rows_copied": res["rows"],
            "frame_mib": round(res["frame_bytes"] / 2**20, 1),
            "counts_equal_audit": not res["problems"],
            "problems": res["problems"],
        }
        gp.note = (
            f"copy {res['copy_seconds']:.1f} s + GX validation {res['validate_seconds']:.1f} s, "
            f"{res['rows']:,} rows ({gp.extra['frame_mib']:.0f} MiB); "
            + ("counts identical to the audit" if not res["problems"] else "COUNTS DIFFER")
        )
    elif gp.runs and gp.runs[-1].returncode != 0:
        gp.note = "failed (see its log; a MemoryError means the copied records do not fit in memory)"


def _fresh_json(p: Path) -> None:
    if p.exists():
        p.unlink()


# ----------------------------------------------------------------------------- figures
def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem = round(int(m.group(1)) / 2**20, 1) if m else None
    except OSError:
        pass
    versions = {}
    for mod in ("duckdb", "great_expectations", "pandas", "pyarrow"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing module is just not reported
            versions[mod] = None
    git: dict[str, Any] = {}
    try:
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
        git["uncommitted_toolkit_files"] = [
            line[3:]
            for line in subprocess.run(
                ["git", "status", "--short", "toolkit", "expectations"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.splitlines()
        ]
    except OSError:
        pass
    return {
        "git": git,
        "nproc": os.cpu_count(),
        "memory_gib": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        **versions,
    }


def ratios(stages: dict[str, Stage]) -> dict[str, float | None]:
    """Audit ÷ single pass, ingest ÷ bare load, GX-pandas ÷ audit (speed-up)."""

    def med(n: str) -> float | None:
        return stages[n].median() if n in stages else None

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    out = {
        "audit_over_single_pass": div(med("audit"), med("single_pass")),
        "audit_export_over_single_pass_export": div(med("audit_export"), med("single_pass_export")),
        "ingest_over_bare_load": div(med("ingest"), med("bare_load")),
    }
    for form in ("long", "wide"):
        gp = stages.get(f"gx_pandas_{form}")
        if gp is None:
            continue
        out[f"gx_pandas_{form}_over_audit"] = div(gp.median(), med("audit"))
        if gp.extra:
            out[f"gx_pandas_{form}_copy_plus_validate_over_audit"] = div(
                gp.extra["copy_seconds"] + gp.extra["validate_seconds"], med("audit")
            )
    return out


def targets(stages: dict[str, Stage], sessions: int) -> dict[str, dict[str, Any]]:
    """Each issue-6 target: value, limit, met (the time targets are stated for 10M sessions)."""
    r = ratios(stages)
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, value: float | None, limit: float, higher_is_better: bool = False) -> None:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        out[name] = {"value": value, "limit": limit, "met": met}

    add("audit_seconds", stages["audit"].median() if "audit" in stages else None, TARGETS["audit_seconds"])
    add("audit_over_single_pass", r["audit_over_single_pass"], TARGETS["audit_over_single_pass"])
    add(
        "audit_export_over_single_pass_export",
        r["audit_export_over_single_pass_export"],
        TARGETS["audit_export_over_single_pass_export"],
    )
    add("ingest_over_bare_load", r["ingest_over_bare_load"], TARGETS["ingest_over_bare_load"])
    add(
        "report_seconds", stages["report"].median() if "report" in stages else None, TARGETS["report_seconds"]
    )
    add(
        "survey_seconds", stages["survey"].median() if "survey" in stages else None, TARGETS["survey_seconds"]
    )
    for name, st in stages.items():
        if name in (
            "generate",
            "ingest",
            "audit",
            "audit_export",
            "report",
            "feedback",
            "survey",
            "annual",
            "dashboard",
        ):
            rss = [x.peak_rss_mib for x in st.runs if x.peak_rss_mib is not None]
            add(f"peak_rss_mib.{name}", max(rss, default=None), TARGETS["peak_rss_mib"])
    for form in ("long", "wide"):
        if f"gx_pandas_{form}_over_audit" in r:
            add(
                f"gx_pandas_{form}_speedup",
                r[f"gx_pandas_{form}_over_audit"],
                TARGETS["gx_pandas_speedup"],
                higher_is_better=True,
            )
    for name, v in out.items():
        at = 1_000_000 if name.startswith("gx_pandas") else 10_000_000
        v["scale_note"] = "" if sessions == at else f"target stated at {at // 1_000_000}M sessions"
    return out


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "—" if x is None else format(x, spec)


def print_table(res: dict[str, Any]) -> None:
    """The readable table (what RESULTS.md quotes)."""
    m = res["machine"]
    print(
        f"\nocaudit benchmarks — {res['sessions']:,} sessions (seed {res['seed']}, {res['format']} files), "
        f"{res['repeat']} repeat(s), as of {res['as_of']}"
    )
    print(
        f"machine: {m['nproc']} CPU ({m['cpu']}), {m['memory_gib']} GiB; load average at end "
        f"{m['load_avg_at_end']}; {res['date']}"
    )
    print(
        f"\n| {'stage':<14} | {'median s':>9} | {'min s':>9} | {'max s':>9} | {'peak RSS MiB':>12} | "
        f"{'load':>4} | note"
    )
    print(f"|{'-' * 16}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 14}|{'-' * 6}|------")
    for name, s in res["stages"].items():
        loads = [r["load_1min"] for r in s["runs"] if r["load_1min"] is not None]
        bad = [r for r in s["runs"] if r["timed_out"] or r["returncode"] != 0]
        note = s["note"]
        if bad:
            note = (
                f"{len(bad)} run(s) failed/timed out after {max(r['seconds'] for r in bad):.0f} s; " + note
            ).strip()
        print(
            f"| {name:<14} | {_fmt(s['median_seconds']):>9} | {_fmt(s['min_seconds']):>9} | "
            f"{_fmt(s['max_seconds']):>9} | {_fmt(s['peak_rss_mib'], '.0f'):>12} | "
            f"{_fmt(max(loads) if loads else None, '.1f'):>4} | {note}"
        )
    print("\nratios (medians): " + "   ".join(f"{k} {_fmt(v)}" for k, v in res["ratios"].items()))
    print("\ntargets:")
    for name, t in res["targets"].items():
        met = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        extra = f" ({t['scale_note']})" if t["scale_note"] else ""
        print(f"  {name:<37} {_fmt(t['value']):>9}  limit {t['limit']:<7}  {met}{extra}")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="ocaudit stage benchmarks (see the module docstring)")
    ap.add_argument("--sessions", type=int, help="scale: sessions to generate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs per stage (median, min, max)")
    ap.add_argument(
        "--workdir", default=str(HERE / "work"), help="data cache and databases (default benchmarks/work)"
    )
    ap.add_argument(
        "--stages", default=",".join(ALL_STAGES), help="comma-separated subset of " + ",".join(ALL_STAGES)
    )
    ap.add_argument("--skip-gx-pandas", action="store_true", help="skip the GX-on-pandas comparison")
    ap.add_argument(
        "--gx-pandas-repeat", type=int, default=1, help="runs of the GX-pandas comparison (default 1)"
    )
    ap.add_argument(
        "--gx-pandas-forms",
        default="long,wide",
        help="records GX-pandas validates: long (_audit_rule_checks rows), wide (check tables)",
    )
    ap.add_argument(
        "--timeout", type=float, help="kill a run after this many seconds (recorded as timed out)"
    )
    ap.add_argument(
        "--format",
        choices=sorted(READERS),
        default="parquet",
        help="the files the ingest and the bare load read (csv, jsonl: converted once from the Parquet)",
    )
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="experiment: run ocaudit with DuckDB's memory_limit set to SIZE (e.g. 1GB)",
    )
    ap.add_argument("--bare-load", nargs=2, metavar=("DB", "TABLES_DIR"), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--limited-ocaudit"]:
        return limited_main(argv[1], argv[2:])
    args = ap.parse_args(argv)
    if args.bare_load:
        bare_load(*args.bare_load)
        return 0
    if not args.sessions or args.sessions < 1 or args.repeat < 1:
        ap.error("--sessions N (≥ 1) is required and --repeat must be ≥ 1")
    res = run_benchmarks(args)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"\nfigures: {args.json}")
    sp = res["stages"].get("single_pass", {})
    spx = res["stages"].get("single_pass_export", {})
    differ = sp.get("counts_equal_audit") is False or spx.get("violations_equal_audit") is False
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
