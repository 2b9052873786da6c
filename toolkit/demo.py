"""``ocaudit demo`` (what ``make demo`` runs): the main job end to end on the shipped sample data.

It runs the same commands a user would type — ingest, audit, report, feedback, EC survey —
printing each one first, into a fresh output folder. Running it twice shows idempotent
re-ingest and a second audit run to compare with the first.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from toolkit.errors import UserError
from toolkit.resources import sample_dir
from toolkit.store.files import make_dirs


def _run(argv: list[str]) -> int:
    from toolkit.cli import main

    print(f"\n$ ocaudit {shlex.join(argv)}", flush=True)
    return main(argv)


def demo_commands(sample: Path, out: Path) -> list[list[str]]:
    """The command lines the demo runs, in order."""
    db = str(out / "ocaudit.duckdb")
    gen = sample / "generation.json"
    as_of = json.loads(gen.read_text(encoding="utf-8")).get("as_of") if gen.exists() else None
    cmds = [["ingest", "--db", db, str(sample)]]
    vendor = sample / "vendor_medilink"
    if (vendor / "mapping.yaml").exists():
        cmds.append(["ingest", "--db", db, str(vendor), "--mapping", str(vendor / "mapping.yaml")])
    audit = [
        "audit",
        "--db",
        db,
        "--violations",
        str(out / "violations.csv"),
        "--json",
        str(out / "audit.json"),
    ]
    if as_of:
        audit += ["--as-of", as_of]
    if (sample / "attestation.yaml").exists():
        audit += ["--attestation", str(sample / "attestation.yaml")]
    cmds.append(audit)
    cmds.append(["report", "--db", db, "--out", str(out / "report.html")])
    cmds.append(["feedback", "--db", db, "--out", str(out / "feedback")])
    return cmds


def survey_commands(db: Path, out: Path, period: str = "2026-04..2026-09") -> list[list[str]]:
    """One EC survey per institution in the database, then the survey office's merge of the packages."""
    from toolkit import store

    con = store.connect(db, read_only=True)
    try:
        insts = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT institution_id FROM sessions WHERE institution_id IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
    finally:
        con.close()
    cmds = [
        [
            "survey",
            "ec",
            "--db",
            str(db),
            "--period",
            period,
            "--institution",
            i,
            "--out",
            str(out / "survey_ec" / i),
        ]
        for i in insts
    ]
    cmds.append(
        [
            "survey",
            "merge",
            *[str(out / "survey_ec" / i / "package") for i in insts],
            "--out",
            str(out / "survey_ec" / "merged"),
        ]
    )
    return cmds


def annual_commands(db: Path, out: Path, year: int = 2026) -> list[list[str]]:
    """The annual report to the Regional Bureau (情報通信機器を用いた診療に係る報告書), every institution."""
    return [
        [
            "survey",
            "annual",
            "--db",
            str(db),
            "--year",
            str(year),
            "--out",
            str(out / "annual_report"),
            "--chart",
        ]
    ]


def cli_demo(args) -> int:  # type: ignore[no-untyped-def]
    """Run every demo command; stop at the first that fails with a usage/data error."""
    sample = Path(args.sample) if args.sample else sample_dir()
    if not sample.is_dir():
        raise UserError(f"{sample}: sample data folder not found")
    out = Path(args.out)
    make_dirs(out, fix_existing=True)
    for argv in demo_commands(sample, out):
        code = _run(argv)
        if code == 2:
            print(f"\nocaudit demo: stopped, '{argv[0]}' failed (exit 2)")
            return 2
    for argv in survey_commands(out / "ocaudit.duckdb", out):
        if _run(argv) == 2:
            print(f"\nocaudit demo: stopped, 'survey {argv[1]}' failed (exit 2)")
            return 2
    for argv in annual_commands(out / "ocaudit.duckdb", out):
        if _run(argv) == 2:
            print("\nocaudit demo: stopped, 'survey annual' failed (exit 2)")
            return 2
    print(
        f"\nDemo finished. Open {out / 'report.html'} in a browser; the database is {out / 'ocaudit.duckdb'};"
        f" violations are in {out / 'violations.csv'}; feedback sheets in {out / 'feedback'};"
        f" EC survey tables per institution and merged in {out / 'survey_ec'};"
        f" the annual report (情報通信機器を用いた診療に係る報告書) in {out / 'annual_report'}."
    )
    return 0
