"""The shipped drug master: well-formed, and classifying as the audit does (exact, else longest prefix)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from toolkit.contract import FALSE_WORDS, TABLES, TRUE_WORDS
from toolkit.ingest.records import SHIPPED_DRUG_MASTER
from toolkit.synth.drugs import CANDIDATES, MISUSE_CLASSES, DrugMaster

FLAGS = ("narcotic", "psychotropic", "high_risk", "emergency_contraceptive", "first_visit_caution")


def _rows() -> list[dict[str, str]]:
    with open(SHIPPED_DRUG_MASTER, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_shipped_master_is_well_formed() -> None:
    recs = _rows()
    assert list(recs[0]) == list(TABLES["drug_master"].column_names)
    codes = [r["drug_code"] for r in recs]
    assert len(codes) == len(set(codes))
    for r in recs:
        code = r["drug_code"]
        assert code.isascii() and (len(code) == 12 or (2 <= len(code) <= 7 and code.isdigit())), code
        for f in FLAGS:
            assert r[f] in TRUE_WORDS | FALSE_WORDS, (code, f)
        assert r["misuse_class"] in MISUSE_CLASSES | {""}
    assert (Path(SHIPPED_DRUG_MASTER).parent / "README.md").exists()


def _classify_sql(code: str) -> tuple | None:
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE drug_master AS SELECT * FROM read_csv('{SHIPPED_DRUG_MASTER}', all_varchar=true)"
    )
    row = con.execute(
        "SELECT narcotic, psychotropic, high_risk, emergency_contraceptive, misuse_class FROM ("
        "SELECT *, row_number() OVER (ORDER BY length(drug_code) DESC) rn FROM drug_master "
        "WHERE starts_with(?, drug_code)) WHERE rn = 1",
        [code],
    ).fetchone()
    con.close()
    return row


def test_longest_prefix_rules() -> None:
    m = DrugMaster.load(SHIPPED_DRUG_MASTER)
    assert m.classify("4291009F1020").high_risk  # 抗悪性腫瘍剤 by the 42 prefix
    assert m.classify("3332001F1010").high_risk  # warfarin (血液凝固阻止剤 333)
    assert m.classify("8219005S1020").narcotic  # fentanyl
    assert m.classify("1124007F1028").psychotropic  # triazolam (exact code)
    assert not m.classify("1124999F1010").psychotropic  # another 1124 drug: not listed, not flagged
    assert m.classify("1179025F1020").psychotropic and m.classify("1179025F1020").high_risk  # etizolam
    assert m.classify("2549008F1022").emergency_contraceptive
    assert not m.classify("2549001F1010").emergency_contraceptive  # other 2549 (卵胞・黄体ホルモン剤)
    assert m.classify("2590014F1020").misuse_class == "pde5"
    assert m.classify("2139005F1010").misuse_class == "diuretic"
    assert m.classify("3961001F1010").misuse_class == "antidiabetic"
    assert m.classify("2171022F1020") == m.classify("9999999X9999")  # benign = unflagged
    # the audit's SQL (starts_with + longest drug_code) agrees
    assert _classify_sql("1179025F1020")[:3] == ("false", "true", "true")
    assert _classify_sql("4291009F1020")[:3] == ("false", "false", "true")
    assert _classify_sql("9999999X9999") is None


def test_generator_candidates_keep_their_roles() -> None:
    m = DrugMaster.load(SHIPPED_DRUG_MASTER)
    for code, _name, builtin in CANDIDATES:
        got = m.classify(code)
        for f in ("narcotic", "psychotropic", "high_risk", "emergency_contraceptive", "misuse_class"):
            assert getattr(got, f) == getattr(builtin, f), (code, f)
    assert all(m.roles().values())


def test_shipped_master_loads_through_ingest(tmp_path: Path) -> None:
    from tests.ingest_helpers import rows, run, write

    src = write(tmp_path / "src" / "patients.csv", "patient_id,sex\nP1,female\n").parent
    db = tmp_path / "a.duckdb"
    summary, _ = run(db, src)
    assert summary.tables["drug_master"].quarantined == 0
    assert summary.tables["drug_master"].loaded == len(_rows())
    flags = rows(db, "SELECT narcotic, high_risk FROM drug_master WHERE drug_code = '811'")
    assert flags == [(True, False)]
