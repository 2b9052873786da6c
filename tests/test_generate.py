"""Tests of the synthetic data generator (toolkit/generate*.py) and the shipped sample data."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
import yaml

from toolkit.contract import TABLES
from toolkit.synth.generate import TABLES_OUT, generate_dataset, read_ground_truth
from toolkit.synth.truth import ALL_RULES

ROOT = Path(__file__).resolve().parent.parent


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def _catalogue_rule_ids() -> set[str]:
    doc = yaml.safe_load((ROOT / "toolkit" / "rules" / "rules.yaml").read_text(encoding="utf-8"))
    return {r["id"] for r in doc["rules"] if not r["id"].startswith("attest.")}


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen2000")
    generate_dataset(out, 2000, 11, "parquet", 0.02)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    generate_dataset(out, 1500, 5, "parquet", clean=True)
    return out


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out in (a, b):
        generate_dataset(out, 1200, 3, "parquet", 0.02)
    generate_dataset(c, 1200, 4, "parquet", 0.02)
    assert _digest(a) == _digest(b)
    assert _digest(a)["sessions.parquet"] != _digest(c)["sessions.parquet"]


def test_counts_and_referential_integrity(clean: Path) -> None:
    gen = json.loads((clean / "generation.json").read_text(encoding="utf-8"))
    con = duckdb.connect()
    for t in TABLES_OUT:
        n = con.execute(f"SELECT count(*) FROM '{clean / (t + '.parquet')}'").fetchone()[0]
        assert n == gen["counts"][t], t
    assert gen["counts"]["sessions"] == 1500
    assert gen["counts"]["institutions"] >= 3 and gen["counts"]["doctors"] >= 10

    def dangling(child: str, col: str, parent: str, key: str) -> int:
        return con.execute(
            f"SELECT count(*) FROM '{clean / (child + '.parquet')}' c WHERE c.{col} IS NOT NULL AND c.{col} "
            f"NOT IN (SELECT {key} FROM '{clean / (parent + '.parquet')}')"
        ).fetchone()[0]

    assert dangling("sessions", "patient_id", "patients", "patient_id") == 0
    assert dangling("sessions", "doctor_id", "doctors", "doctor_id") == 0
    assert dangling("sessions", "institution_id", "institutions", "institution_id") == 0
    assert dangling("sessions", "care_plan_id", "care_plans", "care_plan_id") == 0
    assert dangling("prescriptions", "session_id", "sessions", "session_id") == 0
    assert dangling("ec_cases", "session_id", "sessions", "session_id") == 0
    assert dangling("access_log", "session_id", "sessions", "session_id") == 0
    assert dangling("doctors", "institution_id", "institutions", "institution_id") == 0
    bad_times = con.execute(
        f"SELECT count(*) FROM '{clean / 'sessions.parquet'}' WHERE NOT (explained_at <= consent_at "
        "AND consent_at <= started_at AND started_at < ended_at)"
    ).fetchone()[0]
    assert bad_times == 0
    shape = con.execute(
        f"SELECT (SELECT count(*) FROM '{clean / 'prescriptions.parquet'}') / count(*), "
        f"(SELECT count(*) FROM '{clean / 'access_log.parquet'}') / count(*), avg(is_first_visit::INT) "
        f"FROM '{clean / 'sessions.parquet'}'"
    ).fetchone()
    assert 1.2 < shape[0] < 1.8 and 3.8 < shape[1] < 4.6 and 0.15 < shape[2] < 0.35


def test_clean_data_has_empty_ground_truth(clean: Path) -> None:
    assert read_ground_truth(clean / "ground_truth.csv") == []
    gen = json.loads((clean / "generation.json").read_text(encoding="utf-8"))
    assert gen["clean"] is True and gen["ground_truth_rows"] == 0 and gen["injected"] == {}


def test_every_rule_in_ground_truth(injected: Path) -> None:
    rules = _catalogue_rule_ids()
    assert len(rules) == 44
    assert set(ALL_RULES) == rules
    truth = read_ground_truth(injected / "ground_truth.csv")
    assert {r[0] for r in truth} == rules
    assert {r[3] for r in truth} == {"violated", "not_evidenced"}
    assert len(truth) == len(set(truth))
    gen = json.loads((injected / "generation.json").read_text(encoding="utf-8"))
    assert gen["as_of"] == "2026-11-15"
    assert sum(v.get("violated", 0) + v.get("not_evidenced", 0) for v in gen["ground_truth"].values()) == len(
        truth
    )


def test_dangling_references_are_in_ground_truth(injected: Path) -> None:
    """Injected unknown doctors are deliberate: each such session is listed (training not evidenced)."""
    con = duckdb.connect()
    ids = {
        r[0]
        for r in con.execute(
            f"SELECT session_id FROM '{injected / 'sessions.parquet'}' WHERE doctor_id NOT IN "
            f"(SELECT doctor_id FROM '{injected / 'doctors.parquet'}')"
        ).fetchall()
    }
    truth = {(r[0], r[2]) for r in read_ground_truth(injected / "ground_truth.csv")}
    assert ids and all(("training.doctor_online", i) in truth for i in ids)


def test_csv_and_parquet_readable_with_contract_columns(tmp_path: Path) -> None:
    con = duckdb.connect()
    for fmt in ("csv", "parquet"):
        out = tmp_path / fmt
        generate_dataset(out, 600, 2, fmt, 0.02)
        for t in TABLES_OUT:
            path = out / f"{t}.{fmt}"
            rel = f"read_csv('{path}', header=true)" if fmt == "csv" else f"read_parquet('{path}')"
            cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
            assert cols == list(TABLES[t].column_names), (fmt, t)
    with open(tmp_path / "csv" / "sessions.csv", newline="", encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert row["started_at"].endswith("+09:00") and row["is_first_visit"] in ("true", "false")
    a = con.execute(
        f"SELECT count(*), min(started_at) FROM read_csv('{tmp_path / 'csv' / 'sessions.csv'}')"
    ).fetchone()
    b = con.execute(
        f"SELECT count(*), min(started_at) FROM '{tmp_path / 'parquet' / 'sessions.parquet'}'"
    ).fetchone()
    assert a == b


def test_streaming_memory_bounded(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        from toolkit.synth.generate import generate_dataset
        generate_dataset({str(tmp_path / "big")!r}, 150_000, 1, "parquet", 0.02, chunk_size=50_000)
        # VmHWM: this process's own peak (ru_maxrss would include the pytest worker it came from)
        print([int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0])
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    peak_mb = int(res.stdout.strip().splitlines()[-1]) / 1024
    print(f"peak RSS generating 150k sessions: {peak_mb:.0f} MB")
    assert peak_mb < 1536
    gen = json.loads((tmp_path / "big" / "generation.json").read_text(encoding="utf-8"))
    assert gen["counts"]["sessions"] == 150_000 and gen["chunks"] == 3


def test_sample_data_is_reproducible(tmp_path: Path) -> None:
    from tools.generate_sample import build_sample

    shipped = ROOT / "sample_data"
    build_sample(tmp_path)
    for rel in (
        "sessions.csv",
        "institutions.csv",
        "vendor_medilink/ml_careplans_2026.csv",
        "vendor_medilink/mapping.yaml",
        "ground_truth.csv",
    ):
        assert (tmp_path / rel).read_bytes() == (shipped / rel).read_bytes(), rel
    assert not (shipped / "care_plans.csv").exists()
    (shipped / "institutions.csv").read_bytes().decode("cp932")
    mapping = yaml.safe_load((shipped / "vendor_medilink" / "mapping.yaml").read_text(encoding="utf-8"))
    spec = mapping["tables"]["care_plans"]
    assert spec["drop"] == ["患者氏名"] and spec["encoding"] == "cp932"
    assert set(spec["columns"].values()) <= set(TABLES["care_plans"].column_names)


def test_compare_truth_counts_differences(injected: Path, tmp_path: Path) -> None:
    from toolkit.synth.generate import compare_truth

    rows = (injected / "ground_truth.csv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "v.csv").write_text(
        "\n".join(rows[:-1]) + "\nexam.access_log,session,S999,violated\n", encoding="utf-8"
    )
    res = compare_truth(injected / "ground_truth.csv", tmp_path / "v.csv")
    assert sum(r["missing"] for r in res.values()) == 1
    assert res["exam.access_log"]["extra"] == 1
    assert all(
        r["missing"] == r["extra"] == 0
        for r in compare_truth(injected / "ground_truth.csv", injected / "ground_truth.csv").values()
    )


def test_drug_codes_classified_by_shipped_master() -> None:
    """The codes the generator prescribes get the flags it expects from toolkit/data/drug_master.csv."""
    from toolkit.synth.drugs import CANDIDATES, DrugMaster

    master = DrugMaster.load()
    if master.sha256 is None:
        pytest.skip("no shipped drug master")
    assert [c for c, _, f in CANDIDATES if master.classify(c) != f] == []
    assert all(master.roles().values())
