"""Rebuild the shipped ``sample_data/`` folder: ``python -m tools.generate_sample [OUT]``.

The sample is a small generated data set (400 sessions, seed 7, 2 % violations) in the
contract's CSV format, with two twists that exercise ingest:

* ``institutions.csv`` is encoded in CP932 (Japanese clinic names), as Japanese exports often are;
* the ``care_plans`` table is not among the contract files: it comes as a made-up vendor export,
  ``vendor_medilink/ml_careplans_2026.csv`` (CP932, Japanese column names and values,
  ``YYYY/MM/DD HH:MM`` timestamps, a 患者氏名 column of obviously fake names that the mapping
  drops), loaded with ``vendor_medilink/mapping.yaml``.

``ground_truth.csv`` and ``generation.json`` hold what the audit must find (audit with
``--as-of`` from generation.json), beside the data as in any generated folder. ``attestation.yaml`` belongs to the lead and is
left alone.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

from toolkit.synth.generate import generate_dataset

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_SESSIONS = 400
SAMPLE_SEED = 7
SAMPLE_RATE = 0.02

PLAN_COLUMNS = {  # vendor column → contract column
    "計画ID": "care_plan_id",
    "患者ID": "patient_id",
    "作成日時": "created_at",
    "対面診察日時": "in_person_assessed_at",
    "項目_診療内容": "has_content",
    "項目_予定日": "has_schedule",
    "項目_診療時間": "has_hours",
    "項目_診療方法": "has_method",
    "項目_中止条件": "has_stop_conditions",
    "項目_連携体制": "has_cooperation",
    "項目_急変時対応": "has_emergency_plan",
    "項目_担当医師名": "has_doctor_names",
    "項目_セキュリティ責任範囲": "has_security_scope",
    "担当医師ID": "doctors",
    "削除日時": "deleted_at",
}
FAKE_SURNAMES = ["試験", "見本", "架空", "仮名", "例示"]
FAKE_GIVEN = ["太郎", "花子", "一郎", "桜", "次郎", "葵"]
YES, NO = "記載あり", "記載なし"

MAPPING_YAML = """# Mapping of the (made-up) MediLink Cloud care-plan export onto the ocaudit contract.
# ocaudit ingest --db x.duckdb sample_data/vendor_medilink --mapping sample_data/vendor_medilink/mapping.yaml
vendor: "MediLink Cloud export v3"
tables:
  care_plans:
    files: ["ml_careplans*.csv"]
    encoding: cp932
    columns: {COLUMNS}
    drop: [患者氏名]
    values:
{VALUES}
    timestamp_format: "%Y/%m/%d %H:%M"
    date_format: "%Y/%m/%d"
    constants: {}
"""


def _vendor_ts(iso: str) -> str:
    """``2026-04-03T09:10:00+09:00`` → ``2026/04/03 09:10`` (Japan wall time, minute precision)."""
    if not iso:
        return ""
    return iso[:16].replace("-", "/").replace("T", " ")


def _vendor_bool(v: str) -> str:
    return {"true": YES, "false": NO}.get(v, "")


def write_vendor_plans(plans_csv: Path, vendor_dir: Path) -> int:
    """Rewrite the contract care_plans CSV as the vendor export plus its mapping; returns rows."""
    vendor_dir.mkdir(parents=True, exist_ok=True)
    inverse = {v: k for k, v in PLAN_COLUMNS.items()}
    with open(plans_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = ["計画ID", "患者ID", "患者氏名"] + [k for k in PLAN_COLUMNS if k not in ("計画ID", "患者ID")]
    out = vendor_dir / "ml_careplans_2026.csv"
    with open(out, "w", newline="", encoding="cp932") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(header)
        for i, r in enumerate(rows):
            rec = {}
            for contract, value in r.items():
                col = inverse[contract]
                if contract.endswith("_at"):
                    value = _vendor_ts(value)
                elif contract.startswith("has_"):
                    value = _vendor_bool(value)
                rec[col] = value
            rec["患者氏名"] = (
                f"{FAKE_SURNAMES[i % len(FAKE_SURNAMES)]} {FAKE_GIVEN[(i * 7) % len(FAKE_GIVEN)]}"
            )
            w.writerow([rec[c] for c in header])
    cols = "{" + ", ".join(f"{k}: {v}" for k, v in PLAN_COLUMNS.items()) + "}"
    values = "\n".join(
        f'      {c}: {{{YES}: "true", {NO}: "false"}}' for c in PLAN_COLUMNS.values() if c.startswith("has_")
    )
    (vendor_dir / "mapping.yaml").write_text(
        MAPPING_YAML.replace("{COLUMNS}", cols).replace("{VALUES}", values), encoding="utf-8"
    )
    return len(rows)


def build_sample(out_dir: str | Path = SAMPLE_DIR) -> dict:
    """Regenerate the sample folder (keeps ``attestation.yaml`` and ``README.md``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate_dataset(tmp, SAMPLE_SESSIONS, SAMPLE_SEED, "csv", SAMPLE_RATE)
        t = Path(tmp)
        for name in (
            "doctors",
            "patients",
            "sessions",
            "prescriptions",
            "ec_cases",
            "in_person_visits",
            "access_log",
        ):
            shutil.copyfile(t / f"{name}.csv", out / f"{name}.csv")
        text = (t / "institutions.csv").read_text(encoding="utf-8")
        (out / "institutions.csv").write_bytes(text.replace("\n", "\r\n").encode("cp932"))
        if (out / "care_plans.csv").exists():
            (out / "care_plans.csv").unlink()
        write_vendor_plans(t / "care_plans.csv", out / "vendor_medilink")
        shutil.copyfile(t / "ground_truth.csv", out / "ground_truth.csv")
        gen = json.loads((t / "generation.json").read_text(encoding="utf-8"))
        gen["sample_layout"] = {
            "contract_files": "sample_data/*.csv (institutions.csv in CP932)",
            "care_plans": "sample_data/vendor_medilink/ml_careplans_2026.csv via mapping.yaml",
            "rebuild": "python -m tools.generate_sample",
        }
        (out / "generation.json").write_text(
            json.dumps(gen, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: rebuild ``sample_data/`` (or the folder given)."""
    argv = sys.argv[1:] if argv is None else argv
    summary = build_sample(argv[0] if argv else SAMPLE_DIR)
    print(
        f"sample data: {summary['counts']}; ground truth {summary['ground_truth_rows']} rows, "
        f"as of {summary['as_of']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
