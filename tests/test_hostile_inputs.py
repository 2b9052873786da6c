"""Hostile configuration files, packages, databases and headers (issue 15, items 3, 4, 5, 9, 10).

The files are in ``tests/bad_inputs/hostile/`` (``make_hostile.py`` re-creates them); FIFOs,
symlinks to devices, big and truncated files are made here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from tests.fixtures.secutil import cli, env, make_data
from toolkit import store
from toolkit.errors import UserError
from toolkit.ingest.mapping import MappingError, load_mapping
from toolkit.ingest.parse import looks_like_identifier
from toolkit.rules import attestation, catalogue
from toolkit.safe_yaml import MAX_YAML_BYTES, YamlFileError, load_file
from toolkit.store.files import make_dirs, open_owner_only, write_text
from toolkit.survey.package import MAX_PACKAGE_FILE_BYTES, PackageRejected, read_package

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "bad_inputs" / "hostile"
SAMPLE = ROOT / "sample_data"


def fingerprint(path: Path) -> tuple[str, int]:
    """(SHA-256, mode) of a file: 'untouched' means both are the same afterwards."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode)


def one_error_line(r: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert exit 2 with one ``ocaudit: error:`` line containing every fragment and no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ocaudit: error:")]
    assert len(errors) == 1, r.stderr
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


# ------------------------------------------------------------------ item 3: YAML bombs


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("attestation-alias-bomb.yaml", "anchors and aliases"),
        ("mapping-alias-bomb.yaml", "anchors and aliases"),
        ("mapping-merge-key.yaml", "anchors and aliases"),
        ("mapping-deep-nesting.yaml", "nested"),
    ],
)
def test_yaml_bomb_refused_fast_in_bounded_memory(name: str, fragment: str) -> None:
    path = HOSTILE / name
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(YamlFileError, match=fragment) as exc:
        load_file(path, "mapping file")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(path) in str(exc.value)
    assert seconds < 0.5, seconds
    assert peak < 5_000_000, peak


def test_mapping_bomb_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    bomb = HOSTILE / "mapping-alias-bomb.yaml"
    before = fingerprint(bomb)
    t0 = time.monotonic()
    r = cli("ingest", "--db", str(tmp_path / "x.duckdb"), str(SAMPLE), "--mapping", str(bomb), timeout=60)
    assert time.monotonic() - t0 < 30
    one_error_line(r, str(bomb), "anchors and aliases")
    assert fingerprint(bomb) == before
    assert not (tmp_path / "x.duckdb").exists()


def test_attestation_bomb_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    bomb = HOSTILE / "attestation-alias-bomb.yaml"
    db = tmp_path / "x.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.close()
    r = cli("audit", "--db", str(db), "--quiet", "--attestation", str(bomb), timeout=120)
    one_error_line(r, str(bomb), "anchors and aliases")


