"""Where a command's time goes: every SQL statement of an in-process audit or ingest, timed.

    python benchmarks/statements.py audit  --db FILE --as-of 2026-11-15 [--top 5] [--violations out.csv]
                                           [--partitions N]
    python benchmarks/statements.py ingest --db NEW_FILE --source SOURCE_DIR [--top 5]

The command runs in this process exactly as ``ocaudit audit`` / ``ocaudit ingest`` would, with
``toolkit.store.connect`` wrapped so that every ``execute`` on the connections it returns is timed
(the statement's text, its wall time until it returned). A statement that returns a result is timed
until DuckDB has produced it (``execute`` runs the query; fetching the rows afterwards is cheap for
these statements). GX's own connection is not wrapped: its validations show up as one phase.

It prints the phases (the command's progress lines, with their times), the ``--top`` costliest
statements (seconds, share of the wall time, the first words of the SQL) and the total time inside
timed statements. Nothing here asserts a time. Peak RSS is this process's high-water mark (VmHWM);
each statement is also given the highest RSS sampled (every 0.1 s) while it ran, and the three that
ran at the highest RSS are listed, to show which step sets the peak.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit import store  # noqa: E402

#: (seconds, statement text, highest RSS in MiB sampled while it ran) of every timed statement
TIMED: list[tuple[float, str, float]] = []


class RssSampler(threading.Thread):
    """This process's resident set size (VmRSS), read every ``interval`` seconds in the background.

    :meth:`window_peak` gives the highest value seen since the last :meth:`start_window`, so each
    statement can be given the memory it was running at (a statement shorter than the interval may
    show the RSS of the one before)."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)  # sampling until the process ends
        self.interval = interval
        self.peak = 0.0

    def run(self) -> None:
        """Sample every :attr:`interval` seconds."""
        while True:
            time.sleep(self.interval)
            self.peak = max(self.peak, _status_mib("VmRSS:"))

    def start_window(self) -> None:
        """Start a new window: its peak is the RSS now."""
        self.peak = _status_mib("VmRSS:")

    def window_peak(self) -> float:
        """The highest RSS (MiB) sampled since :meth:`start_window`, the current one included."""
        return max(self.peak, _status_mib("VmRSS:"))


SAMPLER = RssSampler()


class TimedConnection:
    """A DuckDB connection whose ``execute`` is timed; everything else is the connection's own."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        """``con.execute``, timed into :data:`TIMED` with the peak RSS sampled while it ran."""
        t = time.perf_counter()
        SAMPLER.start_window()
        try:
            self._con.execute(sql, *args, **kwargs)
        finally:
            TIMED.append((time.perf_counter() - t, sql, SAMPLER.window_peak()))
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _wrap_connect() -> None:
    from toolkit.ingest import run as ingest_run

    real = store.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        return TimedConnection(real(*args, **kwargs))

    store.connect = connect  # type: ignore[assignment]
    ingest_run.connect = connect  # type: ignore[assignment]  # imported by name there


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (``VmHWM:``, ``VmRSS:``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _hwm_mib() -> float:
    return _status_mib("VmHWM:")


def _label(sql: str, width: int = 150) -> str:
    text = re.sub(r"\s+", " ", sql).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


class _Stamped(io.TextIOBase):
    """stderr with the seconds since start in front of each progress line."""

    def __init__(self, t0: float, lines: list[tuple[float, str]]) -> None:
        self.t0, self.lines, self.buf = t0, lines, ""

    def write(self, s: str) -> int:
        self.buf += s
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if line.strip():
                self.lines.append((time.perf_counter() - self.t0, line.strip()))
        return len(s)


def main() -> None:
    """Parse the arguments, run the command with timed statements and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["audit", "ingest"])
    ap.add_argument("--db", required=True)
    ap.add_argument("--as-of", help="audit: the as-of date (YYYY-MM-DD)")
    ap.add_argument("--violations", help="audit: also write the violations export here")
    ap.add_argument("--source", help="ingest: the folder or file to load")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument(
        "--partitions", type=int, help="audit: fix the number of parts (default: the memory cap's)"
    )
    args = ap.parse_args()
    _wrap_connect()
    SAMPLER.start()
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(_Stamped(t0, lines)), contextlib.redirect_stdout(io.StringIO()):
        if args.command == "audit":
            from toolkit.audit import export, run

            result = run.run_audit(
                args.db,
                as_of=dt.date.fromisoformat(args.as_of) if args.as_of else None,
                partitions=args.partitions,
            )
            if args.violations:
                t = time.perf_counter()
                export.export_violations(args.db, result.run_id, args.violations)
                lines.append(
                    (time.perf_counter() - t0, f"violations written ({time.perf_counter() - t:.1f} s)")
                )
        else:
            from toolkit.ingest import run as ingest_run

            ingest_run.ingest_source(args.db, args.source, out=lambda line: print(line, file=sys.stderr))
    wall = time.perf_counter() - t0
    print(f"{args.command} of {args.db}: {wall:.1f} s wall, peak RSS {_hwm_mib():.0f} MiB")
    print("\nphases (seconds since start: progress line)")
    for at, line in lines:
        print(f"  {at:7.1f}  {_label(line, 120)}")
    timed = sum(s for s, _, _ in TIMED)
    print(f"\n{len(TIMED)} statements timed, {timed:.1f} s in all ({timed / wall:.0%} of the wall time)")
    print(
        f"\nthe {args.top} costliest statements (peak: the highest RSS sampled while it ran)\n\n"
        "| s | share | peak MiB | statement |\n|---:|---:|---:|---|"
    )
    for seconds, sql, peak in sorted(TIMED, key=lambda x: -x[0])[: args.top]:
        print(f"| {seconds:.1f} | {seconds / wall:.0%} | {peak:.0f} | `{_label(sql).replace('|', '/')}` |")
    print(
        f"\nthe {min(3, len(TIMED))} statements that ran at the highest RSS\n\n"
        "| peak MiB | s | statement |\n|---:|---:|---|"
    )
    for seconds, sql, peak in sorted(TIMED, key=lambda x: -x[2])[:3]:
        print(f"| {peak:.0f} | {seconds:.1f} | `{_label(sql).replace('|', '/')}` |")


if __name__ == "__main__":
    main()
