"""Survey packages from several sites: merged by adding exact counts; bad packages rejected whole."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import survey_fixtures as F  # noqa: E402

from toolkit.cli import main  # noqa: E402
from toolkit.survey import run as survey  # noqa: E402
from toolkit.survey.package import PackageRejected  # noqa: E402
from toolkit.survey.tables import EC_TOTAL, build_layout  # noqa: E402

AS_OF = dt.date(2026, 7, 20)
SITES = {"A": 0, "B": 2, "C": 4}  # institution → E1..E7 cases left out (7, 5 and 3 cases)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, survey.SurveyResult]:
    base = tmp_path_factory.mktemp("sites")
    out = {}
    for inst, drop in SITES.items():
        db = F.build_db(base / f"{inst}.duckdb", institution=inst, id_prefix=f"{inst}-", drop_cases=drop)
        out[inst] = survey.run_survey_ec(db, F.PERIOD, base / f"out_{inst}", institution=inst, as_of=AS_OF)
    return out


def pkg(res: survey.SurveyResult) -> str:
    return str(res.out_dir / survey.PACKAGE_DIR)


def copy_pkg(res: survey.SurveyResult, dest: Path) -> Path:
    shutil.copytree(res.out_dir / survey.PACKAGE_DIR, dest)
    return dest


def merged_tables(out: Path) -> list[Path]:
    return (
        list(out.glob("ec_survey_merged*")) + list(out.glob("merged_manifest.json")) if out.exists() else []
    )


def test_three_sites_add_up(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    res = survey.merge_packages([pkg(r) for r in sites.values()], tmp_path / "m")
    assert res.institutions == ["A", "B", "C"]
    assert res.values[EC_TOTAL] == 15
    for cid in res.values:
        assert res.values[cid] == sum(s.values[cid] for s in sites.values()), cid
    # hand check: April has E1 E2 E7 at every site
    assert res.values["T1|all|2026-04"] == 9
    assert res.values["T1|all|2026-06"] == 3 + 1  # A: E4 E5 E6; B: E4
    assert res.values["T5|ec.follow_up|available"] == 3
    layout = build_layout(F.MONTHS)
    assert all(sum(1 for c in line if c in res.masked) != 1 for line in layout.lines)
    for cid, v in res.values.items():
        if cid not in res.masked and not cid.endswith("|available"):
            assert v == 0 or v >= 10, cid
    t1 = res.published["T1"].set_index("コード (code)")
    assert t1.loc["all", "計 (total)"] == 15
    m = json.loads((tmp_path / "m" / "merged_manifest.json").read_text(encoding="utf-8"))
    assert [i["institution_id"] for i in m["institutions"]] == ["A", "B", "C"]
    assert all(len(i["manifest_sha256"]) == 64 and len(i["files"]) == 6 for i in m["institutions"])
    assert (tmp_path / "m" / "ec_survey_merged.xlsx").is_file()
    assert (tmp_path / "m" / "ec_survey_merged_T1.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    # rates are recomputed from the summed counts (local arithmetic, exact)
    t3_completed = res.values["T3|completed|count"]
    assert t3_completed == sum(s.values["T3|completed|count"] for s in sites.values())


def test_merged_exports_have_no_ids(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    survey.merge_packages([pkg(r) for r in sites.values()], tmp_path / "m")
    for p in (tmp_path / "m").iterdir():
        text = p.read_text(encoding="utf-8-sig") if p.suffix != ".xlsx" else ""
        for inst in SITES:
            for ident in F.ALL_IDS:
                assert f"{inst}-{ident}" not in text


def _reject(paths: list[str], out: Path, match: str) -> None:
    with pytest.raises(PackageRejected, match=match):
        survey.merge_packages(paths, out)
    assert merged_tables(out) == []


def test_tampered_file_rejected(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    bad = copy_pkg(sites["B"], tmp_path / "B_tampered")
    p = bad / "t1_counts.csv"
    p.write_text(p.read_text(encoding="utf-8").replace("T1,all,total,5", "T1,all,total,50"), encoding="utf-8")
    _reject(
        [pkg(sites["A"]), str(bad), pkg(sites["C"])], tmp_path / "m", r"B_tampered.*t1_counts.csv.*SHA-256"
    )


def test_missing_and_extra_files_rejected(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    miss = copy_pkg(sites["B"], tmp_path / "B_missing")
    (miss / "t3_counts.csv").unlink()
    _reject([pkg(sites["A"]), str(miss)], tmp_path / "m1", "missing")
    extra = copy_pkg(sites["B"], tmp_path / "B_extra")
    (extra / "patients.csv").write_text("patient_id\nX\n", encoding="utf-8")
    _reject([pkg(sites["A"]), str(extra)], tmp_path / "m2", "extra file")


def test_other_period_rejected(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    db = F.build_db(tmp_path / "D.duckdb", institution="D", id_prefix="D-")
    other = survey.run_survey_ec(db, "2026-04..2026-05", tmp_path / "out_D", institution="D", as_of=AS_OF)
    _reject([pkg(sites["A"]), pkg(other)], tmp_path / "m", "period")


def test_duplicates_rejected(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    _reject([pkg(sites["A"]), pkg(sites["A"])], tmp_path / "m1", "duplicate")
    twin = copy_pkg(sites["A"], tmp_path / "A_copy")
    _reject([pkg(sites["A"]), pkg(sites["B"]), str(twin)], tmp_path / "m2", r"A_copy: duplicate — identical")
    db = F.build_db(tmp_path / "A2.duckdb", institution="A", id_prefix="A2-", drop_cases=1)
    again = survey.run_survey_ec(db, F.PERIOD, tmp_path / "out_A2", institution="A", as_of=AS_OF)
    _reject([pkg(sites["A"]), pkg(again)], tmp_path / "m3", "institution A already")


def test_mixed_versions_rejected(sites: dict[str, survey.SurveyResult], tmp_path: Path) -> None:
    old = copy_pkg(sites["C"], tmp_path / "C_old")
    m = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    m["toolkit_version"] = "0.0.9"
    (old / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    _reject([pkg(sites["A"]), str(old)], tmp_path / "m", "toolkit version")


def test_cli_merge_exit_codes(
    sites: dict[str, survey.SurveyResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["survey", "merge", *[pkg(r) for r in sites.values()], "--out", str(tmp_path / "ok")]) == 0
    bad = copy_pkg(sites["B"], tmp_path / "B_bad")
    (bad / "t6_counts.csv").write_text("table,row,col,value\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["survey", "merge", pkg(sites["A"]), str(bad), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "B_bad" in err and "nothing merged" in err
    assert merged_tables(tmp_path / "no") == []
