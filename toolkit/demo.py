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

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


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
    audit = ["audit", "--db", db, "--violations", str(out / "violations.csv"), "--json", str(out / "audit.json")]
    if as_of:
        audit += ["--as-of", as_of]
    if (sample / "attestation.yaml").exists():
        audit += ["--attestation", str(sample / "attestation.yaml")]
    cmds.append(audit)
    cmds.append(["report", "--db", db, "--out", str(out / "report.html")])
    cmds.append(["feedback", "--db", db, "--out", str(out / "feedback")])
    cmds.append(["survey", "ec", "--db", db, "--period", "2026-04..2026-09", "--out", str(out / "survey_ec")])
    return cmds


def cli_demo(args) -> int:  # type: ignore[no-untyped-def]
    """Run every demo command; stop at the first that fails with a usage/data error."""
    sample = Path(args.sample) if args.sample else SAMPLE_DIR
    if not sample.is_dir():
        raise UserError(f"{sample}: sample data folder not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for argv in demo_commands(sample, out):
        code = _run(argv)
        if code == 2:
            print(f"\nocaudit demo: stopped, '{argv[0]}' failed (exit 2)")
            return 2
    print(f"\nDemo finished. Open {out / 'report.html'} in a browser; the database is {out / 'ocaudit.duckdb'};"
          f" violations are in {out / 'violations.csv'}; feedback sheets in {out / 'feedback'};"
          f" EC survey tables in {out / 'survey_ec'}.")
    return 0
