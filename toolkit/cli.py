"""Command line: argument parsing only; each command calls one stage module (``mapping init``: ingest).

Exit codes: 0 ok, 1 a report threshold broken (``report``), 2 usage or data error, 3 ``report``
could not check a rule its thresholds cover (incomplete; wins over 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from toolkit import __version__
from toolkit.errors import UserError

EXIT_CODES_HELP = """\
verdict 判定 (first line of audit, report, feedback and notebooks; must-follow rules only):
  適合 compliant          every must rule checked, no violated or not-evidenced record
  不適合 not compliant    every must rule checked, at least one has a finding
  判定不能・未完了 incomplete  a must rule is not evaluable (a table.column is missing) or in error,
                          or a partial run (--rules) left must rules out; findings are listed beside it

exit codes 終了コード:
  0  ok (audit: the audit completed, whatever it found)
  1  report: a threshold was broken (--fail-on found violated / not-evidenced records, --max-rate exceeded)
  2  usage or data error (no database or run, unknown run/institution, bad --period, --rules matching nothing)
  3  report: incomplete -- a rule --fail-on / --max-rate covers could not be checked (not evaluable,
     error, or not in a partial run). 3 wins over 1: "could not check" is never hidden by "violations".
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocaudit",
        description="Audit online medical care (オンライン診療) logs against the MHLW guideline.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ocaudit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "ingest",
        help="load exports into a DuckDB file (取り込み)",
        description=(
            "Load exports into a DuckDB file. A row breaking the contract (missing key, wrong type or "
            "enum, a value out of its range such as days_supply < 1, quantity < 0, 1_000, 'infinity') "
            "is quarantined with the reason; the rest loads. Each contract column no file has is named "
            "with the rules it makes not evaluable; an unknown header close to a contract column gets "
            "'did you mean …?'. For a vendor export with other headers, start a mapping with "
            "`ocaudit mapping init FILE --table T`."
        ),
    )
    s.add_argument("--db", required=True, help="DuckDB file to create or update")
    s.add_argument("source", help="folder (or one file) holding contract tables")
    s.add_argument(
        "--mapping",
        help="YAML mapping of vendor columns/values/date formats (skeleton: ocaudit mapping init)",
    )
    s.add_argument(
        "--encoding",
        help="force the CSV encoding (utf-8, utf-8-sig, cp932; default: detected); rows malformed "
        "under it get a hint naming the encoding that decodes the file",
    )

    s = sub.add_parser(
        "mapping",
        help="vendor mapping files (マッピング): write a skeleton to start from",
        description="Vendor mapping files: `mapping init` writes a commented skeleton from a file's header.",
    )
    msub = s.add_subparsers(dest="mapping_command", required=True)
    mi = msub.add_parser(
        "init",
        help="write a commented mapping.yaml skeleton from a vendor file's header",
        description=(
            "Write a commented mapping.yaml (mode 0600) listing every header of FILE: the contract "
            "column it most likely is (other candidates, closest first, in a comment; Japanese header "
            "words such as 患者ID, 開始日時, 処方日数 are recognised), direct identifiers under drop:, "
            "and headers with no close column commented out. It is a skeleton to review, not a "
            "finished mapping. Only header names are read, never values."
        ),
    )
    mi.add_argument("file", help="one vendor export (.csv, .csv.gz, .parquet, .jsonl)")
    mi.add_argument("--table", help="contract table the file holds (default: from the file name)")
    mi.add_argument("--out", default="mapping.yaml", help="mapping file to write (default: mapping.yaml)")
    mi.add_argument("--encoding", help="force the CSV encoding (utf-8, utf-8-sig, cp932; default: detected)")
    mi.add_argument("--force", action="store_true", help="replace --out if it exists")

    s = sub.add_parser("generate", help="write a synthetic data set with known violations")
    s.add_argument("--sessions", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    s.add_argument(
        "--violation-rate",
        type=float,
        default=0.02,
        help="fraction of in-scope records that get an injected violation per rule",
    )
    s.add_argument("--clean", action="store_true", help="inject no violations")

    s = sub.add_parser(
        "audit",
        help="run the rule catalogue (監査)",
        epilog="A run made with --rules is stored as partial (部分実行): report, feedback and notebooks "
        "show it only when asked for with --run. Prints the verdict first; not-evaluable rules name the "
        "missing table.column.\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--db", required=True)
    s.add_argument(
        "--violations", help="write the violations here: CSV, or Parquet when the name ends in .parquet"
    )
    s.add_argument("--json", help="write the per-rule summary JSON here")
    s.add_argument(
        "--rules",
        help="only rules whose id matches these globs, comma-separated, e.g. 'ec.*,consent.recorded'; "
        "every pattern must match a rule (else exit 2); the run is stored as partial",
    )
    s.add_argument(
        "--as-of",
        help="date time-dependent rules are judged at (YYYY-MM-DD; default today); "
        "a date before all sessions gets a warning",
    )
    s.add_argument("--attestation", help="attestation checklist YAML filled in by the institution")
    s.add_argument(
        "--quiet", action="store_true", help="print only the verdict line and the paths written (for cron)"
    )

    s = sub.add_parser(
        "report",
        help="self-contained HTML compliance report (報告書)",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--db", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--run", help="audit run id (default: the latest complete run; a partial run only by id)")
    s.add_argument("--institution", help="only this institution")
    s.add_argument("--period", help="YYYY-MM..YYYY-MM")
    s.add_argument(
        "--fail-on",
        choices=("must", "should", "none"),
        default="none",
        help="exit 1 when a must (should: must or should) rule has violated or not-evidenced records; "
        "exit 3 when such a rule could not be checked (default none)",
    )
    s.add_argument(
        "--max-rate",
        action="append",
        default=[],
        metavar="RULE=RATE",
        help="fail (exit 1) when a rule's non-compliance rate exceeds RATE; exit 3 when it could not be checked",
    )
    s.add_argument(
        "--except",
        dest="except_states",
        action="append",
        choices=("justified",),
        default=[],
        help="--except justified: findings whose review mark is justified (正当な例外) are left out of the "
        "--fail-on and --max-rate checks (exit code only; they still count in every rate shown)",
    )

    s = sub.add_parser("feedback", help="per-doctor feedback sheets (フィードバック)")
    s.add_argument("--db", required=True)
    s.add_argument("--doctor", help="one doctor id (default: every doctor)")
    s.add_argument("--out", required=True, help="output file (one doctor) or folder (all)")
    s.add_argument("--run", help="audit run id (default: the latest complete run; a partial run only by id)")

    s = sub.add_parser(
        "review",
        help="review marks on findings (指摘の確認): Excel export and import",
        description="Mark findings open / acknowledged / corrected / justified (未対応・確認中・訂正済み・正当な例外). "
        "Marks are kept append-only in the DuckDB file; reports and feedback sheets show them per rule.",
    )
    rsub = s.add_subparsers(dest="review_command", required=True)
    rx = rsub.add_parser(
        "export",
        help="write a run's findings with their marks and empty new-state columns (.xlsx)",
        description="Write one run's findings (ids only) with their current review mark and empty "
        "new_state / new_note / new_marked_by columns, formula-safe, mode 0600.",
    )
    rx.add_argument("--db", required=True)
    rx.add_argument("--out", required=True, help="Excel file to write (e.g. marks.xlsx)")
    rx.add_argument("--rule", help="only rules matching this glob, e.g. 'ec.*'")
    rx.add_argument(
        "--state",
        help="only findings in these current states, comma-separated: open, acknowledged, corrected, "
        "justified, still_present (marked corrected but still flagged)",
    )
    rx.add_argument("--run", help="audit run id (default: the latest complete run)")
    ri = rsub.add_parser(
        "import",
        help="apply a filled-in review sheet (every row validated; all or nothing)",
        description="Apply the rows of a review sheet whose new_state is filled in. Every row is "
        "validated; a bad row (unknown rule or record, a record never flagged, a bad state or change, "
        "a finding marked by someone else since the export) is reported by sheet row and nothing is "
        "applied, unless --skip-bad.",
    )
    ri.add_argument("--db", required=True)
    ri.add_argument("sheet", help="the .xlsx written by `ocaudit review export`, filled in")
    ri.add_argument("--skip-bad", action="store_true", help="apply the good rows and list the bad ones")
    ri.add_argument(
        "--by", help="reviewer name or staff id for rows with an empty new_marked_by (no patient data)"
    )

    s = sub.add_parser("survey", help="MHLW-style surveys (実態調査)")
    ssub = s.add_subparsers(dest="survey_command", required=True)
    e = ssub.add_parser("ec", help="emergency contraception from first online visits")
    e.add_argument("--db", required=True)
    e.add_argument("--period", required=True, help="YYYY-MM..YYYY-MM")
    e.add_argument("--out", required=True)
    e.add_argument("--threshold", type=int, default=10, help="suppress counts below this (default 10)")
    e.add_argument(
        "--institution",
        help="one institution id (default: one package per institution of the period, plus their merged tables)",
    )
    a = ssub.add_parser(
        "annual",
        help="annual report to the Regional Bureau (情報通信機器を用いた診療に係る報告書, filed each August)",
    )
    a.add_argument("--db", required=True)
    a.add_argument(
        "--year", required=True, help="year of the August it is filed (2026 = 2025-08-01..2026-07-31)"
    )
    a.add_argument("--institution", help="one institution id (default: every institution, one sheet each)")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--chart", action="store_true", help="also draw the twelve months as an SVG chart")
    m = ssub.add_parser("merge", help="combine institutions' aggregate packages")
    m.add_argument("packages", nargs="+")
    m.add_argument("--out", required=True)
    m.add_argument("--threshold", type=int, default=10)

    s = sub.add_parser(
        "dashboard",
        help="interactive dashboard in the browser (ダッシュボード), served by Voilà on 127.0.0.1",
        description="Serve notebooks/00_dashboard.ipynb with Voilà (no code shown) on 127.0.0.1 only and "
        "print the URL. Needs the notebooks extra: pip install 'ocaudit[notebooks]'.",
    )
    s.add_argument("--db", required=True, help="DuckDB file with at least one complete audit run")
    s.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default 8866)")
    s.add_argument("--no-browser", action="store_true", help="do not open a browser; only print the URL")

    s = sub.add_parser("demo", help="generate nothing; ingest sample_data, audit and report")
    s.add_argument("--out", default="demo_out")
    s.add_argument("--sample", default=None, help="sample data folder (default: shipped sample_data)")
    return p