def test_oversized_fifo_and_device_yaml_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"vendor: x\n" + b"#" * MAX_YAML_BYTES)
    with pytest.raises(MappingError, match=f"limit is {MAX_YAML_BYTES} bytes"):
        load_mapping(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    for p in (fifo, zero, tmp_path):
        t0 = time.perf_counter()
        with pytest.raises(MappingError, match="not a regular file"):
            load_mapping(p)
        assert time.perf_counter() - t0 < 0.5
    with pytest.raises(UserError, match="not a regular file"):
        attestation.load(zero, catalogue.load())


def test_every_yaml_read_goes_through_the_safe_loader() -> None:
    offenders = []
    for p in (ROOT / "toolkit").rglob("*.py"):
        if p.name == "safe_yaml.py":
            continue
        text = p.read_text(encoding="utf-8")
        if re.search(
            r"\byaml\.(safe_load|load|full_load|unsafe_load|compose|parse)\b|^import yaml", text, re.M
        ):
            offenders.append(str(p.relative_to(ROOT)))
    assert offenders == []
    assert catalogue.load().rules  # the shipped catalogue still loads (no anchors in it)


def test_plain_yaml_still_loads(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("\ufeffvendor: &x\n", encoding="utf-8")
    with pytest.raises(MappingError, match="anchors"):
        load_mapping(p)
    p.write_text("vendor: 'A & B *C*'\ntables: {sessions: {drop: ['氏名']}}\n", encoding="utf-8")
    m = load_mapping(p)
    assert m.vendor == "A & B *C*" and m.table("sessions").drop == ["氏名"]


# ------------------------------------------------------------------ item 4: package files


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import datetime as dt

    sys.path.insert(0, str(ROOT / "tests"))
    import survey_fixtures as F

    from toolkit.survey import run as survey

    base = tmp_path_factory.mktemp("pkg")
    db = F.build_db(base / "A.duckdb", institution="A", id_prefix="A-", drop_cases=0)
    res = survey.run_survey_ec(db, F.PERIOD, base / "out", institution="A", as_of=dt.date(2026, 7, 20))
    return Path(res.out_dir) / "package"


def _copy(pkg: Path, dest: Path) -> Path:
    shutil.copytree(pkg, dest)
    return dest


def test_package_member_symlink_to_dev_zero_rejected_fast(package: Path, tmp_path: Path) -> None:
    p = _copy(package, tmp_path / "p")
    (p / "t1_counts.csv").unlink()
    (p / "t1_counts.csv").symlink_to("/dev/zero")
    t0 = time.perf_counter()
    with pytest.raises(PackageRejected, match="t1_counts.csv is a symbolic link"):
        read_package(p)
    assert time.perf_counter() - t0 < 1
    r = cli("survey", "merge", str(p), "--out", str(tmp_path / "merged"), timeout=60)
    assert r.returncode == 2 and "symbolic link" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "merged").exists()


def test_package_manifest_fifo_folder_and_big_file_rejected(package: Path, tmp_path: Path) -> None:
    p = _copy(package, tmp_path / "fifo")
    (p / "manifest.json").unlink()
    os.mkfifo(p / "manifest.json")
    with pytest.raises(PackageRejected, match="manifest.json is not a regular file"):
        read_package(p)
    p = _copy(package, tmp_path / "dir")
    (p / "t2_counts.csv").unlink()
    (p / "t2_counts.csv").mkdir()
    with pytest.raises(PackageRejected, match="t2_counts.csv is not a regular file"):
        read_package(p)
    p = _copy(package, tmp_path / "big")
    with open(p / "t3_counts.csv", "r+b") as fh:
        fh.truncate(MAX_PACKAGE_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(PackageRejected, match="package files are at most"):
        read_package(p)
    p = _copy(package, tmp_path / "outside")
    m = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
    m["files"]["../manifest.json"] = m["files"].pop("t4_counts.csv")
    (p / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(PackageRejected):
        read_package(p)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"period": 5}, "'period' is 5; expected text"),
        ({"months": "2026-04"}, "'months' is"),
        ({"files": ["t1_counts.csv"]}, "'files' is"),
        ({"institution_id": {"a": 1}}, "'institution_id' is"),
        ({"period": "last spring"}, "period 'last spring' is not YYYY-MM..YYYY-MM"),
    ],
)
def test_manifest_with_wrong_types_is_exit_2(
    package: Path, tmp_path: Path, change: dict, fragment: str
) -> None:
    p = _copy(package, tmp_path / "p")
    m = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
    m.update(change)
    (p / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    before = fingerprint(p / "manifest.json")
    r = cli("survey", "merge", str(p), "--out", str(tmp_path / "merged"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and fragment in r.stderr and str(p) in r.stderr
    assert fingerprint(p / "manifest.json") == before
    assert not (tmp_path / "merged").exists()


def test_manifest_that_is_a_list_rejected(package: Path, tmp_path: Path) -> None:
    p = _copy(package, tmp_path / "p")
    (p / "manifest.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(PackageRejected, match="not a JSON object"):
        read_package(p)


# ------------------------------------------------------------------ item 5: identifier headers


IDENT_FILES = sorted(HOSTILE.glob("patients-ident-*.csv"))


@pytest.mark.parametrize("path", IDENT_FILES, ids=[p.stem for p in IDENT_FILES])
def test_identifier_header_spellings_refuse_the_file(path: Path, tmp_path: Path) -> None:
    from tests.ingest_helpers import rows, run

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(path, src / "patients.csv")
    db = tmp_path / "x.duckdb"
    summary, printed = run(db, src)
    assert len(summary.errors) == 1 and "look like direct identifiers" in summary.errors[0], summary.errors
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")[2]
    assert header in summary.errors[0]
    assert "SECRET" not in printed
    for (t,) in rows(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"):
        assert (
            rows(db, f"SELECT count(*) FROM \"{t}\" x WHERE CAST(x AS VARCHAR) LIKE '%SECRET%'")[0][0] == 0
        ), t


@pytest.mark.parametrize(
    "name",
    [
        "lastname",
        "firstname",
        "telno",
        "ｎａｍｅ",
        "氏\u200b名",
        "ﾌﾘｶﾞﾅ",
        "ふりがな",
        "患者カナ",
        "shimei",
        "namae",
        "phone_no",
        "ＴＥＬ",
        "zip_code",
        "postal-code",
        "yubin_bango",
        "jusho",
        "被保険者番号",
        "保険者番号",
        "insurer_number",
        "my_number",
        "マイナンバー",
        "patient\u200b_name",
        "Last\u2060Name",
        "\u202ename\u202c",
    ],
)
def test_identifier_spellings(name: str) -> None:
    assert looks_like_identifier(name)


@pytest.mark.parametrize("name", ["hotel", "blood_type", "visit_count", "user_id", "birth_date", "mailing"])
def test_not_identifier_spellings(name: str) -> None:
    assert not looks_like_identifier(name)


def test_dropped_identifier_and_extra_columns_never_stored(tmp_path: Path) -> None:
    """A mapping drops 氏名 (the header spells it with a zero-width space); a bad-value row, a malformed
    line and an extra column: quarantine keeps the contract columns and reasons only."""
    from tests.ingest_helpers import rows, run

    src = tmp_path / "src"
    src.mkdir()
    (src / "patients.csv").write_text(
        "patient_id,sex,氏\u200b名,blood_type\n"
        "P1,female,SECRET-NAME-1,SECRET-BLOOD-1\n"
        "P2,bogus,SECRET-NAME-2,SECRET-BLOOD-2\n"
        "P3,male,SECRET-NAME-3\n"
        'P4,"female,SECRET-NAME-4,x\n',
        encoding="utf-8",
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text("tables:\n  patients:\n    drop: [氏名]\n", encoding="utf-8")
    db = tmp_path / "x.duckdb"
    summary, printed = run(db, src, mapping)
    assert summary.ok, summary.errors
    q = rows(db, "SELECT line_number, reason, raw_row FROM quarantine ORDER BY line_number")
    assert len(q) >= 2, q
    assert json.loads(q[0][2]) == {"patient_id": "P2", "sex": "bogus"}  # contract columns only
    for line, _reason, raw in q[1:]:
        assert "SECRET" not in raw and "omitted" in raw, (line, raw)
    assert "SECRET" not in printed
    for (t,) in rows(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"):
        assert (
            rows(db, f"SELECT count(*) FROM \"{t}\" x WHERE CAST(x AS VARCHAR) LIKE '%SECRET%'")[0][0] == 0
        ), t


# ------------------------------------------------------------------ item 9: clear errors


def _truncated_db(tmp_path: Path) -> Path:
    db = tmp_path / "good.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.execute("CHECKPOINT")
    con.close()
    with open(db, "r+b") as fh:
        fh.truncate(8192)
    return db


@pytest.mark.parametrize("kind", ["random-bytes", "csv", "truncated"])
def test_not_a_database_is_exit_2_and_untouched(kind: str, tmp_path: Path) -> None:
    if kind == "truncated":
        db = _truncated_db(tmp_path)
    else:
        db = tmp_path / "x.duckdb"
        shutil.copy(
            HOSTILE / ("db-random-bytes.duckdb" if kind == "random-bytes" else "db-is-a-csv.duckdb"), db
        )
        db.chmod(0o644)
    before = fingerprint(db)
    for argv in (
        ["audit", "--db", str(db), "--quiet"],
        ["report", "--db", str(db), "--out", str(tmp_path / "r.html")],
        ["ingest", "--db", str(db), str(SAMPLE)],
    ):
        r = cli(*argv, timeout=120)
        one_error_line(r, str(db), "not a DuckDB database, or a damaged or truncated one")
        assert fingerprint(db) == before, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == [db.name]  # no WAL, no report


def test_fifo_or_folder_as_db_is_exit_2_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.duckdb"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    for db in (fifo, folder):
        for argv in (["audit", "--db", str(db), "--quiet"], ["ingest", "--db", str(db), str(SAMPLE)]):
            r = cli(*argv, timeout=60)
            one_error_line(r, str(db), "not a regular file")


def test_schema_version_text_is_exit_2_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.execute("UPDATE schema_meta SET value = 'two' WHERE key = 'schema_version'")
    con.execute("CHECKPOINT")
    con.close()
    before = fingerprint(db)
    for argv in (
        ["audit", "--db", str(db), "--quiet"],
        ["report", "--db", str(db), "--out", str(tmp_path / "r.html")],
        ["ingest", "--db", str(db), str(SAMPLE)],
    ):
        r = cli(*argv, timeout=120)
        one_error_line(r, str(db), "schema_meta.schema_version is 'two', not a number")
        assert fingerprint(db) == before, argv


@pytest.mark.parametrize("name", ["attestation-items-list.yaml", "attestation-notes-list.yaml"])
def test_attestation_list_is_exit_2_and_untouched(name: str, tmp_path: Path) -> None:
    path = HOSTILE / name
    key = "items" if "items" in name else "notes"
    with pytest.raises(UserError, match=f"'{key}:' must be a mapping"):
        attestation.load(path, catalogue.load())
    db = tmp_path / "x.duckdb"
    con = store.connect(db)
    store.ensure_schema(con)
    con.close()
    before = fingerprint(path)
    r = cli("audit", "--db", str(db), "--quiet", "--attestation", str(path), timeout=120)
    one_error_line(r, str(path), f"'{key}:' must be a mapping")
    assert fingerprint(path) == before


# ------------------------------------------------------------------ item 10: file modes


def _loose(root: Path) -> list[tuple[str, str]]:
    """Files not 0600 and folders not 0700 under ``root`` (root included)."""
    out = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        if mode != want:
            out.append((str(p.relative_to(root.parent)), oct(mode)))
    return out


def test_owner_only_writer_narrows_existing_files(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        p = tmp_path / "a" / "b" / "f.txt"
        make_dirs(p.parent.parent)
        (p.parent).mkdir(mode=0o777)
        p.write_text("old")
        p.chmod(0o644)
        write_text(p, "new")
        assert p.read_text() == "new" and stat.S_IMODE(p.stat().st_mode) == 0o600
        with open_owner_only(tmp_path / "n" / "g.bin", "wb") as fh:
            fh.write(b"x")
        assert stat.S_IMODE((tmp_path / "n").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "n" / "g.bin").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    finally:
        os.umask(old)


def test_no_writer_outside_the_owner_only_one() -> None:
    """Every output goes through toolkit/store/files.py, the ingest's temporary copies included."""
    pat = re.compile(
        r"\.write_text\(|\.write_bytes\(|\.mkdir\(|os\.umask\(|\.to_csv\(|\.to_parquet\(|pq\.write_table\("
        r"|ParquetWriter\(\s*self\.path|ExcelWriter\(\s*path|open\([^)]*[\"']w|write_owner_only"
    )
    allowed = {"toolkit/store/files.py", "toolkit/store/connection.py"}
    found = []
    for p in (ROOT / "toolkit").rglob("*.py"):
        rel = str(p.relative_to(ROOT))
        if rel in allowed:
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if pat.search(line):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert found == []
    conn = (ROOT / "toolkit/store/connection.py").read_text(encoding="utf-8")
    assert conn.count("os.umask(") == 2  # only the process-wide owner-only umask for DuckDB's WAL


@pytest.mark.slow
def test_every_output_is_owner_only_under_umask_000(tmp_path: Path) -> None:
    """ingest → audit (CSV, JSON) → report → feedback → survey ec → survey merge, generate; umask 000,
    every output file existing beforehand as 0644."""
    data = make_data(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    db = out / "clinic.duckdb"
    pre = [out / "violations.csv", out / "audit.json", out / "report.html"]
    for p in pre:
        p.write_text("old")
        p.chmod(0o644)
    gen = tmp_path / "gen"
    gen.mkdir(mode=0o755)
    (gen / "generation.json").write_text("{}")
    (gen / "generation.json").chmod(0o644)
    gen.chmod(0o755)
    merged = tmp_path / "merged"
    survey = ["survey", "ec", "--db", str(db), "--period", "2026-04..2026-09", "--institution", "I0001"]
    steps: list[dict] = [
        {"argv": ["ingest", "--db", str(db), str(data)]},
        {
            "argv": ["audit", "--db", str(db), "--as-of", "2026-10-31", "--quiet"]
            + ["--violations", str(pre[0]), "--json", str(pre[1])]
        },
        {"argv": ["report", "--db", str(db), "--out", str(pre[2])]},
        {"argv": ["feedback", "--db", str(db), "--out", str(out / "feedback")]},
        {"argv": [*survey, "--out", str(out / "survey")]},
        # the survey workbook and a package file exist, 0644, before the second survey run
        {"chmod": [str(out / "survey"), "*.xlsx"]},
        {"chmod": [str(out / "survey" / "package"), "manifest.json"]},
        {"argv": [*survey, "--out", str(out / "survey")]},
        {"chmod": [str(out), "clinic.duckdb"]},  # an existing database opened to write is narrowed too
        {"argv": ["ingest", "--db", str(db), str(data)]},
        {"argv": ["survey", "merge", str(out / "survey" / "package"), "--out", str(merged)]},
        {"argv": ["generate", "--sessions", "30", "--out", str(gen), "--format", "csv"]},
        {"argv": ["generate", "--sessions", "30", "--out", str(tmp_path / "genpq")]},
    ]
    # One interpreter runs every command (the umask is set to 000 again before each, since a
    # command narrows its own process's umask once it opens the database).
    driver = textwrap.dedent("""
        import json, os, sys
        from pathlib import Path
        from toolkit.cli import main
        for step in json.loads(sys.argv[1]):
            if "chmod" in step:
                folder, pattern = step["chmod"]
                for p in Path(folder).glob(pattern):
                    p.chmod(0o644)
                continue
            os.umask(0)
            code = main(step["argv"])
            if code != 0:
                sys.exit(f"{step['argv'][:2]} exited {code}")
    """)
    r = subprocess.run(
        [sys.executable, "-c", driver, json.dumps(steps)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert len(list(out.rglob("*"))) > 20
    assert _loose(out) + _loose(merged) + _loose(gen) + _loose(tmp_path / "genpq") == []
