"""Input limits of ingest (issue 15): files seen twice, non-regular files, oversized fields,
encoding detection on a few bad bytes, id whitespace and look-alike ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.bad_inputs.make_corpus import write_huge_field_csv
from tests.ingest_helpers import balanced, rows, run, write
from toolkit.audit.dq import run_dq_checks
from toolkit.errors import UserError
from toolkit.ingest import discover as discover_mod
from toolkit.ingest import readers as rd
from toolkit.ingest.run import cli_ingest

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ item 1: a file seen twice
def _parquet_with_latest(src: Path) -> None:
    d = src / "sessions"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"session_id": ["S1", "S2"], "patient_id": ["P1", "P2"]}), d / "2026-09.parquet")
    (d / "latest.parquet").symlink_to("2026-09.parquet")


def test_direct_cleanup_cannot_delete_the_first_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if discovery let both names through, the direct load keeps one copy of every row."""
    _parquet_with_latest(tmp_path / "src")
    monkeypatch.setattr(discover_mod, "_read_once", lambda found: found.files)
    summary, _ = run(tmp_path / "x.duckdb", tmp_path / "src")
    assert summary.ok
    assert rows(tmp_path / "x.duckdb", "SELECT session_id FROM sessions ORDER BY 1") == [("S1",), ("S2",)]


def test_hard_link_is_read_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "access_log" / "a.csv", "session_id,at,event,actor\nS1,2026-04-01T09:00:00,join,doctor\n")
    os.link(src / "access_log" / "a.csv", src / "access_log" / "b.csv")
    summary, printed = run(tmp_path / "x.duckdb", src)
    assert summary.tables["access_log"].read == 1
    assert "skipped access_log/b.csv: the same file as access_log/a.csv (a hard link to it)" in printed


# ------------------------------------------------------------------ item 8: FIFOs, devices, dangling links
def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _to_device(p: Path) -> None:
    p.symlink_to("/dev/zero")


def _dangling(p: Path) -> None:
    p.symlink_to(p.parent / "missing.csv")


SPECIAL = [
    ("fifo", _fifo, "is a FIFO (named pipe), not a regular file"),
    ("device-link", _to_device, "is a symlink to a character device, not a regular file"),
    ("dangling-link", _dangling, "is a symlink to a missing file, not a regular file"),
]


@pytest.mark.parametrize(("name", "make", "message"), SPECIAL, ids=[s[0] for s in SPECIAL])
def test_special_file_in_source_is_refused(
    name: str, make: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "patient_id,sex\nP1,female\n")
    make(src / "sessions_2026.csv")  # type: ignore[operator]
    code = cli_ingest(SimpleNamespace(db=str(tmp_path / "x.duckdb"), source=str(src)))
    err = capsys.readouterr().err
    assert code == 2
    assert "sessions_2026.csv" in err and message in err
    assert rows(tmp_path / "x.duckdb", "SELECT count(*) FROM patients") == [(1,)]  # the rest loaded


def test_special_file_not_named_like_data_is_only_noted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "patients.csv", "patient_id,sex\nP1,female\n")
    os.mkfifo(src / "notes.txt")
    summary, printed = run(tmp_path / "x.duckdb", src)
    assert summary.ok
    assert "ignored notes.txt (a FIFO (named pipe), not a data file)" in printed


def test_special_source_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "sessions.csv")
    with pytest.raises(UserError, match="SOURCE is a FIFO"):
        run(tmp_path / "x.duckdb", tmp_path / "sessions.csv")