def skip_slow_optional_imports() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` in this process (≈ 1.3 s at every start).

    jsonschema, which GX and Altair import, loads ``rfc3987_syntax`` when it is installed (Jupyter's
    ``jsonschema[format-nongpl]`` installs it) for its optional ``iri``/``iri-reference`` format
    checkers, and that module builds a Lark grammar at import time
    (python-jsonschema/jsonschema#1428). Neither GX nor Altair checks those formats; marking the
    module absent makes jsonschema leave the two checkers out. Only the ``ocaudit`` command does
    this: notebooks and other programs are untouched.
    """
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def console() -> int:
    """The ``ocaudit`` console script: :func:`main` on ``sys.argv``, without the slow optional import."""
    skip_slow_optional_imports()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ocaudit`` command (``argv`` defaults to ``sys.argv[1:]``); the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"ocaudit: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # store errors (busy, schema) are user-facing too
        from toolkit.store import DatabaseBusyError, SchemaVersionError, describe_storage_error

        if isinstance(exc, (DatabaseBusyError, SchemaVersionError)):
            db = getattr(args, "db", None)
            text = str(exc)
            if db is not None and not text.startswith(str(db)):
                text = f"{db}: {text}"  # name the file the message is about
            print(f"ocaudit: error: {text}", file=sys.stderr)
            return 2
        msg = describe_storage_error(exc, getattr(args, "db", None))
        if msg:  # disk full, read-only file system, permission denied: the path and what to do
            print(f"ocaudit: error: {msg}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("ocaudit: interrupted; the database is as it was before this command.", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd == "ingest":
        from toolkit.ingest import run as ingest

        return ingest.cli_ingest(args)
    if cmd == "mapping":
        from toolkit.ingest import skeleton

        return skeleton.cli_mapping_init(args)
    if cmd == "generate":
        from toolkit.synth import generate

        return generate.cli_generate(args)
    if cmd == "audit":
        from toolkit.audit import run as audit

        return audit.cli_audit(args)
    if cmd == "report":
        from toolkit.report import html as report

        return report.cli_report(args)
    if cmd == "feedback":
        from toolkit.report import feedback

        return feedback.cli_feedback(args)
    if cmd == "review":
        from toolkit.review import sheet

        if args.review_command == "export":
            return sheet.cli_review_export(args)
        return sheet.cli_review_import(args)
    if cmd == "survey":
        from toolkit.survey import run as survey

        if args.survey_command == "annual":
            from toolkit.survey import annual

            return annual.cli_survey_annual(args)
        if args.survey_command == "ec":
            return survey.cli_survey_ec(args)
        return survey.cli_survey_merge(args)
    if cmd == "dashboard":
        from toolkit.dashboard import serve

        return serve.cli_dashboard(args)
    if cmd == "demo":
        from toolkit import demo

        return demo.cli_demo(args)
    raise UserError(f"unknown command {cmd!r}")


if __name__ == "__main__":
    raise SystemExit(main())