# ------------------------------------------------------------------ item 2: oversized fields
MIB = 1 << 20
HEAD = b"session_id,kind\n"
OVERSIZE = [
    # name, file bytes, (format), loaded ids with their lines, quarantined lines
    (
        "unquoted-field",
        HEAD + b"S0,online_care\nS1," + b"A" * (MIB + 1) + b"\nS2,online_care\n",
        "csv",
        [("S0", 2), ("S2", 4)],
        [3],
    ),
    (
        "field-at-the-limit-loads",
        HEAD + b"S1,online_care\nS2," + b"A" * (MIB - 1) + b"\nS3,online_care\n",
        "csv",
        [("S1", 2), ("S3", 4)],
        [3],  # loaded as a row, then quarantined for its enum value (not for its size)
    ),
    (
        "quoted-multiline-field",
        HEAD + b'S0,online_care\n"S1","' + b"B\n" * (MIB // 2 + 10) + b'"\nS2,online_care\n',
        "csv",
        [("S0", 2), ("S2", MIB // 2 + 14)],
        [3],
    ),
    (
        "last-record-without-newline",
        HEAD + b"S0,online_care\nS1,x\n\nS2," + b"C" * (2 * MIB),
        "csv",
        [("S0", 2)],
        [3, 5],
    ),
    (
        "record-over-8-mib",
        HEAD.replace(b"kind", b"kind,x1,x2,x3,x4,x5,x6,x7,x8,x9")
        + b"S1,"
        + b",".join([b"D" * (MIB - 10)] * 10)
        + b"\nS2,online_care,,,,,,,,,\n",
        "csv",
        [("S2", 3)],
        [2],
    ),
    (
        "jsonl-line",
        b'{"session_id": "S0", "at": "2026-04-01T09:00:00", "event": "join", "actor": "doctor"}\n'
        b'{"session_id": "S1", "at": "' + b"E" * (MIB + 5) + b'"}\n'
        b'{"session_id": "S2", "at": "2026-04-01T09:00:00", "event": "join", "actor": "doctor"}\n',
        "jsonl",
        [("S0", 1), ("S2", 3)],
        [2],
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "fmt", "loaded", "quarantined"), OVERSIZE, ids=[o[0] for o in OVERSIZE]
)
def test_oversized_record_is_quarantined_by_line(
    name: str, data: bytes, fmt: str, loaded: list, quarantined: list, tmp_path: Path
) -> None:
    table = "access_log" if fmt == "jsonl" else "sessions"
    src = tmp_path / f"{table}.{fmt}"
    src.write_bytes(data)
    db = tmp_path / "x.duckdb"
    summary, _ = run(db, src)
    assert summary.ok, summary.errors
    assert balanced(summary)
    c = summary.tables[table]
    assert c.read == len(loaded) + len(quarantined)
    assert rows(db, f"SELECT session_id, _line_number FROM {table} ORDER BY 2") == loaded
    q = rows(db, "SELECT line_number, reason, raw_row FROM quarantine ORDER BY 1")
    assert [r[0] for r in q] == quarantined
    for _line, reason, raw in q:
        if reason.startswith(rd.OVERSIZE_REASON):
            assert len(raw) < 1000  # the field itself is not stored


def test_oversized_header_refuses_the_file(tmp_path: Path) -> None:
    src = write(tmp_path / "sessions.csv", "session_id," + "h" * (MIB + 1) + "\nS1,x\n")
    summary, _ = run(tmp_path / "x.duckdb", src)
    assert len(summary.errors) == 1 and "the header line is longer than the limit" in summary.errors[0]


def test_scan_text_flags_only_long_lines(tmp_path: Path) -> None:
    ok = tmp_path / "ok.csv"
    ok.write_bytes((b"x" * 1000 + b"\n") * 3000)  # 3 MB of short lines
    long = tmp_path / "long.csv"
    long.write_bytes(b"a\n" + b"x" * (MIB + 1) + b"\nb")
    assert rd.scan_text(ok, False) == rd.TextScan(lines=3000, suspicious=False)
    assert rd.scan_text(long, False) == rd.TextScan(lines=3, suspicious=True)


@pytest.mark.slow
def test_huge_field_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """The issue's case at 512 MiB (the 2 GiB run is measured in docs/security.md): counted, bounded."""
    size = 512 * MIB
    write_huge_field_csv(tmp_path / "sessions.csv", size)
    db = tmp_path / "x.duckdb"
    script = textwrap.dedent(f"""
        import json, sys
        from toolkit.ingest.run import ingest_source
        s = ingest_source({str(db)!r}, {str(tmp_path / "sessions.csv")!r}, out=lambda line: None)
        c = s.tables["sessions"]
        # VmHWM is this process's own peak; ru_maxrss would also count the pytest worker it was
        # spawned from (Linux keeps the pre-exec high-water mark across vfork + exec)
        hwm_kb = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
        rss = hwm_kb // 1024
        print(json.dumps([c.read, c.loaded, c.quarantined, rss]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    read, loaded, quarantined, rss_mib = json.loads(out.stdout.strip().splitlines()[-1])
    assert (read, loaded, quarantined) == (2, 1, 1)
    assert rss_mib < 400, f"peak RSS {rss_mib} MiB for a {size >> 20} MiB field"
    assert rows(db, "SELECT session_id, _line_number FROM sessions") == [("S2", 3)]
    ((line, reason),) = rows(db, "SELECT line_number, reason FROM quarantine")
    assert line == 2 and f"holds {size} bytes" in reason


# ------------------------------------------------------------------ item 6: encodings
@pytest.mark.parametrize(
    ("text", "japanese"),
    [
        ("テスト病院,東京都,有,無", True),
        ("第二病院,はい,いいえ,１３", True),
        ("東京クリニック".encode().decode("cp932"), False),  # UTF-8 read as CP932: 譚ｱ莠ｬ繧ｯ…
        ("OsakaA", False),  # no Japanese at all
        ("ｶﾀｶﾅﾃﾞｽ", False),  # half-width katakana only
    ],
)
def test_reads_as_japanese(text: str, japanese: bool) -> None:
    assert rd.reads_as_japanese(text) is japanese


def test_stray_byte_in_utf8_is_refused_without_cp932_hint(tmp_path: Path) -> None:
    body = "institution_id,name\n" + "".join(f"I{i},東京クリニック\n" for i in range(50))
    src = tmp_path / "institutions.csv"
    src.write_bytes(body.encode() + b"I99,Osaka\x8aA\n")
    summary, _ = run(tmp_path / "x.duckdb", src)
    (err,) = summary.errors
    assert "valid UTF-8 except 1 invalid byte sequence(s)" in err and "(line 52)" in err
    assert "--encoding cp932" not in err


def test_stray_byte_after_the_sample_quarantines_that_line_with_its_offset(tmp_path: Path) -> None:
    body = ("institution_id,name\n" + "".join(f"I{i},東京クリニック\n" for i in range(60000))).encode()
    src = tmp_path / "institutions.csv"
    src.write_bytes(body + b"IX,Osaka\x8aA\nIY,ok\n")
    db = tmp_path / "x.duckdb"
    summary, _ = run(db, src)
    assert summary.ok and summary.tables["institutions"].quarantined == 1
    ((line, reason),) = rows(db, "SELECT line_number, reason FROM quarantine")
    assert line == 60002
    assert f"invalid UTF-8 byte at byte offset {len(body) + 8}" in reason


# ------------------------------------------------------------------ item 7: ids
def test_ids_are_stripped_and_lookalikes_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(
        src / "patients.csv",
        "patient_id,sex\nP1,female\nＰ１,female\nP1\u200b,male\n\u200fP1,male\nP2,male\n",
    )
    write(
        src / "sessions.csv",
        "session_id,patient_id,kind\n S1 ,\u3000P2\u00a0,online_care\nS2,P1\u200b,online_care\n",
    )
    db = tmp_path / "x.duckdb"
    summary, _ = run(db, src)
    assert summary.ok
    assert rows(db, "SELECT session_id, patient_id FROM sessions ORDER BY 1") == [
        ("S1", "P2"),
        ("S2", "P1\u200b"),
    ]
    con = duckdb.connect(str(db), read_only=True)
    try:
        dq = {(r[0], r[1]): r for r in run_dq_checks(con, {"patients", "sessions"})}
    finally:
        con.close()
    check = dq[("dq.lookalike_ids", "patients")]
    assert check[4] == 4  # P1, Ｐ１, P1+ZWSP, RLM+P1: one group of four ids, kept apart
    assert "'P1\\u200b'" in check[5] and check[2].startswith("Ids that differ only by width")
    assert dq[("dq.lookalike_ids", "sessions")][4] == 0


# ------------------------------------------------------------------ files larger than the memory cap
def test_jsonl_in_pieces_stages_what_one_piece_stages(tmp_path: Path) -> None:
    """A JSON Lines file read in small pieces gives the staged lines that one read gives: the same
    line numbers, texts and verdicts (BOM, CRLF, blank and broken lines, no final line break), and
    every piece is deleted afterwards."""
    lines = ["\ufeff" + json.dumps({"session_id": "S0", "event": "join"})]
    for i in range(1, 400):
        lines.append(
            ""
            if i % 37 == 0
            else "   "
            if i % 41 == 0
            else "{broken"
            if i % 53 == 0
            else json.dumps({"session_id": f"S{i}"})
        )
    path = tmp_path / "access_log.jsonl"
    path.write_bytes(("\r\n".join(lines[:200]) + "\n" + "\n".join(lines[200:])).encode())  # no final break
    pieces = tmp_path / "pieces"
    pieces.mkdir()
    con = duckdb.connect()
    staged = {}
    for piece_bytes in (10**9, 4096, 300):
        keys = rd.stage_jsonl(con, path, "t", pieces, piece_bytes=piece_bytes)
        staged[piece_bytes] = (keys, con.execute("SELECT _line, _txt, _ok FROM t ORDER BY _line").fetchall())
        assert list(pieces.iterdir()) == []
    assert len(list(rd.jsonl_pieces(path, pieces, 300))) > 20  # the small sizes really were pieces
    assert staged[4096] == staged[300] == staged[10**9]
    keys, got = staged[300]
    assert keys == ["session_id", "event"]
    assert got[0] == (1, lines[0].lstrip("\ufeff"), True) and got[-1] == (400, lines[399], True)
    assert (54, "{broken", False) in got and all(line not in (38, 42) for line, _, _ in got)
    assert len(got) == 400 - len([i for i in range(1, 400) if i % 37 == 0 or i % 41 == 0])


def test_jsonl_staging_trims_only_what_it_should(tmp_path: Path) -> None:
    """Each staged line: BOM gone from line 1 only, every final CR gone, lines blank after DuckDB's
    trim (spaces, U+3000) dropped but counted, leading spaces or a tab kept, and the verdict JSON
    object or not. The staging calls the trim functions only where they can change the answer."""
    raw = (
        b'\xef\xbb\xbf{"a":1}\r\n\r\n   \r\n\xe3\x80\x80\n  {"a":2}\n\t{"a":3}\r\r\n{"a":\n[1]\n'
        b'"x"\n \xc2\xa0{"b":1} \n{"c":"\r"}\r\n\n\xef\xbb\xbf{"z":9}'
    )
    path = tmp_path / "access_log.jsonl"
    path.write_bytes(raw)
    con = duckdb.connect()
    rd.stage_jsonl(con, path, "t", tmp_path)
    assert con.execute("SELECT _line, _txt, _ok FROM t ORDER BY _line").fetchall() == [
        (1, '{"a":1}', True),
        (5, '  {"a":2}', True),
        (6, '\t{"a":3}', False),  # a tab is not trimmed: the line does not start with '{'
        (7, '{"a":', False),
        (8, "[1]", False),
        (9, '"x"', False),
        (10, ' \xa0{"b":1} ', False),
        (11, '{"c":"\r"}', False),  # a raw CR inside a string is not JSON
        (13, '\ufeff{"z":9}', False),  # a BOM is removed from line 1 only
    ]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_larger_than_the_memory_cap_is_loaded(tmp_path: Path, fmt: str) -> None:
    """A 340 MB export under a 300 MB memory cap: every record loaded. DuckDB's default CSV buffer
    (the whole file, up to 1 GiB, in one block) and ``read_text`` of a whole JSON Lines file both
    ran out of memory here; the 10M-session exports (3.6 GB of CSV sessions, 4.4 GB of JSON Lines
    access log) were refused under the default cap."""
    n, note = 330_000, "x" * 1000  # a column outside the contract: read past, never stored
    src = tmp_path / "src"
    src.mkdir()
    with open(src / f"access_log.{fmt}", "w", encoding="utf-8") as fh:
        if fmt == "csv":
            fh.write("session_id,at,event,actor,mfa,note\n")
        for i in range(n):
            row = {
                "session_id": f"S{i}",
                "at": "2026-04-01T09:00:00+09:00",
                "event": "join",
                "actor": "doctor",
            }
            if fmt == "csv":
                fh.write(f"{row['session_id']},{row['at']},join,doctor,true,{note}\n")
            else:
                fh.write(json.dumps({**row, "mfa": True, "note": note}) + "\n")
    assert (src / f"access_log.{fmt}").stat().st_size > 340 * 10**6
    db = tmp_path / "x.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit", "ingest", "--db", str(db), str(src)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OCAUDIT_MEMORY_LIMIT": "300MB"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert rows(db, "SELECT count(*), count(DISTINCT session_id), max(_line_number) FROM access_log") == [
        (n, n, n + (fmt == "csv"))
    ]
    assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
